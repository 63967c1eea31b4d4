import keras
from keras import ops

from keras_vit.layers._utils import check_non_negative_int

_MODES = ("token", "gap", "distillation")


@keras.saving.register_keras_serializable(package="keras_vit")
class TokenPooling(keras.layers.Layer):
    """Reduces the encoder's token sequence to one vector per image.

    `"token"` takes the class token (position 0); `"gap"` averages the patch
    tokens, leaving out the class token (and every other prefix token);
    `"distillation"` takes DeiT's distillation token (position 1).

    Args:
        mode: `"token"`, `"gap"` or `"distillation"`. Defaults to
            `"token"`.
        num_prefix_tokens: int. Number of leading non-patch tokens skipped
            by `"gap"`. Defaults to `1`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        `(batch_size, num_tokens, hidden_dim)`.

    Output shape:
        `(batch_size, hidden_dim)`.

    Example:

    >>> tokens = keras.random.uniform((2, 17, 64))
    >>> tuple(TokenPooling("gap")(tokens).shape)
    (2, 64)
    """

    def __init__(self, mode="token", num_prefix_tokens=1, **kwargs):
        super().__init__(**kwargs)
        if mode not in _MODES:
            raise ValueError(
                f"`mode` must be one of {_MODES}. Received: mode={mode!r}"
            )
        num_prefix_tokens = check_non_negative_int(
            num_prefix_tokens, "num_prefix_tokens"
        )
        if mode == "token" and num_prefix_tokens < 1:
            raise ValueError(
                '`mode="token"` needs a class token (num_prefix_tokens >= 1). '
                f"Received: num_prefix_tokens={num_prefix_tokens}"
            )
        if mode == "distillation" and num_prefix_tokens < 2:
            raise ValueError(
                '`mode="distillation"` needs a class and a distillation '
                "token (num_prefix_tokens >= 2). "
                f"Received: num_prefix_tokens={num_prefix_tokens}"
            )
        self.mode = mode
        self.num_prefix_tokens = int(num_prefix_tokens)

    def call(self, inputs):
        if self.mode == "token":
            return inputs[:, 0]  # (B, D)
        if self.mode == "distillation":
            return inputs[:, 1]  # (B, D)
        return ops.mean(inputs[:, self.num_prefix_tokens :], axis=1)  # (B, D)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {"mode": self.mode, "num_prefix_tokens": self.num_prefix_tokens}
        )
        return config
