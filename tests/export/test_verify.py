import keras
import numpy as np
import pytest

from export import export_onnx
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
