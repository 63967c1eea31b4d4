import keras
from keras import ops

from keras_vit.layers.patch_extractor import PatchExtractor

# Where each copy's content moves, (rows, columns) in half patches:
# up-left, up-right, down-left, down-right.
_SHIFTS = ((-1, -1), (-1, 1), (1, -1), (1, 1))


@keras.saving.register_keras_serializable(package="keras_vit")
class ShiftedPatchExtractor(PatchExtractor):
    """Shifted Patch Tokenization: patches that also see their neighbours.

    The image is shifted by half a patch in the four diagonal directions
    (the uncovered border is zero, the middle of the [-1, 1] range); the
    original and the four shifted copies are stacked along the channels and
    split into patches as `PatchExtractor` does. Each flattened patch thus
    holds its own pixels and those of the neighbouring half patches, which
    widens what one token sees (Lee, Lee & Song, "Vision Transformer for
    Small-Size Datasets", 2021). In `build_vit` a LayerNorm (`patch_norm`)
    follows, as in the paper.

    Args:
        patch_size: int or tuple of two ints. Patch height and width.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        `(batch_size, height, width, channels)`, with `height` and `width`
        divisible by the patch height and width.

    Output shape:
        `(batch_size, num_patches, patch_height * patch_width * 5 * channels)`.

    Example:

    >>> images = keras.random.uniform((2, 32, 32, 3))
    >>> tuple(ShiftedPatchExtractor(8)(images).shape)
    (2, 16, 960)
    """

    def _check_input_shape(self, input_shape):
        super()._check_input_shape(input_shape)
        if input_shape[1] is None or input_shape[2] is None:
            raise ValueError(
                "`ShiftedPatchExtractor` needs a known image height and "
                f"width. Received: input_shape={tuple(input_shape)}"
            )

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        dy, dx = self.patch_size[0] // 2, self.patch_size[1] // 2
        # Pad by half a patch on every side once; each shifted copy is a
        # crop of it (pads and slices are built-in ops in every runtime).
        padded = ops.pad(inputs, ((0, 0), (dy, dy), (dx, dx), (0, 0)))
        copies = [inputs]
        for sy, sx in _SHIFTS:
            top, left = dy - sy * dy, dx - sx * dx
            copies.append(padded[:, top : top + height, left : left + width, :])
        return super().call(ops.concatenate(copies, axis=-1))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return super().compute_output_shape(
            (batch, height, width, 5 * channels)
        )
