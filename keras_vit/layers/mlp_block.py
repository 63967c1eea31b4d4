import keras
from keras import ops

from keras_vit import fused
from keras_vit.activations import get_activation
from keras_vit.activations import resolve_activation
from keras_vit.layers._lora import add_lora_weights
from keras_vit.layers._lora import check_lora
from keras_vit.layers._lora import enable_lora
from keras_vit.layers._lora import lora_config
from keras_vit.layers._lora import lora_update
from keras_vit.layers._lora import lora_variables
from keras_vit.layers._utils import check_positive_int
from keras_vit.layers._utils import check_rate
from keras_vit.layers._utils import fresh_initializer
from keras_vit.layers._utils import refreeze


@keras.saving.register_keras_serializable(package="keras_vit")
class MLPBlock(keras.layers.Layer):
    """The encoder block's MLP: Dense → GELU → Dropout → Dense → Dropout.

    It widens every token to `mlp_dim`, applies GELU, and projects back to
    the input width, token by token (no mixing across tokens). When training
    on the TensorFlow backend, the exact GELU runs as a fused kernel
    (`keras_vit.fused.gelu`); the values are the same.

    Args:
        mlp_dim: int. Width of the hidden layer.
        dropout: float. Dropout rate after each Dense layer. Defaults to
            `0.0`.
        approximate_gelu: bool. Use the tanh approximation of GELU instead
            of the exact erf form. Defaults to `False`.
        kernel_initializer: initializer for both kernels. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer for both biases. Defaults to
            `RandomNormal(stddev=1e-6)`, as in the original ViT.
        activation: str or `None`. The hidden layer's activation by name:
            `"gelu"`, `"gelu_approximate"` or `"quick_gelu"` (OpenAI's
            CLIP). Defaults to `None` (GELU, as `approximate_gelu` says).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: tensor `(batch_size, num_tokens, hidden_dim)`.
        training: bool. Whether dropout is active.

    Input shape:
        `(batch_size, num_tokens, hidden_dim)`.

    Output shape:
        Same as the input.

    Example:

    >>> tokens = keras.random.uniform((2, 17, 64))
    >>> tuple(MLPBlock(mlp_dim=256)(tokens).shape)
    (2, 17, 64)
    """

    def __init__(
        self,
        mlp_dim,
        dropout=0.0,
        approximate_gelu=False,
        kernel_initializer="glorot_uniform",
        bias_initializer=None,
        activation=None,
        lora_rank=None,
        lora_alpha=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.lora_rank, self.lora_alpha = check_lora(lora_rank, lora_alpha)
        self.mlp_dim = check_positive_int(mlp_dim, "mlp_dim")
        self.dropout = check_rate(dropout, "dropout")
        self.activation_name = resolve_activation(activation, approximate_gelu)
        self.approximate_gelu = self.activation_name == "gelu_approximate"
        self.activation = get_activation(self.activation_name)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        if bias_initializer is None:
            bias_initializer = keras.initializers.RandomNormal(stddev=1e-6)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.dense_0 = keras.layers.Dense(
            self.mlp_dim,
            kernel_initializer=fresh_initializer(self.kernel_initializer),
            bias_initializer=fresh_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="dense_0",
        )
        self.dropout_0 = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="dropout_0"
        )
        self.dense_1 = None  # Created in build, once the width is known.
        self.dropout_1 = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="dropout_1"
        )

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                "`MLPBlock` expects inputs with a known last dimension. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.dense_1 = keras.layers.Dense(
            input_shape[-1],
            kernel_initializer=fresh_initializer(self.kernel_initializer),
            bias_initializer=fresh_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="dense_1",
        )
        self.dense_0.build(input_shape)
        self.dense_1.build(self.dense_0.compute_output_shape(input_shape))
        if self.lora_rank:
            self._build_lora()
        refreeze(self)  # a frozen layer loaded from a file

    def enable_lora(self, rank, alpha=None):
        """Freezes both kernels and adds a trainable low-rank update to
        each (`keras_vit.lora`)."""
        enable_lora(self, rank, alpha)

    def _build_lora(self):
        for name in ("dense_0", "dense_1"):
            dense = getattr(self, name)
            dense.kernel.trainable = False
            add_lora_weights(self, name, *dense.kernel.shape)

    def lora_variables(self):
        """The LoRA matrices, `[]` without LoRA."""
        return lora_variables(self, ("dense_0", "dense_1"))

    def merged_kernels(self):
        """`{kernel path: kernel with the LoRA update added}`."""
        return {
            dense.kernel.path: dense.kernel
            + lora_update(self, name, dense.kernel.dtype)
            for name, dense in (
                ("dense_0", self.dense_0),
                ("dense_1", self.dense_1),
            )
        }

    def _dense(self, name, x):
        dense = getattr(self, name)
        if not self.lora_rank:
            return dense(x)
        kernel = ops.cast(dense.kernel, self.compute_dtype)
        kernel = kernel + lora_update(self, name, self.compute_dtype)
        return ops.add(ops.matmul(x, kernel), dense.bias)

    def call(self, inputs, training=None):
        # Every token is transformed on its own, so the tokens of all images
        # form one (B * N, D) matrix: each Dense is then a single 2-D matrix
        # product whose bias add (and, for inference, the GELU) TensorFlow
        # fuses into it, which a 3-D input with its reshapes would prevent.
        dim = inputs.shape[-1]
        x = inputs
        if len(inputs.shape) != 2:
            x = ops.reshape(inputs, (-1, dim))  # (B * N, D)
        x = self._dense("dense_0", x)  # (B * N, mlp_dim)
        if fused.use_fused(training) and self.activation_name == "gelu":
            x = fused.gelu(x)
        else:
            x = self.activation(x)
        x = self.dropout_0(x, training=training)
        x = self._dense("dense_1", x)  # (B * N, D)
        x = self.dropout_1(x, training=training)
        if len(inputs.shape) != 2:
            x = ops.reshape(x, ops.shape(inputs))  # (B, N, D)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mlp_dim": self.mlp_dim,
                "dropout": self.dropout,
                "approximate_gelu": self.approximate_gelu,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        config.update(lora_config(self))
        if self.activation_name == "quick_gelu":
            # Only then: the files of GELU models keep their configs.
            config["activation"] = self.activation_name
        return config
