"""Export to TFLite (LiteRT) with built-in ops only, optionally quantized."""

import re
import tempfile
import weakref

import numpy as np
import tensorflow as tf

from export._common import as_image_array
from export._common import class_names_of
from export._common import prepare
from export._common import release_freed_memory
from export._common import to_pixels
from export._common import write_checked
from export._memory import check_memory
from export._memory import check_tflite_size
from export._metadata import describe
from export._metadata import embed_tflite_metadata
from export._model import exportable_model
from export._model import image_spec
from export._model import output_names
from export.quantize import DEFAULT_KEEP_FLOAT
from export.quantize import check_keep_float
from export.saved_model import write_saved_model
from keras_vit.command import without_notices
from keras_vit.preprocessing import DEFAULT_INPUT_RANGE
from keras_vit.transform import as_transform

QUANTIZE_MODES = (None, "float16", "dynamic", "int8")

# Quantized files cannot match float logits to 1e-4; they must instead pick
# the same class as the float model on the verification samples. On the
# digits model (examples/train_digits.py, 360 test images) the float16,
# dynamic-range and full int8 files all agree on 360 of 360. Requiring 95%
# tolerates a few flips between near-tied classes on small sample sets, and
# refuses a file that changes the answer for more than 1 image in 20, which
# would cost up to 5 points of accuracy: more than anyone exports knowingly.
DEFAULT_MIN_TOP1_AGREEMENT = 0.95

# Enough images to calibrate activation ranges without slowing the export.
_CALIBRATION_IMAGES = 200
_VERIFICATION_IMAGES = 64


class UnsupportedOpsError(ValueError):
    """The model needs ops that the TFLite built-in op set does not have."""


def _converter(saved_model_dir, quantize, calibration):
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=["serving_default"]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":

        def representative_dataset():
            for image in calibration:
                yield {"images": image[None]}

        converter.representative_dataset = representative_dataset
    return converter


# Per model, the ops of its float conversion: the int8 candidates of one
# export share them instead of converting the float model each time.
_FLOAT_OPS = weakref.WeakKeyDictionary()


def _convert_int8(saved_model_dir, calibration, keep_float, float_ops):
    """Int8 with the ops of `keep_float` and the preprocessing in float.

    The ops are found by name and type in the float conversion
    (`float_ops`, from `export.quantize.tflite_ops`), then denied
    quantization through TFLite's quantization debugger; everything else
    (the linear layers, attention products, residual adds) is int8.
    """
    from export.quantize import tflite_float_nodes

    nodes = tflite_float_nodes(float_ops, keep_float)
    converter = _converter(saved_model_dir, "int8", calibration)
    if not nodes:
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        ]
        return converter.convert()
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=nodes
    )
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=converter.representative_dataset,
        debug_options=options,
    )
    return debugger.get_nondebug_quantized_model()


def _convert(model, saved_model_dir, quantize, calibration, keep_float, key):
    """The flatbuffer; `key`: `(preprocessing, input_range)` of the graph."""
    if quantize != "int8":
        return _converter(saved_model_dir, quantize, calibration).convert()
    from export.quantize import tflite_ops

    # The float model's op list, found once per model and preprocessing.
    cache = _FLOAT_OPS.setdefault(model, {})
    if key not in cache:
        plain = _converter(saved_model_dir, None, None).convert()
        cache[key] = tflite_ops(plain)
    return _convert_int8(saved_model_dir, calibration, keep_float, cache[key])


def _select_ops(message):
    match = re.search(r"TF Select ops: ([^\n]+)", message)
    if match:
        return match.group(1).strip()
    ops = sorted(set(re.findall(r"'tf\.(\w+)' op is neither", message)))
    return ", ".join(ops) if ops else None


def convert(
    model,
    quantize=None,
    representative_data=None,
    preprocessing=False,
    input_range=DEFAULT_INPUT_RANGE,
    class_names=None,
    keep_float=DEFAULT_KEEP_FLOAT,
):
    """Returns a TFLite flatbuffer of `model` (a `bytearray`).

    For `quantize="int8"`, `keep_float` names the op groups left in float
    (`export.quantize.KEEP_FLOAT`); the preprocessing always is.

    The flatbuffer carries its description and class names
    (`export._metadata.embed_tflite_metadata`). Raises
    `UnsupportedOpsError` naming the ops if any would need TensorFlow
    Select (Flex) ops, which the LiteRT runtime on phones cannot run.
    """
    if quantize not in QUANTIZE_MODES:
        raise ValueError(
            f"`quantize` must be one of {QUANTIZE_MODES}. "
            f"Received: quantize={quantize!r}"
        )
    shape = image_spec(model)
    calibration = as_image_array(
        representative_data,
        shape,
        "representative_data",
        limit=_CALIBRATION_IMAGES,
    )
    if quantize == "int8" and calibration is None:
        raise ValueError(
            'Full integer quantization (quantize="int8") calibrates '
            "activation ranges on real inputs; pass `representative_data`, "
            "images from the training set. Received: representative_data=None"
        )
    if calibration is not None:
        calibration = (
            to_pixels(calibration, input_range)
            if preprocessing
            else calibration.astype(np.float32)
        )
    with tempfile.TemporaryDirectory() as saved_model_dir:
        write_saved_model(
            model,
            saved_model_dir,
            preprocessing=preprocessing,
            input_range=input_range,
            extra_signatures=False,
        )
        try:
            with without_notices():
                flatbuffer = _convert(
                    model,
                    saved_model_dir,
                    quantize,
                    calibration,
                    keep_float,
                    (preprocessing, as_transform(input_range)),
                )
        except Exception as error:  # The converter raises several types.
            ops = _select_ops(str(error))
            if ops:
                raise UnsupportedOpsError(
                    "The model needs TensorFlow Select (Flex) ops, which the "
                    "LiteRT runtime on phones cannot run; TFLite export allows "
                    f"built-in ops only. Ops needing Flex: {ops}"
                ) from error
            raise
    release_freed_memory()
    _check_builtin_only(flatbuffer)
    description = describe(
        shape, output_names(model), class_names, preprocessing, input_range
    )
    return embed_tflite_metadata(flatbuffer, description)


def _check_builtin_only(flatbuffer):
    from export._litert import interpreter as make_interpreter

    interpreter = make_interpreter(model_content=flatbuffer)
    names = {d["op_name"] for d in interpreter._get_ops_details()}
    custom = sorted(n for n in names if n.startswith("Flex") or n == "CUSTOM")
    if custom:
        raise UnsupportedOpsError(
            "The converted model contains non-built-in ops, which the LiteRT "
            f"runtime on phones cannot run: {', '.join(custom)}"
        )


def export_tflite(
    model,
    path,
    quantize=None,
    representative_data=None,
    *,
    samples=None,
    overwrite=False,
    min_top1_agreement=DEFAULT_MIN_TOP1_AGREEMENT,
    force=False,
    preprocessing=False,
    input_range=DEFAULT_INPUT_RANGE,
    class_names=None,
    keep_float=DEFAULT_KEEP_FLOAT,
):
    """Exports `model` to a `.tflite` file and proves it computes the same.

    The signature maps `images` to `logits` and `probabilities`
    (`probabilities` alone for a softmax head). With `preprocessing`,
    `images` are decoded `uint8` pixels of any size (call the
    interpreter's `resize_tensor_input` for a new size), scaled and resized
    inside as training does. The class names are in the file's metadata,
    both as a `keras_vit` JSON entry and in LiteRT's metadata format
    (`labels.txt`, `TENSOR_AXIS_LABELS`) that Android's Task Library reads.

    Only TFLite built-in ops are allowed: a model that would need Flex
    (select TensorFlow) ops raises `UnsupportedOpsError` naming them. The
    file is reloaded in the LiteRT interpreter (`ai_edge_litert`) and run at
    batch 1 and at batch `len(samples)`. A float32 file must agree with
    `model(samples)` within 1e-4. A quantized file must pick the same class
    on at least `min_top1_agreement` of the samples; otherwise nothing is
    written, unless `force=True`.

    Args:
        model: a `keras.Model` with one image input and one output. A
            model with a mixed dtype policy is exported, and compared,
            as its float32 copy (`export.float32_model`).
        path: str. The `.tflite` file to write.
        quantize: `None` (float32), `"float16"` (float16 weights),
            `"dynamic"` (int8 weights, float activations) or `"int8"` (int8
            weights and activations, calibrated on `representative_data`;
            float32 input and output). Defaults to `None`.
        representative_data: images `(N, height, width, channels)` from the
            training data, an iterable of such batches, or of
            `(images, labels)`; required for `"int8"`. Up to 200 images are
            used. When `samples` is `None` they also serve for verification.
        samples: as for `export_saved_model`; quantized files default to
            the representative data.
        overwrite: bool. Replace an existing `path`. Defaults to `False`.
        min_top1_agreement: float. Required top-1 agreement of quantized
            files. Defaults to `0.95`.
        force: bool. Write a quantized file even below
            `min_top1_agreement`; the report marks it forced. Defaults to
            `False`.
        preprocessing: bool. Take raw `uint8` pixels. Defaults to `False`.
        input_range: `(low, high)` the model's inputs were scaled to in
            training. Defaults to `(-1.0, 1.0)`.
        class_names: list of str, or `None` for the names the model
            carries. Defaults to `None`.
        keep_float: for `"int8"`, the op groups kept in float, among
            `"layer_norm"`, `"softmax"`, `"gelu"`, `"patch_embedding"`,
            `"head"`; `()` quantizes everything but the preprocessing.
            Defaults to LayerNorm, softmax and GELU, which keeps a ViT's
            accuracy where full int8 loses it (`export.quantize`).

    Returns:
        A `VerificationReport`.
    """
    if quantize not in QUANTIZE_MODES:
        raise ValueError(
            f"`quantize` must be one of {QUANTIZE_MODES}. "
            f"Received: quantize={quantize!r}"
        )
    model = exportable_model(model)
    check_tflite_size(model, quantize)
    check_memory(model, [("tflite", quantize)])
    # Read once: an iterator of batches could not be read a second time.
    calibration = as_image_array(
        representative_data,
        image_spec(model),
        "representative_data",
        limit=_CALIBRATION_IMAGES,
    )
    if samples is None and calibration is not None:
        samples = calibration[:_VERIFICATION_IMAGES]
    names = class_names_of(model, class_names)
    path, samples = prepare(
        model, path, overwrite, samples, preprocessing, input_range
    )
    flatbuffer = convert(
        model,
        quantize,
        calibration,
        preprocessing,
        input_range,
        names,
        check_keep_float(keep_float),
    )

    def write(staged):
        with open(staged, "wb") as f:
            f.write(flatbuffer)

    return write_checked(
        model, path, samples, write, force, quantize, min_top1_agreement
    )
