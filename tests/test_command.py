import errno
import logging
import os
import subprocess
import sys
import warnings

import pytest

from keras_vit import command


def _raise(error):
    def function(args):
        raise error

    return function


@pytest.mark.parametrize(
    "error, status",
    [
        (ValueError("bad size 0"), 2),
        (TypeError("expected a str"), 2),
        (FileNotFoundError("no model at 'x.keras'"), 2),
        (OSError(errno.ENOSPC, "No space left on device"), 1),
        (RuntimeError("ResourceExhaustedError: No space left on device"), 1),
        (BrokenPipeError(), 0),
    ],
)
def test_one_error_convention(error, status, capsys):
    assert command.run("keras-vit x", _raise(error), None) == status
    err = capsys.readouterr().err
    if status:
        assert (
            err.startswith("keras-vit x: error: ")
            and len(err.splitlines()) == 1
        )


def test_a_commands_own_failures_exit_1_with_more_lines(capsys):
    class BudgetError(ValueError):
        pass

    status = command.run(
        "prog",
        _raise(BudgetError("no candidate within budget")),
        None,
        on_failure=lambda e: print("the table", file=sys.stderr),
        failures=(BudgetError,),
    )
    assert status == 1
    assert capsys.readouterr().err.splitlines() == [
        "prog: error: no candidate within budget",
        "the table",
    ]


def test_bugs_keep_their_traceback():
    with pytest.raises(KeyError):
        command.run("prog", _raise(KeyError("bug")), None)


def test_statuses_pass_through():
    assert command.run("prog", lambda args: None, None) == 0
    assert command.run("prog", lambda args: 3, None) == 3


@pytest.mark.parametrize(
    "argv, orig_argv, expected",
    [
        (["/venv/bin/keras-vit", "train"], ["python", "keras-vit"], True),
        (["-m"], ["python", "-m", "export", "m.keras"], True),
        (["-m"], ["python", "-m", "keras_vit", "train"], True),
        (["-m"], ["python", "-m", "pytest"], False),
        (["script.py"], ["python", "script.py"], False),
    ],
)
def test_only_the_command_lines_quiet_tensorflow(
    argv, orig_argv, expected, monkeypatch
):
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(sys, "orig_argv", orig_argv)
    assert command.is_command_line() is expected


def _weights_list(*flags, env=None):
    environ = {
        k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"
    }
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "keras_vit", "weights", "list", *flags],
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
    )


def test_the_command_line_is_quiet_unless_verbose():
    quiet = _weights_list()
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "vit_base_patch16_224" in quiet.stdout
    assert quiet.stderr == ""
    verbose = _weights_list("--verbose")
    assert verbose.returncode == 0
    # TensorFlow's own start-up lines, shown only on request.
    assert "I0000" in verbose.stderr or "oneDNN" in verbose.stderr


def test_the_users_own_log_level_is_kept(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/keras-vit", "train"])
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    monkeypatch.setattr(command, "_quiet", False)
    root = logging.getLogger()
    monkeypatch.setattr(root, "filters", list(root.filters))
    with warnings.catch_warnings():
        command.quiet_startup()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
