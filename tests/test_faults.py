"""Faults of the user's machine: two runs in one folder, a full disk."""

import collections
import csv
import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import keras_vit
import keras_vit.files as files
from export.cli import main as export_main
from keras_vit.cli import main
from keras_vit.files import FolderInUseError
from keras_vit.files import folder_lock
from keras_vit.files import write_error
from keras_vit.saving import save_model_atomic
from keras_vit.training import AtomicBackupAndRestore
from tests.test_reliability import TINY as TINY_MODEL
from tests.test_reliability import _trained_model

ROOT = Path(__file__).resolve().parents[1]
TRAIN = [
    "train",
    "--dataset",
    "digits",
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
    "256",
    "--epochs",
    "2",
    "--no-tensorboard",
    "--quiet",
]
_Usage = collections.namedtuple("_Usage", "total used free")


def _full_disk(monkeypatch, free=1024):
    monkeypatch.setattr(
        files.shutil, "disk_usage", lambda _: _Usage(10**9, 10**9, free)
    )


def test_a_second_run_in_the_same_folder_exits_1_naming_the_holder(
    tmp_path, capsys
):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from keras_vit.files import folder_lock\n"
            "with folder_lock(sys.argv[1]):\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(120)\n",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TF_CPP_MIN_LOG_LEVEL": "3",
        },
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main([*TRAIN, "--out", str(out)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert str(out) in err[0] and f"pid {holder.pid}" in err[0]
        assert sorted(os.listdir(out)) == [".lock"]  # nothing else touched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The lock died with its process: no stale lock after a kill.
    with folder_lock(out):
        pass


def test_the_lock_is_exclusive_within_a_process_too(tmp_path):
    with folder_lock(tmp_path / "run"):
        with pytest.raises(FolderInUseError, match=rf"pid {os.getpid()}"):
            with folder_lock(tmp_path / "run"):
                pass


def test_a_full_disk_keeps_the_previous_backup_and_removes_partial_files(
    tmp_path, monkeypatch
):
    model = _trained_model()
    backup = tmp_path / "backup"
    callback = AtomicBackupAndRestore(str(backup))
    callback.set_model(model)
    callback._current_epoch, callback._last_batch_seen = 3, 0
    callback._save_model()
    before = sorted(os.listdir(backup))
    callback._current_epoch = 4
    _full_disk(monkeypatch)
    with pytest.raises(OSError) as info:
        callback._save_model()
    assert info.value.errno == errno.ENOSPC
    assert str(backup) in str(info.value)
    assert "No space left on device" in str(info.value)
    assert sorted(os.listdir(backup)) == before  # no partial files
    monkeypatch.undo()
    restore = AtomicBackupAndRestore(str(backup))
    fresh = _trained_model()
    restore.set_model(fresh)
    restore.on_train_begin()
    assert fresh._initial_epoch == 3


def test_a_failing_write_names_the_path_and_the_cause(tmp_path, monkeypatch):
    model = _trained_model()
    path = tmp_path / "model.keras"
    save_model_atomic(model, path)
    good = path.read_bytes()

    def no_space(*args, **kwargs):
        # What h5py says when the disk fills under it.
        raise RuntimeError(
            "file write failed: errno = 28, error message = 'No space left "
            "on device'"
        )

    monkeypatch.setattr(model, "save", no_space)
    with pytest.raises(RuntimeError):
        save_model_atomic(model, path)  # not an OSError: left as it is
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]
    error = write_error(path, RuntimeError("... No space left on device"))
    assert error.errno == errno.ENOSPC
    assert str(error) == f"Cannot write {str(path)!r}: No space left on device"
    denied = write_error(path, PermissionError(errno.EACCES, "denied"))
    assert "Permission denied" in str(denied)


def test_train_on_a_full_disk_exits_1_in_one_line_then_resumes(
    tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    _full_disk(monkeypatch)
    assert main([*TRAIN, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0]
    assert str(out / "backup") in err[0]
    assert not [n for n in os.listdir(out / "backup") if "partial" in n]
    monkeypatch.undo()
    # Space is back: the same command trains to the end.
    assert main([*TRAIN, "--out", str(out)]) == 0
    with open(out / "history.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "epoch" and [r[0] for r in rows[1:]] == ["0", "1"]


def test_export_on_a_full_disk_exits_1_in_one_line(
    tmp_path, monkeypatch, capsys
):
    import tensorflow as tf

    import export.cli

    model = _trained_model()
    model.save(tmp_path / "m.keras")

    def full(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(
            None, None, "part-00000; No space left on device [Op:SaveV2]"
        )

    monkeypatch.setattr(export.cli, "export_saved_model", full)
    out = tmp_path / "out"
    code = export_main(
        [
            str(tmp_path / "m.keras"),
            "--to",
            str(out),
            "--formats",
            "saved_model",
            "--quiet",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[0]
        == f"python -m export: error: Cannot write {str(out)!r}: No space "
        "left on device"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


def test_history_is_one_header_and_one_row_per_finished_epoch(tmp_path):
    from keras_vit.training import ResumableCSVLogger

    backup = tmp_path / "backup"
    backup.mkdir()
    history = tmp_path / "history.csv"
    # A run killed after writing epoch 2's row but before its backup: the
    # backup holds 2 finished epochs (0 and 1); a second header from an
    # older logger is there too.
    history.write_text("epoch,loss\n0,1.0\n1,0.9\nepoch,loss\n2,0.8\n")
    (backup / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
    logger = ResumableCSVLogger(str(history), str(backup))
    logger.set_model(keras_vit.build_vit(**TINY_MODEL, num_classes=3))
    logger.on_train_begin()
    logger.on_epoch_end(2, {"loss": 0.7})
    logger.on_train_end()
    with open(history) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    assert rows[-1][1].startswith("0.7")
    # A fresh run (no backup) starts the file anew.
    (backup / "training_metadata.json").unlink()
    logger = ResumableCSVLogger(str(history), str(backup))
    logger.set_model(keras_vit.build_vit(**TINY_MODEL, num_classes=3))
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 2.0})
    logger.on_train_end()
    with open(history) as f:
        assert [r[0] for r in csv.reader(f)] == ["epoch", "0"]


def test_a_run_refused_before_it_starts_leaves_no_folder(tmp_path, capsys):
    from keras_vit.cli import main

    out = tmp_path / "never"
    args = ["train", "--dataset", "digits", "--out", str(out)]
    args += ["--hidden-dim", "10", "--num-heads", "3", "--epochs", "1"]
    assert main(args) == 2
    assert "hidden_dim=10, num_heads=3" in capsys.readouterr().err
    assert not out.exists()
