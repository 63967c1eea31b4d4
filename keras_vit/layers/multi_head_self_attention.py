import math

import keras
from keras import ops

from keras_vit import fused
from keras_vit.layers._lora import add_lora_weights
from keras_vit.layers._lora import check_lora
from keras_vit.layers._lora import enable_lora
from keras_vit.layers._lora import lora_config
from keras_vit.layers._lora import lora_update
from keras_vit.layers._lora import lora_variables
from keras_vit.layers._utils import check_positive_int
from keras_vit.layers._utils import check_rate
from keras_vit.layers._utils import fresh_initializer


def _flat_fan_initializer(initializer, flat_shape):
    """Initializes a multi-axis kernel as if it were a `flat_shape` matrix.

    Keras computes fans of a `(D, H, Dh)` kernel from its last two axes,
    which would scale a head-split kernel like an `(H, Dh)` matrix. The
    original ViT initializes the flat `(D, H * Dh)` matrix; so does this.
    """

    def init(shape, dtype=None):
        values = initializer(flat_shape, dtype=dtype)
        return ops.reshape(values, shape)

    return init


@keras.saving.register_keras_serializable(package="keras_vit")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Multi-head self-attention over a token sequence.

    Three linear maps turn every token into a query, a key and a value,
    split into `num_heads` heads of width `key_dim`. In each head, the
    attention weight between tokens `i` and `j` is
    `softmax_j(q_i . k_j / sqrt(key_dim))`: how similar token `j`'s key is to
    token `i`'s query, normalized so that each row sums to 1. Each token's
    output is the weighted sum of the values with those weights; the heads
    are concatenated and mixed by an output projection.

    The kernels are stored per head, `(D, num_heads, key_dim)` for the query,
    key and value maps and `(num_heads, key_dim, D)` for the output, the
    layout of the original ViT checkpoints. Each map runs as one 2-D matrix
    product on the flat `(D, num_heads * key_dim)` view of its kernel: on
    CPU this trained faster than one fused `(D, 3 * D)` product, than
    `einsum` over the per-head kernels and than Keras' `MultiHeadAttention`
    (`benchmarks/attention_layout.py`).

    Args:
        num_heads: int. Number of attention heads.
        key_dim: int or `None`. Width of each head. Defaults to
            `hidden_dim // num_heads`, in which case `hidden_dim` must be
            divisible by `num_heads`.
        dropout: float. Dropout rate applied to the attention weights during
            training. Defaults to `0.0`.
        use_bias: bool. Whether the four linear maps have biases.
            Defaults to `True`.
        kernel_initializer: initializer for the kernels, applied to each
            kernel viewed as a matrix. Defaults to `"glorot_uniform"`.
        bias_initializer: initializer for the biases. Defaults to `"zeros"`.
        locality: bool. Locality Self-Attention (Lee, Lee & Song, "Vision
            Transformer for Small-Size Datasets", 2021): the scale
            `1 / sqrt(key_dim)` becomes `1 / temperature`, a learned scalar
            starting at `sqrt(key_dim)`, and each token's attention to
            itself is masked out, so that the softmax is sharper and every
            token must gather from the others. Defaults to `False`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: tensor `(batch_size, num_tokens, hidden_dim)`.
        training: bool. Whether attention dropout is active.
        return_attention_scores: bool. When `True`, also return the
            attention weights `(batch_size, num_heads, num_tokens,
            num_tokens)`. Defaults to `False`.

    Input shape:
        `(batch_size, num_tokens, hidden_dim)`.

    Output shape:
        `(batch_size, num_tokens, hidden_dim)`, and with
        `return_attention_scores=True` also the attention weights.

    Example:

    >>> tokens = keras.random.uniform((2, 17, 64))
    >>> layer = MultiHeadSelfAttention(num_heads=4)
    >>> outputs, weights = layer(tokens, return_attention_scores=True)
    >>> tuple(outputs.shape), tuple(weights.shape)
    ((2, 17, 64), (2, 4, 17, 17))
    """

    def __init__(
        self,
        num_heads,
        key_dim=None,
        dropout=0.0,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        locality=False,
        lora_rank=None,
        lora_alpha=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.lora_rank, self.lora_alpha = check_lora(lora_rank, lora_alpha)
        if not isinstance(locality, bool):
            raise TypeError(
                f"`locality` must be a bool. Received: locality={locality!r}"
            )
        self.locality = locality
        self.num_heads = check_positive_int(num_heads, "num_heads")
        self.key_dim = (
            None if key_dim is None else check_positive_int(key_dim, "key_dim")
        )
        self.dropout = check_rate(dropout, "dropout")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.weights_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="attention_dropout"
        )

    def _head_dim(self, hidden_dim):
        if self.key_dim is not None:
            return self.key_dim
        if hidden_dim % self.num_heads:
            raise ValueError(
                "`hidden_dim` must be divisible by `num_heads` when "
                "`key_dim` is not given. "
                f"Received: hidden_dim={hidden_dim}, num_heads={self.num_heads}"
            )
        return hidden_dim // self.num_heads

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "`MultiHeadSelfAttention` expects a sequence of shape "
                "(batch, num_tokens, hidden_dim) with a known hidden_dim. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        dim = input_shape[-1]
        heads, head_dim = self.num_heads, self._head_dim(dim)
        for name in ("query", "key", "value"):
            setattr(
                self,
                f"{name}_kernel",
                self.add_weight(
                    name=f"{name}_kernel",
                    shape=(dim, heads, head_dim),
                    initializer=_flat_fan_initializer(
                        fresh_initializer(self.kernel_initializer),
                        (dim, heads * head_dim),
                    ),
                ),
            )
            setattr(
                self,
                f"{name}_bias",
                self.add_weight(
                    name=f"{name}_bias",
                    shape=(heads, head_dim),
                    initializer=fresh_initializer(self.bias_initializer),
                )
                if self.use_bias
                else None,
            )
        self.temperature = (
            self.add_weight(
                name="temperature",
                shape=(),
                initializer=keras.initializers.Constant(math.sqrt(head_dim)),
            )
            if self.locality
            else None
        )
        self.output_kernel = self.add_weight(
            name="output_kernel",
            shape=(heads, head_dim, dim),
            initializer=_flat_fan_initializer(
                fresh_initializer(self.kernel_initializer),
                (heads * head_dim, dim),
            ),
        )
        self.output_bias = (
            self.add_weight(
                name="output_bias",
                shape=(dim,),
                initializer=fresh_initializer(self.bias_initializer),
            )
            if self.use_bias
            else None
        )
        if self.lora_rank:
            self._build_lora()

    def _projection_shapes(self):
        """`{name: (d_in, d_out)}` of the four kernels as matrices."""
        dim, heads, head_dim = self.query_kernel.shape
        inner = heads * head_dim
        return {
            "query": (dim, inner),
            "key": (dim, inner),
            "value": (dim, inner),
            "output": (inner, dim),
        }

    def enable_lora(self, rank, alpha=None):
        """Freezes the four projection kernels and adds a trainable
        low-rank update to each (`keras_vit.lora`)."""
        enable_lora(self, rank, alpha)

    def _build_lora(self):
        for name, (d_in, d_out) in self._projection_shapes().items():
            getattr(self, f"{name}_kernel").trainable = False
            add_lora_weights(self, name, d_in, d_out)

    def lora_variables(self):
        """The LoRA matrices, `[]` without LoRA."""
        return lora_variables(self, ("query", "key", "value", "output"))

    def _kernel(self, name):
        """A kernel as its `(d_in, d_out)` matrix, with the LoRA update."""
        kernel = getattr(self, f"{name}_kernel")
        kernel = ops.reshape(kernel, self._projection_shapes()[name])
        if not self.lora_rank:
            return kernel
        return kernel + lora_update(self, name, kernel.dtype)

    def merged_kernels(self):
        """`{kernel path: kernel with the LoRA update added}`."""
        return {
            getattr(self, f"{name}_kernel").path: ops.reshape(
                self._kernel(name), getattr(self, f"{name}_kernel").shape
            )
            for name in self._projection_shapes()
        }

    def _project(self, inputs, name, bias, length, scale=None):
        heads, head_dim = self.query_kernel.shape[1:]
        # A 2-D product on the flat (D, H * Dh) view of the kernel.
        kernel = self._kernel(name)
        bias = None if bias is None else ops.reshape(bias, (-1,))
        if scale is not None:
            # Scaling the (D, H * Dh) kernel and the bias instead of the
            # (B, H, N, Dh) product saves a pass over the activations and
            # their gradient; for a power-of-two scale (head width 4, 16,
            # 64, 256) the result is bit for bit the same.
            kernel = kernel * scale
            bias = None if bias is None else bias * scale
        x = ops.matmul(inputs, kernel)
        if bias is not None:
            x = x + bias
        x = ops.reshape(x, (-1, length, heads, head_dim))  # (B, N, H, Dh)
        return ops.transpose(x, (0, 2, 1, 3))  # (B, H, N, Dh)

    def call(self, inputs, training=None, return_attention_scores=False):
        dim = inputs.shape[-1]
        heads, head_dim = self.num_heads, self._head_dim(dim)
        length = ops.shape(inputs)[1]
        # The query is scaled before the product, as in the original, which
        # keeps the (N, N) logits from growing with the head width.
        if self.locality:
            scale = ops.cast(1.0 / self.temperature, self.compute_dtype)
        else:
            scale = ops.cast(1.0 / math.sqrt(head_dim), self.compute_dtype)
        query = self._project(inputs, "query", self.query_bias, length, scale)
        key = self._project(inputs, "key", self.key_bias, length)
        value = self._project(inputs, "value", self.value_bias, length)
        scores = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))
        if self.locality:
            scores = ops.cast(scores, "float32")
            scores = scores + _diagonal_mask(inputs.shape[1], length)
        weights = self._softmax(scores, training)  # (B, H, N, N)
        dropped = self.weights_dropout(weights, training=training)
        context = ops.matmul(dropped, value)  # (B, H, N, Dh)
        context = ops.transpose(context, (0, 2, 1, 3))  # (B, N, H, Dh)
        context = ops.reshape(context, (-1, length, heads * head_dim))
        outputs = ops.matmul(context, self._kernel("output"))  # (B, N, D)
        if self.use_bias:
            outputs = outputs + self.output_bias
        if return_attention_scores:
            return outputs, weights
        return outputs

    def _softmax(self, scores, training):
        """The attention weights, in the compute dtype, from the logits.

        The softmax runs in float32 so that bfloat16 and float16 rows still
        sum to 1. In bfloat16 on TensorFlow the logits go to TensorFlow's
        softmax as they are: its kernels compute in float32 and round once,
        the same values as casting around it (tested on CPU), in one pass
        instead of three. When training, `keras_vit.fused.softmax` gives it
        a one-pass gradient, also computed in float32.
        """
        if (
            keras.backend.backend() == "tensorflow"
            and scores.dtype == "bfloat16"
            and self.compute_dtype == "bfloat16"
        ):
            if fused.use_fused(training):
                return fused.softmax(scores)
            return ops.softmax(scores, axis=-1)
        weights = ops.softmax(ops.cast(scores, "float32"), axis=-1)
        return ops.cast(weights, self.compute_dtype)

    def compute_output_shape(self, input_shape, return_attention_scores=False):
        input_shape = tuple(input_shape)
        if return_attention_scores:
            batch, length = input_shape[0], input_shape[1]
            return input_shape, (batch, self.num_heads, length, length)
        return input_shape

    def compute_output_spec(
        self, inputs, training=None, return_attention_scores=False
    ):
        shape = tuple(inputs.shape)
        outputs = keras.KerasTensor(shape, dtype=self.compute_dtype)
        if not return_attention_scores:
            return outputs
        weights = keras.KerasTensor(
            (shape[0], self.num_heads, shape[1], shape[1]),
            dtype=self.compute_dtype,
        )
        return outputs, weights

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
                "locality": self.locality,
            }
        )
        config.update(lora_config(self))
        return config


def _diagonal_mask(static_length, length):
    """`(N, N)` float32: a large negative number on the diagonal, else 0.

    A finite value rather than `-inf` keeps every runtime's softmax free of
    NaNs; after the float32 softmax those weights are exactly 0.
    """
    n = static_length if static_length is not None else length
    return ops.eye(n, dtype="float32") * -1e9
