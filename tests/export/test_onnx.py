import os

import keras
import numpy as np
import onnx
import onnxruntime
import pytest

import keras_vit
from export import InvalidOnnxError
from export import export_onnx


def test_export_is_valid_and_matches_with_dynamic_batch(
    trained_model, samples, tmp_path
):
    path = tmp_path / "model.onnx"
    report = export_onnx(trained_model, path, samples=samples)
    assert report.passed
    assert max(report.max_abs_diff.values()) <= 1e-4
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 17
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["logits", "probabilities"]
    ops = {node.op_type for node in proto.graph.node}
    assert "Erf" in ops and "Erfc" not in ops
    session = onnxruntime.InferenceSession(str(path))
    for batch in (1, 6):
        (out,) = session.run(["logits"], {"images": samples[:batch]})
        np.testing.assert_allclose(
            out, trained_model(samples[:batch]), atol=1e-4
        )


def test_opset_is_configurable(trained_model, tmp_path):
    path = tmp_path / "m.onnx"
    assert export_onnx(trained_model, path, 18).passed
    assert onnx.load(str(path)).opset_import[0].version == 18
    with pytest.raises(ValueError, match=r"opset=9"):
        export_onnx(trained_model, tmp_path / "x.onnx", 9)


def test_tensorflow_gelu_cannot_write_a_broken_file(tmp_path):
    # Keras' own "gelu" lowers to Erfc, which tf2onnx leaves unconverted.
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="gelu")(x))
    with pytest.raises(InvalidOnnxError, match=r"opset 17: Erfc"):
        export_onnx(model, tmp_path / "gelu.onnx")
    assert os.listdir(tmp_path) == []


def _wider_model():
    # tf2onnx keeps tensors under 1024 elements inline; these are larger.
    return keras_vit.build_vit(
        image_size=16,
        patch_size=4,
        hidden_dim=32,
        depth=1,
        num_heads=2,
        mlp_dim=64,
        num_classes=3,
    )


def test_external_data_for_large_weights(samples, tmp_path):
    model = _wider_model()
    path = tmp_path / "model.onnx"
    report = export_onnx(model, path, samples=samples, external_data=True)
    assert report.passed
    assert (tmp_path / "model.onnx.data").stat().st_size > 0
    proto = onnx.load(str(path), load_external_data=False)
    external = [
        t
        for t in proto.graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    assert external
    locations = {
        e.value
        for t in external
        for e in t.external_data
        if e.key == "location"
    }
    assert locations == {"model.onnx.data"}
    assert (
        report.size_bytes
        == path.stat().st_size + (tmp_path / "model.onnx.data").stat().st_size
    )
    # Overwriting with an inline export removes the stale data file.
    export_onnx(model, path, overwrite=True, external_data=False)
    assert not (tmp_path / "model.onnx.data").exists()


def test_external_data_is_chosen_above_the_protobuf_limit(
    monkeypatch, tmp_path
):
    from export import onnx_model

    model = _wider_model()
    monkeypatch.setattr(onnx_model, "EXTERNAL_DATA_THRESHOLD", 1000)
    assert export_onnx(model, tmp_path / "m.onnx").passed
    assert (tmp_path / "m.onnx.data").exists()
