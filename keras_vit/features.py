"""Dense features: the patch tokens of chosen blocks as spatial maps.

What segmentation and detection heads read from a ViT backbone (timm's
`forward_intermediates`): for each chosen encoder block, its output tokens
without the class, distillation and register tokens, laid out as
`(batch, grid_height, grid_width, width)`.

    backbone = feature_extractor(model, blocks=[-1])
    x = keras.layers.Conv2D(num_classes, 1)(backbone.output)
    x = keras.layers.UpSampling2D(16, interpolation="bilinear")(x)
    segmenter = keras.Model(backbone.input, x)
"""

import keras
import numpy as np

from keras_vit.layers import TokenGrid
from keras_vit.layers import TransformerEncoderBlock
from keras_vit.model import vit_config


def _blocks(model, blocks):
    found = [
        layer
        for layer in model.layers
        if isinstance(layer, TransformerEncoderBlock)
    ]
    if blocks is None:
        return [found[-1]], [len(found) - 1]
    chosen = []
    for index in blocks if isinstance(blocks, (list, tuple)) else [blocks]:
        if (
            isinstance(index, bool)
            or not isinstance(index, (int, np.integer))
            or not -len(found) <= index < len(found)
        ):
            raise ValueError(
                f"`blocks` must be indices of the model's {len(found)} "
                f"encoder blocks (0 to {len(found) - 1}, or negative from "
                f"the end). Received: {blocks!r}"
            )
        chosen.append(int(index) % len(found))
    return [found[i] for i in chosen], chosen


def feature_extractor(model, blocks=None, norm=False, name=None):
    """A `keras.Model` from images to the patch-token maps of `blocks`.

    Args:
        model: a `keras.Model` built by `keras_vit.build_vit` (or loaded
            from one), of any tokenizer and family; a model built with
            `dynamic_image_size=True` gives maps of any image size it
            takes.
        blocks: int, list of ints or `None`. Encoder blocks (0 first,
            negative from the end); `None`: the last. Defaults to `None`.
        norm: bool. Apply the model's final LayerNorm (`encoder_norm`) to
            each block's tokens, as its head sees the last block's.
            Defaults to `False`.
        name: str or `None`. The new model's name. Defaults to
            `"<model name>_features"`.

    Returns:
        A `keras.Model` sharing `model`'s layers and weights, whose
        outputs are one map `(batch, grid_height, grid_width, hidden_dim)`
        per block (a list when `blocks` is a list), in the order given.

    Raises:
        ValueError: for a model not built by `build_vit`, or a block index
            out of range.

    Example:

    >>> import keras_vit
    >>> model = keras_vit.build_vit(image_size=16, patch_size=4,
    ...     hidden_dim=16, depth=3, num_heads=2, mlp_dim=32, num_classes=3)
    >>> features = feature_extractor(model, blocks=[0, -1])
    >>> [tuple(m.shape) for m in features(np.zeros((2, 16, 16, 3)))]
    [(2, 4, 4, 16), (2, 4, 4, 16)]
    """
    config = vit_config(model)
    chosen, indices = _blocks(model, blocks)
    grid = TokenGrid(
        config.num_prefix_tokens,
        config.patch_size,
        name="token_grid",
        dtype=model.dtype_policy,
    )
    final_norm = model.get_layer("encoder_norm") if norm else None
    outputs = []
    for block in chosen:
        tokens = block.output
        if final_norm is not None:
            tokens = final_norm(tokens)
        outputs.append(grid(tokens, model.input))
    if not isinstance(blocks, (list, tuple)):
        outputs = outputs[0]
    return keras.Model(
        model.input, outputs, name=name or f"{model.name}_features"
    )


def dense_features(model, images, blocks=None, norm=False, batch_size=32):
    """The patch-token maps of `blocks` for `images`, as NumPy arrays.

    `feature_extractor(model, blocks, norm)` run on `images` (inference
    mode) in batches of `batch_size`. Returns one float32 array
    `(B, grid_height, grid_width, hidden_dim)` per block (a list when
    `blocks` is a list).
    """
    extractor = feature_extractor(model, blocks, norm)
    outputs = extractor.predict(
        np.asarray(images, "float32"), batch_size=batch_size, verbose=0
    )
    if not isinstance(blocks, (list, tuple)):
        return np.asarray(outputs, "float32")
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]  # `predict` unwraps a list of one output.
    return [np.asarray(o, "float32") for o in outputs]
