import keras
from keras import ops

from keras_vit.layers._utils import check_non_negative_int
from keras_vit.layers._utils import normalize_pair


@keras.saving.register_keras_serializable(package="keras_vit")
class TokenGrid(keras.layers.Layer):
    """The patch tokens of a sequence laid out as a feature map.

    Drops the `num_prefix_tokens` tokens before the patches (class,
    distillation and register tokens) and reshapes the rest, in row-major
    order, to `(batch, height // patch_height, width // patch_width,
    hidden_dim)` of the images the sequence was made from: the dense
    features a segmentation or detection head reads.

    Args:
        num_prefix_tokens: int. Tokens before the patches.
        patch_size: int or `(height, width)`. The image area one token
            stands for.
        **kwargs: base layer keyword arguments, such as `name`.

    Call arguments:
        tokens: tensor `(batch, num_prefix_tokens + rows * columns, D)`.
        images: the model's input images `(batch, height, width, C)`, for
            the grid's size (known only at run time for a model that takes
            any size).

    Example:

    >>> tokens = keras.random.uniform((2, 1 + 4 * 6, 8))
    >>> images = keras.ops.zeros((2, 16, 24, 3))
    >>> tuple(TokenGrid(1, 4)(tokens, images).shape)
    (2, 4, 6, 8)
    """

    def __init__(self, num_prefix_tokens, patch_size, **kwargs):
        super().__init__(**kwargs)
        self.num_prefix_tokens = check_non_negative_int(
            num_prefix_tokens, "num_prefix_tokens"
        )
        self.patch_size = normalize_pair(patch_size, "patch_size")

    def _grid(self, images_shape):
        return tuple(
            None if side is None else side // patch
            for side, patch in zip(images_shape[1:3], self.patch_size)
        )

    def call(self, tokens, images):
        shape = ops.shape(images)
        rows = shape[1] // self.patch_size[0]
        cols = shape[2] // self.patch_size[1]
        patches = tokens[:, self.num_prefix_tokens :]
        return ops.reshape(patches, (-1, rows, cols, tokens.shape[-1]))

    def compute_output_spec(self, tokens, images):
        rows, cols = self._grid(images.shape)
        shape = (tokens.shape[0], rows, cols, tokens.shape[-1])
        return keras.KerasTensor(shape, dtype=tokens.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_prefix_tokens=self.num_prefix_tokens,
            patch_size=list(self.patch_size),
        )
        return config
