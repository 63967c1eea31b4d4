"""Where the time of one ViT training step or inference call goes, op by op.

Runs a few steps under the TensorFlow profiler with one inter-op thread, so
that ops run one at a time and their times add up to the step, then prints
the time per op type, the matrix products' share and their achieved
GFLOP/s, and the throughput the step would reach if everything but the
matrix products took no time at all (the bound that any implementation
of the same model with the same kernels stays under).

    python benchmarks/profile_step.py --config ti16 --policy mixed_bfloat16 \\
        --mode train [--impl keras_hub] [--top 25]
"""

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MATMUL_OPS = (
    "MatMul",
    "BatchMatMul",
    "FusedMatMul",
    "Einsum",
    "Conv2D",
    "Conv2DBackpropFilter",
)


def _is_matmul(op_type):
    return any(name in op_type for name in MATMUL_OPS)


def _op_times(logdir):
    """(op name, op type) -> total milliseconds, from the profiler's trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    (path,) = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    times = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if name.endswith("CpuExecutable::ExecuteAsyncOnStream"):
                    # An XLA-compiled function: keras_vit.fused's kernels.
                    times[("xla", "XLA kernels")] += event.duration_ps / 1e9
                    continue
                if ":" not in name or "::" in name or name.startswith("$"):
                    continue  # Runtime events ("Executor::Run"), not ops.
                op, op_type = name.rsplit(":", 1)
                if not re.fullmatch(r"_?[A-Z][A-Za-z0-9]*", op_type):
                    continue
                times[(op, op_type)] += event.duration_ps / 1e9
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="ti16")
    parser.add_argument("--policy", default="float32")
    parser.add_argument("--mode", choices=("train", "infer"), default="train")
    parser.add_argument(
        "--impl", choices=("keras_vit", "keras_hub"), default="keras_vit"
    )
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf
    import throughput

    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.config.set_dtype_policy(args.policy)
    config = throughput.CONFIGS[args.config]
    batch = config[-1]
    model = throughput._build(args.impl, config)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (batch, config[0], config[0], 3))
    images = tf.constant(images, tf.float32)
    labels = tf.constant(rng.integers(0, config[6], batch))
    if args.mode == "train":
        model.compile(
            optimizer=keras.optimizers.AdamW(1e-4),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        data = tf.data.Dataset.from_tensors((images, labels)).repeat()

        def run(steps):
            model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)

    else:
        fn = tf.function(lambda x: model(x, training=False))

        def run(steps):
            for _ in range(steps):
                np.asarray(fn(images))

    run(2)  # Trace and warm up.
    with tempfile.TemporaryDirectory() as logdir:
        start = time.perf_counter()
        tf.profiler.experimental.start(logdir)
        run(args.steps)
        tf.profiler.experimental.stop()
        wall = (time.perf_counter() - start) / args.steps * 1000
        times = _op_times(logdir)

    per_step = {key: ms / args.steps for key, ms in times.items()}
    by_type = collections.Counter()
    by_scope = collections.Counter()
    for (op, op_type), ms in per_step.items():
        by_type[op_type] += ms
        scope = re.sub(r"StatefulPartitionedCall/", "", op)
        scope = re.sub(r"(encoder_block|transformer_layer)_\d+", r"\1_*", scope)
        by_scope[f"{scope}:{op_type}"] += ms
    total = sum(by_type.values())
    matmul = sum(ms for t, ms in by_type.items() if _is_matmul(t))
    flops = throughput.forward_flops(config) * batch
    flops *= 3 if args.mode == "train" else 1
    print(
        f"{args.impl} {args.config} {args.policy} {args.mode}, batch "
        f"{batch}: {wall:.0f} ms per step under the profiler, ops "
        f"{total:.0f} ms"
    )
    print(
        f"matrix products: {matmul:.0f} ms ({100 * matmul / total:.0f}% of op "
        f"time), {flops / matmul / 1e6:.0f} GFLOP/s while they run"
    )
    print(
        f"everything else: {total - matmul:.0f} ms; with it at zero the step "
        f"would reach {batch / matmul * 1000:.1f} images/s (now "
        f"{batch / total * 1000:.1f} from op time)"
    )
    print("\nop type                              ms/step   share")
    for op_type, ms in by_type.most_common(args.top):
        print(f"{op_type:34s} {ms:9.1f} {100 * ms / total:6.1f}%")
    print("\nop (encoder blocks summed)                         ms/step")
    for name, ms in by_scope.most_common(args.top):
        print(f"{name[-100:]:100s} {ms:8.1f}")


if __name__ == "__main__":
    main()
