"""Ways to compute ViT self-attention on CPU, side by side.

Times one training step (forward + backward) and one inference call of a
self-attention layer at ViT sizes, the variants alternated in one process,
and prints the median time of each and its ratio to keras_vit's layer.

    python benchmarks/attention_layout.py [--batch 32] [--tokens 197]
        [--width 192] [--heads 3] [--repeats 15]
"""

import argparse
import math
import statistics
import time

import keras
import tensorflow as tf
from keras import ops

from keras_vit.layers import MultiHeadSelfAttention


def _fused_qkv(layer, inputs):
    """One (B, N, D) x (D, 3 * H * Dh) product for query, key and value."""
    dim = inputs.shape[-1]
    kernel = ops.concatenate(
        [
            ops.reshape(w, (dim, -1))
            for w in (layer.query_kernel, layer.key_kernel, layer.value_kernel)
        ],
        axis=-1,
    )
    bias = ops.concatenate(
        [
            ops.reshape(b, (-1,))
            for b in (layer.query_bias, layer.key_bias, layer.value_bias)
        ]
    )
    return ops.matmul(inputs, kernel) + bias  # (B, N, 3 * H * Dh)


def _attend(q, k, v, out_kernel, out_bias, length):
    """Scaled dot-product attention on (B, H, N, Dh) heads, then output."""
    head_dim = q.shape[-1]
    q = q / math.sqrt(head_dim)
    weights = ops.softmax(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))))
    context = ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3))
    context = ops.reshape(context, (-1, length, out_kernel.shape[0] * head_dim))
    return (
        ops.matmul(context, ops.reshape(out_kernel, (-1, out_kernel.shape[-1])))
        + out_bias
    )


class FusedFiveD(MultiHeadSelfAttention):
    """Fused projection, one 5-D transpose to (3, B, H, N, Dh)."""

    def call(self, inputs, training=None, return_attention_scores=False):
        heads = self.num_heads
        head_dim = inputs.shape[-1] // heads
        length = ops.shape(inputs)[1]
        qkv = ops.reshape(
            _fused_qkv(self, inputs), (-1, length, 3, heads, head_dim)
        )
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))
        return _attend(
            qkv[0], qkv[1], qkv[2], self.output_kernel, self.output_bias, length
        )


class FusedSplit(MultiHeadSelfAttention):
    """Fused projection, split into three, 4-D transposes."""

    def call(self, inputs, training=None, return_attention_scores=False):
        heads = self.num_heads
        head_dim = inputs.shape[-1] // heads
        length = ops.shape(inputs)[1]
        q, k, v = [
            ops.transpose(
                ops.reshape(t, (-1, length, heads, head_dim)), (0, 2, 1, 3)
            )
            for t in ops.split(_fused_qkv(self, inputs), 3, axis=-1)
        ]
        return _attend(q, k, v, self.output_kernel, self.output_bias, length)


class EinsumProjections(MultiHeadSelfAttention):
    """Three `einsum`s over the per-head kernels, no explicit transposes."""

    def call(self, inputs, training=None, return_attention_scores=False):
        head_dim = inputs.shape[-1] // self.num_heads
        q = ops.einsum("bnd,dhk->bnhk", inputs, self.query_kernel)
        k = ops.einsum("bnd,dhk->bnhk", inputs, self.key_kernel)
        v = ops.einsum("bnd,dhk->bnhk", inputs, self.value_kernel)
        q = (q + self.query_bias) / math.sqrt(head_dim)
        weights = ops.softmax(
            ops.einsum("bnhk,bmhk->bhnm", q, k + self.key_bias)
        )
        context = ops.einsum("bhnm,bmhk->bnhk", weights, v + self.value_bias)
        return ops.einsum("bnhk,hkd->bnd", context, self.output_kernel) + (
            self.output_bias
        )


class FusedDotProductAttention(MultiHeadSelfAttention):
    """Fused projection, then `keras.ops.dot_product_attention`."""

    def call(self, inputs, training=None, return_attention_scores=False):
        dim = inputs.shape[-1]
        heads = self.num_heads
        length = ops.shape(inputs)[1]
        qkv = ops.reshape(
            _fused_qkv(self, inputs), (-1, length, 3, heads, dim // heads)
        )
        context = ops.dot_product_attention(
            qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        )  # (B, N, H, Dh)
        context = ops.reshape(context, (-1, length, dim))
        return (
            ops.matmul(context, ops.reshape(self.output_kernel, (dim, dim)))
            + self.output_bias
        )


def keras_mha(heads, width):
    layer = keras.layers.MultiHeadAttention(heads, width // heads)

    class Wrapped(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.inner = layer

        def call(self, x):
            return self.inner(x, x)

    return Wrapped()


def make_steps(layer, x):
    layer(x)
    variables = layer.trainable_variables

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(layer(x)))
        return tape.gradient(loss, variables)

    @tf.function
    def infer_step():
        return layer(x)

    return train_step, infer_step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=197)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=25)
    args = parser.parse_args()

    x = tf.random.normal((args.batch, args.tokens, args.width))
    candidates = {
        "keras_vit (three 2-D matmuls)": MultiHeadSelfAttention(args.heads),
        "fused qkv, 5-D transpose": FusedFiveD(args.heads),
        "fused qkv, split": FusedSplit(args.heads),
        "three einsums": EinsumProjections(args.heads),
        "fused + dot_product_attention": FusedDotProductAttention(args.heads),
        "keras MultiHeadAttention": keras_mha(args.heads, args.width),
    }
    steps = {name: make_steps(layer, x) for name, layer in candidates.items()}
    times = {name: ([], []) for name in candidates}
    for name, (train, infer) in steps.items():  # Warm-up and tracing.
        for _ in range(3):
            train()
            infer()
    for _ in range(args.repeats):
        for name, (train, infer) in steps.items():
            for fn, bucket in zip((train, infer), times[name]):
                start = time.perf_counter()
                fn()
                bucket.append(time.perf_counter() - start)
    base = [
        statistics.median(b) for b in times["keras_vit (three 2-D matmuls)"]
    ]
    print(
        f"batch={args.batch} tokens={args.tokens} width={args.width} "
        f"heads={args.heads}, median of {args.repeats}"
    )
    print(
        f"{'layer':32s} {'train ms':>9s} {'ratio':>6s} "
        f"{'infer ms':>9s} {'ratio':>6s}"
    )
    for name, (train_t, infer_t) in times.items():
        tr, inf = statistics.median(train_t), statistics.median(infer_t)
        print(
            f"{name:32s} {tr * 1e3:9.2f} {tr / base[0]:6.2f} "
            f"{inf * 1e3:9.2f} {inf / base[1]:6.2f}"
        )


if __name__ == "__main__":
    main()
