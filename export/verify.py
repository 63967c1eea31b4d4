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
        compared: what was fed to the artifact and to the model, in words.
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
    compared: str = ""

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


# onnxruntime's graph optimization levels, by the names the settings use.
ORT_OPTIMIZATION = {
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


class Runner:
    """Runs an artifact in its own runtime.

    `runner(images)` returns the main output (`logits`, else
    `probabilities`); `runner.outputs(images)` all of them by name.
    `images` are float32 model inputs, or `uint8` pixels for files with
    preprocessing inside (`runner.raw_images`).
    """

    def __init__(self, path, num_threads=None, optimization=None):
        """`num_threads`: for LiteRT (XNNPACK) and onnxruntime (intra-op),
        `None` for the runtime's default; `optimization`: onnxruntime's
        graph optimization level, one of `ORT_OPTIMIZATION` (`None`: its
        default, `"all"`)."""
        self.path = os.fspath(path)
        if optimization is not None and optimization not in ORT_OPTIMIZATION:
            raise ValueError(
                f"`optimization` must be one of {sorted(ORT_OPTIMIZATION)}. "
                f"Received: optimization={optimization!r}"
            )
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
            spec = self._fn.structured_input_signature[1]
            self._input_name = next(iter(spec))
            dtype = spec[self._input_name].dtype.as_numpy_dtype
        elif self.format == "tflite":
            from export._litert import interpreter as make_interpreter

            self._interpreter = make_interpreter(
                model_path=self.path, num_threads=num_threads
            )
            self._fn = self._interpreter.get_signature_runner()
            details = self._fn.get_input_details()
            self._input_name = next(iter(details))
            dtype = details[self._input_name]["dtype"]
        else:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            if num_threads:
                options.intra_op_num_threads = num_threads
            if optimization is not None:
                options.graph_optimization_level = getattr(
                    onnxruntime.GraphOptimizationLevel,
                    ORT_OPTIMIZATION[optimization],
                )
            self._session = onnxruntime.InferenceSession(
                self.path, options, providers=["CPUExecutionProvider"]
            )
            self._input_name = self._session.get_inputs()[0].name
            self._output_names = [o.name for o in self._session.get_outputs()]
            dtype = (
                np.uint8
                if self._session.get_inputs()[0].type == "tensor(uint8)"
                else np.float32
            )
        self.input_dtype = np.dtype(dtype)
        self.raw_images = self.input_dtype == np.uint8

    def tensor_input(self):
        """`(signature, any_size)` of the entry that takes float32 model
        inputs: `signature` is `None` for the main one, `"serving_tensor"`
        for a SavedModel with preprocessing inside, and there is none
        (`(None, False)`) for other files with preprocessing inside;
        `any_size` says whether its height and width are free."""
        if self.format == "saved_model":
            name = "serving_tensor" if self.raw_images else "serving_default"
            if name not in self._loaded.signatures:
                return None, False
            spec = self._loaded.signatures[name].structured_input_signature
            shape = next(iter(spec[1].values())).shape
            free = shape.rank == 4 and None in tuple(shape)[1:3]
            return (name if self.raw_images else None), free
        if self.raw_images or self.format == "tflite":
            return None, False
        dims = self._session.get_inputs()[0].shape
        return None, any(not isinstance(d, int) for d in dims[1:3])

    def outputs(self, images):
        images = np.ascontiguousarray(images, dtype=self.input_dtype)
        if self.format == "saved_model":
            out = self._fn(**{self._input_name: self._tf.constant(images)})
            return {k: v.numpy() for k, v in out.items()}
        if self.format == "tflite":
            return dict(self._fn(**{self._input_name: images}))
        values = self._session.run(None, {self._input_name: images})
        return dict(zip(self._output_names, values))

    def __call__(self, images):
        return main_output(self.outputs(images))

    def has_signature(self, name):
        return self.format == "saved_model" and name in self._loaded.signatures

    def outputs_of(self, signature, **inputs):
        """A SavedModel signature's outputs, as NumPy arrays."""
        fn = self._loaded.signatures[signature]
        out = fn(**{k: self._tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in out.items()}


def main_output(outputs):
    """The `logits` of an output dict, else its `probabilities`."""
    for name in ("logits", "probabilities"):
        if name in outputs:
            return outputs[name]
    return next(iter(outputs.values()))


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


def _max_diff(got, want):
    """Largest |got - want| over the outputs both have, in float64."""
    shared = [k for k in want if k in got]
    if not shared:
        raise ValueError(
            f"The artifact's outputs {sorted(got)} share no name with the "
            f"model's {sorted(want)}."
        )
    worst = 0.0
    for key in shared:
        a = np.asarray(got[key], dtype=np.float64)
        b = np.asarray(want[key], dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(
                f"The artifact's {key!r} has shape {a.shape}; the model's "
                f"has {b.shape}."
            )
        if not np.all(np.isfinite(a)):
            return float("inf")
        worst = max(worst, float(np.max(np.abs(a - b))))
    return worst


def _top1(outputs):
    scores = main_output(outputs)
    return np.argmax(scores.reshape(len(scores), -1), -1)


def _model_outputs(model, inputs):
    from export._model import output_names

    scores = np.asarray(model(inputs, training=False), dtype=np.float64)
    names = output_names(model)
    if names == ("probabilities",):
        return {"probabilities": scores}
    shifted = np.exp(scores - scores.max(-1, keepdims=True))
    return {
        "logits": scores,
        "probabilities": shifted / shifted.sum(-1)[:, None],
    }


def _report(runner, artifact, diffs, agreement, limits, compared):
    """The report; `limits`: `(tolerance, min_top1, quantize)`."""
    tolerance, min_top1, quantize = limits
    if min_top1 is None:
        criterion = f"max abs diff <= {tolerance:g}"
        passed = max(diffs.values()) <= tolerance
    else:
        criterion = f"top-1 agreement >= {min_top1:g}"
        passed = agreement >= min_top1
    passed = passed and all(np.isfinite(v) for v in diffs.values())
    return VerificationReport(
        format=runner.format,
        path=os.fspath(artifact),
        size_bytes=artifact_size(os.fspath(artifact)),
        max_abs_diff=diffs,
        top1_agreement=agreement,
        criterion=criterion,
        passed=passed,
        quantize=quantize,
        compared=compared,
    )


def verify(
    model,
    artifact,
    samples,
    *,
    tolerance=FLOAT_TOLERANCE,
    min_top1_agreement=None,
    quantize=None,
):
    """Compares an exported artifact with the model on the same inputs.

    The artifact is loaded in its own runtime (TensorFlow for a SavedModel,
    the LiteRT interpreter for `.tflite`, onnxruntime for `.onnx`). Every
    output the two share (`logits`, `probabilities`) is compared.

    For an artifact that takes float32 model inputs, `samples` is an
    array `(N, height, width, channels)`, `N >= 2`, run at batch 1 and at
    batch `N`. For one with preprocessing inside (`uint8` pixels in),
    `samples` is an `ImageFiles` (`export.samples`): each file's decoded
    pixels go to the artifact, one file per call and then a batch of the
    files that share a size; the model gets the training pipeline's array
    of the same file; a SavedModel's `serving_bytes` signature also gets
    the encoded files and `serving_tensor` the arrays.

    Args:
        model: the `keras.Model` that was exported.
        artifact: path of the SavedModel folder, `.tflite` or `.onnx` file.
        samples: an array of model inputs, or an `ImageFiles`.
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
    from export._model import exportable_model
    from export._model import image_spec
    from export.samples import ImageFiles

    model = exportable_model(model, any_size=True)
    if not isinstance(samples, ImageFiles):
        samples = check_samples(samples, image_spec(model))
    runner = Runner(artifact)
    limits = (tolerance, min_top1_agreement, quantize)
    if runner.raw_images:
        if not isinstance(samples, ImageFiles):
            raise TypeError(
                "The artifact takes uint8 pixels (preprocessing inside); "
                "verify it on image files (`export.samples.ImageFiles`). "
                f"Received: samples of type {type(samples).__name__}"
            )
        diffs, agreement, compared = _verify_files(model, runner, samples)
        compared += _other_sizes(model, runner, diffs)
        return _report(runner, artifact, diffs, agreement, limits, compared)
    if isinstance(samples, ImageFiles):
        samples = samples.inputs
    reference = _model_outputs(model, samples)
    single = runner.outputs(samples[:1])
    batch = runner.outputs(samples)
    diffs = {
        "1": _max_diff(single, {k: v[:1] for k, v in reference.items()}),
        str(len(samples)): _max_diff(batch, reference),
    }
    agreement = float(np.mean(_top1(batch) == _top1(reference)))
    compared = (
        f"{len(samples)} float32 input arrays, at batch 1 and batch "
        f"{len(samples)}; outputs {', '.join(sorted(reference))}"
    )
    compared += _other_sizes(model, runner, diffs)
    return _report(runner, artifact, diffs, agreement, limits, compared)


def other_sizes(image_shape, patch_size):
    """Two image sizes besides the trained `image_shape[:2]`, multiples of
    `patch_size`: one taller and wider, one not square."""
    (height, width), (ph, pw) = image_shape[:2], patch_size
    smaller = height - ph if height > ph else height + 3 * ph
    return [(height + ph, width + 2 * pw), (smaller, width + pw)]


def _other_sizes(model, runner, diffs):
    """For a model that takes any size (`takes_any_size`) and a file whose
    float32 input does too: compares both on two more sizes, adding
    `diffs["HxW"]`. Returns the words for the report."""
    from export._model import image_spec
    from export._model import takes_any_size

    patch = takes_any_size(model)
    signature, free = runner.tensor_input()
    if patch is None or not free:
        return ""
    shape = image_spec(model)
    rng = np.random.default_rng(0)
    sizes = other_sizes(shape, patch)
    for height, width in sizes:
        images = rng.uniform(-1.0, 1.0, (2, height, width, shape[2]))
        images = images.astype("float32")
        if signature is None:
            got = runner.outputs(images)
        else:
            got = runner.outputs_of(signature, images=images)
        diffs[f"{height}x{width}"] = _max_diff(
            got, _model_outputs(model, images)
        )
    entry = f" ({signature})" if signature else ""
    return (
        f"; the float32 input{entry} also at "
        + " and ".join(f"{h}x{w}" for h, w in sizes)
        + " (2 uniform [-1, 1] arrays each)"
    )


def _verify_files(model, runner, files):
    """`(diffs, agreement, compared)` for a file with preprocessing
    inside, given image files."""
    reference = _model_outputs(model, files.inputs)
    got = [runner.outputs(image[None]) for image in files.pixels]
    single = {k: np.concatenate([g[k] for g in got]) for k in got[0]}
    diffs = {"1": _max_diff(single, reference)}
    group = files.largest_same_size_group()
    batch = runner.outputs(np.stack([files.pixels[i] for i in group]))
    diffs[str(len(group))] = _max_diff(
        batch, {k: v[group] for k, v in reference.items()}
    )
    compared = (
        f"{files.describe()}: decoded uint8 pixels into the file, the "
        "training pipeline's array of each file into the Keras model; "
        f"each file alone, then {len(group)} files of one size as a batch"
    )
    if runner.format == "saved_model" and runner.has_signature("serving_bytes"):
        encoded = runner.outputs_of("serving_bytes", image_bytes=files.encoded)
        diffs["bytes"] = _max_diff(encoded, reference)
        tensor = runner.outputs_of("serving_tensor", images=files.inputs)
        diffs["tensor"] = _max_diff(tensor, reference)
        compared += (
            "; serving_bytes given the encoded files, serving_tensor the arrays"
        )
    agrees = _top1(single) == _top1(reference)
    # Generated pictures are noise with no class: a quantized file's
    # near-tie there says nothing. Agreement is measured on given images.
    given = files.given()
    agreement = float(np.mean(agrees[given]))
    if len(given) < len(files):
        compared += (
            f"; top-1 agreement on the {len(given)} given images "
            f"({int(agrees.sum() - agrees[given].sum())} of "
            f"{len(files) - len(given)} generated pictures agree)"
        )
    compared += f"; outputs {', '.join(sorted(reference))}"
    return diffs, agreement, compared


def format_table(reports):
    """The reports as a fixed-width text table."""
    header = (
        f"{'artifact':28s} {'format':14s} {'size':>10s} "
        f"{'diff b=1':>10s} {'diff b=N':>10s} {'top-1':>6s}  result"
    )
    lines = [header, "-" * len(header)]
    for r in reports:
        diffs = list(r.max_abs_diff.values())
        one, rest = diffs[0], max(diffs[1:], default=diffs[0])
        name = os.path.basename(os.path.normpath(r.path))
        kind = r.format + (f"/{r.quantize}" if r.quantize else "")
        result = "ok" if r.passed else ("FORCED" if r.forced else "FAIL")
        lines.append(
            f"{name:28s} {kind:14s} {_size(r.size_bytes):>10s} "
            f"{one:10.2e} {rest:10.2e} {r.top1_agreement:6.3f}  "
            f"{result} ({r.criterion})"
        )
    return "\n".join(lines)


def _size(size):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
