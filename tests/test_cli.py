import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vit.cli import main
from keras_vit.training import hardware_precision

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--image-size",
    "8",
    "--patch-size",
    "4",
    "--hidden-dim",
    "8",
    "--depth",
    "1",
    "--num-heads",
    "2",
    "--mlp-dim",
    "16",
    "--batch-size",
    "64",
    "--no-tensorboard",
    "--quiet",
]


def _env(**extra):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _cli(*args, **popen):
    return [sys.executable, "-m", "keras_vit", *map(str, args)]


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "digits"
    code = main(
        [
            "train",
            "--dataset",
            "digits",
            "--out",
            str(out),
            "--epochs",
            "3",
            *TINY,
        ]
    )
    assert code == 0
    return out


def test_train_writes_the_run_folder(trained, capsys):
    for name in (
        "model.keras",
        "best.keras",
        "labels.json",
        "history.csv",
        "metrics.json",
        "config.json",
    ):
        assert (trained / name).is_file(), name
    assert not (trained / "backup").exists()  # Removed once finished.
    metrics = json.loads((trained / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert {"test_loss", "validation_accuracy", "train_seconds"} <= set(metrics)
    assert json.loads((trained / "labels.json").read_text()) == [
        str(i) for i in range(10)
    ]
    assert len(_rows(trained / "history.csv")) == 3
    config = json.loads((trained / "config.json").read_text())
    assert config["image_size"] == 8 and config["hidden_dim"] == 8
    assert config["sizes"]["test"] == 359
    # The recipe for 1,797 small gray images, with what was given.
    assert config["tokenizer"] == "conv" and config["pooling"] == "sequence"
    assert config["augment"] == []
    assert config["recipe"].startswith("1,797 images")
    assert "given: " in config["recipe"] and "hidden_dim" in config["recipe"]


def test_the_trained_model_carries_its_class_names(trained):
    import keras_vit

    model = keras.saving.load_model(trained / "model.keras")
    labels = json.loads((trained / "labels.json").read_text())
    assert keras_vit.class_names(model) == labels == [str(i) for i in range(10)]


def test_the_recipe_is_printed_and_options_override_it(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            "digits",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--tokenizer",
            "shifted_patch",
            "--pooling",
            "token",
            "--locality-attention",
            "--lr",
            "0.01",
            *[a for a in TINY if a != "--quiet"],
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    (line,) = [x for x in printed.splitlines() if x.startswith("recipe: ")]
    assert "1 epochs as asked" in line and "locality_attention" in line
    config = json.loads((out / "config.json").read_text())
    assert config["tokenizer"] == "shifted_patch"
    assert config["pooling"] == "token"
    assert config["locality_attention"] is True
    assert config["learning_rate"] == 0.01
    model = keras.saving.load_model(out / "model.keras")
    assert model.get_layer("encoder_block_0").attention.locality


def test_a_finished_run_is_not_overwritten(trained, capsys):
    code = main(["train", "--dataset", "digits", "--out", str(trained), *TINY])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0]


def test_evaluate_matches_the_training_test_split(trained, capsys):
    code = main(
        [
            "evaluate",
            str(trained / "model.keras"),
            "--dataset",
            "digits",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = json.loads((trained / "metrics.json").read_text())
    assert result["split"] == "test" and result["examples"] == 359
    assert result["accuracy"] == pytest.approx(
        metrics["test_accuracy"], abs=1e-4
    )
    assert main(["evaluate", str(trained / "model.keras")]) == 0
    assert "accuracy" in capsys.readouterr().out
    # The training run's folder stands for its model.keras.
    assert main(["evaluate", str(trained), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["accuracy"] == result["accuracy"]


def test_predict_top_k(trained, tmp_path, capsys):
    from sklearn.datasets import load_digits

    digits = load_digits()
    paths = []
    for i in range(3):
        pixels = np.round(digits.images[i] * 255 / 16).astype(np.uint8)[
            ..., None
        ]
        path = tmp_path / f"digit{i}.png"
        tf.io.write_file(str(path), tf.io.encode_png(pixels))
        paths.append(str(path))
    code = main(
        [
            "predict",
            str(trained / "model.keras"),
            *paths,
            "--top-k",
            "3",
            "--json",
        ]
    )
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in results] == paths
    for r in results:
        probs = [t["probability"] for t in r["top_k"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert sum(probs) <= 1.0 + 1e-3
        assert all(
            t["label"] in [str(i) for i in range(10)] for t in r["top_k"]
        )
    assert main(["predict", str(trained / "model.keras"), paths[0]]) == 0
    assert "digit0.png:" in capsys.readouterr().out
    # The run's folder stands for its model.keras.
    assert (
        main(["predict", str(trained), *paths, "--top-k", "3", "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out) == results


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--dataset", "digits"], "required: --out"),
        (
            ["train", "--out", "x", "--epochs", "0"],
            "--epochs: expected a positive integer",
        ),
        (["train", "--out", "x", "--variant", "Z/9"], "invalid choice: 'Z/9'"),
        (
            ["train", "--out", "{tmp}/r", "--dataset", "mnist"],
            "Unknown dataset",
        ),
        (
            ["train", "--out", "{tmp}/r", "--augment", "blur"],
            "Unknown augmentation",
        ),
        (["evaluate", "{tmp}/none.keras"], "No model file"),
        (["evaluate", "{tmp}"], "folder without a model.keras"),
        (
            ["predict", "{trained}/model.keras", "{tmp}/missing.png"],
            "No image file",
        ),
        (["fly"], "invalid choice: 'fly'"),
    ],
)
def test_wrong_arguments_exit_non_zero_with_one_line(
    argv, message, trained, tmp_path, capsys
):
    argv = [
        a.replace("{tmp}", str(tmp_path)).replace("{trained}", str(trained))
        for a in argv
    ]
    try:
        code = main(argv)
    except SystemExit as error:
        code = error.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert message in err[0]


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "weights"])
def test_help_is_complete(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    expected = {
        "train": [
            "--dataset",
            "--variant",
            "--epochs",
            "--batch-size",
            "--lr",
            "--out",
            "--precision",
            "--strategy",
            "--augment",
            "--seed",
            "--weights",
            "--freeze-backbone",
        ],
        "evaluate": ["--dataset", "--split", "--json"],
        "predict": ["--top-k", "--labels", "--json", "--weights"],
        "weights": ["list", "download", "path", "KERAS_VIT_OFFLINE"],
    }[command]
    for flag in expected:
        assert flag in text


@pytest.mark.parametrize(
    "options",
    [
        ["--precision", "mixed_bfloat16"],
        ["--precision", "mixed_float16"],
        ["--hidden-dim", "128", "--mlp-dim", "128"],  # --precision auto
    ],
)
def test_precision_options_train(options, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--out", str(out), "--epochs", "1", *TINY, *options])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["test_loss"])
    config = json.loads((out / "config.json").read_text())
    if "--precision" in options:
        assert config["precision"] == options[1]
    else:
        expected = hardware_precision(config["hidden_dim"])
        assert config["precision"] == expected
        assert keras.config.dtype_policy().name == expected


def test_python_dash_m_and_determinism(tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        result = subprocess.run(
            _cli("train", "--out", out, "--epochs", "2", *TINY),
            capture_output=True,
            text=True,
            env=_env(),
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        runs.append(
            (
                (out / "history.csv").read_text(),
                (out / "metrics.json").read_text(),
            )
        )
    (history_a, metrics_a), (history_b, metrics_b) = runs
    assert history_a == history_b
    import keras

    import keras_vit  # noqa: F401

    first, second = (
        keras.saving.load_model(tmp_path / name / "model.keras")
        for name in "ab"
    )
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bitwise

    def drop(text):
        return {
            k: v for k, v in json.loads(text).items() if k != "train_seconds"
        }

    assert drop(metrics_a) == drop(metrics_b)


def test_killed_training_resumes_from_its_last_epoch(tmp_path):
    out = tmp_path / "run"
    command = _cli("train", "--out", out, "--epochs", "12", *TINY)
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
    assert process.returncode == -signal.SIGKILL
    assert (out / "backup").is_dir()
    done_before = len(_rows(history))
    assert 2 <= done_before < 12
    result = subprocess.run(
        command, capture_output=True, text=True, env=_env(), timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    epochs = [int(r["epoch"]) for r in _rows(history)]
    resumed = epochs[done_before:]
    assert resumed and resumed[0] >= done_before - 1 > 0  # not from scratch
    assert epochs[-1] == 11
    assert json.loads((out / "metrics.json").read_text())["resumed"] is True
    import keras

    import keras_vit  # noqa: F401

    keras.saving.load_model(out / "model.keras")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multiworker_training_two_processes(tmp_path):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    processes = []
    for index in range(2):
        config = {
            "cluster": {"worker": workers},
            "task": {"type": "worker", "index": index},
        }
        processes.append(
            subprocess.Popen(
                _cli(
                    "train",
                    "--out",
                    tmp_path / f"w{index}",
                    "--epochs",
                    "2",
                    "--strategy",
                    "multiworker",
                    *TINY,
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_env(TF_CONFIG=json.dumps(config)),
            )
        )
    try:
        for process in processes:
            _, stderr = process.communicate(timeout=600)
            assert process.returncode == 0, stderr[-3000:]
    finally:
        for process in processes:
            process.kill()
    import keras

    import keras_vit  # noqa: F401

    first, second = (
        keras.saving.load_model(tmp_path / f"w{i}" / "model.keras")
        for i in range(2)
    )
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    config = json.loads((tmp_path / "w0" / "config.json").read_text())
    assert config["replicas"] == 2
    assert len(_rows(tmp_path / "w0" / "history.csv")) == 2


def test_a_softmax_head_is_not_softmaxed_twice(tmp_path, capsys):
    import keras_vit

    keras.utils.set_random_seed(0)
    model = keras_vit.build_vit(
        image_size=8,
        patch_size=4,
        hidden_dim=8,
        depth=1,
        num_heads=2,
        mlp_dim=16,
        num_classes=10,
        channels=1,
        classifier_activation="softmax",
    )
    head = model.get_layer("head")
    rng = np.random.default_rng(0)
    head.kernel.assign(rng.normal(0, 3, head.kernel.shape).astype("float32"))
    path = tmp_path / "softmax.keras"
    model.save(path)
    image = tmp_path / "x.png"
    keras.utils.save_img(image, rng.integers(0, 255, (8, 8, 1)).astype("uint8"))
    assert (
        main(["predict", str(path), str(image), "--json", "--top-k", "10"]) == 0
    )
    top = json.loads(capsys.readouterr().out)[0]["top_k"]
    from keras_vit.preprocessing import read_image

    expected = model.predict(read_image(image, (8, 8), 1)[None], verbose=0)[0]
    assert sum(t["probability"] for t in top) == pytest.approx(1.0, abs=1e-3)
    assert top[0]["probability"] == pytest.approx(expected.max(), abs=1e-4)
    # evaluate scores probabilities as probabilities: the loss equals the
    # cross-entropy of the model's own outputs.
    assert (
        main(
            [
                "evaluate",
                str(path),
                "--dataset",
                "digits",
                "--json",
                "--split",
                "test",
            ]
        )
        == 0
    )
    loss = json.loads(capsys.readouterr().out)["loss"]
    from keras_vit.data import load_datasets

    test = load_datasets("digits", image_size=8, channels=1, one_hot=True).test
    labels = np.concatenate([y for _, y in test])
    features = keras.Model(model.input, model.get_layer("pooling").output)
    pooled = np.concatenate([features.predict(x, verbose=0) for x, _ in test])
    logits = pooled.astype("float64") @ head.kernel.numpy() + head.bias.numpy()
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    expected = -(labels * log_p).sum(-1).mean()
    assert loss == pytest.approx(expected, rel=1e-3)


def test_xla_and_determinism_are_separate_explicit_choices(tmp_path, capsys):
    from keras_vit.cli import _deterministic
    from keras_vit.cli import build_parser

    def resolved(*flags):
        args = build_parser().parse_args(
            ["train", "--out", str(tmp_path), *flags]
        )
        return _deterministic(args)

    assert resolved() is True
    assert resolved("--jit-compile") is False
    assert resolved("--no-deterministic") is False
    code = main(
        [
            "train",
            "--out",
            str(tmp_path / "run"),
            "--jit-compile",
            "--deterministic",
            *TINY,
        ]
    )
    assert code == 2
    message = capsys.readouterr().err
    assert "--jit-compile and --deterministic conflict" in message
    assert not (tmp_path / "run").exists()


def test_jit_compile_trains_with_xla_and_without_op_determinism(tmp_path):
    # A fresh process: op determinism, once on, stays on in a process.
    out = tmp_path / "run"
    result = subprocess.run(
        _cli("train", "--out", out, "--epochs", "1", "--jit-compile", *TINY),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    # compile_for_training raises if Keras would drop XLA.
    assert config["jit_compile"] is True
    assert config["deterministic"] is False
    assert np.isfinite(
        json.loads((out / "metrics.json").read_text())["test_loss"]
    )


def _digit_folder(root, per_class=4, names=None):
    from sklearn.datasets import load_digits

    digits = load_digits()
    counts = {}
    for image, label in zip(digits.images[-200:], digits.target[-200:]):
        if counts.get(label, 0) == per_class:
            continue
        counts[label] = counts.get(label, 0) + 1
        folder = root / (names[label] if names else str(label))
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.round(image * 255 / 16).astype(np.uint8)[..., None]
        path = folder / f"{label}_{counts[label]}.png"
        tf.io.write_file(str(path), tf.io.encode_png(pixels))
    return root


def test_evaluate_scores_a_whole_other_folder_without_split_flags(
    trained, tmp_path, capsys
):
    from keras_vit.preprocessing import list_images
    from keras_vit.preprocessing import read_images

    folder = _digit_folder(tmp_path / "new_digits")
    model_path = str(trained / "model.keras")
    assert (
        main(["evaluate", model_path, "--dataset", str(folder), "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["split"] == "all" and result["examples"] == 40
    assert "not trained on" in result["why"]
    # The same score as predicting every file.
    model = keras.saving.load_model(model_path)
    files = list_images(str(folder))
    labels = [int(os.path.basename(os.path.dirname(f))) for f in files]
    images = read_images(files, model.input_shape[1:3], 1)
    predicted = model.predict(images, verbose=0).argmax(-1)
    assert result["accuracy"] == pytest.approx(
        np.mean(predicted == np.asarray(labels)), abs=1e-4
    )
    assert main(["evaluate", model_path, "--dataset", str(folder)]) == 0
    assert "on all 40 images of" in capsys.readouterr().out


def test_evaluate_refuses_a_folder_of_other_classes(trained, tmp_path, capsys):
    names = [f"class_{i}" for i in range(10)]
    folder = _digit_folder(tmp_path / "other", per_class=1, names=names)
    code = main(
        ["evaluate", str(trained / "model.keras"), "--dataset", str(folder)]
    )
    assert code == 2
    assert "are not the model's classes" in capsys.readouterr().err


def test_evaluate_keeps_the_test_split_of_the_training_folder(tmp_path):
    from keras_vit.cli import _evaluation_split
    from keras_vit.cli import build_parser

    trained_on, other = tmp_path / "photos", tmp_path / "more"
    trained_on.mkdir()
    other.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    model = str(run / "model.keras")

    def split(*flags):
        args = build_parser().parse_args(["evaluate", model, *flags])
        return _evaluation_split(args)[0]

    assert split("--dataset", str(other)) == "all"  # no config.json
    (run / "config.json").write_text(json.dumps({"dataset": str(trained_on)}))
    assert split("--dataset", str(trained_on)) == "test"
    assert split("--dataset", str(other)) == "all"
    assert split("--dataset", str(other), "--split", "test") == "test"
    assert split("--dataset", "digits") == "test"


def test_a_file_damaged_in_its_middle_is_reported_in_one_line(tmp_path, capsys):
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 255, (8, 8, 3), np.uint8)
            tf.io.write_file(
                str(root / name / f"{i}.png"), tf.io.encode_png(pixels)
            )
    damaged = root / "a" / "0.png"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 24] = (
        b"\0" * 24
    )  # header, end intact
    damaged.write_bytes(bytes(data))
    common = [
        "train",
        "--dataset",
        str(root),
        "--epochs",
        "1",
        *TINY,
        "--test-split",
        "0",
        "--validation-split",
        "0",
    ]
    assert main([*common, "--out", str(tmp_path / "r1")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--check-images decode" in err[0]
    # Decoding every file names it before training.
    code = main(
        [*common, "--out", str(tmp_path / "r2"), "--check-images", "decode"]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0.png" in err[0]
