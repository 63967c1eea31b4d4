"""Fused training kernels for the encoder's GELU and LayerNorms.

Without XLA, TensorFlow runs each elementwise op of a GELU or a LayerNorm,
and each op of their gradients, as its own pass over memory: on a CPU the
GELU alone takes about a seventh of a ViT training step
(`benchmarks/profile_step.py`). Here the forward and the backward pass of
each are single XLA-compiled functions, joined by `tf.custom_gradient`, so
that each becomes one or two fused loops, while the matrix products stay
with TensorFlow's oneDNN kernels (compiling the whole model with XLA is
slower on CPU, BENCHMARKS.md). The gradients are written out from the
equations, and `tests/test_fused.py` checks them against automatic
differentiation of the plain forms. (The attention softmax was tried too:
TensorFlow's own softmax kernels were as fast or faster.)

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

    def normalize(x, epsilon):
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        variance = tf.reduce_mean(
            tf.math.squared_difference(x, mean), axis=-1, keepdims=True
        )
        return (x - mean) * tf.math.rsqrt(variance + epsilon), variance

    @xla
    def layer_norm_forward(x, gamma, beta, epsilon):
        normalized, _ = normalize(tf.cast(x, tf.float32), epsilon)
        outputs = normalized * tf.cast(gamma, tf.float32)
        return tf.cast(outputs + tf.cast(beta, tf.float32), x.dtype)

    @xla
    def layer_norm_backward(x, gamma, epsilon, upstream):
        normalized, variance = normalize(tf.cast(x, tf.float32), epsilon)
        dy = tf.cast(upstream, tf.float32)
        d_normalized = dy * tf.cast(gamma, tf.float32)
        # dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / sigma
        dx = tf.math.rsqrt(variance + epsilon) * (
            d_normalized
            - tf.reduce_mean(d_normalized, axis=-1, keepdims=True)
            - normalized
            * tf.reduce_mean(d_normalized * normalized, axis=-1, keepdims=True)
        )
        # Sums over all tokens as (rows, D) matrices, which XLA reduces
        # faster than over the leading axes of a 3-D tensor.
        rows = tf.reshape(dy, (-1, x.shape[-1]))
        d_gamma = tf.reduce_sum(
            rows * tf.reshape(normalized, tf.shape(rows)), 0
        )
        d_beta = tf.reduce_sum(rows, axis=0)
        return (
            tf.cast(dx, x.dtype),
            tf.cast(d_gamma, gamma.dtype),
            tf.cast(d_beta, gamma.dtype),
        )

    return {
        "gelu": (gelu_forward, gelu_backward),
        "layer_norm": (layer_norm_forward, layer_norm_backward),
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
