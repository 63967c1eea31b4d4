"""How much memory an export needs, checked before any work starts."""

import os

import numpy as np

GIB = 2**30

# What one export adds to a process that holds the loaded model, as
# `(multiple of the float32 weight bytes, fixed bytes)`: measured from Ti/16
# to L/16 by `benchmarks/export_memory.py` (BENCHMARKS.md, "Export
# memory") and rounded up. TFLite's is TensorFlow's converter's own (it
# holds the weights as constants, transposed, and as the flatbuffer).
ADDED_MEMORY = {
    "saved_model": (2.5, GIB // 2),
    "tflite": (6.5, GIB // 2),
    "onnx": (4.0, GIB // 2),
}

# A quantized file is made from the float one, which is converted first.
QUANTIZED_EXTRA = 1.0

# A flatbuffer cannot exceed 2 GiB; TFLite files hold their weights inside.
TFLITE_LIMIT = 2**31 - 1
_TFLITE_BYTES_PER_WEIGHT = {
    None: 1.0,
    "float16": 0.5,
    "dynamic": 0.25,
    "int8": 0.25,
}

SKIP_VARIABLE = "KERAS_VIT_SKIP_MEMORY_CHECK"


class ExportMemoryError(MemoryError):
    """The export would need more memory than this machine has free."""


def weight_bytes(model):
    """Bytes of the model's weights, as float32 (what the exports hold)."""
    return sum(
        int(np.prod(w.shape)) * max(4, np.dtype(w.dtype).itemsize)
        for w in getattr(model, "weights", ())
    )


def available_memory():
    """Memory free for a new allocation (Linux `MemAvailable`), or `None`."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def needed_memory(model, fmt, quantize=None):
    """Bytes an export of `model` to `fmt` is expected to add."""
    multiple, fixed = ADDED_MEMORY[fmt]
    if quantize is not None:
        multiple += QUANTIZED_EXTRA
    return int(multiple * weight_bytes(model)) + fixed


def _gib(size):
    return f"{size / GIB:.1f} GiB"


def check_tflite_size(model, quantize=None):
    """Raises a `ValueError` for a model too large for one TFLite file."""
    size = int(weight_bytes(model) * _TFLITE_BYTES_PER_WEIGHT[quantize])
    if size > TFLITE_LIMIT:
        kind = "float32" if quantize is None else quantize
        raise ValueError(
            "A TFLite file holds at most 2 GiB (one flatbuffer); this model's "
            f"weights in {kind} take {_gib(size)}. Export it to ONNX (its "
            "weights go to a .data file beside it) or a SavedModel, or to "
            'TFLite with quantize="float16" or "dynamic" where that fits.'
        )


def check_memory(model, jobs):
    """Raises `ExportMemoryError` if any export would not fit in memory.

    `jobs`: `(format, quantize)` pairs. Each export runs after the previous
    one released its memory, so the largest one must fit in what is free
    now. Set the environment variable `KERAS_VIT_SKIP_MEMORY_CHECK=1` to
    try anyway.
    """
    if os.environ.get(SKIP_VARIABLE, "") not in ("", "0"):
        return
    available = available_memory()
    if available is None:
        return
    fmt, quantize = max(jobs, key=lambda job: needed_memory(model, *job))
    needed = needed_memory(model, fmt, quantize)
    if needed > available:
        multiple = ADDED_MEMORY[fmt][0]
        name = fmt if quantize is None else f"{fmt} ({quantize})"
        raise ExportMemoryError(
            f"Exporting this model to {name} needs about {_gib(needed)} of "
            f"memory (about {multiple:g}x its {_gib(weight_bytes(model))} of "
            f"weights, measured), but {_gib(available)} is available. Free "
            "memory, export fewer formats per run, or use a machine with "
            f"more; set {SKIP_VARIABLE}=1 to try anyway."
        )
