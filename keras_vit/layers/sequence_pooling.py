import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class SequencePooling(keras.layers.Layer):
    """Attention pooling of the token sequence into one vector per image.

    A linear map scores every token; the softmax of the scores over the
    sequence weights the sum of the tokens. Unlike reading the class token,
    every token's output reaches the head directly, which helps small
    datasets (Hassani et al., "Escaping the Big Data Paradigm with Compact
    Transformers", 2021).

    Args:
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        `(batch_size, num_tokens, hidden_dim)`.

    Output shape:
        `(batch_size, hidden_dim)`.

    Example:

    >>> tokens = keras.random.uniform((2, 17, 64))
    >>> tuple(SequencePooling()(tokens).shape)
    (2, 64)
    """

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "`SequencePooling` expects a sequence of shape (batch, "
                "num_tokens, hidden_dim) with a known hidden_dim. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_shape[-1], 1),
            initializer="glorot_uniform",
        )
        self.bias = self.add_weight(
            name="bias", shape=(1,), initializer="zeros"
        )

    def call(self, inputs):
        scores = ops.matmul(inputs, self.kernel) + self.bias  # (B, N, 1)
        # Softmax over the tokens in float32, as in the attention layers.
        weights = ops.softmax(ops.cast(scores, "float32"), axis=1)
        weights = ops.cast(weights, inputs.dtype)
        return ops.sum(weights * inputs, axis=1)  # (B, D)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])
