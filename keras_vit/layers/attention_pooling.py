import math

import keras
from keras import ops

from keras_vit.layers._utils import check_positive_int
from keras_vit.layers.mlp_block import MLPBlock


@keras.saving.register_keras_serializable(package="keras_vit")
class AttentionPooling(keras.layers.Layer):
    """Multi-head attention pooling: one learned query reads all tokens.

    The pooling of SigLIP ("MAP head", Zhai et al., 2022): a learned probe
    `(1, 1, D)` is the query of a multi-head attention over the encoder's
    tokens (keys and values from two linear maps of the tokens, softmax of
    scaled dot products as the weights, the weighted sum of the values, an
    output projection); a LayerNorm and an MLP with a residual follow, and
    the probe's row is the image's features. It replaces the class token.

    The kernels are stored per head, `(D, num_heads, key_dim)` for the
    query, key and value maps and `(num_heads, key_dim, D)` for the
    output, as in `MultiHeadSelfAttention`.

    Args:
        num_heads: int. Attention heads; must divide the width.
        mlp_dim: int. Hidden width of the MLP.
        layer_norm_epsilon: float. Epsilon of the LayerNorm. Defaults to
            `1e-6`.
        activation: str. The MLP's activation (see `MLPBlock`). Defaults
            to `"gelu"`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: tensor `(batch_size, num_tokens, hidden_dim)`.
        return_attention_scores: bool. Also return the probe's attention
            weights `(batch_size, num_heads, 1, num_tokens)`.

    Output shape:
        `(batch_size, hidden_dim)`.

    Example:

    >>> tokens = keras.random.uniform((2, 16, 64))
    >>> tuple(AttentionPooling(num_heads=4, mlp_dim=128)(tokens).shape)
    (2, 64)
    """

    def __init__(
        self,
        num_heads,
        mlp_dim,
        layer_norm_epsilon=1e-6,
        activation="gelu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int(num_heads, "num_heads")
        self.mlp_dim = check_positive_int(mlp_dim, "mlp_dim")
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.activation = activation
        policy = self.dtype_policy
        self.norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="norm"
        )
        self.mlp = MLPBlock(
            self.mlp_dim,
            activation=activation,
            bias_initializer="zeros",
            dtype=policy,
            name="mlp",
        )

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "`AttentionPooling` expects a sequence of shape "
                "(batch, num_tokens, hidden_dim) with a known hidden_dim. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        dim = input_shape[-1]
        if dim % self.num_heads:
            raise ValueError(
                "`hidden_dim` must be divisible by `num_heads`. "
                f"Received: hidden_dim={dim}, num_heads={self.num_heads}"
            )
        heads, key_dim = self.num_heads, dim // self.num_heads
        self.key_dim = key_dim
        normal = keras.initializers.RandomNormal(stddev=dim**-0.5)
        self.probe = self.add_weight(
            name="probe", shape=(1, 1, dim), initializer=normal
        )
        for name in ("query", "key", "value"):
            setattr(
                self,
                f"{name}_kernel",
                self.add_weight(
                    name=f"{name}_kernel",
                    shape=(dim, heads, key_dim),
                    initializer="glorot_uniform",
                ),
            )
            setattr(
                self,
                f"{name}_bias",
                self.add_weight(
                    name=f"{name}_bias",
                    shape=(heads, key_dim),
                    initializer="zeros",
                ),
            )
        self.output_kernel = self.add_weight(
            name="output_kernel",
            shape=(heads, key_dim, dim),
            initializer="glorot_uniform",
        )
        self.output_bias = self.add_weight(
            name="output_bias", shape=(dim,), initializer="zeros"
        )
        self.norm.build((None, 1, dim))
        self.mlp.build((None, 1, dim))

    def _project(self, x, name):
        # (..., D) @ (D, H * Dh) -> (..., H, Dh)
        kernel = ops.cast(getattr(self, f"{name}_kernel"), x.dtype)
        bias = ops.cast(getattr(self, f"{name}_bias"), x.dtype)
        dim = kernel.shape[0]
        flat = ops.matmul(x, ops.reshape(kernel, (dim, -1)))
        flat = flat + ops.reshape(bias, (-1,))
        return ops.reshape(
            flat, (*ops.shape(x)[:-1], self.num_heads, self.key_dim)
        )

    def call(self, inputs, return_attention_scores=False):
        dim = inputs.shape[-1]
        query = self._project(ops.cast(self.probe, inputs.dtype), "query")
        key = self._project(inputs, "key")  # (B, N, H, Dh)
        value = self._project(inputs, "value")  # (B, N, H, Dh)
        query = ops.transpose(query, (0, 2, 1, 3))  # (1, H, 1, Dh)
        key = ops.transpose(key, (0, 2, 3, 1))  # (B, H, Dh, N)
        value = ops.transpose(value, (0, 2, 1, 3))  # (B, H, N, Dh)
        scores = ops.matmul(query, key) / math.sqrt(self.key_dim)
        weights = ops.softmax(scores, axis=-1)  # (B, H, 1, N)
        x = ops.matmul(weights, value)  # (B, H, 1, Dh)
        x = ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (-1, 1, dim))
        kernel = ops.cast(self.output_kernel, x.dtype)
        x = ops.matmul(x, ops.reshape(kernel, (-1, dim)))
        x = x + ops.cast(self.output_bias, x.dtype)  # (B, 1, D)
        x = x + self.mlp(self.norm(x))
        pooled = x[:, 0]  # (B, D)
        if return_attention_scores:
            return pooled, weights
        return pooled

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "activation": self.activation,
            }
        )
        return config
