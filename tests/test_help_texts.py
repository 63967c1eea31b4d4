"""Every command's `--help` is the text written before the command line's
code was last reorganized (tests/fixtures/make_help_texts.py)."""

import contextlib
import io
import os

import pytest

HELP = os.path.join(os.path.dirname(__file__), "fixtures", "help")
COMMANDS = {
    "keras-vit": [],
    "train": ["train"],
    "evaluate": ["evaluate"],
    "predict": ["predict"],
    "attention": ["attention"],
    "weights": ["weights"],
    "weights_list": ["weights", "list"],
    "weights_download": ["weights", "download"],
    "weights_path": ["weights", "path"],
    "export": ["export"],
    "export_bench": ["export", "bench"],
}


def help_text(argv):
    """What `keras-vit ARGV --help` prints, at 80 columns."""
    from keras_vit.cli import main

    os.environ["COLUMNS"] = "80"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return out.getvalue()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_help_text_is_unchanged(name, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    with open(os.path.join(HELP, f"{name}.txt")) as f:
        assert help_text(COMMANDS[name]) == f.read()
