"""Layer-wise learning-rate decay for Keras optimizers.

Fine-tuning a pretrained ViT (BEiT, DeiT III, DINOv2, MAE) often scales
each encoder block's learning rate by `decay ** (depth - i)` for block `i`
(counted from 0): the last block trains at `decay` times the rate, the
first at `decay ** depth`, the embeddings (patch embedding, class,
distillation and register tokens, position embedding, the LayerNorm
before the blocks) at `decay ** (depth + 1)`, and what follows the blocks
(the final LayerNorm, the pooling and the heads) at the full rate: the
general features near the input move least. timm's
`param_groups_layer_decay` gives the same rates.

`LayerDecayAdamW` and `LayerDecaySGD` are Keras' `AdamW` and `SGD` with a
`layer_decay` argument: the learning rate of each variable, and its
decoupled weight decay (which Keras scales by the learning rate), are
multiplied by `layer_scale(variable.path, depth, layer_decay)`. They are
registered, so a compiled model saved to `.keras` reloads with them, and
their state (moments, momentum, `use_ema` averages, accumulated
gradients) is saved and restored like Keras' own.
"""

import re

import keras

# The variables that follow the blocks, at the full rate.
# (`head` also covers `head_dist` and `head_average`.)
_AFTER_BLOCKS = ("encoder_norm", "pooling", "head")
_BLOCK = re.compile(r"(?:^|/)encoder_block_(\d+)/")


def layer_id(path, depth):
    """`0` for the embeddings, `i + 1` for encoder block `i`, `depth + 1`
    for what follows the blocks, from a variable's `path`."""
    match = _BLOCK.search(path)
    if match:
        return int(match.group(1)) + 1
    if path.split("/")[0].startswith(_AFTER_BLOCKS):
        return depth + 1
    return 0


def layer_scale(path, depth, decay):
    """The learning-rate multiplier of the variable at `path`:
    `decay ** (depth + 1 - layer_id(path, depth))`."""
    return float(decay) ** (depth + 1 - layer_id(path, depth))


def count_blocks(variables):
    """The number of encoder blocks the variables' paths name."""
    found = [_BLOCK.search(v.path) for v in variables]
    return max((int(m.group(1)) + 1 for m in found if m), default=0)


def _check_decay(layer_decay):
    if (
        isinstance(layer_decay, bool)
        or not isinstance(layer_decay, (int, float))
        or not 0.0 < layer_decay <= 1.0
    ):
        raise ValueError(
            "`layer_decay` must be a number in (0, 1]. "
            f"Received: layer_decay={layer_decay!r}"
        )
    return float(layer_decay)


class _LayerDecay:
    """Scales each variable's learning rate and weight decay by its layer's
    multiplier (`layer_scale`)."""

    def __init__(self, *args, layer_decay=1.0, depth=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.layer_decay = _check_decay(layer_decay)
        self.depth = depth

    def build(self, variables):
        super().build(variables)
        depth = self.depth
        if depth is None:
            depth = count_blocks(variables)
        self._lr_scales = [
            layer_scale(v.path, depth, self.layer_decay) for v in variables
        ]

    def learning_rate_scales(self):
        """`{variable path: multiplier}` of the variables it was built on."""
        return {
            v.path: scale
            for v, scale in zip(self._trainable_variables, self._lr_scales)
        }

    def _apply_weight_decay(self, variables):
        # Applied per variable in `update_step`, with that variable's rate.
        return

    def update_step(self, gradient, variable, learning_rate):
        scale = self._lr_scales[self._get_variable_index(variable)]
        learning_rate = keras.ops.cast(learning_rate, variable.dtype) * scale
        if self.weight_decay is not None and self._use_weight_decay(variable):
            decay = keras.ops.cast(self.weight_decay, variable.dtype)
            variable.assign(variable - variable * decay * learning_rate)
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.update(layer_decay=self.layer_decay, depth=self.depth)
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class LayerDecayAdamW(_LayerDecay, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with layer-wise learning-rate decay.

    Args:
        layer_decay: float in (0, 1]. Encoder block `i` of `depth` trains
            at `layer_decay ** (depth - i)` times the learning rate, the
            embeddings at `layer_decay ** (depth + 1)`, the final norm and
            the heads at the full rate (`keras_vit.optimizers`). `1.0`:
            plain AdamW. Defaults to `1.0`.
        depth: int or `None`. Number of encoder blocks; `None`: counted
            from the paths of the variables it trains. Defaults to `None`.
        **kwargs: `keras.optimizers.AdamW`'s arguments.

    Example:

    >>> import keras_vit
    >>> model = keras_vit.build_vit(image_size=16, patch_size=4,
    ...     hidden_dim=16, depth=2, num_heads=2, mlp_dim=32, num_classes=3)
    >>> optimizer = LayerDecayAdamW(learning_rate=1e-3, layer_decay=0.5)
    >>> optimizer.build(model.trainable_variables)
    >>> scales = optimizer.learning_rate_scales()
    >>> [scales[p] for p in ("patch_embedding/kernel",
    ...     "encoder_block_0/mlp/dense_0/kernel", "head/kernel")]
    [0.125, 0.25, 1.0]
    """


@keras.saving.register_keras_serializable(package="keras_vit")
class LayerDecaySGD(_LayerDecay, keras.optimizers.SGD):
    """`keras.optimizers.SGD` with layer-wise learning-rate decay; see
    `LayerDecayAdamW` for `layer_decay` and `depth`."""
