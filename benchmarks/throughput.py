"""Training and inference images/s of keras_vit and keras-hub's ViT, compared.

Every measurement runs in its own process; the two implementations alternate
within each repeat. A process times each training step (`model.fit`, with a
callback) or each compiled inference call, and reports the median step, so a
slow moment of the machine moves one step, not the result. The tables give
the median over repeats and the median of the per-repeat keras_vit/keras-hub
ratios. The same run measures this machine's float32 and bfloat16 matmul
rate and reports each configuration's achieved matmul GFLOP/s as a fraction
of it.

    pip install keras-hub          # only for this benchmark
    python benchmarks/throughput.py --configs ti16 --policies float32 \\
        mixed_bfloat16 --xla off on --repeats 3 --default --pipeline \\
        --json results.json

`--default` adds `keras-vit train`'s own setting (`--precision auto`, the
CLI's optimizer and loss, no XLA) and compares it with keras-hub's best row.
`--pipeline` compares `fit` from an image folder (`keras_vit.data`, JPEG
files decoded, resized and cached, with and without the CLI's crop and flip
augmentation) with `fit` from in-memory tensors.

Configurations: ti16 (Ti/16 at 224, batch 32), s16 (S/16 at 224, batch 16),
cifar (32x32, patch 4, width 192, depth 6, batch 128), tiny (a smoke test).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
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


def _matmul_rate(dtype_name):
    import tensorflow as tf

    dtype = tf.float32 if dtype_name == "float32" else tf.bfloat16
    a = tf.cast(tf.random.normal((2048, 2048)), dtype)
    fn = tf.function(lambda x: tf.matmul(x, x))
    for _ in range(3):
        fn(a).numpy()
    times = []
    for _ in range(15):
        start = time.perf_counter()
        fn(a).numpy()
        times.append(time.perf_counter() - start)
    return 2 * 2048**3 / statistics.median(times) / 1e9


def write_image_folder(folder, count, size, classes=4, seed=0):
    """Writes `count` JPEG files of `size`x`size` pixels in class folders."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    for i in range(count):
        label = i % classes
        os.makedirs(os.path.join(folder, f"class_{label}"), exist_ok=True)
        # Smooth noise compresses like a photograph, not like white noise.
        small = rng.integers(0, 256, (size // 8, size // 8, 3), np.uint8)
        image = tf.image.resize(small, (size, size), method="bicubic")
        image = tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)
        path = os.path.join(folder, f"class_{label}", f"{i:05d}.jpg")
        tf.io.write_file(path, tf.io.encode_jpeg(image, quality=90))


def _train_data(args, config, one_hot):
    import numpy as np
    import tensorflow as tf

    image, classes, batch = config[0], config[6], config[-1]
    if args.data == "memory":
        rng = np.random.default_rng(0)
        images = rng.uniform(-1, 1, (batch, image, image, 3)).astype("float32")
        labels = rng.integers(0, classes, batch)
        if one_hot:
            labels = np.eye(classes, dtype="float32")[labels]
        return tf.data.Dataset.from_tensors((images, labels)).repeat(), classes
    from keras_vit.data import load_datasets

    data = load_datasets(
        args.folder,
        image_size=image,
        batch_size=batch,
        validation_split=0.0,
        test_split=0.0,
        augment=("crop", "flip") if args.data == "folder-augment" else (),
        one_hot=one_hot,
    )
    return data.train.repeat(), data.num_classes


def worker(args):
    """One measurement, printed as JSON."""
    import keras
    import numpy as np
    import tensorflow as tf

    if args.matmul:
        print(json.dumps({"gflops": _matmul_rate(args.matmul)}))
        return
    config = CONFIGS[args.config]
    batch = config[-1]
    policy = args.policy
    if policy == "auto":
        from keras_vit.training import hardware_precision

        policy = hardware_precision(config[2])
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    jit = args.xla == "on"
    times = []
    if args.mode == "train":
        data, classes = _train_data(args, config, args.recipe == "cli")
        config = (*config[:6], classes, batch)
        model = _build(args.impl, config)
        if args.recipe == "cli":
            from keras_vit.training import compile_for_training

            compile_for_training(
                model, total_steps=1000, warmup_steps=100, jit_compile=jit
            )
        else:
            model.compile(
                optimizer=keras.optimizers.AdamW(1e-4),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True
                ),
                jit_compile=jit,
            )

        class StepTimer(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                self.start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                times.append(time.perf_counter() - self.start)

        model.fit(
            data,
            steps_per_epoch=args.warmup + args.steps,
            epochs=1,
            verbose=0,
            callbacks=[StepTimer()],
        )
    else:
        model = _build(args.impl, config)
        rng = np.random.default_rng(0)
        images = rng.uniform(-1, 1, (batch, config[0], config[0], 3))
        if keras.backend.backend() == "tensorflow":
            fn = tf.function(
                lambda x: model(x, training=False), jit_compile=jit
            )
            x = tf.constant(images, tf.float32)
        else:  # The backend's own compiled predict step (jax.jit, ...).
            model.compile(jit_compile=jit)
            fn = model.predict_on_batch
            x = keras.ops.convert_to_tensor(images.astype("float32"))
        for _ in range(args.warmup + args.steps):
            start = time.perf_counter()
            np.asarray(fn(x))
            times.append(time.perf_counter() - start)
    measured = times[args.warmup :]
    print(
        json.dumps(
            {
                "images_per_s": batch / statistics.median(measured),
                "mean_images_per_s": batch * len(measured) / sum(measured),
                "policy": policy,
            }
        )
    )


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


def _measure(args, impl, config, policy, xla, mode, **extra):
    steps = args.steps if mode == "train" else 3 * args.steps
    argv = [
        "--impl", impl, "--config", config, "--policy", policy,
        "--xla", xla, "--mode", mode, "--steps", str(steps),
        "--warmup", str(args.warmup),
    ]  # fmt: skip
    for key, value in extra.items():
        argv += [f"--{key}", str(value)]
    return _run(argv, args.timeout)


def _peak_fraction(images_per_s, config, mode, policy, peaks):
    """Achieved matmul GFLOP/s over the measured rate of the policy's dtype."""
    work = forward_flops(CONFIGS[config]) * (3 if mode == "train" else 1)
    peak = peaks["float32" if policy == "float32" else "bfloat16"]
    return images_per_s * work / 1e9 / peak


def _comparison_rows(args, peaks, log):
    rows = []
    for config in args.configs:
        for policy in args.policies:
            for xla in args.xla:
                values = {}
                for repeat in range(args.repeats):
                    order = ["keras_vit", "keras_hub"]
                    if repeat % 2:
                        order.reverse()
                    for impl in order:
                        for mode in ("train", "infer"):
                            result = _measure(
                                args, impl, config, policy, xla, mode
                            )
                            values.setdefault((impl, mode), []).append(
                                result["images_per_s"]
                            )
                row = {"config": config, "policy": policy, "xla": xla}
                for (impl, mode), runs in values.items():
                    median = statistics.median(runs)
                    row[f"{impl}_{mode}"] = median
                    row[f"{impl}_{mode}_runs"] = runs
                    row[f"{impl}_{mode}_peak_fraction"] = _peak_fraction(
                        median, config, mode, policy, peaks
                    )
                for mode in ("train", "infer"):
                    ratios = [
                        a / b
                        for a, b in zip(
                            values[("keras_vit", mode)],
                            values[("keras_hub", mode)],
                        )
                    ]
                    row[f"ratio_{mode}"] = statistics.median(ratios)
                rows.append(row)
                log(_format_row(row))
    return rows


def _default_rows(args, rows, peaks, log):
    """`keras-vit train`'s setting against keras-hub's best measured row."""
    out = []
    for config in args.configs:
        measured = [r for r in rows if r["config"] == config]
        if not measured:
            continue
        row = {"config": config}
        for mode in ("train", "infer"):
            best = max(measured, key=lambda r: r[f"keras_hub_{mode}"])
            runs, policy = [], None
            for _ in range(args.repeats):
                extra = {"recipe": "cli"} if mode == "train" else {}
                result = _measure(
                    args, "keras_vit", config, "auto", "off", mode, **extra
                )
                runs.append(result["images_per_s"])
                policy = result["policy"]
            median = statistics.median(runs)
            hub = best[f"keras_hub_{mode}"]
            row.update(
                {
                    f"policy_{mode}": policy,
                    f"keras_vit_{mode}": median,
                    f"keras_vit_{mode}_runs": runs,
                    f"keras_vit_{mode}_peak_fraction": _peak_fraction(
                        median, config, mode, policy, peaks
                    ),
                    f"keras_hub_best_{mode}": hub,
                    f"keras_hub_best_{mode}_setting": (
                        f"{best['policy']}, xla {best['xla']}"
                    ),
                    f"ratio_{mode}": median / hub,
                }
            )
        out.append(row)
        log(
            f"{config:6s} keras-vit train default ({row['policy_train']}) | "
            f"train {row['keras_vit_train']:7.1f} vs keras-hub best "
            f"{row['keras_hub_best_train']:7.1f} "
            f"({row['keras_hub_best_train_setting']}) ratio "
            f"{row['ratio_train']:.2f} | infer {row['keras_vit_infer']:7.1f} "
            f"vs {row['keras_hub_best_infer']:7.1f} "
            f"({row['keras_hub_best_infer_setting']}) ratio "
            f"{row['ratio_infer']:.2f}"
        )
    return out


def _pipeline_rows(args, log):
    """`fit` from an image folder vs from in-memory tensors, same model."""
    out = []
    for config in args.configs:
        image, batch = CONFIGS[config][0], CONFIGS[config][-1]
        with tempfile.TemporaryDirectory() as folder:
            # Photographs are larger than the model's input: resized once,
            # then cached by keras_vit.data.
            count = batch * args.pipeline_batches
            _run(
                [
                    "--write-folder", folder, "--count", str(count),
                    "--size", str(image + image // 7),
                ],
                args.timeout,
            )  # fmt: skip
            values = {}
            for _ in range(args.repeats):
                for data in ("memory", "folder", "folder-augment"):
                    # Steps span several epochs: the first one decodes.
                    result = _measure(
                        args, "keras_vit", config, "auto", "off", "train",
                        recipe="cli", data=data, folder=folder,
                    )  # fmt: skip
                    values.setdefault(data, []).append(result)
        row = {"config": config, "images": count, "policy": result["policy"]}
        for data, results in values.items():
            row[data] = statistics.median([r["images_per_s"] for r in results])
            row[f"{data}_mean"] = statistics.median(
                [r["mean_images_per_s"] for r in results]
            )
        for data in ("folder", "folder-augment"):
            row[f"{data}_cost"] = 1 - row[data] / row["memory"]
            row[f"{data}_mean_cost"] = (
                1 - row[f"{data}_mean"] / row["memory_mean"]
            )
        out.append(row)
        log(
            f"{config:6s} fit from memory {row['memory']:7.1f} | folder "
            f"{row['folder']:7.1f} ({100 * row['folder_cost']:+.1f}% cost) | "
            f"folder + crop,flip {row['folder-augment']:7.1f} "
            f"({100 * row['folder-augment_cost']:+.1f}% cost)"
        )
    return out


def driver(args):
    def log(text):
        print(text, flush=True)

    peaks = {
        dtype: statistics.median(
            _run(["--matmul", dtype], 600)["gflops"] for _ in range(3)
        )
        for dtype in ("float32", "bfloat16")
    }
    log(
        f"matmul 2048^3: float32 {peaks['float32']:.0f} GFLOP/s, bfloat16 "
        f"{peaks['bfloat16']:.0f} GFLOP/s"
    )
    results = {"peaks_gflops": peaks, "args": vars(args)}
    results["rows"] = _comparison_rows(args, peaks, log)
    if args.default:
        results["default"] = _default_rows(args, results["rows"], peaks, log)
    if args.pipeline:
        results["pipeline"] = _pipeline_rows(args, log)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


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
    hidden = argparse.SUPPRESS
    parser.add_argument("--worker", action="store_true", help=hidden)
    parser.add_argument("--matmul", help=hidden)
    parser.add_argument("--impl", help=hidden)
    parser.add_argument("--config", help=hidden)
    parser.add_argument("--policy", default="float32", help=hidden)
    parser.add_argument("--mode", help=hidden)
    parser.add_argument("--recipe", default="plain", help=hidden)
    parser.add_argument("--data", default="memory", help=hidden)
    parser.add_argument("--folder", help=hidden)
    parser.add_argument("--write-folder", help=hidden)
    parser.add_argument("--count", type=int, help=hidden)
    parser.add_argument("--size", type=int, help=hidden)
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
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument(
        "--default",
        action="store_true",
        help="also measure `keras-vit train`'s default setting",
    )
    parser.add_argument(
        "--pipeline",
        action="store_true",
        help="also measure fit from an image folder vs in-memory tensors",
    )
    parser.add_argument(
        "--pipeline-batches",
        type=int,
        default=4,
        help="batches per epoch of the image folder (default 4)",
    )
    parser.add_argument("--json", help="write the results as JSON")
    args = parser.parse_args()
    if args.write_folder:
        write_image_folder(args.write_folder, args.count, args.size)
        print(json.dumps({"written": args.count}))
    elif args.worker:
        args.xla = args.xla[0] if isinstance(args.xla, list) else args.xla
        worker(args)
    else:
        driver(args)


if __name__ == "__main__":
    main()
