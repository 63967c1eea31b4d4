"""What an exported file says about itself: input, preprocessing, labels.

One description (`describe`) goes into every file and the manifest:

- TFLite: a `keras_vit` metadata entry (JSON) in the flatbuffer's
  `metadata` list, read by any flatbuffer tool (`read_tflite_metadata`);
  and the LiteRT metadata format that Android's Task Library and
  `MetadataExtractor` read: a `TFLITE_METADATA` entry (a `ModelMetadata`
  flatbuffer, identifier `M001`) whose output tensors point at a
  `labels.txt` of type `TENSOR_AXIS_LABELS`, packed as a zip archive
  appended to the model, as LiteRT's metadata populator packs it;
- ONNX: `metadata_props` `keras_vit` (the JSON) and `class_names` (a JSON
  list), read with `onnx.load(...).metadata_props` or onnxruntime's
  `session.get_modelmeta().custom_metadata_map`;
- SavedModel: `assets/labels.txt` and a `labels` signature returning the
  class names (see `export.saved_model`).
"""

import io
import json
import zipfile

import flatbuffers

RESIZE_METHOD = (
    "bilinear, antialiased: a triangle filter widened by the downscale "
    "factor, half-pixel centres (tf.image.resize(antialias=True)); images "
    "already at the model's size are not resampled"
)
LABELS_FILE = "labels.txt"
_METADATA_NAME = "keras_vit"
_LITERT_METADATA_NAME = "TFLITE_METADATA"
_TENSOR_AXIS_LABELS = 2  # metadata_schema.fbs AssociatedFileType


def _method(transform):
    if transform.resize == "stretch" and transform.interpolation == "bilinear":
        return RESIZE_METHOD
    return transform.describe().rsplit(", mean", 1)[0]


def describe(
    image_shape,
    output_names,
    class_names,
    preprocessing,
    input_range,
    any_size=None,
):
    """The JSON-able description of an exported classifier.

    `any_size`: the patch size of a model whose float32 input takes any
    height and width that are multiples of it (`takes_any_size`), else
    `None`: the input is then `image_shape`.
    """
    from keras_vit.transform import as_transform

    height, width, channels = (int(v) for v in image_shape)
    transform = as_transform(input_range)
    low, high = transform.input_range or (None, None)
    color = "RGB" if channels == 3 else "grayscale"
    if preprocessing:
        inputs = {
            "name": "images",
            "dtype": "uint8",
            "shape": [None, None, None, channels],
            "layout": "NHWC",
            "color": color,
            "note": "decoded pixels of any size; one size per batch",
        }
        steps = {
            "inside": True,
            "scale": {"from": [0, 255], "to": [low, high]},
            "resize": {"size": [height, width], "method": _method(transform)},
            "transform": transform.to_dict(),
        }
    else:
        inputs = {
            "name": "images",
            "dtype": "float32",
            "shape": [None, height, width, channels],
            "layout": "NHWC",
            "color": color,
        }
        if any_size is not None:
            inputs["shape"] = [None, None, None, channels]
            inputs["note"] = (
                "any height and width that are multiples of "
                f"{any_size[0]}x{any_size[1]}; trained at {height}x{width}"
            )
        scaled = (
            f"scaled from [0, 255] to [{low:g}, {high:g}]"
            if low is not None
            else f"normalized as {transform.describe().split(', ')[-1]}"
        )
        steps = {
            "inside": False,
            "expected": (
                f"{color} images resized to {height}x{width} "
                f"({_method(transform)}) and {scaled}"
            ),
            "transform": transform.to_dict(),
        }
    return {
        "input": inputs,
        "preprocessing": steps,
        "outputs": list(output_names),
        "class_names": None if class_names is None else list(class_names),
    }


# -- TFLite -----------------------------------------------------------------


def _string_vector(builder, offsets):
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _litert_metadata(input_names, output_names, description):
    """A `ModelMetadata` flatbuffer (metadata_schema.fbs, `M001`)."""
    builder = flatbuffers.Builder(1024)

    def strings(*values):
        return [builder.CreateString(v) for v in values]

    def labels_file():
        name, text = strings(
            LABELS_FILE, "Class names, one per line, in output order"
        )
        builder.StartObject(5)  # AssociatedFile
        builder.PrependUOffsetTRelativeSlot(0, name, 0)
        builder.PrependUOffsetTRelativeSlot(1, text, 0)
        builder.PrependInt8Slot(2, _TENSOR_AXIS_LABELS, 0)
        return builder.EndObject()

    def tensor(name, with_labels):
        files = _string_vector(builder, [labels_file()]) if with_labels else 0
        (name,) = strings(name)
        builder.StartObject(7)  # TensorMetadata
        builder.PrependUOffsetTRelativeSlot(0, name, 0)
        if files:
            builder.PrependUOffsetTRelativeSlot(6, files, 0)
        return builder.EndObject()

    inputs = _string_vector(builder, [tensor(n, False) for n in input_names])
    outputs = _string_vector(builder, [tensor(n, True) for n in output_names])
    builder.StartObject(10)  # SubGraphMetadata
    builder.PrependUOffsetTRelativeSlot(2, inputs, 0)
    builder.PrependUOffsetTRelativeSlot(3, outputs, 0)
    subgraph = builder.EndObject()
    subgraphs = _string_vector(builder, [subgraph])
    name, text, version = strings(
        "keras_vit image classifier", json.dumps(description), "1.0.0"
    )
    builder.StartObject(8)  # ModelMetadata
    builder.PrependUOffsetTRelativeSlot(0, name, 0)
    builder.PrependUOffsetTRelativeSlot(1, text, 0)
    builder.PrependUOffsetTRelativeSlot(3, subgraphs, 0)
    builder.PrependUOffsetTRelativeSlot(7, version, 0)
    builder.Finish(builder.EndObject(), file_identifier=b"M001")
    return bytes(builder.Output())


def embed_tflite_metadata(flatbuffer, description):
    """`flatbuffer` with the description, labels and LiteRT metadata added."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    from export._litert import interpreter as make_interpreter

    interpreter = make_interpreter(model_content=flatbuffer)
    runner = interpreter.get_signature_runner("serving_default")
    by_index = {d["index"]: k for k, d in runner.get_output_details().items()}
    in_index = {d["index"]: k for k, d in runner.get_input_details().items()}
    output_names = [
        by_index[d["index"]] for d in interpreter.get_output_details()
    ]
    input_names = [
        in_index[d["index"]] for d in interpreter.get_input_details()
    ]

    # Unpacked without a copy: the weight buffers stay views of `flatbuffer`.
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    entries = [(_METADATA_NAME, json.dumps(description).encode())]
    names = description["class_names"]
    if names is not None:
        entries.append(
            (
                _LITERT_METADATA_NAME,
                _litert_metadata(input_names, output_names, description),
            )
        )
    model.metadata = [
        m
        for m in (model.metadata or [])
        if m.name.decode() not in (_METADATA_NAME, _LITERT_METADATA_NAME)
    ]
    for name, payload in entries:
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(payload, dtype=np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(len(flatbuffer) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    del model
    # One copy of the packed model, extended in place by the labels.
    out = bytearray(memoryview(builder.Bytes)[builder.Head() :])
    del builder
    if names is not None:
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zipped:
            zipped.writestr(LABELS_FILE, "\n".join(names) + "\n")
        out += archive.getvalue()
    return out


def _tflite_metadata_buffers(path):
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as f:
        data = f.read()
    model = schema.Model.GetRootAs(data, 0)
    found = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        buffer = model.Buffers(entry.Buffer())
        found[entry.Name().decode()] = buffer.DataAsNumpy().tobytes()
    return found, data


def read_tflite_metadata(path):
    """The description embedded in a `.tflite` file, or `None`."""
    found, _ = _tflite_metadata_buffers(path)
    if _METADATA_NAME not in found:
        return None
    return json.loads(found[_METADATA_NAME].decode())


def read_tflite_labels(path):
    """Class names from the `labels.txt` packed in a `.tflite`, or `None`."""
    try:
        with zipfile.ZipFile(path) as archive:
            text = archive.read(LABELS_FILE).decode()
    except (zipfile.BadZipFile, KeyError):
        return None
    return text.splitlines()


# -- ONNX ---------------------------------------------------------------------


def embed_onnx_metadata(model_proto, description):
    """Adds `keras_vit` and `class_names` to the proto's `metadata_props`."""
    props = {
        _METADATA_NAME: json.dumps(description),
        "class_names": json.dumps(description["class_names"]),
    }
    kept = [p for p in model_proto.metadata_props if p.key not in props]
    del model_proto.metadata_props[:]
    model_proto.metadata_props.extend(kept)
    for key, value in props.items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value
    return model_proto
