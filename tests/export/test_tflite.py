import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from export import UnsupportedOpsError
from export import VerificationError
from export import export_tflite


def _ops(path):
    interpreter = Interpreter(model_path=str(path))
    return {d["op_name"] for d in interpreter._get_ops_details()}


def test_float_export_uses_builtin_ops_and_matches(
    trained_model, samples, tmp_path
):
    path = tmp_path / "model.tflite"
    report = export_tflite(trained_model, path, samples=samples)
    assert report.passed and report.quantize is None
    assert max(report.max_abs_diff.values()) <= 1e-4
    ops = _ops(path)
    assert "GELU" in ops  # The exact GELU became the builtin.
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops)
    runner = Interpreter(model_path=str(path)).get_signature_runner()
    for batch in (1, 7):
        out = runner(images=samples[:batch])["logits"]
        np.testing.assert_allclose(
            out, trained_model(samples[:batch]), atol=1e-4
        )


@pytest.mark.parametrize("mode", ["float16", "dynamic", "int8"])
def test_quantized_exports_agree_on_top1(
    mode, trained_model, samples, calibration, tmp_path
):
    path = tmp_path / f"model.{mode}.tflite"
    report = export_tflite(
        trained_model, path, mode, calibration, samples=samples
    )
    assert report.passed and report.quantize == mode
    assert report.top1_agreement >= 0.95
    assert "top-1" in report.criterion
    float_size = len(_float_bytes(trained_model, tmp_path))
    if mode == "dynamic":
        # The converter leaves tensors under 1024 elements in float32, which
        # here is all of them.
        assert os.path.getsize(path) <= float_size
    else:
        assert os.path.getsize(path) < float_size
    if mode == "int8":
        ops = _ops(path)
        assert "QUANTIZE" in ops


def _float_bytes(model, tmp_path):
    path = tmp_path / "float.tflite"
    if not path.exists():
        export_tflite(model, path)
    return path.read_bytes()


def test_int8_accepts_a_dataset_of_image_label_batches(
    trained_model, calibration, tmp_path
):
    labels = np.zeros(len(calibration), "int64")
    dataset = tf.data.Dataset.from_tensor_slices((calibration, labels)).batch(8)
    report = export_tflite(
        trained_model,
        tmp_path / "m.tflite",
        "int8",
        dataset.as_numpy_iterator(),
    )
    assert report.passed


def test_low_agreement_is_refused_unless_forced(
    trained_model, samples, tmp_path
):
    path = tmp_path / "m.tflite"
    with pytest.raises(VerificationError, match=r"top-1 agreement >= 1.01"):
        export_tflite(
            trained_model,
            path,
            "float16",
            samples=samples,
            min_top1_agreement=1.01,
        )
    assert os.listdir(tmp_path) == []
    report = export_tflite(
        trained_model,
        path,
        "float16",
        samples=samples,
        min_top1_agreement=1.01,
        force=True,
    )
    assert report.forced and not report.passed
    assert path.exists()


def test_flex_ops_are_refused_with_their_names(tmp_path):
    class Patches(keras.layers.Layer):
        def call(self, x):
            return tf.image.extract_patches(
                x, [1, 4, 4, 1], [1, 4, 4, 1], [1, 1, 1, 1], "VALID"
            )

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(Patches()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(UnsupportedOpsError, match=r"Flex.*ExtractImagePatches"):
        export_tflite(model, tmp_path / "m.tflite")
    assert os.listdir(tmp_path) == []


def test_argument_errors(trained_model, tmp_path):
    path = tmp_path / "m.tflite"
    with pytest.raises(
        ValueError, match=r"quantize.*Received: quantize='int4'"
    ):
        export_tflite(trained_model, path, "int4")
    with pytest.raises(ValueError, match=r"representative_data=None"):
        export_tflite(trained_model, path, "int8")
    with pytest.raises(ValueError, match=r"\(N, 16, 16, 3\).*\(5, 16, 16\)"):
        export_tflite(trained_model, path, "int8", np.zeros((5, 16, 16)))
    assert os.listdir(tmp_path) == []
