"""The `keras-vit` subcommands, one module each: its parser
(`add_parser(commands, parents)`) and its run function (`run`).

Adding a subcommand is one module here and one entry in `COMMANDS`; the
pieces several commands share (option groups, argument types, the run
wrapper) are in `keras_vit.command`.
"""

import importlib

from keras_vit.command import Parser
from keras_vit.command import log_options
from keras_vit.command import model_file_options
from keras_vit.command import transform_options

# In the order `keras-vit --help` lists them; `export` is `export.cli`.
COMMANDS = ("train", "evaluate", "predict", "attention", "weights")


def command_module(name):
    """The module of subcommand `name`."""
    return importlib.import_module(f"keras_vit.commands.{name}")


def build_parser():
    """The `keras-vit` parser, each subcommand's added by its module."""
    parser = Parser(
        prog="keras-vit",
        description="Train, evaluate, run and export Vision Transformers.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    parents = {
        "logs": log_options(),
        "model_file": model_file_options(),
        "transform": transform_options(),
    }
    for name in COMMANDS:
        command_module(name).add_parser(commands, parents)
    commands.add_parser(
        "export",
        add_help=False,
        help="SavedModel, TFLite and ONNX files, verified (keras-vit export "
        "--help; the same as python -m export)",
    )
    return parser
