import keras
import numpy as np
import pytest
from keras import ops

from export import export_onnx
from export import float32_model
from export import format_table
from export import verify
from export.verify import artifact_format


def test_verify_catches_an_artifact_of_another_model(
    trained_model, samples, tmp_path
):
    path = tmp_path / "m.onnx"
    export_onnx(trained_model, path, samples=samples)
    assert verify(trained_model, path, samples).passed
    other = keras.models.clone_model(trained_model)  # Fresh weights.
    report = verify(other, path, samples)
    assert not report.passed
    assert max(report.max_abs_diff.values()) > 1e-4
    table = format_table([report])
    assert "FAIL" in table and "m.onnx" in table
    data = report.to_dict()
    assert data["passed"] is False
    assert set(data["max_abs_diff"]) == {"1", str(len(samples))}


def test_agreement_criterion(trained_model, samples, tmp_path):
    path = tmp_path / "m.onnx"
    export_onnx(trained_model, path, samples=samples)
    report = verify(trained_model, path, samples, min_top1_agreement=0.99)
    assert report.passed and report.top1_agreement == 1.0
    assert report.criterion == "top-1 agreement >= 0.99"


def test_artifact_format_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing.onnx"):
        artifact_format(tmp_path / "missing.onnx")
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"Unknown artifact format.*m.pt"):
        artifact_format(tmp_path / "m.pt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match=r"no saved_model.pb"):
        artifact_format(tmp_path / "folder")


def test_bad_samples(trained_model, tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 16, 16, 3\)"):
        verify(trained_model, tmp_path, np.zeros((3, 16, 16)))


def test_mixed_precision_models_export_as_their_float32_copy(
    trained_model, samples, tmp_path
):
    assert float32_model(trained_model) is trained_model
    mixed = keras.models.clone_model(
        trained_model,
        clone_function=lambda layer: layer.__class__.from_config(
            {**layer.get_config(), "dtype": "mixed_bfloat16"}
        ),
    )
    mixed.set_weights(trained_model.get_weights())
    assert mixed.get_layer("encoder_block_0").compute_dtype == "bfloat16"

    copy = float32_model(mixed)
    assert copy is not mixed
    assert all(layer.compute_dtype == "float32" for layer in copy.layers)
    assert [w.path for w in copy.weights] == [w.path for w in mixed.weights]
    for a, b in zip(copy.weights, trained_model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(
        np.asarray(copy(samples)), np.asarray(trained_model(samples)), atol=1e-6
    )
    # The bfloat16 model itself is ~1e-2 away, so a 1e-4 check of the file
    # against it would fail: the file is proved against the float32 copy.
    bf16_diff = np.max(
        np.abs(
            np.asarray(ops.cast(mixed(samples), "float32"))
            - np.asarray(trained_model(samples))
        )
    )
    assert bf16_diff > 1e-4
    report = export_onnx(mixed, tmp_path / "m.onnx", samples=samples)
    assert report.passed and max(report.max_abs_diff.values()) < 1e-4
    assert verify(mixed, tmp_path / "m.onnx", samples).passed


def test_float32_copy_needs_a_rebuildable_model():
    class Subclassed(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(keras.ops.mean(x, axis=(1, 2)))

    model = Subclassed(dtype="mixed_bfloat16")
    model(np.zeros((1, 16, 16, 3), "float32"))
    with pytest.raises(ValueError, match=r"mixed_bfloat16.*Subclassed"):
        float32_model(model)


def test_generated_pictures_are_marked_and_agreement_is_on_given_images():
    from export.samples import as_image_files

    given = np.random.default_rng(0).uniform(-1, 1, (70, 8, 8, 3))
    files = as_image_files(given.astype("float32"), (8, 8, 3))
    # Up to 64 given arrays become files; 8 generated pictures join them.
    assert len(files) == 72 and int(files.generated.sum()) == 8
    assert len(files.given()) == 64
    assert not files.generated[files.given()].any()
    # Only generated pictures: agreement is measured on all of them.
    alone = as_image_files(None, (8, 8, 3))
    assert alone.generated.all() and len(alone.given()) == len(alone)
