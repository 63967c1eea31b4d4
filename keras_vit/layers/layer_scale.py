import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class LayerScale(keras.layers.Layer):
    """Scales each channel of a residual branch by a learned factor.

    `y = x * gamma`, with `gamma` a `(D,)` vector started at a small
    `init_value`, so that each block begins close to the identity (Touvron
    et al., "Going deeper with Image Transformers", 2021). DINOv2 and
    DeiT III use it on both branches of every encoder block.

    Args:
        init_value: float. Initial value of every factor. Defaults to
            `1e-5`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        `(..., hidden_dim)`.

    Output shape:
        Same as the input.

    Example:

    >>> tokens = keras.ops.ones((2, 5, 8))
    >>> float(LayerScale(0.1)(tokens)[0, 0, 0])  # doctest: +ELLIPSIS
    0.1...
    """

    def __init__(self, init_value=1e-5, **kwargs):
        super().__init__(**kwargs)
        if isinstance(init_value, bool) or not isinstance(
            init_value, (int, float)
        ):
            raise TypeError(
                "`init_value` must be a float. "
                f"Received: init_value={init_value!r}"
            )
        if not init_value > 0:
            raise ValueError(
                "`init_value` must be positive. "
                f"Received: init_value={init_value!r}"
            )
        self.init_value = float(init_value)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(
                "`LayerScale` expects a known last dimension. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.gamma = self.add_weight(
            name="gamma",
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_value),
        )

    def call(self, inputs):
        return inputs * ops.cast(self.gamma, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"init_value": self.init_value})
        return config
