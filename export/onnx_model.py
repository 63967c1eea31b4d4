"""Export to ONNX through tf2onnx, checked so no invalid file is written."""

import contextlib
import logging
import os
import tempfile

import numpy as np

from export._common import as_image_array
from export._common import class_names_of
from export._common import prepare
from export._common import to_pixels
from export._common import write_checked
from export._metadata import describe
from export._metadata import embed_onnx_metadata
from export._model import float32_model
from export._model import image_spec
from export._model import output_names
from export._model import serving_function
from export.quantize import DEFAULT_KEEP_FLOAT
from export.quantize import check_keep_float
from export.quantize import quantize_onnx
from keras_vit.preprocessing import DEFAULT_INPUT_RANGE

# As for TFLite (`export.tflite.DEFAULT_MIN_TOP1_AGREEMENT`).
DEFAULT_MIN_TOP1_AGREEMENT = 0.95

# A protobuf message cannot exceed 2 GiB; graph structure comes on top of
# the weights, so switch to external data a little before that.
EXTERNAL_DATA_THRESHOLD = int(0.9 * (2**31 - 1))


class InvalidOnnxError(ValueError):
    """tf2onnx produced a graph that ONNX runtimes cannot load."""


@contextlib.contextmanager
def _quiet_tf2onnx():
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _numpy_product_alias():
    """tf2onnx 1.17's large-model path calls `np.product`, gone in NumPy 2."""
    added = not hasattr(np, "product")
    if added:
        np.product = np.prod
    try:
        yield
    finally:
        if added:
            del np.product


def _weight_bytes(model):
    return sum(
        int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize
        for w in model.weights
    )


def _unknown_ops(model_proto, opset):
    """Nodes that are not ONNX operators at `opset` (e.g. TF's `Erfc`)."""
    import onnx

    unknown = set()
    for node in model_proto.graph.node:
        domain = node.domain or ""
        if domain not in ("", "ai.onnx") or not onnx.defs.has(
            node.op_type, opset, domain
        ):
            unknown.add(f"{domain}::{node.op_type}" if domain else node.op_type)
    return sorted(unknown)


def convert(
    model,
    opset=17,
    external_data=False,
    preprocessing=False,
    input_range=DEFAULT_INPUT_RANGE,
    class_names=None,
):
    """Returns `(model_proto, external_tensors)` for `model`.

    The proto's `metadata_props` describe the input, the preprocessing and
    the class names (`export._metadata.embed_onnx_metadata`).

    Raises `InvalidOnnxError` when tf2onnx leaves operators that are not
    part of ONNX at `opset`: tf2onnx writes such files without failing.
    """
    import tf2onnx

    serve, spec = serving_function(model, preprocessing, input_range)
    with _quiet_tf2onnx(), _numpy_product_alias():
        model_proto, storage = tf2onnx.convert.from_function(
            serve,
            input_signature=[spec],
            opset=opset,
            large_model=external_data,
        )
    unknown = _unknown_ops(model_proto, opset)
    if unknown:
        raise InvalidOnnxError(
            "tf2onnx could not convert every op: the ONNX file would be "
            f"invalid, so none is written. Ops that are not ONNX operators "
            f"at opset {opset}: {', '.join(unknown)}"
        )
    external = storage.name_to_tensor_data if storage is not None else {}
    description = describe(
        image_spec(model),
        output_names(model),
        class_names,
        preprocessing,
        input_range,
    )
    embed_onnx_metadata(model_proto, description)
    return model_proto, external


def write_onnx(model_proto, external, path):
    """Writes the model, its weights in `path + ".data"` when external."""
    import onnx

    if external:
        data_path = path + ".data"
        location = os.path.basename(data_path)
        with open(data_path, "wb") as data:
            for tensor in model_proto.graph.initializer:
                if tensor.data_location != onnx.TensorProto.EXTERNAL:
                    continue
                entries = {e.key: e.value for e in tensor.external_data}
                payload = external[entries["location"]]
                offset = data.tell()
                data.write(payload)
                del tensor.external_data[:]
                for key, value in (
                    ("location", location),
                    ("offset", str(offset)),
                    ("length", str(len(payload))),
                ):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key, value
    onnx.save_model(model_proto, path)
    onnx.checker.check_model(path, full_check=True)


def export_onnx(
    model,
    path,
    opset=17,
    *,
    samples=None,
    overwrite=False,
    external_data=None,
    preprocessing=False,
    input_range=DEFAULT_INPUT_RANGE,
    class_names=None,
    quantize=None,
    representative_data=None,
    keep_float=DEFAULT_KEEP_FLOAT,
    min_top1_agreement=DEFAULT_MIN_TOP1_AGREEMENT,
    force=False,
):
    """Exports `model` to an `.onnx` file and proves it computes the same.

    The graph has one input `images` and the outputs `logits` and
    `probabilities` (`probabilities` alone for a softmax head), with a
    dynamic batch. With `preprocessing`, `images` are decoded `uint8`
    pixels of any size, scaled and resized in the graph as training does;
    `metadata_props` carry the description and `class_names`. A model
    whose ONNX graph would hold non-ONNX operators raises
    `InvalidOnnxError` instead of writing a broken file. The file is
    checked with `onnx.checker`, run in onnxruntime at batch 1 and at batch
    `len(samples)`, and must agree with `model(samples)` within 1e-4, or
    nothing is written. Weights beyond 2 GB go to `path + ".data"` (ONNX
    external data).

    Args:
        model: a `keras.Model` with one image input and one output. A
            model with a mixed dtype policy is exported, and compared,
            as its float32 copy (`export.float32_model`).
        path: str. The `.onnx` file to write.
        opset: int. ONNX opset. Defaults to `17`.
        samples: as for `export_saved_model`. Defaults to `None`.
        overwrite: bool. Replace an existing `path`. Defaults to `False`.
        external_data: bool or `None`. Store the weights in `path + ".data"`;
            `None` does so only for models whose weights exceed what one
            protobuf can hold. Defaults to `None`.
        preprocessing: bool. Take raw `uint8` pixels. Defaults to `False`.
        input_range: `(low, high)` the model's inputs were scaled to in
            training. Defaults to `(-1.0, 1.0)`.
        class_names: list of str, or `None` for the names the model
            carries. Defaults to `None`.
        quantize: `None` (float32), `"dynamic"` (int8 weights) or `"int8"`
            (ONNX Runtime static QDQ quantization of weights and
            activations, calibrated on `representative_data`, the
            `keep_float` op groups and the preprocessing left in float).
            A quantized file must pick the float model's class on
            `min_top1_agreement` of the samples, unless `force`.
        representative_data: training images, as for `export_tflite`.
        keep_float: as for `export_tflite`.

    Returns:
        A `VerificationReport`.
    """
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 13:
        raise ValueError(
            f"`opset` must be an int >= 13. Received: opset={opset!r}"
        )
    model = float32_model(model)
    names = class_names_of(model, class_names)
    path, samples = prepare(
        model, path, overwrite, samples, preprocessing, input_range
    )
    if external_data is None:
        external_data = _weight_bytes(model) > EXTERNAL_DATA_THRESHOLD
    if quantize not in (None, "dynamic", "int8"):
        raise ValueError(
            'ONNX `quantize` must be None, "dynamic" or "int8". '
            f"Received: quantize={quantize!r}"
        )
    keep_float = check_keep_float(keep_float)
    calibration = as_image_array(
        representative_data, image_spec(model), "representative_data", 200
    )
    if quantize == "int8" and calibration is None:
        raise ValueError(
            'ONNX int8 (quantize="int8") calibrates activation ranges on '
            "real inputs; pass `representative_data`, images from the "
            "training set. Received: representative_data=None"
        )
    if calibration is not None and preprocessing:
        calibration = to_pixels(calibration, input_range)
    model_proto, external = convert(
        model, opset, external_data, preprocessing, input_range, names
    )

    def write(staged):
        if quantize is None:
            write_onnx(model_proto, external, staged)
            return
        with tempfile.TemporaryDirectory() as scratch:
            plain = os.path.join(scratch, "float.onnx")
            write_onnx(model_proto, external, plain)
            quantize_onnx(plain, staged, quantize, calibration, keep_float)
        import onnx

        onnx.checker.check_model(staged, full_check=True)

    return write_checked(
        model, path, samples, write, force, quantize, min_top1_agreement
    )
