"""Named ViT sizes: a variant name expands to the model's dimensions."""

# (hidden_dim, depth, num_heads, mlp_dim) of each size in the ViT paper
# (Dosovitskiy et al., 2021, table 1) and DeiT (Ti, S).
_SIZES = {
    "Ti": (192, 12, 3, 768),
    "S": (384, 12, 6, 1536),
    "B": (768, 12, 12, 3072),
    "L": (1024, 24, 16, 4096),
    "H": (1280, 32, 16, 5120),
}

VARIANTS = (
    "Ti/16",
    "S/16",
    "S/32",
    "B/8",
    "B/16",
    "B/32",
    "L/16",
    "L/32",
    "H/14",
    # DINOv2 and CLIP's patch 14.
    "S/14",
    "B/14",
    "L/14",
)


def decode_variant(variant):
    """Expands a variant name such as `"B/16"` to its dimensions.

    Args:
        variant: str. One of `VARIANTS`: a size (`Ti`, `S`, `B`, `L`, `H`)
            and a patch size.

    Returns:
        A dict with `hidden_dim`, `depth`, `num_heads`, `mlp_dim` and
        `patch_size`.

    Example:

    >>> decode_variant("S/16")["hidden_dim"]
    384
    """
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ValueError(
            f"Unknown ViT variant. Expected one of {', '.join(VARIANTS)}. "
            f"Received: variant={variant!r}"
        )
    size, patch = variant.split("/")
    hidden_dim, depth, num_heads, mlp_dim = _SIZES[size]
    return {
        "hidden_dim": hidden_dim,
        "depth": depth,
        "num_heads": num_heads,
        "mlp_dim": mlp_dim,
        "patch_size": int(patch),
    }
