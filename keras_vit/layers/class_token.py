import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class ClassToken(keras.layers.Layer):
    """Prepends one learnable class token to a sequence of patch embeddings.

    The class token is a `(1, 1, D)` vector shared by all images. Through
    self-attention it gathers information from every patch, and the
    classification head reads the image's class from it; the classification
    loss is what trains it. Its initial values are drawn from a standard
    normal distribution.

    Args:
        initializer: initializer for the token. Defaults to
            `RandomNormal(mean=0.0, stddev=1.0)`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        `(batch_size, num_patches, hidden_dim)`.

    Output shape:
        `(batch_size, num_patches + 1, hidden_dim)`; position 0 holds the
        class token.

    Example:

    >>> tokens = keras.random.uniform((2, 16, 64))
    >>> tuple(ClassToken()(tokens).shape)
    (2, 17, 64)
    """

    def __init__(self, initializer=None, **kwargs):
        super().__init__(**kwargs)
        if initializer is None:
            initializer = keras.initializers.RandomNormal(mean=0.0, stddev=1.0)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "`ClassToken` expects a sequence of shape "
                "(batch, num_tokens, hidden_dim) with a known hidden_dim. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.token = self.add_weight(
            name="token",
            shape=(1, 1, input_shape[-1]),
            initializer=self.initializer,
        )

    def call(self, inputs):
        batch_size = ops.shape(inputs)[0]
        # (1, 1, D) -> (B, 1, D)
        token = ops.broadcast_to(
            ops.cast(self.token, inputs.dtype),
            (batch_size, 1, inputs.shape[-1]),
        )
        # (B, 1 + N, D)
        return ops.concatenate([token, inputs], axis=1)

    def compute_output_shape(self, input_shape):
        batch, length, dim = input_shape
        return (batch, None if length is None else length + 1, dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"initializer": keras.initializers.serialize(self.initializer)}
        )
        return config
