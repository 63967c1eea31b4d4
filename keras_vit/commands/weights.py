"""`keras-vit weights`: list, download and locate pretrained checkpoints."""

import json
import sys

from keras_vit.command import UsageError


def add_parser(commands, parents):
    """Adds `weights` and its actions to the `keras-vit` subcommands."""
    logs = parents["logs"]
    weights = commands.add_parser(
        "weights",
        help="pretrained checkpoints: list, download, path",
        description="The registry of pretrained ViT checkpoints "
        "(keras_vit.presets): the original and AugReg releases from "
        "gs://vit_models over HTTPS and timm's Hugging Face repositories. "
        "Files are cached under $KERAS_VIT_HOME/weights (default "
        "~/.keras/keras_vit/weights) or in the Hugging Face cache; "
        "KERAS_VIT_OFFLINE=1 never touches the network.",
    )
    actions = weights.add_subparsers(dest="action", required=True)
    listing = actions.add_parser(
        "list", parents=[logs], help="list the presets"
    )
    listing.add_argument("--variant", help="only this ViT size, e.g. B/16")
    listing.add_argument(
        "--labels",
        choices=("imagenet-1k", "imagenet-21k"),
        help="only presets whose head has this label set",
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    download = actions.add_parser(
        "download",
        parents=[logs],
        help="download a preset's file into the cache",
    )
    download.add_argument("name")
    download.add_argument(
        "--quiet", action="store_true", help="no progress bar"
    )
    where = actions.add_parser(
        "path",
        parents=[logs],
        help="print the cached file of a preset (exit 1 if absent)",
    )
    where.add_argument("name")


def run(args):
    from keras_vit import presets
    from keras_vit.variants import VARIANTS

    if args.action == "list":
        if args.variant is not None and args.variant not in VARIANTS:
            raise UsageError(
                f"--variant must be one of {', '.join(VARIANTS)}. "
                f"Received: {args.variant!r}"
            )
        names = presets.list_presets(args.variant, args.labels)
        if args.json:
            rows = []
            for name in names:
                row = presets.get_preset(name).to_dict()
                row["cached"] = presets.cached_path(name) is not None
                rows.append(row)
            print(json.dumps(rows, indent=2))
            return 0
        _print_preset_table(presets, names)
        return 0
    preset = presets.get_preset(args.name)
    if args.action == "download":
        path = presets.preset_path(preset.name, progress=not args.quiet)
        print(path)
        return 0
    path = presets.cached_path(preset.name)
    if path is None:
        print(
            f"keras-vit weights: {preset.name!r} is not cached; run "
            f"`keras-vit weights download {preset.name}` (source: "
            f"{preset.source})",
            file=sys.stderr,
        )
        return 1
    print(path)
    return 0


def _print_preset_table(presets, names):
    """One row a preset; every column is what its header says."""
    columns = (
        ("name", "<"),
        ("variant", "<"),
        ("image px", ">"),
        ("classes", ">"),
        ("top-1 %", ">"),
        ("file size", ">"),
        ("eval transform", "<"),
        ("cached", "<"),
    )
    rows = []
    for name in names:
        p = presets.get_preset(name)
        t = p.transform
        rows.append(
            (
                name,
                p.variant,
                str(p.image_size),
                str(p.num_classes),
                f"{p.accuracy:.1f}" if p.accuracy else "-",
                p.size or "-",
                "stretch"
                if t.resize == "stretch"
                else f"crop {t.crop_pct:g} {t.interpolation}",
                "yes" if presets.cached_path(name) else "no",
            )
        )
    widths = [
        max([len(header)] + [len(row[i]) for row in rows])
        for i, (header, _) in enumerate(columns)
    ]
    for row in [tuple(h for h, _ in columns)] + rows:
        print(
            "  ".join(
                f"{cell:{align}{width}}"
                for cell, (_, align), width in zip(row, columns, widths)
            ).rstrip()
        )
    print(
        "file size: as the source publishes it (- where it publishes none); "
        "eval transform: keras_vit.presets.Preset.transform"
    )
