"""Training and inference images/s of keras_vit and keras-hub's ViT, compared.

Every measurement runs in its own process; the two implementations alternate
within each repeat, and the table reports medians and the keras_vit/keras-hub
ratio. The same run measures this machine's float32 and bfloat16 matmul rate
and reports each configuration's achieved GFLOP/s as a fraction of it.

    pip install keras-hub          # only for this benchmark
    python benchmarks/throughput.py --configs ti16 --policies float32 \
        --xla off --repeats 3 [--json results.json]

Configurations: ti16 (Ti/16 at 224, batch 32), s16 (S/16 at 224, batch 16),
cifar (32x32, patch 4, width 192, depth 6, batch 128), tiny (a smoke test).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CONFIGS = {
    # image, patch, width, depth, heads, mlp, classes, batch
    "ti16": (224, 16, 192, 12, 3, 768, 1000, 32),
    "s16": (224, 16, 384, 12, 6, 1536, 1000, 16),
    "cifar": (32, 4, 192, 6, 3, 384, 10, 128),
    "tiny": (32, 8, 32, 2, 2, 64, 10, 8),
}


def forward_flops(config):
    """Multiply-adds x 2 of one image's forward pass (matmuls only)."""
    image, patch, width, depth, _, mlp, classes, _ = config
    patches = (image // patch) ** 2
    tokens = patches + 1
    flops = 2 * patches * patch * patch * 3 * width  # patch embedding
    per_block = (
        2 * tokens * width * 3 * width  # query, key, value
        + 2 * 2 * tokens * tokens * width  # scores and weighted sum
        + 2 * tokens * width * width  # output projection
        + 2 * 2 * tokens * width * mlp  # MLP
    )
    return flops + depth * per_block + 2 * width * classes


def _build(impl, config):
    image, patch, width, depth, heads, mlp, classes, _ = config
    if impl == "keras_vit":
        import keras_vit

        return keras_vit.build_vit(
            image_size=image,
            patch_size=patch,
            hidden_dim=width,
            depth=depth,
            num_heads=heads,
            mlp_dim=mlp,
            num_classes=classes,
        )
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(image, image, 3),
        patch_size=patch,
        num_layers=depth,
        num_heads=heads,
        hidden_dim=width,
        mlp_dim=mlp,
    )
    return keras_hub.models.ViTImageClassifier(
        backbone=backbone, num_classes=classes, pooling="token"
    )


def worker(args):
    """One measurement, printed as JSON."""
    import keras
    import numpy as np
    import tensorflow as tf

    if args.matmul:
        dtype = tf.float32 if args.matmul == "float32" else tf.bfloat16
        a = tf.random.normal((2048, 2048), dtype=tf.float32)
        a = tf.cast(a, dtype)
        fn = tf.function(lambda x: tf.matmul(x, x))
        for _ in range(3):
            fn(a).numpy()
        start = time.perf_counter()
        for _ in range(10):
            fn(a).numpy()
        seconds = (time.perf_counter() - start) / 10
        print(json.dumps({"gflops": 2 * 2048**3 / seconds / 1e9}))
        return
    config = CONFIGS[args.config]
    batch = config[-1]
    keras.config.set_dtype_policy(args.policy)
    keras.utils.set_random_seed(0)
    model = _build(args.impl, config)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (batch, config[0], config[0], 3))
    images = images.astype("float32")
    labels = rng.integers(0, config[6], batch)
    if args.mode == "train":
        model.compile(
            optimizer=keras.optimizers.AdamW(1e-4),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=args.xla == "on",
        )
        data = tf.data.Dataset.from_tensors((images, labels)).repeat()
        model.fit(data, steps_per_epoch=args.warmup, epochs=1, verbose=0)
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
        seconds = time.perf_counter() - start
    else:
        fn = tf.function(
            lambda x: model(x, training=False), jit_compile=args.xla == "on"
        )
        x = tf.constant(images)
        for _ in range(args.warmup):
            np.asarray(fn(x))
        start = time.perf_counter()
        for _ in range(args.steps):
            np.asarray(fn(x))
        seconds = time.perf_counter() - start
    print(json.dumps({"images_per_s": args.steps * batch / seconds}))


def _run(argv, timeout):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if result.returncode:
        raise RuntimeError(f"{argv} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def driver(args):
    peaks = {
        dtype: statistics.median(
            _run(["--matmul", dtype], 600)["gflops"] for _ in range(3)
        )
        for dtype in ("float32", "bfloat16")
    }
    print(
        f"matmul 2048^3: float32 {peaks['float32']:.0f} GFLOP/s, bfloat16 "
        f"{peaks['bfloat16']:.0f} GFLOP/s",
        flush=True,
    )
    rows = []
    for config in args.configs:
        for policy in args.policies:
            for xla in args.xla:
                times = {}
                for repeat in range(args.repeats):
                    order = ["keras_vit", "keras_hub"]
                    if repeat % 2:
                        order.reverse()
                    for impl in order:
                        for mode in ("train", "infer"):
                            steps = (
                                args.steps
                                if mode == "train"
                                else 3 * args.steps
                            )
                            value = _run(
                                [
                                    "--impl",
                                    impl,
                                    "--config",
                                    config,
                                    "--policy",
                                    policy,
                                    "--xla",
                                    xla,
                                    "--mode",
                                    mode,
                                    "--steps",
                                    str(steps),
                                    "--warmup",
                                    str(args.warmup),
                                ],
                                args.timeout,
                            )["images_per_s"]
                            times.setdefault((impl, mode), []).append(value)
                flops = forward_flops(CONFIGS[config])
                peak = peaks["float32" if policy == "float32" else "bfloat16"]
                row = {"config": config, "policy": policy, "xla": xla}
                for (impl, mode), values in times.items():
                    median = statistics.median(values)
                    row[f"{impl}_{mode}"] = median
                    work = flops * (3 if mode == "train" else 1)
                    row[f"{impl}_{mode}_peak_fraction"] = (
                        median * work / 1e9 / peak
                    )
                for mode in ("train", "infer"):
                    row[f"ratio_{mode}"] = (
                        row[f"keras_vit_{mode}"] / row[f"keras_hub_{mode}"]
                    )
                rows.append(row)
                print(_format_row(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peaks_gflops": peaks, "rows": rows}, f, indent=2)
    return rows


def _format_row(r):
    return (
        f"{r['config']:6s} {r['policy']:15s} xla={r['xla']:3s} | train "
        f"keras_vit {r['keras_vit_train']:7.1f} keras-hub "
        f"{r['keras_hub_train']:7.1f} ratio {r['ratio_train']:.2f} "
        f"({100 * r['keras_vit_train_peak_fraction']:.0f}% of peak) | infer "
        f"keras_vit {r['keras_vit_infer']:7.1f} keras-hub "
        f"{r['keras_hub_infer']:7.1f} ratio {r['ratio_infer']:.2f}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--matmul", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--policy", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["ti16", "s16", "cifar"],
        choices=sorted(CONFIGS),
    )
    parser.add_argument(
        "--policies", nargs="+", default=["float32", "mixed_bfloat16"]
    )
    parser.add_argument("--xla", nargs="+", default=["off", "on"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument("--json", help="write the table as JSON")
    args = parser.parse_args()
    if args.worker:
        args.xla = args.xla[0] if isinstance(args.xla, list) else args.xla
        worker(args)
    else:
        driver(args)


if __name__ == "__main__":
    main()
