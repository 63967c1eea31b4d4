import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = Path(__file__).with_name("distributed_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def _env(**extra):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _run(mode, out, *extra, **env):
    result = subprocess.run(
        [sys.executable, str(WORKER), mode, str(out), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(**env),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _weights(path):
    with np.load(path) as data:
        return [data[k] for k in sorted(data.files, key=lambda k: int(k[4:]))]


def test_mirrored_over_two_cpu_devices_agrees_with_one_device(tmp_path):
    single = _run("single", tmp_path / "single.npz")
    mirrored = _run("mirrored", tmp_path / "mirrored.npz")
    assert single["replicas"] == 1
    assert mirrored["replicas"] == 2
    np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=1e-4)
    for a, b in zip(
        _weights(tmp_path / "single.npz"), _weights(tmp_path / "mirrored.npz")
    ):
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert single["loss"][1] < single["loss"][0]


def test_the_fine_tuning_tools_under_mirrored_agree_with_one_device(tmp_path):
    """Layer-wise LR decay and EMA under `MirroredStrategy` (two CPU
    devices) give one device's weights; gradient accumulation, which Keras
    cannot run there, is refused in one clear error."""
    single = _run("single", tmp_path / "single.npz", "tools")
    mirrored = _run("mirrored", tmp_path / "mirrored.npz", "tools")
    assert mirrored["replicas"] == 2
    assert single["accumulation_refused"] is None
    assert "strategy of 2 replicas" in mirrored["accumulation_refused"]
    np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=1e-4)
    for a, b in zip(
        _weights(tmp_path / "single.npz"), _weights(tmp_path / "mirrored.npz")
    ):
        np.testing.assert_allclose(a, b, atol=1e-4)
