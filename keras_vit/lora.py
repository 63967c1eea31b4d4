"""LoRA: fine-tune a ViT through low-rank updates of its projections.

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models" (2021):
each chosen kernel `W` (`d_in x d_out`) is frozen and the layer computes
with `W + (alpha / rank) * A @ B`, `A` (`d_in x rank`, He-uniform) and
`B` (`rank x d_out`, zeros) trained. `B = 0` makes the adapted model
compute exactly what the pretrained one did; only `A` and `B` (and the new
head) take gradients and optimizer state.

`enable_lora(model, rank)` adds them to the four attention projections
(query, key, value, output) of every encoder block, and with `mlp=True`
to both MLP layers; `lora_trainable` leaves only them and the heads
trainable. The layers save `A` and `B` as their own variables (a `.keras`
file reloads in safe mode and a killed run resumes with them), and
`merge_lora(model)` returns the plain architecture with `W + (alpha /
rank) * A @ B` in each kernel, which the exporters do themselves
(`export.exportable_model`).
"""

import keras

from keras_vit.layers import MLPBlock
from keras_vit.layers import MultiHeadSelfAttention

_ADAPTABLE = (MultiHeadSelfAttention, MLPBlock)
HEADS = ("head", "head_dist")


def _sublayers(model):
    """Every layer inside `model`, depth first."""
    pending = list(model.layers)
    while pending:
        layer = pending.pop(0)
        yield layer
        pending.extend(getattr(layer, "_layers", ()))


def lora_layers(model):
    """The layers of `model` that compute with a LoRA update."""
    return [
        layer
        for layer in _sublayers(model)
        if isinstance(layer, _ADAPTABLE) and layer.lora_rank
    ]


def enable_lora(model, rank, alpha=None, mlp=False, freeze=True):
    """Adds LoRA matrices to `model`'s projections; returns `model`.

    Args:
        model: a built keras-vit model.
        rank: int. Rank of each update.
        alpha: float or `None`. The update is scaled by `alpha / rank`;
            `None`: `rank` (a scale of 1). Defaults to `None`.
        mlp: bool. Also adapt both MLP layers of every block. Defaults to
            `False` (the attention projections only).
        freeze: bool. Then leave only the LoRA matrices and the heads
            trainable (`lora_trainable`). Defaults to `True`.

    Raises:
        ValueError: for a rank that is not a positive int, a model with
            no attention layer to adapt, or one that already has LoRA.
    """
    if lora_layers(model):
        raise ValueError(
            "The model already computes with LoRA updates (rank "
            f"{lora_layers(model)[0].lora_rank}); `merge_lora` it first."
        )
    kinds = _ADAPTABLE if mlp else (MultiHeadSelfAttention,)
    chosen = [layer for layer in _sublayers(model) if isinstance(layer, kinds)]
    if not chosen:
        raise ValueError(
            "LoRA adapts the attention projections of a keras-vit model; "
            f"{model.name!r} has no `MultiHeadSelfAttention` layer."
        )
    for layer in chosen:
        layer.enable_lora(rank, alpha)
    if freeze:
        lora_trainable(model)
    return model


def lora_trainable(model, heads=HEADS):
    """Leaves only the LoRA matrices and the layers named in `heads`
    trainable; returns the number of trainable parameters."""
    model.trainable = True
    keep = set()
    for layer in _sublayers(model):
        if layer.name in heads:
            keep.update(id(v) for v in layer.weights)
        elif isinstance(layer, _ADAPTABLE) and layer.lora_rank:
            keep.update(id(v) for v in layer.lora_variables())
    for variable in model.weights:
        variable.trainable = id(variable) in keep
    return sum(int(keras.ops.size(v)) for v in model.trainable_variables)


def merge_lora(model):
    """`model` with each LoRA update added into its kernel.

    Returns a new model of the same architecture without LoRA (its layers'
    configs as before `enable_lora`) and the same outputs, or `model`
    itself when it has no LoRA update.
    """
    adapted = lora_layers(model)
    if not adapted:
        return model
    values = {v.path: v for v in model.variables}
    merged_values = {}
    for layer in adapted:
        merged_values.update(layer.merged_kernels())
    config = _without_lora(model.get_config())
    merged = model.__class__.from_config(config)
    for variable in merged.variables:
        if variable.path in merged_values:
            variable.assign(merged_values[variable.path])
        else:
            variable.assign(values[variable.path])
    return merged


def _without_lora(config):
    if isinstance(config, dict):
        return {
            k: _without_lora(v)
            for k, v in config.items()
            if k not in ("lora", "lora_rank", "lora_alpha")
        }
    if isinstance(config, list):
        return [_without_lora(v) for v in config]
    return config
