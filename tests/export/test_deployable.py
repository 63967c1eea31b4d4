"""Files that take raw images, carry their labels and keep int8 accuracy."""

import json
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from export import export_onnx
from export import export_saved_model
from export import export_tflite
from export._metadata import read_tflite_labels
from export._metadata import read_tflite_metadata
from export.quantize import AccuracyBudgetError
from export.quantize import choose
from export.samples import as_image_files

NAMES = ["dark", "grey", "bright"]


@pytest.fixture(scope="module")
def files(calibration):
    # 12 of the classes' images as PNG files and 8 generated files of other
    # sizes (up to 80x64), formats (JPEG, PNG) and channels (gray, RGBA).
    return as_image_files(calibration[:12], (16, 16, 3))


def test_files_of_several_sizes_and_formats_are_generated(files):
    shapes = {p.shape for p in files.pixels}
    assert len(files) == 20 and len(shapes) >= 6
    assert {p.rsplit(".", 1)[1] for p in files.paths} == {"png", "jpg"}
    assert "20 image files" in files.describe()


def test_every_format_takes_raw_images_and_matches_end_to_end(
    trained_model, files, tmp_path
):
    for export, name in (
        (export_saved_model, "sm"),
        (export_tflite, "m.tflite"),
        (export_onnx, "m.onnx"),
    ):
        report = export(
            trained_model,
            tmp_path / name,
            samples=files,
            preprocessing=True,
            class_names=NAMES,
        )
        assert report.passed, report
        assert max(report.max_abs_diff.values()) <= 1e-4
        assert "20 image files" in report.compared
    sm = tf.saved_model.load(str(tmp_path / "sm"))
    assert set(sm.signatures) == {
        "serving_default",
        "serving_bytes",
        "serving_tensor",
        "labels",
    }
    names = sm.signatures["labels"]()["class_names"].numpy()
    assert [n.decode() for n in names] == NAMES
    assert (tmp_path / "sm" / "assets" / "labels.txt").read_text().split() == (
        NAMES
    )
    # serving_bytes: what a TF Serving client sends, scored as training
    # would have scored the file.
    encoded = tf.constant(list(files.encoded[:3]))
    out = sm.signatures["serving_bytes"](image_bytes=encoded)["logits"]
    np.testing.assert_allclose(out, trained_model(files.inputs[:3]), atol=1e-4)


def test_labels_and_description_travel_inside_the_files(
    trained_model, tmp_path
):
    import onnx

    export_tflite(
        trained_model,
        tmp_path / "m.tflite",
        preprocessing=True,
        class_names=NAMES,
    )
    meta = read_tflite_metadata(tmp_path / "m.tflite")
    assert meta["class_names"] == NAMES
    assert meta["input"]["dtype"] == "uint8"
    assert meta["preprocessing"]["resize"]["size"] == [16, 16]
    assert meta["preprocessing"]["scale"] == {"from": [0, 255], "to": [-1, 1]}
    assert meta["outputs"] == ["logits", "probabilities"]
    # LiteRT's metadata format: labels.txt packed as a zip after the model,
    # pointed at by TFLITE_METADATA (a ModelMetadata flatbuffer, "M001").
    assert read_tflite_labels(tmp_path / "m.tflite") == NAMES
    assert zipfile.is_zipfile(tmp_path / "m.tflite")
    from ai_edge_litert import schema_py_generated as schema

    data = (tmp_path / "m.tflite").read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    entries = {
        model.Metadata(i).Name().decode(): model.Metadata(i).Buffer()
        for i in range(model.MetadataLength())
    }
    litert = model.Buffers(entries["TFLITE_METADATA"]).DataAsNumpy().tobytes()
    assert litert[4:8] == b"M001" and b"labels.txt" in litert

    export_onnx(
        trained_model,
        tmp_path / "m.onnx",
        preprocessing=True,
        class_names=NAMES,
    )
    props = {
        p.key: p.value
        for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props
    }
    assert json.loads(props["class_names"]) == NAMES
    assert json.loads(props["keras_vit"])["input"]["dtype"] == "uint8"


def test_class_names_must_match_the_outputs(trained_model, tmp_path):
    with pytest.raises(ValueError, match="3 outputs.*2 names"):
        export_onnx(trained_model, tmp_path / "m.onnx", class_names=["a", "b"])
    assert not list(tmp_path.iterdir())


def test_readme_programs_classify_an_image_with_no_other_code(
    trained_model, files, tmp_path
):
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    export_tflite(
        trained_model,
        tmp_path / "m.tflite",
        preprocessing=True,
        class_names=NAMES,
    )
    export_onnx(
        trained_model,
        tmp_path / "m.onnx",
        preprocessing=True,
        class_names=NAMES,
    )
    pixels = files.pixels[2][None]  # 32x32, not the model's 16x16
    expected = np.asarray(trained_model(files.inputs[2:3]))[0].argmax()

    interpreter = Interpreter(str(tmp_path / "m.tflite"))
    labels = (
        zipfile.ZipFile(tmp_path / "m.tflite").read("labels.txt").decode()
    ).split()
    classify = interpreter.get_signature_runner()
    probabilities = classify(images=pixels)["probabilities"][0]
    assert labels[probabilities.argmax()] == NAMES[expected]

    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    meta = session.get_modelmeta().custom_metadata_map
    labels = json.loads(meta["class_names"])
    (probabilities,) = session.run(["probabilities"], {"images": pixels})
    assert labels[probabilities[0].argmax()] == NAMES[expected]


def test_int8_keeps_fragile_ops_float_and_onnx_int8_is_a_format(
    trained_model, calibration, files, tmp_path
):
    from ai_edge_litert.interpreter import Interpreter

    for export, name in ((export_tflite, "q.tflite"), (export_onnx, "q.onnx")):
        report = export(
            trained_model,
            tmp_path / name,
            quantize="int8",
            representative_data=calibration,
            samples=files,
            preprocessing=True,
        )
        assert report.passed and report.quantize == "int8"
    ops = Interpreter(str(tmp_path / "q.tflite"))._get_ops_details()
    kinds = {op["op_name"] for op in ops}
    assert "QUANTIZE" in kinds and "FULLY_CONNECTED" in kinds
    assert "SOFTMAX" in kinds and "GELU" in kinds  # kept, float
    import onnx

    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)


def test_the_budget_picks_the_smallest_file_within_it(tmp_path, monkeypatch):
    import export.quantize as quantize

    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    reference = labels.copy()  # the float model: 100%
    # Per candidate: how many of the 10 images it gets wrong, its size.
    plan = {"full": (3, 100), "vit-aware": (0, 200), "vit-aware+ends": (0, 300)}
    by_keep = {keep: name for name, keep in quantize.CANDIDATES.items()}

    def build(keep_float, path):
        wrong, size = plan[by_keep[keep_float]]
        with open(path, "wb") as f:
            f.write(bytes([wrong]) + b"\0" * size)

    def fake_measure(path, images, labels_, reference_, repeats=20):
        data = open(path, "rb").read()
        predicted = reference_.copy()
        predicted[: data[0]] = (predicted[: data[0]] + 1) % 3
        return {
            "size_bytes": len(data),
            "accuracy": None
            if labels_ is None
            else float(np.mean(predicted == labels_) * 100),
            "agreement": float(np.mean(predicted == reference_) * 100),
            "latency_ms": 1.0,
        }

    monkeypatch.setattr(quantize, "measure", fake_measure)
    _, best, measured = choose(
        build, labels, labels, reference, 0.5, str(tmp_path), ".bin"
    )
    assert best.candidate == "vit-aware" and best.drop == 0.0
    assert [m.within_budget for m in measured] == [False, True, True]
    # Without labels the drop is the share of changed answers.
    _, best, _ = choose(
        build, labels, None, reference, 0.5, str(tmp_path), ".bin"
    )
    assert best.candidate == "vit-aware" and best.accuracy is None
    plan.update({"vit-aware": (1, 200), "vit-aware+ends": (1, 300)})
    with pytest.raises(AccuracyBudgetError) as info:
        choose(build, labels, labels, reference, 5.0, str(tmp_path), ".bin")
    message = str(info.value)
    assert (
        "within 5 points" in message and "full: 70.00%, drop 30.00" in message
    )
    assert len(info.value.measurements) == 3


def test_a_grayscale_model_takes_gray_pixels_and_encoded_colour_files(
    tmp_path,
):
    import keras_vit

    model = keras_vit.build_vit(
        image_size=8,
        patch_size=4,
        hidden_dim=8,
        depth=1,
        num_heads=2,
        mlp_dim=16,
        num_classes=4,
        channels=1,
        classifier_activation="softmax",
    )
    report = export_saved_model(model, tmp_path / "sm", preprocessing=True)
    assert report.passed and "bytes" in report.max_abs_diff
    report = export_tflite(model, tmp_path / "m.tflite", preprocessing=True)
    assert report.passed
    meta = read_tflite_metadata(tmp_path / "m.tflite")
    assert meta["input"]["shape"] == [None, None, None, 1]
    assert meta["input"]["color"] == "grayscale"
    # A softmax head's output is already probabilities: no second softmax.
    assert meta["outputs"] == ["probabilities"]
    assert meta["class_names"] is None
    assert read_tflite_labels(tmp_path / "m.tflite") is None
