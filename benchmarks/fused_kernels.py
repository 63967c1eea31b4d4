"""The training step's elementwise kernels, timed against their alternatives.

Each pair runs interleaved in one process on the tensors of one Ti/16
encoder block (batch 32, 197 tokens, width 192, MLP 768, bfloat16), and the
script prints the median milliseconds of each and their ratio:

- the LayerNorm's forward and backward XLA kernels with row means as
  `reduce_mean` against row means as a matrix-vector product (what
  `keras_vit.fused` uses);
- the attention softmax in float32 with casts around it against
  TensorFlow's softmax on the bfloat16 logits (same values), and the
  gradient of the former against `keras_vit.fused.softmax`'s one-pass one;
- the GELU's forward and backward XLA kernels, for scale.

    python benchmarks/fused_kernels.py [--repeats 40]
"""

import argparse
import statistics
import time


def _kernels():
    import tensorflow as tf

    xla = tf.function(jit_compile=True)

    def row_mean(x, dot):
        if dot:
            return tf.matmul(x, tf.ones((x.shape[-1], 1))) / x.shape[-1]
        return tf.reduce_mean(x, axis=-1, keepdims=True)

    def stats(x, dot):
        x = tf.cast(x, tf.float32)
        centered = x - row_mean(x, dot)
        variance = row_mean(centered * centered, dot)
        return centered * tf.math.rsqrt(variance + 1e-6), variance

    def forward(dot):
        @xla
        def run(x, gamma, beta):
            normalized, _ = stats(x, dot)
            return tf.cast(normalized * gamma + beta, x.dtype)

        return run

    def backward(dot):
        @xla
        def run(x, gamma, dy):
            normalized, variance = stats(x, dot)
            dy = tf.cast(dy, tf.float32)
            dn = dy * gamma
            dx = tf.math.rsqrt(variance + 1e-6) * (
                dn
                - row_mean(dn, dot)
                - normalized * row_mean(dn * normalized, dot)
            )
            d_gamma = tf.reduce_sum(dy * normalized, 0)
            return tf.cast(dx, x.dtype), d_gamma, tf.reduce_sum(dy, 0)

        return run

    def cast_softmax(s):
        return tf.cast(tf.nn.softmax(tf.cast(s, tf.float32)), s.dtype)

    def plain_softmax_grad(s, dy):
        with tf.GradientTape() as tape:
            tape.watch(s)
            y = cast_softmax(s)
        return tape.gradient(y, s, output_gradients=dy)

    def fused_softmax_grad(s, dy):
        from keras_vit import fused

        with tf.GradientTape() as tape:
            tape.watch(s)
            y = fused.softmax(s)
        return tape.gradient(y, s, output_gradients=dy)

    from keras_vit import fused

    gelu_forward, gelu_backward = fused._get("gelu")
    return {
        "layer norm forward": (forward(False), forward(True)),
        "layer norm backward": (backward(False), backward(True)),
        "softmax forward": (
            tf.function(cast_softmax),
            tf.function(lambda s: tf.nn.softmax(s)),
        ),
        "softmax backward": (
            tf.function(plain_softmax_grad),
            tf.function(fused_softmax_grad),
        ),
        "gelu forward / backward": (gelu_forward, gelu_backward),
    }


def _inputs():
    import tensorflow as tf

    def bf16(shape, scale=1.0):
        return tf.cast(tf.random.normal(shape) * scale, tf.bfloat16)

    rows, width, mlp = 32 * 197, 192, 768
    gamma, beta = tf.random.normal((width,)), tf.random.normal((width,))
    x, dy = bf16((rows, width)), bf16((rows, width))
    scores, d_scores = bf16((32, 3, 197, 197), 3.0), bf16((32, 3, 197, 197))
    h, dh = bf16((rows, mlp)), bf16((rows, mlp))
    return {
        "layer norm forward": ((x, gamma, beta), (x, gamma, beta)),
        "layer norm backward": ((x, gamma, dy), (x, gamma, dy)),
        "softmax forward": ((scores,), (scores,)),
        "softmax backward": ((scores, d_scores), (scores, d_scores)),
        "gelu forward / backward": ((h,), (h, dh)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    import numpy as np

    kernels, inputs = _kernels(), _inputs()
    print("kernel                    first ms  second ms  first/second")
    for name, (first, second) in kernels.items():
        a, b = inputs[name]
        times = ([], [])
        for _ in range(3):
            first(*a), second(*b)
        for i in range(args.repeats):
            for k, (fn, xs) in enumerate(((first, a), (second, b))):
                start = time.perf_counter()
                result = fn(*xs)
                for tensor in result if isinstance(result, tuple) else [result]:
                    np.asarray(tensor)
                times[k].append(time.perf_counter() - start)
        ms = [statistics.median(t) * 1000 for t in times]
        ratios = [x / y for x, y in zip(*times)]
        print(
            f"{name:24s} {ms[0]:9.2f} {ms[1]:10.2f} "
            f"{statistics.median(ratios):13.2f}"
        )


if __name__ == "__main__":
    main()
