"""The LoRA pieces `MultiHeadSelfAttention` and `MLPBlock` share."""

import keras
from keras import ops


def check_lora(rank, alpha):
    """`(rank, alpha)` checked: `rank` `None` or a positive int, `alpha`
    `None` or a positive number."""
    if rank is None:
        if alpha is not None:
            raise ValueError(
                "`lora_alpha` needs `lora_rank`. "
                f"Received: lora_rank=None, lora_alpha={alpha!r}"
            )
        return None, None
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(
            f"`lora_rank` must be a positive int. Received: lora_rank={rank!r}"
        )
    if alpha is not None and (
        isinstance(alpha, bool)
        or not isinstance(alpha, (int, float))
        or alpha <= 0
    ):
        raise ValueError(
            "`lora_alpha` must be a positive number. "
            f"Received: lora_alpha={alpha!r}"
        )
    return rank, None if alpha is None else float(alpha)


def add_lora_weights(layer, name, d_in, d_out):
    """Adds `{name}_lora_a` `(d_in, rank)` (He-uniform) and
    `{name}_lora_b` `(rank, d_out)` (zeros) to `layer`, in float32."""
    rank = layer.lora_rank
    a = layer.add_weight(
        name=f"{name}_lora_a",
        shape=(d_in, rank),
        initializer=keras.initializers.HeUniform(),
        dtype="float32",
    )
    b = layer.add_weight(
        name=f"{name}_lora_b",
        shape=(rank, d_out),
        initializer="zeros",
        dtype="float32",
    )
    setattr(layer, f"{name}_lora_a", a)
    setattr(layer, f"{name}_lora_b", b)


def lora_update(layer, name, dtype):
    """`(alpha / rank) * A @ B` of the kernel `name`, in `dtype`."""
    a = getattr(layer, f"{name}_lora_a")
    b = getattr(layer, f"{name}_lora_b")
    alpha = layer.lora_alpha or layer.lora_rank
    update = ops.matmul(a, b) * (alpha / layer.lora_rank)
    return ops.cast(update, dtype)


def lora_config(layer):
    """The config entries of a layer with LoRA; `{}` without (so that the
    configs of files saved before LoRA stay as they were)."""
    if not layer.lora_rank:
        return {}
    return {"lora_rank": layer.lora_rank, "lora_alpha": layer.lora_alpha}


def enable_lora(layer, rank, alpha):
    """Checks and turns on LoRA in a built `layer` that has `_build_lora`
    (`MultiHeadSelfAttention`, `MLPBlock`)."""
    if not layer.built:
        raise ValueError("Build the layer before enabling LoRA on it.")
    if layer.lora_rank:
        raise ValueError(
            f"LoRA is already enabled on {layer.name!r} (rank "
            f"{layer.lora_rank})."
        )
    layer.lora_rank, layer.lora_alpha = check_lora(rank, alpha)
    layer._tracker.unlock()
    layer._build_lora()
    layer._tracker.lock()


def lora_variables(layer, names):
    """The LoRA matrices of the kernels `names` of `layer`, `[]` without
    LoRA."""
    if not layer.lora_rank:
        return []
    return [
        getattr(layer, f"{name}_lora_{part}")
        for name in names
        for part in ("a", "b")
    ]
