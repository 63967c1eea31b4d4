"""Latency of exported artifacts and of the Keras model, side by side."""

import json
import os
import statistics
import time

import numpy as np

from export.verify import ORT_OPTIMIZATION
from export.verify import Runner

_RUNTIMES = {
    "saved_model": "tensorflow",
    "tflite": "litert",
    "onnx": "onnxruntime",
}


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
        num_threads: int or `None`. Threads for LiteRT and ONNX Runtime;
            `None`: one per core (`os.cpu_count()`).

    Returns:
        A list of dicts: `runtime`, `artifact`, `threads` (intra-op threads
        it ran with), `batch1_ms`, `batchN_ms`, `images_per_s` (at the
        larger batch), `batch_size`.
    """
    manifest = read_manifest(directory)
    threads = num_threads or os.cpu_count() or 1
    runners = {}
    if model is not None:
        from export._model import serving_function

        serve, _ = serving_function(model)
        runners["keras (tf.function)"] = ("-", serve, _tf_threads(threads))
    for entry in manifest["artifacts"].values():
        runtime = _RUNTIMES[entry["format"]]
        label = runtime + (f" {entry['quantize']}" if entry["quantize"] else "")
        path = os.path.join(directory, entry["file"])
        if entry["format"] == "saved_model":
            runner, settings = Runner(path), _tf_threads(threads)
        else:
            runner, settings = Runner(path, threads), {"threads": threads}
        runners[label] = (entry["file"], runner, settings)
    samples = _interleaved(
        {label: fn for label, (_, fn, _) in runners.items()},
        _inputs(manifest, batch_size),
        repeats,
        warmup,
    )
    rows = []
    for label, (artifact, _, settings) in runners.items():
        one, many = samples[label]
        rows.append(
            {
                "runtime": label,
                "artifact": artifact,
                **settings,
                "batch_size": batch_size,
                "batch1_ms": one * 1e3,
                "batchN_ms": many * 1e3,
                "images_per_s": batch_size / many,
            }
        )
    return rows


def _tf_threads(default):
    import tensorflow as tf

    threads = tf.config.threading.get_intra_op_parallelism_threads()
    return {"threads": threads or default}


def read_manifest(directory):
    """The `manifest.json` of an export folder, as a dict."""
    path = os.path.join(directory, "manifest.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No manifest.json in the folder; expected a folder written by "
            f"`python -m export`. Received: {directory!r}"
        )
    with open(path) as f:
        return json.load(f)


def _inputs(manifest, batch_size):
    """`(pixels, floats)`: batches of 1 and `batch_size` for the artifacts.

    Pixels at the model's size for files with preprocessing inside (the
    resize is then the identity), their float inputs for the others.
    """
    channels = manifest["input"]["shape"][-1]
    steps = manifest.get("preprocessing") or {}
    if steps.get("inside"):
        shape = (*steps["resize"]["size"], channels)
    else:
        shape = manifest["input"]["shape"][1:]
    rng = np.random.default_rng(0)
    pixels = {
        b: rng.integers(0, 256, (b, *shape), dtype=np.uint8)
        for b in (1, batch_size)
    }
    floats = {b: (p / 127.5 - 1.0).astype("float32") for b, p in pixels.items()}
    return pixels, floats


def _interleaved(functions, inputs, repeats, warmup):
    """`{label: (median batch-1 s, median batch-N s)}`, runs interleaved."""
    pixels, floats = inputs

    def batches(fn):
        return pixels if getattr(fn, "raw_images", False) else floats

    for fn in functions.values():
        for images in batches(fn).values():
            _time(fn, images, warmup)
    samples = {(label, b): [] for label in functions for b in pixels}
    for _ in range(repeats):
        for label, fn in functions.items():
            for b, images in batches(fn).items():
                samples[(label, b)] += _time(fn, images, 1)
    one, many = sorted(pixels)
    return {
        label: (
            statistics.median(samples[(label, one)]),
            statistics.median(samples[(label, many)]),
        )
        for label in functions
    }


def thread_counts():
    """The thread counts worth trying here: 1, 2, 4, ... and every core."""
    cores = os.cpu_count() or 1
    counts = {cores}
    count = 1
    while count < cores:
        counts.add(count)
        count *= 2
    return sorted(counts)


def tune(directory, batch_size=8, repeats=10, warmup=2, threads=None):
    """The fastest runtime settings of every TFLite and ONNX file of a folder.

    For each `.tflite` file, LiteRT with each thread count (XNNPACK); for
    each `.onnx` file, onnxruntime with each thread count and graph
    optimization level (`export.verify.ORT_OPTIMIZATION`). The settings of
    one file are timed interleaved, at batch 1 and `batch_size`, on this
    machine.

    Args:
        directory: str. A folder written by `python -m export`.
        batch_size: int. The larger batch. Defaults to `8`.
        repeats: int. Timed calls per setting and batch. Defaults to `10`.
        warmup: int. Untimed calls first. Defaults to `2`.
        threads: list of int, or `None` for `thread_counts()`.

    Returns:
        `{file: {"batch1": settings, "batchN": settings, "batch_size": N,
        "measured": rows}}` where `settings` holds `threads` (and
        `optimization` for ONNX) and the median milliseconds `ms`, and
        `rows` every setting's `batch1_ms` and `batchN_ms`.
    """
    manifest = read_manifest(directory)
    inputs = _inputs(manifest, batch_size)
    counts = list(threads or thread_counts())
    if not counts or any(
        isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in counts
    ):
        raise ValueError(
            f"`threads` must be positive ints. Received: threads={threads!r}"
        )
    results = {}
    for entry in manifest["artifacts"].values():
        if entry["format"] == "tflite":
            settings = [{"threads": t} for t in counts]
        elif entry["format"] == "onnx":
            settings = [
                {"threads": t, "optimization": level}
                for t in counts
                for level in ORT_OPTIMIZATION
            ]
        else:
            continue
        path = os.path.join(directory, entry["file"])
        functions = {
            i: Runner(path, s["threads"], s.get("optimization"))
            for i, s in enumerate(settings)
        }
        timed = _interleaved(functions, inputs, repeats, warmup)
        del functions
        rows = [
            {
                **s,
                "batch1_ms": timed[i][0] * 1e3,
                "batchN_ms": timed[i][1] * 1e3,
            }
            for i, s in enumerate(settings)
        ]
        best = {}
        for key in ("batch1", "batchN"):
            row = min(rows, key=lambda r: r[f"{key}_ms"])
            best[key] = {
                **{k: v for k, v in row.items() if not k.endswith("_ms")},
                "ms": row[f"{key}_ms"],
            }
        results[entry["file"]] = {
            **best,
            "batch_size": batch_size,
            "measured": rows,
        }
    return results


def format_tuning(results):
    """`tune`'s results as a text table: the best setting per batch size."""
    if not results:
        return "(no TFLite or ONNX file to tune)"
    n = next(iter(results.values()))["batch_size"]
    header = (
        f"{'artifact':24s} {'batch':>6s} {'threads':>8s} {'onnx opt':>9s} "
        f"{'ms':>9s}"
    )
    lines = [header, "-" * len(header)]
    for name, result in results.items():
        for key, batch in (("batch1", 1), ("batchN", n)):
            best = result[key]
            lines.append(
                f"{name:24s} {batch:6d} {best['threads']:8d} "
                f"{best.get('optimization', '-'):>9s} {best['ms']:9.2f}"
            )
    return "\n".join(lines)


def format_bench(rows):
    """The benchmark rows as a text table."""
    if not rows:
        return "(nothing to time)"
    n = rows[0]["batch_size"]
    header = (
        f"{'runtime':24s} {'artifact':24s} {'threads':>7s} {'b=1 ms':>8s} "
        f"{f'b={n} ms':>9s} {'images/s':>9s}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['runtime']:24s} {r['artifact']:24s} {r['threads']:7d} "
            f"{r['batch1_ms']:8.2f} {r['batchN_ms']:9.2f} "
            f"{r['images_per_s']:9.1f}"
        )
    return "\n".join(lines)
