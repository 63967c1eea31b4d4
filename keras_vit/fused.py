"""Fused training kernels for the encoder's GELU, LayerNorms and softmax.

Without XLA, TensorFlow runs each elementwise op of a GELU or a LayerNorm,
and each op of their gradients, as its own pass over memory: on a CPU the
GELU alone takes about a seventh of a ViT training step
(`benchmarks/profile_step.py`). Here the forward and the backward pass of
each are single XLA-compiled functions, joined by `tf.custom_gradient`, so
that each becomes one or two fused loops, while the matrix products stay
with TensorFlow's oneDNN kernels (compiling the whole model with XLA is
slower on CPU, BENCHMARKS.md). The attention softmax keeps TensorFlow's
forward kernel, which is fast, and gets a one-pass XLA gradient. Sums over
the last axis are matrix-vector products, which XLA's CPU code runs several
times faster than its reductions along that axis. The gradients are written
out from the equations, and `tests/test_fused.py` checks them against
automatic differentiation of the plain forms.

The layers use these kernels only when training on the TensorFlow backend
(`training=True`); inference, export and other backends run the plain
`keras.ops` forms, so exported graphs are unchanged. `set_enabled(False)`
switches them off everywhere, for models traced afterwards.
"""

import math

import keras

_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_enabled = True
_kernels = None


def set_enabled(enabled):
    """Turns the fused training kernels on or off (on by default).

    The choice is read when a training step is traced, so set it before
    `fit` (or before compiling the model again).

    Args:
        enabled: bool.
    """
    global _enabled
    if not isinstance(enabled, bool):
        raise TypeError(
            f"`enabled` must be a bool. Received: enabled={enabled!r}"
        )
    _enabled = enabled


def is_enabled():
    """Whether the fused training kernels are on."""
    return _enabled


def use_fused(training):
    """Whether a layer called with `training` should use the fused kernels."""
    return (
        _enabled and bool(training) and keras.backend.backend() == "tensorflow"
    )


def _build_kernels():
    """The XLA functions, made on first use so that importing stays cheap."""
    import tensorflow as tf

    xla = tf.function(jit_compile=True)

    @xla
    def gelu_forward(x):
        return 0.5 * x * (1.0 + tf.math.erf(x * _INV_SQRT_2))

    @xla
    def gelu_backward(x, upstream):
        # d/dx x * Phi(x) = Phi(x) + x * phi(x), in float32.
        xf = tf.cast(x, tf.float32)
        cdf = 0.5 + 0.5 * tf.math.erf(xf * _INV_SQRT_2)
        pdf = tf.exp(-0.5 * xf * xf) * _INV_SQRT_2PI
        return upstream * tf.cast(cdf + xf * pdf, upstream.dtype)

    def row_mean(x):
        # The mean over the last axis of a (rows, D) matrix, as its product
        # with a vector of ones: XLA's CPU code for reductions along the
        # minor axis is several times slower than its matrix-vector product
        # (the LayerNorm's forward and backward kernels each ran 1.7x
        # faster this way, BENCHMARKS.md "What was tried").
        ones = tf.ones((x.shape[-1], 1), x.dtype)
        return tf.matmul(x, ones) / x.shape[-1]

    def normalize(x, epsilon):
        mean = row_mean(x)
        centered = x - mean
        variance = row_mean(centered * centered)
        return centered * tf.math.rsqrt(variance + epsilon), variance

    def as_rows(x):
        """`x` as a float32 (rows, D) matrix: every token a row."""
        return tf.reshape(tf.cast(x, tf.float32), (-1, x.shape[-1]))

    @xla
    def layer_norm_forward(x, gamma, beta, epsilon):
        normalized, _ = normalize(as_rows(x), epsilon)
        outputs = normalized * tf.cast(gamma, tf.float32)
        outputs = outputs + tf.cast(beta, tf.float32)
        return tf.reshape(tf.cast(outputs, x.dtype), tf.shape(x))

    @xla
    def layer_norm_backward(x, gamma, epsilon, upstream):
        normalized, variance = normalize(as_rows(x), epsilon)
        dy = as_rows(upstream)
        d_normalized = dy * tf.cast(gamma, tf.float32)
        # dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / sigma
        dx = tf.math.rsqrt(variance + epsilon) * (
            d_normalized
            - row_mean(d_normalized)
            - normalized * row_mean(d_normalized * normalized)
        )
        # Sums over all tokens, down the columns of the (rows, D) matrices.
        d_gamma = tf.reduce_sum(dy * normalized, axis=0)
        d_beta = tf.reduce_sum(dy, axis=0)
        return (
            tf.reshape(tf.cast(dx, x.dtype), tf.shape(x)),
            tf.cast(d_gamma, gamma.dtype),
            tf.cast(d_beta, gamma.dtype),
        )

    @xla
    def softmax_backward(weights, upstream):
        # dx = y * (dy - sum(dy * y)) over the last axis, in float32.
        rows = as_rows(weights)
        d_rows = as_rows(upstream)
        dx = rows * (
            d_rows - tf.matmul(d_rows * rows, tf.ones((rows.shape[-1], 1)))
        )
        return tf.reshape(tf.cast(dx, upstream.dtype), tf.shape(upstream))

    return {
        "gelu": (gelu_forward, gelu_backward),
        "layer_norm": (layer_norm_forward, layer_norm_backward),
        "softmax": (None, softmax_backward),
    }


def _get(name):
    global _kernels
    if _kernels is None:
        _kernels = _build_kernels()
    return _kernels[name]


def gelu(x):
    """Exact GELU with a fused forward and backward pass.

    Args:
        x: float tensor.

    Returns:
        `0.5 * x * (1 + erf(x / sqrt(2)))`, of the dtype of `x`.
    """
    import tensorflow as tf

    forward, backward = _get("gelu")

    @tf.custom_gradient
    def fused(x):
        return forward(x), lambda upstream: backward(x, upstream)

    return fused(x)


def layer_norm(x, gamma, beta, epsilon):
    """LayerNorm over the last axis with a fused forward and backward pass.

    Statistics and the normalization are computed in float32, as Keras'
    `LayerNormalization` does under mixed precision.

    Args:
        x: float tensor `(..., D)`.
        gamma: scale `(D,)`.
        beta: offset `(D,)`.
        epsilon: float added to the variance.

    Returns:
        The normalized tensor, of the dtype of `x`.
    """
    import tensorflow as tf

    forward, backward = _get("layer_norm")
    epsilon = float(epsilon)
    # Read the variables here, so that their gradients flow through the
    # reads and the custom gradient sees only tensors.
    gamma, beta = tf.convert_to_tensor(gamma), tf.convert_to_tensor(beta)

    @tf.custom_gradient
    def fused(x, gamma, beta):
        def grad(upstream):
            return backward(x, gamma, epsilon, upstream)

        return forward(x, gamma, beta, epsilon), grad

    return fused(x, gamma, beta)


def softmax(x):
    """Softmax over the last axis with a one-pass fused gradient.

    The forward pass is TensorFlow's softmax on `x` as it is (for bfloat16,
    its CPU kernel computes in float32 and rounds the result once); the
    gradient `y * (dy - sum(dy * y))` is one XLA-compiled function computed
    in float32.

    Args:
        x: float tensor, the logits.

    Returns:
        The softmax of `x` over its last axis, of the dtype of `x`.
    """
    import tensorflow as tf

    _, backward = _get("softmax")

    @tf.custom_gradient
    def fused(x):
        weights = tf.nn.softmax(x, axis=-1)
        return weights, lambda upstream: backward(weights, upstream)

    return fused(x)
