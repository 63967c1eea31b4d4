import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np

import keras_vit  # noqa: F401  (registers the layers for loading)

ROOT = Path(__file__).resolve().parents[1]


def test_train_digits_example_learns_and_saves(tmp_path):
    out = tmp_path / "digits"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "train_digits.py"),
            "--epochs",
            "4",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    # Four epochs are far from converged; chance is 0.1.
    assert metrics["test_accuracy"] > 0.5
    model = keras.saving.load_model(out / "model.keras")
    assert np.load(out / "test_images.npy").shape == (360, 16, 16, 1)
    assert np.load(out / "train_images.npy").shape == (200, 16, 16, 1)
    assert json.loads((out / "labels.json").read_text()) == list("0123456789")
    logits = model(np.zeros((2, 16, 16, 1), "float32"))
    assert logits.shape == (2, 10)


def test_folder_example_trains_on_a_folder_of_pngs(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for name, level in (("dark", 40), ("light", 210)):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(
                rng.normal(level, 20, size=(12, 12, 3)), 0, 255
            ).astype(np.uint8)
            tf.io.write_file(
                str(tmp_path / "images" / name / f"{i}.png"),
                tf.io.encode_png(pixels),
            )
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "train_folder.py"),
            str(tmp_path / "images"),
            "--out",
            str(out),
            "--epochs",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert "test_accuracy" in metrics
    assert json.loads((out / "labels.json").read_text()) == ["dark", "light"]


def test_finetune_example_loads_a_checkpoint_at_another_resolution(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 255, size=(30, 30, 3), dtype=np.uint8)
            tf.io.write_file(
                str(tmp_path / "images" / name / f"{i}.png"),
                tf.io.encode_png(pixels),
            )
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "finetune.py"),
            str(tmp_path / "images"),
            "--weights",
            str(ROOT / "tests" / "fixtures" / "vit_tiny.npz"),
            "--image-size",
            "48",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "model.keras").exists()
    model = keras.saving.load_model(out / "model.keras")
    assert model.input_shape == (None, 48, 48, 3)
    assert model.output_shape == (None, 2)
    assert model.get_layer("encoder_block_0").num_heads == 4
