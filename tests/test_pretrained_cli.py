"""`keras-vit weights`, `predict --weights` and `train --weights`.

Checkpoints are made here; downloads come from a local HTTP server.
"""

import csv
import json
import signal
import subprocess
import time

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit import checkpoints
from keras_vit import presets
from keras_vit.cli import main
from keras_vit.presets import Preset
from tests.helpers import FileServer
from tests.helpers import write_colour_folder
from tests.test_cli import _cli
from tests.test_cli import _env

SMALL = dict(patch_size=8, hidden_dim=32, depth=2, num_heads=4, mlp_dim=64)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three classes of 12x12 PNGs: reddish, greenish, bluish noise."""
    return write_colour_folder(tmp_path_factory.mktemp("images"), 12, 30)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A 'pretrained' checkpoint: 32x32 images, 7 classes."""
    keras.utils.set_random_seed(1)
    model = keras_vit.build_vit(image_size=32, num_classes=7, **SMALL)
    head = model.get_layer("head")
    head.kernel.assign(np.ones(head.kernel.shape, "float32"))
    path = tmp_path_factory.mktemp("ckpt") / "pretrained.npz"
    keras_vit.save_npz(model, path)
    return path


def _history(out):
    with open(out / "history.csv") as f:
        return list(csv.DictReader(f))


def test_train_with_weights_replaces_the_head_and_resizes_the_grid(
    folder, checkpoint, tmp_path, capsys
):
    out = tmp_path / "run"
    args = ["train", "--dataset", folder, "--weights", checkpoint]
    args += ["--out", out, "--image-size", "16", "--epochs", "6"]
    args += ["--batch-size", "16", "--lr", "0.05", "--no-tensorboard"]
    assert main([str(a) for a in args]) == 0
    printed = capsys.readouterr().out
    assert "recipe: fine-tune of a pretrained checkpoint" in printed
    assert "SGD momentum 0.9" in printed
    assert "new head for 3 classes" in printed
    assert "position embedding [1, 17, 32] -> [1, 5, 32]" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["weights"] == str(checkpoint)
    assert config["optimizer"] == "sgd" and config["weight_decay"] == 0.0
    assert config["hidden_dim"] == 32 and config["num_heads"] == 4
    assert config["channels"] == 3 and config["image_size"] == 16
    assert json.loads((out / "labels.json").read_text()) == [
        "blue",
        "green",
        "red",
    ]
    model = keras.saving.load_model(out / "model.keras")
    assert model.input_shape == (None, 16, 16, 3)
    assert model.output_shape == (None, 3)
    losses = [float(r["loss"]) for r in _history(out)]
    assert losses[-1] < 0.8 * losses[0], losses
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.6


@pytest.mark.parametrize("checkpoint_channels", [1, 3])
def test_a_checkpoint_fine_tunes_on_gray_images_whatever_its_channels(
    checkpoint_channels, tmp_path, capsys
):
    """A one-channel checkpoint (a plain ViT trained here on digits) and an
    RGB one both fine-tune on the gray digits: the patch embedding is
    adapted to the data's channel, reported and recorded."""
    keras.utils.set_random_seed(2)
    trained = keras_vit.build_vit(
        image_size=24, channels=checkpoint_channels, num_classes=10, **SMALL
    )
    path = tmp_path / "ckpt.npz"
    keras_vit.save_npz(trained, path)
    out = tmp_path / "run"
    args = ["train", "--dataset", "digits", "--weights", path, "--out", out]
    args += ["--image-size", "24", "--epochs", "1", "--no-tensorboard"]
    assert main([str(a) for a in args]) == 0
    printed = capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["channels"] == 1
    model = keras.saving.load_model(out / "model.keras")
    assert model.input_shape == (None, 24, 24, 1)
    if checkpoint_channels == 1:
        assert "patch embedding" not in printed
        assert config["adapted_channels"] is None
    else:
        assert (
            "patch embedding 3 -> 1 channels (its 3 channels' kernels "
            "summed)" in printed
        )
        assert config["adapted_channels"] == [3, 1]


def test_freeze_backbone_trains_only_the_head(folder, checkpoint, tmp_path):
    out = tmp_path / "probe"
    args = ["train", "--dataset", folder, "--weights", checkpoint]
    args += ["--out", out, "--epochs", "2", "--freeze-backbone"]
    args += ["--no-tensorboard", "--quiet"]
    assert main([str(a) for a in args]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["trainable_parameters"] == 32 * 3 + 3
    assert config["learning_rate"] == 0.1 and config["freeze_backbone"]
    trained = checkpoints.model_arrays(
        keras.saving.load_model(out / "model.keras")
    )
    with np.load(checkpoint) as original:
        for name in original.files:
            if not name.startswith("head/"):
                np.testing.assert_array_equal(trained[name], original[name])
    assert np.abs(trained["head/kernel"]).max() > 0  # it did train


def test_architecture_flags_are_refused_with_weights(
    folder, checkpoint, tmp_path, capsys
):
    code = main(
        [
            "train",
            "--dataset",
            str(folder),
            "--weights",
            str(checkpoint),
            "--out",
            str(tmp_path / "x"),
            "--hidden-dim",
            "64",
        ]
    )
    assert code == 2
    assert "drop --hidden-dim" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "y"), "--freeze-backbone"])
    assert "--freeze-backbone needs --weights" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--layer-decay", "0.75", "--ema", "0.99", "--accumulate", "2"]
        + ["--lora-rank", "4"],
    ],
    ids=["plain", "layer_decay_ema_accumulate_lora"],
)
def test_a_killed_fine_tune_resumes(folder, checkpoint, tmp_path, options):
    out = tmp_path / "resume"
    command = _cli(
        "train",
        "--dataset",
        folder,
        "--weights",
        checkpoint,
        "--out",
        out,
        "--epochs",
        "30",
        "--batch-size",
        "8",
        "--image-size",
        "16",
        "--no-tensorboard",
        "--quiet",
        *options,
    )
    process = subprocess.Popen(
        command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    history = out / "history.csv"
    deadline = time.time() + 300
    while time.time() < deadline:
        if history.exists() and len(history.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = len(_history(out))
    assert 2 <= done_before < 30
    result = subprocess.run(
        command, capture_output=True, text=True, env=_env(), timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    epochs = [int(r["epoch"]) for r in _history(out)]
    assert epochs[done_before] >= done_before - 1 > 0 and epochs[-1] == 29
    assert json.loads((out / "metrics.json").read_text())["resumed"] is True


# ------------------------------------------------------------ weights


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A registered ImageNet-1k Ti/16 preset at 32x32 on a local server."""
    monkeypatch.setattr(presets, "_REGISTRY", dict(presets._REGISTRY))
    monkeypatch.setenv("KERAS_VIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KERAS_VIT_OFFLINE", raising=False)
    model = keras_vit.build_vit("Ti/16", image_size=32, num_classes=1000)
    # A head that picks class 1 ("goldfish") for every image.
    head = model.get_layer("head")
    bias = np.zeros(1000, "float32")
    bias[1] = 10.0
    head.bias.assign(bias)
    keras_vit.save_npz(model, tmp_path / "ti.npz")
    server = FileServer()
    server.files["/ti.npz"] = (tmp_path / "ti.npz").read_bytes()
    presets.register_preset(
        Preset(
            name="test/ti16-in1k",
            variant="Ti/16",
            image_size=32,
            num_classes=1000,
            labels="imagenet-1k",
            url=server.url + "/ti.npz",
        )
    )
    yield server
    server.stop()


def test_weights_list_download_and_path(served, capsys):
    assert main(["weights", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == presets.list_presets()
    mine = next(r for r in rows if r["name"] == "test/ti16-in1k")
    assert mine["cached"] is False and mine["grid_size"] == [2, 2]

    assert main(["weights", "path", "test/ti16-in1k"]) == 1
    assert "weights download test/ti16-in1k" in capsys.readouterr().err
    assert main(["weights", "download", "test/ti16-in1k", "--quiet"]) == 0
    path = capsys.readouterr().out.strip()
    assert main(["weights", "path", "test/ti16-in1k"]) == 0
    assert capsys.readouterr().out.strip() == path
    assert served.requests == 1

    assert main(["weights", "list", "--variant", "H/14"]) == 0
    table = capsys.readouterr().out
    assert "imagenet21k/ViT-H_14" in table and "B/16" not in table
    assert main(["weights", "download", "vit_base_patch16_224.augreg"]) == 2
    assert "Close names" in capsys.readouterr().err


def test_predict_with_a_preset_prints_imagenet_labels(served, folder, capsys):
    image = str(next((folder / "red").iterdir()))
    code = main(
        ["predict", image, "--weights", "test/ti16-in1k", "--top-k", "2"]
    )
    assert code == 0
    out, err = capsys.readouterr()
    assert "downloading ti.npz: 100%" in err  # progress on stderr
    assert len(out.strip().splitlines()) == 1  # stdout: the answer alone
    line = out.strip()
    # softmax of a bias of 10 against 999 zeros: 0.957
    assert line.startswith(f"{image}: goldfish, Carassius auratus 0.957, ")
    code = main(["predict", image, "--weights", "test/ti16-in1k", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)  # no progress: cached
    assert result[0]["top_k"][0]["label"] == "goldfish, Carassius auratus"


def test_a_failed_download_is_one_line_and_exit_1(served, folder, capsys):
    served.stop()
    image = str(next((folder / "red").iterdir()))
    assert main(["predict", image, "--weights", "test/ti16-in1k"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Could not fetch" in err[0], err
    assert "place it at" in err[0]


def test_the_fine_tuning_tools_train_are_recorded_and_export_verified(
    folder, checkpoint, tmp_path, capsys
):
    from export.cli import main as export_main
    from keras_vit.lora import lora_layers

    out = tmp_path / "tools"
    args = ["train", "--dataset", folder, "--weights", checkpoint]
    args += ["--out", out, "--epochs", "3", "--image-size", "16"]
    args += ["--layer-decay", "0.75", "--ema", "0.9", "--accumulate", "2"]
    args += ["--lora-rank", "4", "--lora-alpha", "8", "--lora-mlp"]
    assert main([str(a) for a in args + ["--no-tensorboard"]]) == 0
    printed = capsys.readouterr().out
    recipe = next(line for line in printed.splitlines() if "recipe:" in line)
    assert "layer decay 0.75" in recipe and "momentum 0.9" in recipe
    assert "best.keras and model.keras use the average" in recipe
    assert "2 batches per update" in recipe
    assert "LoRA rank 4 on the attention and MLP projections" in recipe
    config = json.loads((out / "config.json").read_text())
    assert config["layer_decay"] == 0.75 and config["ema"] == 0.9
    assert config["accumulate"] == 2
    assert config["lora"] == {"rank": 4, "alpha": 8.0, "mlp": True}
    # Only the LoRA matrices (2 blocks x 6 kernels) and the head train.
    hidden, mlp, classes = SMALL["hidden_dim"], SMALL["mlp_dim"], 3
    lora = 2 * 4 * (4 * 2 * hidden + 2 * (hidden + mlp))
    assert config["trainable_parameters"] == lora + hidden * classes + classes
    model = keras.saving.load_model(out / "model.keras")
    assert lora_layers(model)
    # model.keras holds the average that validation scored.
    metrics = json.loads((out / "metrics.json").read_text())
    history = _history(out)
    assert metrics["validation_accuracy"] == pytest.approx(
        float(history[-1]["val_accuracy"]), abs=1e-4
    )
    # A new process loads it: the optimizer's class is registered on import.
    evaluate = _cli("evaluate", out / "model.keras", "--dataset", folder)
    result = subprocess.run(
        evaluate, capture_output=True, text=True, env=_env()
    )
    assert result.returncode == 0, result.stderr[-2000:]
    export = tmp_path / "export"
    argv = [str(out / "model.keras"), "--to", str(export), "--formats"]
    assert export_main(argv + ["tflite,onnx", "--samples", str(folder)]) == 0
    assert json.loads((export / "report.json").read_text())["passed"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lora-rank", "4"], "--lora-rank needs --weights"),
        (["--lora-mlp"], "--lora-alpha and --lora-mlp need --lora-rank"),
        (["--ema", "1"], "expected a number in (0, 1)"),
        (["--accumulate", "1"], "expected an integer >= 2"),
        (["--layer-decay", "0"], "expected a number in (0, 1]"),
    ],
)
def test_fine_tuning_flags_misused_are_usage_errors(
    folder, tmp_path, capsys, extra, message
):
    out = tmp_path / "bad"
    argv = ["train", "--dataset", str(folder), "--out", str(out), *extra]
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own refusal of a value
        code = exit.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_lora_and_a_linear_probe_conflict(folder, checkpoint, tmp_path, capsys):
    argv = ["train", "--dataset", str(folder), "--weights", str(checkpoint)]
    argv += ["--out", str(tmp_path / "x"), "--lora-rank", "2"]
    assert main(argv + ["--freeze-backbone"]) == 2
    assert (
        "--lora-rank and --freeze-backbone conflict" in capsys.readouterr().err
    )
