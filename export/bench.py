"""Latency of exported artifacts and of the Keras model, side by side."""

import json
import os
import statistics
import time

import numpy as np

from export.verify import Runner


def _time(fn, images, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(images)
        times.append(time.perf_counter() - start)
    return times


def benchmark(
    directory, model=None, batch_size=8, repeats=20, warmup=3, num_threads=None
):
    """Median latency at batch 1 and `batch_size` of every artifact.

    Runtimes are interleaved within each repeat (Keras, SavedModel, each
    TFLite file, ONNX Runtime, then again), so that a slower moment of the
    machine touches all of them alike.

    Args:
        directory: str. A folder written by `python -m export`.
        model: a `keras.Model` or `None`. Also times the Keras model, as a
            compiled `tf.function` (what `predict` runs).
        batch_size: int. The larger batch. Defaults to `8`.
        repeats: int. Timed calls per runtime and batch size. Defaults to
            `20`.
        warmup: int. Untimed calls first. Defaults to `3`.
        num_threads: int or `None`. Threads for LiteRT and ONNX Runtime.

    Returns:
        A list of dicts: `runtime`, `artifact`, `batch1_ms`, `batchN_ms`,
        `images_per_s` (at the larger batch), `batch_size`.
    """
    manifest_path = os.path.join(directory, "manifest.json")
    if not os.path.isfile(manifest_path):
        raise FileNotFoundError(
            f"No manifest.json in the folder; expected a folder written by "
            f"`python -m export`. Received: {directory!r}"
        )
    with open(manifest_path) as f:
        manifest = json.load(f)
    channels = manifest["input"]["shape"][-1]
    steps = manifest.get("preprocessing") or {}
    if steps.get("inside"):
        shape = (*steps["resize"]["size"], channels)
    else:
        shape = manifest["input"]["shape"][1:]
    runners = {}
    if model is not None:
        from export._model import serving_function

        serve, _ = serving_function(model)
        runners["keras (tf.function)"] = ("-", serve)
    for name, entry in manifest["artifacts"].items():
        runtime = {
            "saved_model": "tensorflow",
            "tflite": "litert",
            "onnx": "onnxruntime",
        }[entry["format"]]
        label = runtime + (f" {entry['quantize']}" if entry["quantize"] else "")
        runner = Runner(os.path.join(directory, entry["file"]), num_threads)
        runners[label] = (entry["file"], runner)
    # Pixels at the model's size for files with preprocessing inside (the
    # resize is then the identity), their float inputs for the others.
    rng = np.random.default_rng(0)
    pixels = {
        b: rng.integers(0, 256, (b, *shape), dtype=np.uint8)
        for b in (1, batch_size)
    }
    floats = {b: (p / 127.5 - 1.0).astype("float32") for b, p in pixels.items()}

    def batches(fn):
        return pixels if getattr(fn, "raw_images", False) else floats

    for _, fn in runners.values():
        for images in batches(fn).values():
            _time(fn, images, warmup)
    samples = {(label, b): [] for label in runners for b in pixels}
    for _ in range(repeats):
        for label, (_, fn) in runners.items():
            for b, images in batches(fn).items():
                samples[(label, b)] += _time(fn, images, 1)
    rows = []
    for label, (artifact, _) in runners.items():
        one = statistics.median(samples[(label, 1)])
        many = statistics.median(samples[(label, batch_size)])
        rows.append(
            {
                "runtime": label,
                "artifact": artifact,
                "batch_size": batch_size,
                "batch1_ms": one * 1e3,
                "batchN_ms": many * 1e3,
                "images_per_s": batch_size / many,
            }
        )
    return rows


def format_bench(rows):
    """The benchmark rows as a text table."""
    if not rows:
        return "(nothing to time)"
    n = rows[0]["batch_size"]
    header = (
        f"{'runtime':24s} {'artifact':24s} {'b=1 ms':>8s} "
        f"{f'b={n} ms':>9s} {'images/s':>9s}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['runtime']:24s} {r['artifact']:24s} {r['batch1_ms']:8.2f} "
            f"{r['batchN_ms']:9.2f} {r['images_per_s']:9.1f}"
        )
    return "\n".join(lines)
