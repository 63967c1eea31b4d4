import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from export.cli import main


def _run(*argv):
    return main([str(a) for a in argv])


def test_exports_every_format_with_report_and_manifest(
    saved_model_file, calibration, samples, tmp_path, capsys
):
    np.save(tmp_path / "calib.npy", calibration)
    np.save(tmp_path / "samples.npy", samples)
    (saved_model_file.parent / "labels.json").write_text('["a", "b", "c"]')
    out = tmp_path / "out"
    code = _run(
        saved_model_file,
        "--to",
        out,
        "--quantize",
        "float16,int8",
        "--representative-data",
        tmp_path / "calib.npy",
        "--samples",
        tmp_path / "samples.npy",
        "--quiet",
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert sorted(os.listdir(out)) == [
        "manifest.json",
        "model.float16.tflite",
        "model.int8.onnx",
        "model.int8.tflite",
        "model.onnx",
        "model.tflite",
        "report.json",
        "saved_model",
    ]
    report = json.loads((out / "report.json").read_text())
    # The 12 sample arrays as PNG files, and 8 generated files of other
    # sizes and formats, each through the files' own preprocessing.
    assert report["passed"] and report["samples"] == len(samples) + 8
    assert len(report["reports"]) == 6
    # The int8 files were chosen among measured candidates.
    for name in ("model.int8.tflite", "model.int8.onnx"):
        choice = report["int8_choice"][name]
        assert len(choice["candidates"]) == 3 and choice["labelled"] is False
    for entry in report["reports"]:
        assert entry["passed"]
        if entry["quantize"] is None:
            assert max(entry["max_abs_diff"].values()) <= 1e-4
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"]["dtype"] == "uint8"
    assert manifest["input"]["shape"] == [None, None, None, 3]
    assert manifest["preprocessing"]["inside"]
    assert manifest["preprocessing"]["resize"]["size"] == [16, 16]
    assert manifest["outputs"] == ["logits", "probabilities"]
    assert manifest["class_names"] == ["a", "b", "c"]
    assert manifest["keras_vit_version"]
    assert manifest["artifacts"]["model.onnx"]["sha256"]
    for line in ("saved_model", "model.int8.tflite", "top-1"):
        assert line in printed
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_class_names_the_model_carries_reach_the_manifest(tmp_path, capsys):
    import keras_vit

    model = keras_vit.build_vit(
        image_size=16,
        patch_size=8,
        hidden_dim=8,
        depth=1,
        num_heads=2,
        mlp_dim=16,
        class_names=["cat", "dog"],
    )
    model.save(tmp_path / "named.keras")  # no labels.json beside it
    out = tmp_path / "out"
    code = _run(tmp_path / "named.keras", "--to", out, "--quiet")
    assert code == 0, capsys.readouterr()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["class_names"] == ["cat", "dog"]
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and len(report["reports"]) == 3


def test_image_folder_as_representative_data(
    saved_model_file, tmp_path, capsys
):
    import tensorflow as tf

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        pixels = rng.integers(0, 255, size=(20, 24, 3), dtype=np.uint8)
        tf.io.write_file(str(folder / f"{i}.png"), tf.io.encode_png(pixels))
    out = tmp_path / "out"
    code = _run(
        saved_model_file,
        "--to",
        out,
        "--formats",
        "tflite",
        "--representative-data",
        folder,
        "--quiet",
    )
    assert code == 0, capsys.readouterr()
    # The 4 files themselves (and 8 generated ones) went through the file.
    report = json.loads((out / "report.json").read_text())
    assert report["samples"] == 4 + 8


def test_limited_image_data_is_sampled_from_every_class(tmp_path):
    import tensorflow as tf

    from export.cli import load_images

    # A class-by-class folder (sorted listing: all of "a", then "b", "c")
    # and a class-sorted array: a limit must not keep just the first class.
    for label, name in enumerate("abc"):
        (tmp_path / name).mkdir()
        png = tf.io.encode_png(np.full((2, 2, 1), 100 * label, np.uint8))
        for i in range(40):
            (tmp_path / name / f"{i:02d}.png").write_bytes(png.numpy())
    images = load_images(str(tmp_path), (2, 2, 1), (0.0, 255.0), limit=30)
    levels = np.round(images[:, 0, 0, 0]).astype(int) // 100
    assert images.shape == (30, 2, 2, 1)
    assert np.bincount(levels, minlength=3).min() >= 5
    array = np.repeat(np.arange(3, dtype=np.float32), 40)
    array = np.broadcast_to(array[:, None, None, None], (120, 2, 2, 1))
    np.save(tmp_path / "sorted.npy", array)
    images = load_images(str(tmp_path / "sorted.npy"), (2, 2, 1), limit=30)
    levels = images[:, 0, 0, 0].astype(int)
    assert np.bincount(levels, minlength=3).min() >= 5
    again = load_images(str(tmp_path / "sorted.npy"), (2, 2, 1), limit=30)
    np.testing.assert_array_equal(images, again)


def test_existing_output_needs_overwrite(saved_model_file, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("x")
    code = _run(saved_model_file, "--to", out, "--formats", "onnx", "--quiet")
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "already exists" in err[0] and "--overwrite" in err[0]
    )
    assert (out / "keep").exists()
    code = _run(
        saved_model_file,
        "--to",
        out,
        "--formats",
        "onnx",
        "--overwrite",
        "--quiet",
    )
    assert code == 0
    assert sorted(os.listdir(out)) == [
        "manifest.json",
        "model.onnx",
        "report.json",
    ]


def test_failed_verification_writes_nothing(saved_model_file, tmp_path, capsys):
    out = tmp_path / "out"
    code = _run(
        saved_model_file,
        "--to",
        out,
        "--formats",
        "tflite",
        "--quantize",
        "float16",
        "--min-top1-agreement",
        "1.5",
        "--quiet",
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "FAIL" in captured.out
    assert "nothing was written" in captured.err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.keras", "--to", "out"], "No model file"),
        (["{model}", "--to", "out", "--formats", "pt"], "--formats must be"),
        (
            ["{model}", "--to", "out", "--quantize", "int8"],
            "--representative-data",
        ),
        (
            [
                "{model}",
                "--to",
                "out",
                "--formats",
                "onnx",
                "--quantize",
                "float16",
            ],
            "add tflite (or onnx) to --formats",
        ),
        (
            [
                "{model}",
                "--to",
                "out",
                "--formats",
                "saved_model",
                "--quantize",
                "dynamic",
            ],
            "add tflite (or onnx) to --formats",
        ),
        (
            ["{model}", "--to", "out", "--representative-data", "nope.npy"],
            "No image data",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    args, message, saved_model_file, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{model}", str(saved_model_file)) for a in args]
    try:
        code = main(argv)
    except SystemExit as error:  # argparse rejects the argument itself.
        code = error.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]
    assert not (tmp_path / "out").exists()


def test_lambda_models_are_refused_without_unsafe(tmp_path, capsys):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    model.save(tmp_path / "lambda.keras")
    code = main([str(tmp_path / "lambda.keras"), "--to", str(tmp_path / "o")])
    assert code == 2
    assert "Lambda" in capsys.readouterr().err
    code = main(
        [
            str(tmp_path / "lambda.keras"),
            "--to",
            str(tmp_path / "o"),
            "--formats",
            "onnx",
            "--unsafe",
            "--quiet",
        ]
    )
    assert code == 0


def test_bench_times_every_runtime(saved_model_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(saved_model_file, "--to", out, "--quiet") == 0
    capsys.readouterr()
    code = main(
        [
            "bench",
            str(out),
            "--model",
            str(saved_model_file),
            "--batch-size",
            "4",
            "--repeats",
            "3",
            "--json",
            str(tmp_path / "bench.json"),
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    for runtime in ("keras", "tensorflow", "litert", "onnxruntime"):
        assert runtime in table
    rows = json.loads((tmp_path / "bench.json").read_text())
    assert len(rows) == 4
    assert all(r["batch1_ms"] > 0 and r["images_per_s"] > 0 for r in rows)
    assert all(r["threads"] >= 1 for r in rows)
    assert main(["bench", str(tmp_path)]) == 2


def test_bench_tune_writes_the_fastest_runtime_settings(
    saved_model_file, tmp_path, capsys
):
    out = tmp_path / "out"
    assert _run(saved_model_file, "--to", out, "--quiet") == 0
    before = json.loads((out / "manifest.json").read_text())
    capsys.readouterr()
    code = main(
        [
            "bench",
            str(out),
            "--tune",
            "--threads",
            "1,2",
            "--batch-size",
            "2",
            "--repeats",
            "2",
            "--json",
            str(tmp_path / "tune.json"),
        ]
    )
    assert code == 0
    assert "manifest.json" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    artifacts = manifest["artifacts"]
    assert "runtime_settings" not in artifacts["saved_model"]
    for name in ("model.tflite", "model.onnx"):
        settings = artifacts[name]["runtime_settings"]
        assert settings["measured_on"]["cores"] >= 1
        for batch in ("batch1", "batch2"):
            assert settings[batch]["threads"] in (1, 2)
            assert settings[batch]["ms"] > 0
    assert artifacts["model.onnx"]["runtime_settings"]["batch1"][
        "optimization"
    ] in ("basic", "extended", "all")
    # Everything else in the manifest is as the export wrote it.
    for entry in artifacts.values():
        entry.pop("runtime_settings", None)
    assert manifest == before
    measured = json.loads((tmp_path / "tune.json").read_text())
    assert len(measured["model.onnx"]["measured"]) == 2 * 3
    assert len(measured["model.tflite"]["measured"]) == 2
    with pytest.raises(SystemExit) as usage:
        main(["bench", str(out), "--tune", "--threads", "0"])
    assert usage.value.code == 2
    assert main(["bench", str(out), "--threads", "1,2"]) == 2


def test_killed_export_leaves_no_artifact(saved_model_file, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "export",
            str(saved_model_file),
            "--to",
            str(out),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    # Kill it once it is writing its second artifact.
    deadline = time.time() + 120
    for line in process.stderr:
        if "exporting model.tflite" in line or time.time() > deadline:
            break
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not out.exists()
    # Run again: the leftover staging folder does not get in the way.
    code = subprocess.run(
        [
            sys.executable,
            "-m",
            "export",
            str(saved_model_file),
            "--to",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert code.returncode == 0, code.stderr[-2000:]
    assert (out / "report.json").exists()


def test_interrupted_export_in_process_cleans_up(
    trained_model, tmp_path, monkeypatch
):
    from export import export_onnx
    from export import onnx_model

    real_write = onnx_model.write_onnx

    def write_then_interrupt(*args):
        real_write(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_model, "write_onnx", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(trained_model, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_the_runs_transform_is_carried_into_the_exported_files(
    trained_model, tmp_path, capsys
):
    """A crop + bicubic + ImageNet mean/std transform in the run's
    config.json: every exported file applies it inside and verifies end to
    end on image files of other sizes and shapes; the manifest records it."""
    run = tmp_path / "run"
    run.mkdir()
    trained_model.save(run / "model.keras")
    transform = {
        "resize": "crop",
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    (run / "config.json").write_text(json.dumps({"transform": transform}))
    out = tmp_path / "out"
    code = _run(run / "model.keras", "--to", out, "--quiet")
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and report["samples"] == 8
    for entry in report["reports"]:
        assert max(entry["max_abs_diff"].values()) <= 1e-4, entry
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["preprocessing"]["transform"] == transform
    assert manifest["preprocessing"]["scale"]["to"] == [None, None]
    assert "bicubic" in manifest["preprocessing"]["resize"]["method"]
    # An option given on the command line overrides the run's.
    code = _run(
        run / "model.keras",
        "--to",
        tmp_path / "o2",
        "--quiet",
        "--formats",
        "onnx",
        "--resize",
        "stretch",
        "--interpolation",
        "bilinear",
        "--mean",
        "0.5",
        "--std",
        "0.5",
    )
    assert code == 0, capsys.readouterr()
    manifest = json.loads((tmp_path / "o2" / "manifest.json").read_text())
    assert manifest["preprocessing"]["transform"]["resize"] == "stretch"
    assert manifest["preprocessing"]["scale"]["to"] == [-1.0, 1.0]
