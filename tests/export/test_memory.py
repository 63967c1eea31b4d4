"""Exports hold the weights about once, and refuse early where they would
not fit."""

import json
import os
import subprocess
import sys

import pytest

from export import ExportMemoryError
from export import _memory
from export import export_onnx
from export import export_saved_model
from export import export_tflite
from export.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.skipif(
    not os.path.exists("/proc/self/statm"), reason="reads Linux /proc"
)
@pytest.mark.parametrize("fmt", ["onnx", "tflite", "saved_model"])
def test_an_export_adds_what_the_memory_check_expects(fmt, tmp_path):
    # A model of ~100 MB of weights and little else: the old ONNX path
    # (frozen constants copied by tf2onnx's optimizers) added 7.8 GB here.
    done = subprocess.run(
        [sys.executable, "-m", "tests.export.memory_probe", fmt, tmp_path],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["passed"]
    multiple, _ = _memory.ADDED_MEMORY[fmt]
    bound = multiple * row["weight_bytes"] + 128 * 2**20
    assert row["added_bytes"] <= bound, (
        f"{fmt} export added {row['added_bytes'] / 2**20:.0f} MiB for "
        f"{row['weight_bytes'] / 2**20:.0f} MiB of weights; "
        f"expected at most {bound / 2**20:.0f} MiB"
    )


@pytest.fixture
def little_memory(monkeypatch):
    monkeypatch.delenv(_memory.SKIP_VARIABLE, raising=False)
    monkeypatch.setattr(_memory, "available_memory", lambda: 2**20)


@pytest.mark.parametrize(
    "export", [export_onnx, export_tflite, export_saved_model]
)
def test_an_export_that_would_not_fit_fails_before_writing(
    export, trained_model, tmp_path, little_memory
):
    target = tmp_path / "out"
    with pytest.raises(ExportMemoryError, match=r"needs about .* available"):
        export(trained_model, str(target))
    assert os.listdir(tmp_path) == []


def test_the_memory_check_can_be_skipped(
    trained_model, tmp_path, little_memory, monkeypatch
):
    monkeypatch.setenv(_memory.SKIP_VARIABLE, "1")
    assert export_saved_model(trained_model, str(tmp_path / "m")).passed


def test_the_command_checks_every_format_first(
    saved_model_file, tmp_path, little_memory, capsys
):
    out = tmp_path / "out"
    code = main([str(saved_model_file), "--to", str(out), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "error: Exporting this model to " in err
    assert f"{_memory.SKIP_VARIABLE}=1" in err
    assert not out.exists()


def test_a_model_too_large_for_one_flatbuffer_is_refused(
    trained_model, saved_model_file, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(_memory, "TFLITE_LIMIT", 1000)
    with pytest.raises(ValueError, match="at most 2 GiB.*ONNX"):
        export_tflite(trained_model, str(tmp_path / "m.tflite"))
    assert os.listdir(tmp_path) == []
    out = tmp_path / "out"
    code = main([str(saved_model_file), "--to", str(out), "--quiet"])
    assert code == 2
    assert "A TFLite file holds at most 2 GiB" in capsys.readouterr().err
    assert not out.exists()
    # The other formats are not limited.
    code = main([str(saved_model_file), "--to", str(out), "--formats", "onnx"])
    assert code == 0
