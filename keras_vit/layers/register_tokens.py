import keras
from keras import ops

from keras_vit.layers._utils import check_non_negative_int
from keras_vit.layers._utils import check_positive_int


@keras.saving.register_keras_serializable(package="keras_vit")
class RegisterTokens(keras.layers.Layer):
    """Inserts learnable register tokens into a token sequence.

    Registers (Darcet et al., "Vision Transformers Need Registers", 2024)
    are extra tokens that belong to no patch and that no head reads: they
    give attention a place for the global scratch work that otherwise
    takes over a few background patches, which cleans up attention maps
    (DINOv2 "reg" checkpoints hold 4). They have no position embedding.

    Args:
        num_tokens: int. Number of registers.
        position: int. Index at which they are inserted: after the class
            (and distillation) token. Defaults to `0`.
        initializer: initializer of the tokens. Defaults to
            `RandomNormal(stddev=1e-6)`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        `(batch_size, num_tokens_in, hidden_dim)`.

    Output shape:
        `(batch_size, num_tokens_in + num_tokens, hidden_dim)`.

    Example:

    >>> tokens = keras.random.uniform((2, 17, 64))
    >>> tuple(RegisterTokens(4, position=1)(tokens).shape)
    (2, 21, 64)
    """

    def __init__(self, num_tokens, position=0, initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_tokens = check_positive_int(num_tokens, "num_tokens")
        self.position = check_non_negative_int(position, "position")
        if initializer is None:
            initializer = keras.initializers.RandomNormal(stddev=1e-6)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "`RegisterTokens` expects a sequence of shape "
                "(batch, num_tokens, hidden_dim) with a known hidden_dim. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        if input_shape[1] is not None and input_shape[1] < self.position:
            raise ValueError(
                "`position` must be within the sequence. Received: "
                f"position={self.position} for {input_shape[1]} tokens"
            )
        self.tokens = self.add_weight(
            name="tokens",
            shape=(1, self.num_tokens, input_shape[-1]),
            initializer=self.initializer,
        )

    def call(self, inputs):
        batch_size = ops.shape(inputs)[0]
        # (1, R, D) -> (B, R, D)
        tokens = ops.broadcast_to(
            ops.cast(self.tokens, inputs.dtype),
            (batch_size, self.num_tokens, inputs.shape[-1]),
        )
        head, tail = inputs[:, : self.position], inputs[:, self.position :]
        return ops.concatenate([head, tokens, tail], axis=1)

    def compute_output_shape(self, input_shape):
        batch, length, dim = input_shape
        return (
            batch,
            None if length is None else length + self.num_tokens,
            dim,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_tokens": self.num_tokens,
                "position": self.position,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config
