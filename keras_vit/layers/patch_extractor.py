import keras
from keras import ops

from keras_vit.layers._utils import normalize_pair


@keras.saving.register_keras_serializable(package="keras_vit")
class PatchExtractor(keras.layers.Layer):
    """Splits images into non-overlapping patches and flattens each one.

    Patches are listed row by row (left to right, then top to bottom), and
    each patch is flattened in (row, column, channel) order, so that a
    flattened patch times a `(ph * pw * C, D)` matrix equals a `ph x pw`
    convolution with stride `(ph, pw)` whose kernel `(ph, pw, C, D)` is
    reshaped to that matrix.

    The split uses only reshapes and a 4-D transpose, which every runtime
    supports with a dynamic batch (unlike TensorFlow's image-patches op,
    which needs Flex ops in TFLite and breaks ONNX with a dynamic batch).

    Args:
        patch_size: int or tuple of two ints. Patch height and width.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        `(batch_size, height, width, channels)`, with `height` and `width`
        divisible by the patch height and width.

    Output shape:
        `(batch_size, num_patches, patch_height * patch_width * channels)`
        with `num_patches = (height // patch_height) * (width // patch_width)`.

    Example:

    >>> images = keras.random.uniform((2, 32, 32, 3))
    >>> tuple(PatchExtractor(8)(images).shape)
    (2, 16, 192)
    """

    def __init__(self, patch_size, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = normalize_pair(patch_size, "patch_size")

    def _check_input_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "`PatchExtractor` expects images of shape "
                "(batch, height, width, channels). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        _, height, width, channels = input_shape
        ph, pw = self.patch_size
        if (height is not None and height % ph) or (
            width is not None and width % pw
        ):
            raise ValueError(
                "Image height and width must be divisible by the patch size. "
                f"Received: image size=({height}, {width}), "
                f"patch_size={self.patch_size}"
            )
        if channels is None:
            raise ValueError(
                "The channel dimension of the input must be known. "
                f"Received: input_shape={tuple(input_shape)}"
            )

    def build(self, input_shape):
        self._check_input_shape(input_shape)

    def call(self, inputs):
        # Sizes known only now (a model that takes any size) are checked
        # here: a clear error rather than a failed reshape.
        self._check_input_shape(inputs.shape)
        ph, pw = self.patch_size
        channels = inputs.shape[-1]
        height, width = inputs.shape[1], inputs.shape[2]
        if height is None or width is None:
            dynamic = ops.shape(inputs)
            height = height if height is not None else dynamic[1]
            width = width if width is not None else dynamic[2]
        grid_h, grid_w = height // ph, width // pw
        # (B, H, W, C) -> (B * gh, ph, gw, pw * C): each block of ph rows.
        x = ops.reshape(inputs, (-1, ph, grid_w, pw * channels))
        # (B * gh, gw, ph, pw * C): patches of one block side by side.
        x = ops.transpose(x, (0, 2, 1, 3))
        # (B, gh * gw, ph * pw * C)
        return ops.reshape(x, (-1, grid_h * grid_w, ph * pw * channels))

    def compute_output_shape(self, input_shape):
        self._check_input_shape(input_shape)
        batch, height, width, channels = input_shape
        ph, pw = self.patch_size
        if height is None or width is None:
            num_patches = None
        else:
            num_patches = (height // ph) * (width // pw)
        return (batch, num_patches, ph * pw * channels)

    def get_config(self):
        config = super().get_config()
        config.update({"patch_size": self.patch_size})
        return config
