"""What a ViT looks at: attention weights, rollout and attention distance.

`attention_maps(model, images)` returns the attention weight of every encoder
block, the softmax of query · key that weights the sum of values.
`attention_rollout` follows it from the class token down to the patches
(Abnar & Zuidema, 2020); `mean_attention_distance` tells how far in pixels
each head looks, as in figure 7 of the ViT paper.
"""

import keras
import numpy as np
from keras import ops

from keras_vit.layers import TransformerEncoderBlock
from keras_vit.layers._utils import normalize_pair
from keras_vit.model import vit_config

HEAD_FUSIONS = ("mean", "max", "min")


def _encoder_blocks(model):
    vit_config(model)  # Raises for a model not built by build_vit.
    return [
        layer
        for layer in model.layers
        if isinstance(layer, TransformerEncoderBlock)
    ]


def model_patch_size(model):
    """The `(height, width)` image area one token of a `build_vit` model
    stands for: the patch size, or the conv tokenizer's downsampling."""
    return vit_config(model)["patch_size"]


def model_grid(model):
    """The `(grid_height, grid_width)` token grid of a `build_vit` model."""
    config = vit_config(model)
    (height, width), (ph, pw) = config["image_size"], config["patch_size"]
    return height // ph, width // pw


def attention_maps(model, images, batch_size=32):
    """The attention weights of every encoder block of a `build_vit` model.

    The model's own layers are run again on `images` (inference mode), each
    encoder block asked for its attention weights; the model is not changed.

    Args:
        model: a `keras.Model` built by `keras_vit.build_vit` (or loaded
            from one).
        images: array `(B, height, width, channels)`, preprocessed as for
            the model.
        batch_size: int. Images per forward pass. Defaults to `32`.

    Returns:
        A float32 NumPy array `(depth, B, num_heads, N + 1, N + 1)`, where
        `N` is the number of patches and index 0 is the class token. Each
        row sums to 1, except in models with register tokens or a
        distillation token: those are left out (rows and columns), so a
        row sums to what the token gives the class token and the patches.

    Raises:
        ValueError: the model has no class token (SigLIP-style attention
            pooling), or `images` do not fit the model.

    Example:

    >>> import keras_vit
    >>> model = keras_vit.build_vit(image_size=16, patch_size=4,
    ...     hidden_dim=16, depth=2, num_heads=2, mlp_dim=32, num_classes=3)
    >>> attention_maps(model, np.zeros((5, 16, 16, 3))).shape
    (2, 5, 2, 17, 17)
    """
    blocks = _encoder_blocks(model)
    config = vit_config(model)
    if not config.class_token:
        raise ValueError(
            "Attention maps are read from the class token's row, and "
            f"{model.name!r} has no class token (it pools with "
            f"{config.pooling!r})."
        )
    # The class token and the patches; registers and the distillation
    # token are left out of the pictures.
    images = np.asarray(images, dtype="float32")
    expected = tuple(model.input_shape[1:])
    fits = images.ndim == 4 and all(
        e is None or e == n for e, n in zip(expected, images.shape[1:])
    )
    (ph, pw), grid = config.patch_size, config.grid_size
    if fits and config.dynamic_image_size:
        fits = images.shape[1] % ph == 0 and images.shape[2] % pw == 0
        grid = (images.shape[1] // ph, images.shape[2] // pw)
    if not fits:
        shown = ", ".join("any" if e is None else str(e) for e in expected)
        multiple = (
            f", sides multiples of {ph}x{pw}"
            if config.dynamic_image_size
            else ""
        )
        raise ValueError(
            f"`images` must have shape (B, {shown}){multiple} for this "
            f"model. Received: shape {images.shape}"
        )
    first = config.num_prefix_tokens
    keep = np.r_[0, first : first + grid[0] * grid[1]]
    # Images to the first block's input tokens, whichever tokenizer.
    embed = keras.Model(model.input, blocks[0].input)
    chunks = []
    for start in range(0, len(images), batch_size):
        x = embed(images[start : start + batch_size], training=False)
        weights = []
        for block in blocks:
            x, w = block(x, training=False, return_attention_scores=True)
            w = ops.convert_to_numpy(ops.cast(w, "float32"))
            weights.append(w[..., keep[:, None], keep[None, :]])
        chunks.append(np.stack(weights))  # (depth, b, heads, N+1, N+1)
    return np.concatenate(chunks, axis=1)


def _check_maps(maps):
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 5 or maps.shape[-1] != maps.shape[-2]:
        raise ValueError(
            "`maps` must have shape (depth, batch, heads, tokens, tokens), "
            f"as `attention_maps` returns. Received: shape {maps.shape}"
        )
    return maps


def _grid(maps, grid_size, num_prefix_tokens=1):
    patches = maps.shape[-1] - num_prefix_tokens
    if grid_size is None:
        side = int(round(patches**0.5))
        if side * side != patches:
            raise ValueError(
                "Pass `grid_size` for a non-square patch grid. Received: "
                f"{patches} patches"
            )
        return side, side
    grid = normalize_pair(grid_size, "grid_size")
    if grid[0] * grid[1] != patches:
        raise ValueError(
            "`grid_size` must multiply to the number of patches. Received: "
            f"grid_size={grid}, {patches} patches"
        )
    return grid


def fuse_heads(maps, head_fusion="mean"):
    """Combines the heads of each block: `(depth, B, N+1, N+1)`."""
    maps = _check_maps(maps)
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(
            f"`head_fusion` must be one of {HEAD_FUSIONS}. "
            f"Received: head_fusion={head_fusion!r}"
        )
    return getattr(np, head_fusion)(maps, axis=2)


def attention_rollout(
    maps,
    head_fusion="mean",
    discard_ratio=0.0,
    grid_size=None,
    pooling="token",
):
    """Attention rollout from the pooled token to the patches.

    Every block mixes its input tokens by its attention weights, plus the
    residual connection that keeps each token's own content. Rollout
    models a block as `0.5 * (A + I)` (rows renormalized) and multiplies
    the blocks together: the product's class-token row tells how much of
    each input patch ends up in the class token (Abnar & Zuidema, 2020,
    "Quantifying Attention Flow in Transformers").

    Args:
        maps: array `(depth, B, heads, N+1, N+1)` from `attention_maps`.
        head_fusion: `"mean"`, `"max"` or `"min"` over heads. Defaults to
            `"mean"`.
        discard_ratio: float in [0, 1). Fraction of the smallest attention
            weights of each fused map set to zero before rollout (never
            those from a token to the class token), which sharpens the
            result. Defaults to `0.0`.
        grid_size: `(grid_height, grid_width)` or `None` for a square grid.
        pooling: `"token"` to roll out from the class token, `"gap"` from
            the mean of the patch tokens (for `pooling="gap"` models).
            Defaults to `"token"`.

    Returns:
        An array `(B, grid_height, grid_width)` whose values sum to 1 over
        each image's grid.
    """
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(
            "`discard_ratio` must be in [0, 1). "
            f"Received: discard_ratio={discard_ratio!r}"
        )
    if pooling not in ("token", "gap"):
        raise ValueError(
            f"`pooling` must be 'token' or 'gap'. Received: pooling={pooling!r}"
        )
    fused = fuse_heads(maps, head_fusion)  # (depth, B, T, T)
    grid = _grid(fused[:, :, None], grid_size)
    depth, batch, tokens, _ = fused.shape
    identity = np.eye(tokens)
    rollout = np.broadcast_to(identity, (batch, tokens, tokens)).copy()
    for layer in fused:
        layer = layer.copy()
        if discard_ratio > 0:
            for b in range(batch):
                flat = layer[b].reshape(-1)
                count = int(flat.size * discard_ratio)
                order = np.argsort(flat)
                # Keep attention into the class token (column 0).
                order = order[order % tokens != 0][:count]
                flat[order] = 0.0
        layer = 0.5 * (layer + identity)
        layer /= layer.sum(-1, keepdims=True)
        rollout = layer @ rollout
    if pooling == "token":
        source = rollout[:, 0, 1:]
    else:
        source = rollout[:, 1:, 1:].mean(axis=1)
    source = source / source.sum(-1, keepdims=True)
    return source.reshape(batch, *grid)


def class_token_attention(maps, grid_size=None, block=-1):
    """How much the class token attends to each patch, per head.

    Args:
        maps: array `(depth, B, heads, N+1, N+1)` from `attention_maps`.
        grid_size: `(grid_height, grid_width)` or `None` for a square grid.
        block: int. Which encoder block. Defaults to `-1`, the last.

    Returns:
        An array `(B, heads, grid_height, grid_width)`.
    """
    maps = _check_maps(maps)
    grid = _grid(maps, grid_size)
    row = maps[block][:, :, 0, 1:]  # (B, heads, N)
    return row.reshape(*row.shape[:2], *grid)


def mean_attention_distance(maps, patch_size, grid_size=None):
    """Average distance in pixels between a patch and what it attends to.

    For each block and head: over every query patch and every image, the
    sum of `attention weight x distance` between patch centres, with the
    weights of patch-to-patch attention renormalized to sum to 1 (the class
    token has no position). Figure 7 of the ViT paper plots these values
    against depth: low heads look locally, others across the image.

    Args:
        maps: array `(depth, B, heads, N+1, N+1)` from `attention_maps`.
        patch_size: int or `(height, width)`. Patch size in pixels.
        grid_size: `(grid_height, grid_width)` or `None` for a square grid.

    Returns:
        An array `(depth, heads)` of distances in pixels.
    """
    maps = _check_maps(maps)
    ph, pw = normalize_pair(patch_size, "patch_size")
    gh, gw = _grid(maps, grid_size)
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    centres = np.stack([rows.ravel() * ph, cols.ravel() * pw], axis=-1)
    distance = np.linalg.norm(
        centres[:, None, :] - centres[None, :, :], axis=-1
    )  # (N, N)
    patches = maps[..., 1:, 1:]
    total = patches.sum(-1, keepdims=True)
    weights = np.divide(
        patches, total, out=np.zeros_like(patches), where=total > 0
    )
    per_query = (weights * distance).sum(-1)  # (depth, B, heads, N)
    return per_query.mean(axis=(1, 3))
