"""Int8 files that keep a ViT's accuracy, and choosing one within a budget.

Full int8 quantization hurts ViTs where the arithmetic is fragile:
LayerNorm's statistics, the attention softmax and GELU. Keeping those in
float while the linear layers and attention products run in int8 recovers
most of the loss. Measured on a 5-class CIFAR-10 ViT (BENCHMARKS.md): full
int8 LiteRT 71.6% vs 73.3% float; LayerNorm, softmax and GELU in float
72.9%.

`KEEP_FLOAT` names the groups that can stay float; `CANDIDATES` the sets
measured by `choose`, which picks the smallest file, then the fastest,
whose accuracy is within `max_accuracy_drop` points of the float model's
(sizes within 5% counting as equal, the fastest of them).
"""

import dataclasses
import os
import re
import statistics
import time

import numpy as np

KEEP_FLOAT = ("layer_norm", "softmax", "gelu", "patch_embedding", "head")
# What each candidate keeps in float, cheapest first.
CANDIDATES = {
    "full": (),
    "vit-aware": ("layer_norm", "softmax", "gelu"),
    "vit-aware+ends": KEEP_FLOAT,
}
DEFAULT_KEEP_FLOAT = CANDIDATES["vit-aware"]

# TFLite op types and layer-name patterns of each group. LayerNorm has no
# TFLite op of its own: it is MEAN, SQUARED_DIFFERENCE, RSQRT and
# elementwise ops under the layer's name (`*_norm`, `layer_normalization`).
_TFLITE_OPS = {
    "layer_norm": ("MEAN", "SQUARED_DIFFERENCE", "RSQRT"),
    "softmax": ("SOFTMAX",),
    "gelu": ("GELU",),
}
_ONNX_OPS = {
    "layer_norm": ("LayerNormalization", "ReduceMean"),
    "softmax": ("Softmax",),
    "gelu": ("Erf", "Gelu"),
}
_NAME_PATTERNS = {
    "layer_norm": r"norm",
    "patch_embedding": r"patch_embedding|patch_extractor|tokenizer",
    "head": r"(^|/)head(_\d+)?(/|$)",
}
# The preprocessing inside exported files always stays float.
_ALWAYS = r"(^|/)preprocessing(/|$)"


class AccuracyBudgetError(ValueError):
    """No quantized candidate is within the accuracy budget."""

    def __init__(self, message, measurements):
        super().__init__(message)
        self.measurements = measurements


def check_keep_float(keep_float):
    keep_float = tuple(keep_float or ())
    unknown = [g for g in keep_float if g not in KEEP_FLOAT]
    if unknown:
        raise ValueError(
            f"`keep_float` entries must be among {KEEP_FLOAT}. Received: "
            f"{unknown}"
        )
    return keep_float


def _matches(name, op_type, keep_float, ops_by_group):
    if re.search(_ALWAYS, name):
        return True
    for group in keep_float:
        if op_type in ops_by_group.get(group, ()):
            return True
        pattern = _NAME_PATTERNS.get(group)
        if pattern and re.search(pattern, name):
            return True
    return False


def tflite_ops(flatbuffer):
    """`(output tensor name, op type)` of every op of a `.tflite` model."""
    from export._litert import interpreter as make_interpreter

    interpreter = make_interpreter(model_content=flatbuffer)
    tensors = interpreter.get_tensor_details()
    ops = []
    # LiteRT's Python API lists ops only through this method (as
    # `export.tflite._check_builtin_only` does); pinned by
    # tests/export/test_deployable.py's int8 test.
    for op in interpreter._get_ops_details():
        if not len(op["outputs"]) or op["outputs"][0] < 0:
            continue
        ops.append((tensors[op["outputs"][0]]["name"], op["op_name"]))
    return ops


def tflite_float_nodes(ops, keep_float):
    """Names, among `tflite_ops` of a float model, of the ops kept float."""
    return [
        name
        for name, op_type in ops
        if _matches(name, op_type, keep_float, _TFLITE_OPS)
    ]


def onnx_float_nodes(model_proto, keep_float):
    """Names of the nodes of an ONNX graph to keep float."""
    return [
        node.name
        for node in model_proto.graph.node
        if _matches(node.name, node.op_type, keep_float, _ONNX_OPS)
    ]


def quantize_onnx(source, target, mode, calibration=None, keep_float=()):
    """Writes a quantized copy of the `.onnx` file `source` at `target`.

    `mode="dynamic"`: int8 weights, activations quantized on the fly.
    `mode="int8"`: static QDQ quantization of weights and activations,
    calibrated on `calibration` (the file's own inputs), with the nodes of
    `keep_float` (and the preprocessing) excluded; with LayerNorm kept
    float, only the linear layers and attention products (`MatMul`,
    `Gemm`, `Conv`) are quantized.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic
    from onnxruntime.quantization import quantize_static

    keep_float = check_keep_float(keep_float)
    proto = onnx.load(source, load_external_data=False)
    exclude = onnx_float_nodes(proto, keep_float)
    input_name = proto.graph.input[0].name
    if mode == "dynamic":
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
        )
        return
    if mode != "int8":
        raise ValueError(
            f'ONNX `quantize` must be "dynamic" or "int8". Received: {mode!r}'
        )
    if calibration is None:
        raise ValueError(
            "ONNX int8 calibrates activation ranges on real inputs; pass "
            "representative data. Received: None"
        )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._items = iter(calibration)

        def get_next(self):
            item = next(self._items, None)
            return None if item is None else {input_name: item[None]}

    quantize_static(
        source,
        target,
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude,
        op_types_to_quantize=(
            ["MatMul", "Gemm", "Conv"] if "layer_norm" in keep_float else None
        ),
    )


@dataclasses.dataclass
class Measurement:
    """One candidate file measured on labelled images."""

    candidate: str
    keep_float: tuple
    size_bytes: int
    accuracy: float | None
    agreement: float
    latency_ms: float
    drop: float = 0.0
    within_budget: bool = False

    def to_dict(self):
        return dataclasses.asdict(self)


def measure(path, images, labels, reference, repeats=20):
    """Accuracy, top-1 agreement with `reference` and batch-1 latency.

    `images` are what the file takes (pixels or model inputs), `labels`
    the true classes or `None`, `reference` the float model's predicted
    classes on the same images.
    """
    from export.verify import Runner
    from export.verify import artifact_size

    runner = Runner(path)
    predicted = np.concatenate(
        [
            np.argmax(runner(images[i : i + 64]), -1)
            for i in range(0, len(images), 64)
        ]
    )
    runner(images[:1])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner(images[:1])
        times.append(time.perf_counter() - start)
    return {
        "size_bytes": artifact_size(path),
        "accuracy": None
        if labels is None
        else float(np.mean(predicted == labels) * 100),
        "agreement": float(np.mean(predicted == reference) * 100),
        "latency_ms": statistics.median(times) * 1e3,
    }


def choose(
    build, images, labels, reference, max_accuracy_drop, workdir, suffix
):
    """Builds each candidate, measures it, returns the best within budget.

    Args:
        build: `build(keep_float, path)` writes a candidate file at `path`.
        images: what the files take, for the measurement.
        labels: true classes, or `None`: then the drop is measured as the
            share of images whose top-1 changes (an upper bound on the
            accuracy lost).
        reference: the float model's predicted classes on `images`.
        max_accuracy_drop: float. Points of accuracy a file may lose.
        workdir: folder for the candidate files.
        suffix: their extension, `".tflite"` or `".onnx"`.

    Returns:
        `(path, measurement, measurements)`: the chosen file, its
        measurement, and every candidate's.

    Raises:
        AccuracyBudgetError: no candidate within the budget; the message
            holds every candidate's numbers.
    """
    float_accuracy = (
        None if labels is None else float(np.mean(reference == labels) * 100)
    )
    measurements, paths = [], {}
    for name, keep_float in CANDIDATES.items():
        path = os.path.join(workdir, f"candidate-{name}{suffix}")
        build(keep_float, path)
        numbers = measure(path, images, labels, reference)
        if labels is None:
            drop = 100.0 - numbers["agreement"]
        else:
            drop = float_accuracy - numbers["accuracy"]
        measurements.append(
            Measurement(
                candidate=name,
                keep_float=keep_float,
                drop=drop,
                within_budget=drop <= max_accuracy_drop,
                **numbers,
            )
        )
        paths[name] = path
    fitting = [m for m in measurements if m.within_budget]
    if not fitting:
        raise AccuracyBudgetError(
            f"No int8 file is within {max_accuracy_drop:g} points of the "
            f"float model ({_baseline(float_accuracy, len(images))}): "
            + "; ".join(_describe(m) for m in measurements)
            + ". Raise --max-accuracy-drop, give more calibration images, "
            "or use --quantize dynamic or float16.",
            measurements,
        )
    # Sizes within 5% of the smallest count as equal; among them the
    # fastest wins (full int8 is often the slowest: its quantize and
    # dequantize steps around the float ops cost more than they save).
    smallest = min(m.size_bytes for m in fitting)
    small = [m for m in fitting if m.size_bytes <= smallest * 1.05]
    best = min(small, key=lambda m: (m.latency_ms, m.size_bytes))
    return paths[best.candidate], best, measurements


def _baseline(float_accuracy, count):
    if float_accuracy is None:
        return f"top-1 agreement on {count} unlabelled images"
    return f"{float_accuracy:.2f}% on {count} labelled images"


def _describe(m):
    accuracy = "" if m.accuracy is None else f"{m.accuracy:.2f}%, "
    return (
        f"{m.candidate}: {accuracy}drop {m.drop:.2f}, "
        f"{m.size_bytes / 2**20:.2f} MiB, {m.latency_ms:.2f} ms"
    )


def format_measurements(measurements):
    lines = [
        f"{'candidate':16s} {'kept float':52s} {'MiB':>6s} {'acc %':>6s} "
        f"{'drop':>6s} {'agree %':>7s} {'b=1 ms':>7s}"
    ]
    for m in measurements:
        accuracy = "-" if m.accuracy is None else f"{m.accuracy:.2f}"
        kept = ", ".join(m.keep_float) or "nothing"
        lines.append(
            f"{m.candidate:16s} {kept:52s} {m.size_bytes / 2**20:6.2f} "
            f"{accuracy:>6s} {m.drop:6.2f} {m.agreement:7.2f} "
            f"{m.latency_ms:7.2f}" + ("" if m.within_budget else "  over")
        )
    return "\n".join(lines)
