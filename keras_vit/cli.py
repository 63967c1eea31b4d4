"""The `keras-vit` command line: train, evaluate, predict and weights.

keras-vit train --dataset digits --out runs/digits
keras-vit evaluate runs/digits/model.keras --dataset digits --json
keras-vit predict runs/digits/model.keras image.png --top-k 3
keras-vit weights list
keras-vit predict photo.jpg --weights vit_tiny_patch16_224.augreg_in21k_ft_in1k
keras-vit train --dataset photos/ --weights NAME_OR_FILE --out runs/photos
"""

import sys

from keras_vit.command import run
from keras_vit.commands import build_parser
from keras_vit.commands import command_module

# Names earlier code imported from here.
from keras_vit.commands.evaluate import _evaluation_split  # noqa: F401
from keras_vit.commands.predict import _read_images  # noqa: F401
from keras_vit.commands.train import _deterministic  # noqa: F401

__all__ = ["build_parser", "main"]


def main(argv=None):
    """Runs the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export"]:
        from export.cli import main as export_main

        return export_main(argv[1:], prog="keras-vit export")
    args = build_parser().parse_args(argv)
    command = command_module(args.command).run
    target = getattr(args, "out", None)
    return run(f"keras-vit {args.command}", command, args, target=target)


if __name__ == "__main__":
    sys.exit(main())
