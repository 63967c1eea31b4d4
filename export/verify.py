"""Reloads an artifact in its own runtime and compares it with the model."""

import dataclasses
import os

import numpy as np

FLOAT_TOLERANCE = 1e-4

FORMATS = ("saved_model", "tflite", "onnx")


class VerificationError(RuntimeError):
    """An exported artifact does not compute what the Keras model computes.

    The `report` attribute holds the `VerificationReport` that failed.
    """

    def __init__(self, report):
        super().__init__(
            f"The {report.format} artifact does not match the Keras model: "
            f"{report.failure}. Nothing was written at {report.path!r}."
        )
        self.report = report


@dataclasses.dataclass
class VerificationReport:
    """How closely an artifact reproduces the Keras model.

    Attributes:
        format: `"saved_model"`, `"tflite"` or `"onnx"`.
        path: where the artifact is (or would have been) written.
        quantize: the TFLite quantization mode, or `None`.
        size_bytes: size of the artifact on disk (all its files).
        max_abs_diff: `{batch_size: max |artifact - model|}` per batch size.
        top1_agreement: fraction of samples whose argmax agrees.
        criterion: what must hold to pass, in words.
        passed: whether it held.
        forced: written although it did not pass, because it was forced.
    """

    format: str
    path: str
    quantize: str | None
    size_bytes: int
    max_abs_diff: dict
    top1_agreement: float
    criterion: str
    passed: bool
    forced: bool = False

    @property
    def failure(self):
        worst = max(self.max_abs_diff.values())
        return (
            f"max abs diff {worst:.3g}, top-1 agreement "
            f"{self.top1_agreement:.3f}, required {self.criterion}"
        )

    def to_dict(self):
        data = dataclasses.asdict(self)
        data["max_abs_diff"] = {
            str(k): float(v) for k, v in self.max_abs_diff.items()
        }
        return data


def artifact_format(path):
    """Tells an artifact's format from its path."""
    path = os.fspath(path)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return "saved_model"
        raise ValueError(
            f"The folder is not a SavedModel (no saved_model.pb): {path!r}"
        )
    if not os.path.exists(path):
        raise FileNotFoundError(f"No artifact at the given path: {path!r}")
    if path.endswith(".tflite"):
        return "tflite"
    if path.endswith(".onnx"):
        return "onnx"
    raise ValueError(
        "Unknown artifact format; expected a SavedModel folder, a .tflite or "
        f"an .onnx file. Received: {path!r}"
    )


def artifact_size(path):
    """Bytes on disk of an artifact, with its folder or external data."""
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(root, name))
            for root, _, names in os.walk(path)
            for name in names
        )
    size = os.path.getsize(path)
    if os.path.isfile(path + ".data"):
        size += os.path.getsize(path + ".data")
    return size


class Runner:
    """Runs an artifact on a float32 image batch in its own runtime."""

    def __init__(self, path, num_threads=None):
        self.path = os.fspath(path)
        self.format = artifact_format(self.path)
        if self.format == "saved_model":
            import tensorflow as tf

            self._tf = tf
            loaded = tf.saved_model.load(self.path)
            if "serving_default" not in loaded.signatures:
                raise ValueError(
                    "The SavedModel has no `serving_default` signature. "
                    f"Received: signatures {list(loaded.signatures)}"
                )
            self._loaded = loaded  # Keeps the variables alive.
            self._fn = loaded.signatures["serving_default"]
        elif self.format == "tflite":
            from ai_edge_litert.interpreter import Interpreter

            self._interpreter = Interpreter(
                model_path=self.path, num_threads=num_threads
            )
            self._fn = self._interpreter.get_signature_runner()
        else:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            if num_threads:
                options.intra_op_num_threads = num_threads
            self._session = onnxruntime.InferenceSession(
                self.path, options, providers=["CPUExecutionProvider"]
            )
            self._input_name = self._session.get_inputs()[0].name

    def __call__(self, images):
        images = np.ascontiguousarray(images, dtype=np.float32)
        if self.format == "saved_model":
            out = self._fn(images=self._tf.constant(images))["logits"]
            return out.numpy()
        if self.format == "tflite":
            return self._fn(images=images)["logits"]
        return self._session.run(None, {self._input_name: images})[0]


def default_samples(image_shape, count=8, seed=0):
    """Uniform [-1, 1] images, used when no verification data is given."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(count, *image_shape)).astype("float32")


def check_samples(samples, image_shape, name="samples"):
    """Returns `samples` as a float32 array of the model's image shape."""
    array = np.asarray(samples)
    dims = ", ".join(map(str, image_shape))
    if array.ndim != 4 or tuple(array.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"`{name}` must be images of shape (N, {dims}) for this model. "
            f"Received: shape {array.shape}"
        )
    if len(array) < 2:
        raise ValueError(
            f"`{name}` must hold at least 2 images, to check batch 1 and a "
            f"larger batch. Received: {len(array)}"
        )
    return array.astype("float32")


def verify(
    model,
    artifact,
    samples,
    *,
    tolerance=FLOAT_TOLERANCE,
    min_top1_agreement=None,
    quantize=None,
):
    """Compares an exported artifact with `model(samples)`.

    The artifact is loaded in its own runtime (TensorFlow for a SavedModel,
    the LiteRT interpreter for `.tflite`, onnxruntime for `.onnx`) and run at
    batch 1 and at batch `len(samples)`.

    Args:
        model: the `keras.Model` that was exported.
        artifact: path of the SavedModel folder, `.tflite` or `.onnx` file.
        samples: array `(N, height, width, channels)`, `N >= 2`.
        tolerance: float. Largest absolute difference allowed when
            `min_top1_agreement` is `None`. Defaults to `1e-4`.
        min_top1_agreement: float or `None`. When set (quantized
            artifacts), the artifact passes if at least this fraction of
            samples has the same argmax as the model, whatever the absolute
            difference. Defaults to `None`.
        quantize: str or `None`. Recorded in the report.

    Returns:
        A `VerificationReport`.
    """
    from export._model import float32_model
    from export._model import image_spec

    model = float32_model(model)
    samples = check_samples(samples, image_spec(model))
    runner = Runner(artifact)
    reference = np.asarray(model(samples, training=False), dtype=np.float64)
    single = np.asarray(runner(samples[:1]), dtype=np.float64)
    batch = np.asarray(runner(samples), dtype=np.float64)
    if batch.shape != reference.shape:
        raise ValueError(
            f"The artifact's output shape {batch.shape} differs from the "
            f"model's {reference.shape}."
        )
    diffs = {
        1: float(np.max(np.abs(single - reference[:1]))),
        len(samples): float(np.max(np.abs(batch - reference))),
    }
    agreement = float(
        np.mean(
            np.argmax(batch.reshape(len(batch), -1), -1)
            == np.argmax(reference.reshape(len(reference), -1), -1)
        )
    )
    finite = bool(np.all(np.isfinite(batch)) and np.all(np.isfinite(single)))
    if min_top1_agreement is None:
        criterion = f"max abs diff <= {tolerance:g}"
        passed = finite and max(diffs.values()) <= tolerance
    else:
        criterion = f"top-1 agreement >= {min_top1_agreement:g}"
        passed = finite and agreement >= min_top1_agreement
    return VerificationReport(
        format=runner.format,
        path=os.fspath(artifact),
        quantize=quantize,
        size_bytes=artifact_size(os.fspath(artifact)),
        max_abs_diff=diffs,
        top1_agreement=agreement,
        criterion=criterion,
        passed=passed,
    )


def format_table(reports):
    """The reports as a fixed-width text table."""
    header = (
        f"{'artifact':28s} {'format':14s} {'size':>10s} "
        f"{'diff b=1':>10s} {'diff b=N':>10s} {'top-1':>6s}  result"
    )
    lines = [header, "-" * len(header)]
    for r in reports:
        diffs = list(r.max_abs_diff.values())
        name = os.path.basename(os.path.normpath(r.path))
        kind = r.format + (f"/{r.quantize}" if r.quantize else "")
        result = "ok" if r.passed else ("FORCED" if r.forced else "FAIL")
        lines.append(
            f"{name:28s} {kind:14s} {_size(r.size_bytes):>10s} "
            f"{diffs[0]:10.2e} {diffs[-1]:10.2e} {r.top1_agreement:6.3f}  "
            f"{result} ({r.criterion})"
        )
    return "\n".join(lines)


def _size(size):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
