"""Interrupted writes, hostile files, bad data and extreme inputs."""

import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vit
from keras_vit.cli import main
from keras_vit.data import BadImageError
from keras_vit.data import load_datasets
from keras_vit.saving import UnsafeModelError
from keras_vit.saving import load_model
from keras_vit.training import AtomicBackupAndRestore
from keras_vit.training import BestModelCheckpoint
from keras_vit.training import compile_for_training
from tests.helpers import to_numpy

TINY = dict(
    image_size=8, patch_size=4, hidden_dim=8, depth=1, num_heads=2, mlp_dim=16
)


def _trained_model():
    model = keras_vit.build_vit(**TINY, num_classes=3)
    compile_for_training(model, total_steps=4)
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype("float32")
    y = np.eye(3, dtype="float32")[np.arange(8) % 3]
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    return model


class _Crash(BaseException):
    """Stands for the process dying in the middle of a write."""


def _crashing(write):
    def partial_write(filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"\x89HDF half of a file")
        raise _Crash

    return partial_write


def test_crash_while_writing_the_backup_keeps_the_previous_one(tmp_path):
    model = _trained_model()
    callback = AtomicBackupAndRestore(str(tmp_path / "backup"))
    callback.set_model(model)
    callback._current_epoch, callback._last_batch_seen = 3, 0
    callback._save_model()
    saved = [to_numpy(w).copy() for w in model.weights]
    for w in model.trainable_weights:
        w.assign(w + 1.0)
    callback._current_epoch = 4
    original = model.save_weights
    model.save_weights = _crashing(original)
    with pytest.raises(_Crash):
        callback._save_model()
    model.save_weights = original
    # The backup is the complete epoch-3 state and resumes from it.
    fresh = _trained_model()
    restore = AtomicBackupAndRestore(str(tmp_path / "backup"))
    restore.set_model(fresh)
    restore.on_train_begin()
    assert fresh._initial_epoch == 3
    for a, b in zip(saved, fresh.weights):
        np.testing.assert_array_equal(a, to_numpy(b))
    metadata = json.loads(
        (tmp_path / "backup" / "training_metadata.json").read_text()
    )
    assert metadata["epoch"] == 3


def test_crash_while_writing_the_best_model_keeps_the_previous_one(tmp_path):
    model = _trained_model()
    path = tmp_path / "best.keras"
    callback = BestModelCheckpoint(path, monitor="val_accuracy")
    callback.set_model(model)
    callback.on_epoch_end(0, {"val_accuracy": 0.5})
    before = [to_numpy(w).copy() for w in model.weights]
    for w in model.trainable_weights:
        w.assign(w + 1.0)
    original = model.save
    model.save = _crashing(original)
    with pytest.raises(_Crash):
        callback.on_epoch_end(1, {"val_accuracy": 0.9})
    model.save = original
    loaded = keras.saving.load_model(path)
    for a, b in zip(before, loaded.weights):
        np.testing.assert_array_equal(a, to_numpy(b))
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]
    callback.on_epoch_end(2, {"val_accuracy": 0.1})  # worse: not saved
    assert callback.best == 0.5


def _lambda_model(path):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(3)(x)).save(path)


@pytest.mark.parametrize("command", ["evaluate", "predict", "attention"])
def test_every_cli_loader_refuses_code_without_unsafe(
    command, tmp_path, capsys
):
    path = tmp_path / "lambda.keras"
    _lambda_model(path)
    image = tmp_path / "x.png"
    tf.io.write_file(
        str(image), tf.io.encode_png(np.zeros((8, 8, 3), np.uint8))
    )
    argv = {
        "evaluate": ["evaluate", str(path), "--dataset", "digits"],
        "predict": ["predict", str(path), str(image)],
        "attention": [
            "attention",
            str(path),
            str(image),
            "--out",
            str(tmp_path / "o"),
        ],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "serialized Python code" in err[0]
        and "--unsafe" in err[0]
    )
    if command == "predict":
        assert main(argv + ["--unsafe", "--json"]) == 0


def test_load_model_refuses_code_and_escaping_archives(tmp_path):
    path = tmp_path / "lambda.keras"
    _lambda_model(path)
    with pytest.raises(UnsafeModelError, match=r"unsafe=True"):
        load_model(path)
    assert load_model(path, unsafe=True) is not None
    evil = tmp_path / "evil.keras"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("../outside.txt", "x")
    with pytest.raises(
        ValueError, match=r"outside the archive: '../outside.txt'"
    ):
        load_model(evil)
    (tmp_path / "text.keras").write_text("not a zip")
    with pytest.raises(ValueError, match=r"not a zip archive"):
        load_model(tmp_path / "text.keras")


def _png(path, pixels):
    tf.io.write_file(str(path), tf.io.encode_png(pixels))


def test_bad_files_are_named_before_training(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(4):
            _png(
                root / name / f"{i}.png",
                rng.integers(0, 255, (6, 6, 3), np.uint8),
            )
    (root / "empty_class").mkdir()  # no images: ignored with a warning
    good = (root / "a" / "0.png").read_bytes()
    (root / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "b" / "text.jpg").write_text("this is not an image")
    (root / "b" / "tiny.png").write_bytes(b"")
    with pytest.raises(BadImageError) as info:
        load_datasets(str(root), image_size=8)
    message = str(info.value)
    for name in ("truncated.png", "text.jpg", "tiny.png"):
        assert name in message
    data = load_datasets(
        str(root),
        image_size=8,
        skip_bad_images=True,
        batch_size=64,
        validation_split=0.0,
        test_split=0.0,
    )
    assert data.class_names == ["a", "b"]
    images = np.concatenate([x.numpy() for x, _ in data.train])
    assert images.shape == (8, 8, 8, 3) and np.isfinite(images).all()


@pytest.mark.parametrize("value", [0.0, 255.0, -1e4, 1e4])
def test_extreme_inputs_give_finite_outputs(value):
    model = keras_vit.build_vit(**TINY, num_classes=3)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.normal(scale=0.5, size=w.shape).astype("float32"))
    out = to_numpy(model(np.full((2, 8, 8, 3), value, "float32")))
    assert np.isfinite(out).all()
    maps = keras_vit.attention_maps(
        model, np.full((1, 8, 8, 3), value, "float32")
    )
    assert np.isfinite(maps).all()


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_50_steps_without_nan(precision):
    keras.config.set_dtype_policy(precision)
    data = load_datasets("digits", image_size=16, batch_size=32, one_hot=True)
    model = keras_vit.build_vit(
        image_size=16,
        patch_size=4,
        hidden_dim=32,
        depth=2,
        num_heads=4,
        mlp_dim=64,
        channels=1,
        num_classes=10,
    )
    compile_for_training(
        model, learning_rate=2e-3, total_steps=50, warmup_steps=5
    )
    history = model.fit(
        data.train.repeat(),
        steps_per_epoch=25,
        epochs=2,
        verbose=0,
        callbacks=[keras.callbacks.TerminateOnNaN()],
    )
    losses = history.history["loss"]
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert losses[-1] < 2.3
    assert all(np.isfinite(to_numpy(w)).all() for w in model.weights)


def test_files_written_atomically_get_the_usual_permissions(tmp_path):
    import os
    import stat

    import keras_vit
    from keras_vit.files import publish
    from keras_vit.files import staging_path
    from keras_vit.saving import save_model_atomic

    old = os.umask(0o022)
    try:
        model = keras_vit.build_vit(
            image_size=8,
            patch_size=4,
            hidden_dim=8,
            depth=1,
            num_heads=2,
            mlp_dim=8,
            num_classes=2,
        )
        keras_vit.save_npz(model, tmp_path / "m.npz")
        save_model_atomic(model, tmp_path / "m.keras")
        with staging_path(tmp_path / "folder", directory=True) as staged:
            publish(staged, tmp_path / "folder")
    finally:
        os.umask(old)
    for name, mode in (("m.npz", 0o644), ("m.keras", 0o644), ("folder", 0o755)):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == mode, name
