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
from export._memory import check_memory
from export._memory import weight_bytes
from export._metadata import describe
from export._metadata import embed_onnx_metadata
from export._model import exportable_model
from export._model import image_spec
from export._model import model_variables
from export._model import output_names
from export._model import serving_function
from export._model import takes_any_size
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


def _attribute(node, name, default=None):
    import onnx

    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _weight_transform(node, constants):
    """`f(array) -> array` for a data-movement node on one weight, or None.

    tf2onnx leaves such nodes on graph inputs (e.g. a kernel reshaped to
    `(dim, heads, head_dim)`); applied here, the file holds the weight in
    the layout the graph uses.
    """
    import onnx

    extra = list(node.input[1:])
    if any(name and name not in constants for name in extra):
        return None
    if node.op_type == "Identity":
        return lambda x: x
    if node.op_type == "Cast":
        dtype = onnx.helper.tensor_dtype_to_np_dtype(_attribute(node, "to"))
        return lambda x: x.astype(dtype)
    if node.op_type == "Transpose":
        perm = _attribute(node, "perm")
        return lambda x: np.transpose(x, perm)
    if node.op_type == "Reshape" and len(extra) == 1:
        shape = [int(d) for d in constants[extra[0]]]
        if _attribute(node, "allowzero", 0):
            return lambda x: np.reshape(x, shape)
        return lambda x: np.reshape(
            x, [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
        )
    if node.op_type in ("Squeeze", "Unsqueeze"):
        if extra:
            axes = [int(a) for a in constants[extra[0]]]
        else:
            axes = _attribute(node, "axes")
        if node.op_type == "Squeeze":
            axes = None if axes is None else tuple(axes)
            return lambda x: np.squeeze(x, axes)
        return lambda x: np.expand_dims(x, tuple(axes))
    return None


def _fold_weight_transforms(graph, weights):
    """Applies data-movement nodes whose input is a weight to the weight.

    `weights` maps graph input names to `() -> array` callables; each folded
    node's output joins it and the node leaves the graph. Nothing is
    computed here: the arrays are made one at a time when the file is
    written.
    """
    from onnx import numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    kept = []
    for node in graph.node:
        source = node.input[0] if node.input else None
        transform = (
            _weight_transform(node, constants) if source in weights else None
        )
        if transform is None or len(node.output) != 1:
            kept.append(node)
            continue
        weights[node.output[0]] = (
            lambda load=weights[source], transform=transform: transform(load())
        )
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    used.update(output.name for output in graph.output)
    for name in [name for name in weights if name not in used]:
        del weights[name]
    constants = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(constants)


def _rename_weights(graph, weights, variables):
    """Names each weight after its Keras variable's path where unambiguous."""
    taken = {n for node in graph.node for n in (*node.input, *node.output)}
    taken.update(t.name for t in graph.initializer)
    renamed = {}
    for index, variable in enumerate(variables):
        old = f"weight_{index}"
        new = variable.path
        if old in weights and new not in taken and new not in renamed.values():
            renamed[old] = new
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    for old, new in renamed.items():
        weights[new] = weights.pop(old)


def convert(
    model,
    opset=17,
    preprocessing=False,
    input_range=DEFAULT_INPUT_RANGE,
    class_names=None,
):
    """Returns `(model_proto, weights)` for `model`.

    tf2onnx converts the graph with the model's variables as inputs
    (`export._model.serving_function(weights_as_inputs=True)`), so no copy
    of the weights is made while converting and optimizing. `weights`
    maps each initializer the graph still needs to a callable returning
    its array (from the Keras variables, in the layout the graph uses);
    `write_onnx` stores them. The proto's `metadata_props` describe the
    input, the preprocessing and the class names
    (`export._metadata.embed_onnx_metadata`).

    Raises `InvalidOnnxError` when tf2onnx leaves operators that are not
    part of ONNX at `opset`: tf2onnx writes such files without failing.
    """
    import tf2onnx

    serve, specs = serving_function(
        model, preprocessing, input_range, weights_as_inputs=True
    )
    with _quiet_tf2onnx():
        model_proto, _ = tf2onnx.convert.from_function(
            serve, input_signature=specs, opset=opset
        )
    unknown = _unknown_ops(model_proto, opset)
    if unknown:
        raise InvalidOnnxError(
            "tf2onnx could not convert every op: the ONNX file would be "
            f"invalid, so none is written. Ops that are not ONNX operators "
            f"at opset {opset}: {', '.join(unknown)}"
        )
    graph = model_proto.graph
    variables = model_variables(model)
    weights = {}
    for index, variable in enumerate(variables):
        weights[f"weight_{index}"] = lambda variable=variable: np.asarray(
            variable.numpy()
        )
    images = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(images)
    _fold_weight_transforms(graph, weights)
    _rename_weights(graph, weights, variables)
    weight_names = set(weights)
    infos = [v for v in graph.value_info if v.name not in weight_names]
    del graph.value_info[:]
    graph.value_info.extend(infos)
    description = describe(
        image_spec(model),
        output_names(model),
        class_names,
        preprocessing,
        input_range,
        any_size=takes_any_size(model),
    )
    embed_onnx_metadata(model_proto, description)
    return model_proto, weights


def _little_endian(array):
    array = np.ascontiguousarray(array)
    return array.astype(array.dtype.newbyteorder("<"), copy=False)


def write_onnx(model_proto, weights, path, external_data=False):
    """Writes the graph with its `weights` (from `convert`) to `path`.

    Each weight is made from its variable, written and released in turn, so
    writing holds one tensor at a time: with `external_data` into
    `path + ".data"` (aligned to 4 KiB so runtimes can map them), the
    `.onnx` file holding their locations; otherwise into the `.onnx` file
    itself, appended as initializer messages after the graph (protobuf
    merges repeated fields, so readers see one model). The file is then
    checked with `onnx.checker` (full check, shapes inferred).
    `model_proto` is left as it was.
    """
    import onnx
    from onnx import numpy_helper

    if external_data:
        graph = onnx.ModelProto()
        graph.CopyFrom(model_proto)
        location = os.path.basename(path) + ".data"
        with open(path + ".data", "wb") as data:
            for name, load in weights.items():
                array = _little_endian(load())
                offset = -data.tell() % 4096 + data.tell()
                data.seek(offset)
                data.write(memoryview(array).cast("B"))
                tensor = graph.graph.initializer.add()
                tensor.name = name
                tensor.dims.extend(array.shape)
                tensor.data_type = onnx.helper.np_dtype_to_tensor_dtype(
                    array.dtype
                )
                tensor.data_location = onnx.TensorProto.EXTERNAL
                for key, value in (
                    ("location", location),
                    ("offset", str(offset)),
                    ("length", str(array.nbytes)),
                ):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key, value
                del array
        onnx.save_model(graph, path)
    else:
        with open(path, "wb") as file:
            file.write(model_proto.SerializeToString())
            for name, load in weights.items():
                piece = onnx.ModelProto()
                piece.graph.initializer.append(
                    numpy_helper.from_array(load(), name)
                )
                file.write(piece.SerializeToString())
                del piece
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
    model = exportable_model(model, any_size=True)
    check_memory(model, [("onnx", quantize)])
    names = class_names_of(model, class_names)
    path, samples = prepare(
        model, path, overwrite, samples, preprocessing, input_range
    )
    if external_data is None:
        external_data = weight_bytes(model) > EXTERNAL_DATA_THRESHOLD
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
    model_proto, weights = convert(
        model, opset, preprocessing, input_range, names
    )

    def write(staged):
        if quantize is None:
            write_onnx(model_proto, weights, staged, external_data)
            return
        with tempfile.TemporaryDirectory() as scratch:
            plain = os.path.join(scratch, "float.onnx")
            write_onnx(model_proto, weights, plain, external_data)
            quantize_onnx(plain, staged, quantize, calibration, keep_float)
        import onnx

        onnx.checker.check_model(staged, full_check=True)

    return write_checked(
        model, path, samples, write, force, quantize, min_top1_agreement
    )
