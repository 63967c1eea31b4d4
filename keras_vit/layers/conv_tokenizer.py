import math

import keras
from keras import ops

from keras_vit.layers._utils import check_positive_int
from keras_vit.layers._utils import refreeze


@keras.saving.register_keras_serializable(package="keras_vit")
class ConvTokenizer(keras.layers.Layer):
    """Turns images into tokens with small convolutions instead of patches.

    `num_layers` times: a `kernel_size` convolution (stride 1, no bias),
    ReLU, and a 3x3 max-pooling of stride 2; the last convolution has
    `hidden_dim` filters, the others `filters`. The feature map, `2 **
    num_layers` times smaller than the image, is read row by row as the
    token sequence. Overlapping convolutions give the tokens the locality
    that patches lack, which is what makes transformers train well on small
    datasets (Hassani et al., "Escaping the Big Data Paradigm with Compact
    Transformers", 2021).

    Args:
        hidden_dim: int. Width `D` of the tokens.
        num_layers: int. Number of convolution + pooling stages. Defaults
            to `2`.
        kernel_size: int. Convolution kernel size. Defaults to `3`.
        filters: int. Filters of the stages before the last. Defaults to
            `64`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Attributes:
        patch_size: `(2 ** num_layers, 2 ** num_layers)`: the image area
            one token stands for, as with `PatchExtractor`.

    Input shape:
        `(batch_size, height, width, channels)`, `height` and `width`
        divisible by `2 ** num_layers`.

    Output shape:
        `(batch_size, (height // s) * (width // s), hidden_dim)` with
        `s = 2 ** num_layers`.

    Example:

    >>> images = keras.random.uniform((2, 32, 32, 3))
    >>> tuple(ConvTokenizer(64)(images).shape)
    (2, 64, 64)
    """

    def __init__(
        self, hidden_dim, num_layers=2, kernel_size=3, filters=64, **kwargs
    ):
        super().__init__(**kwargs)
        self.hidden_dim = check_positive_int(hidden_dim, "hidden_dim")
        self.num_layers = check_positive_int(num_layers, "num_layers")
        self.kernel_size = check_positive_int(kernel_size, "kernel_size")
        self.filters = check_positive_int(filters, "filters")
        stride = 2**self.num_layers
        self.patch_size = (stride, stride)
        self.convolutions = []
        self.pools = []
        for i in range(self.num_layers):
            last = i == self.num_layers - 1
            self.convolutions.append(
                keras.layers.Conv2D(
                    self.hidden_dim if last else self.filters,
                    self.kernel_size,
                    padding="same",
                    use_bias=False,
                    kernel_initializer="he_normal",
                    dtype=self.dtype_policy,
                    name=f"conv_{i}",
                )
            )
            self.pools.append(
                keras.layers.MaxPooling2D(
                    3,
                    strides=2,
                    padding="same",
                    dtype=self.dtype_policy,
                    name=f"pool_{i}",
                )
            )

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "`ConvTokenizer` expects images of shape (batch, height, "
                "width, channels) with known channels. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        stride = self.patch_size[0]
        for side in input_shape[1:3]:
            if side is not None and side % stride:
                raise ValueError(
                    "Image height and width must be divisible by "
                    f"2 ** num_layers = {stride}. Received: image size="
                    f"{tuple(input_shape[1:3])}, num_layers={self.num_layers}"
                )
        shape = tuple(input_shape)
        for conv, pool in zip(self.convolutions, self.pools):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            shape = pool.compute_output_shape(shape)
        refreeze(self)  # a frozen layer loaded from a file

    def call(self, inputs):
        x = inputs
        for conv, pool in zip(self.convolutions, self.pools):
            x = pool(ops.relu(conv(x)))
        height, width = x.shape[1], x.shape[2]
        if height is None or width is None:
            shape = ops.shape(x)
            height = height if height is not None else shape[1]
            width = width if width is not None else shape[2]
        return ops.reshape(x, (-1, height * width, self.hidden_dim))

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        stride = self.patch_size[0]
        tokens = (
            None
            if height is None or width is None
            else math.ceil(height / stride) * math.ceil(width / stride)
        )
        return (batch, tokens, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "kernel_size": self.kernel_size,
                "filters": self.filters,
            }
        )
        return config
