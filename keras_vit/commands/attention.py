"""`keras-vit attention`: pictures of where the model looks."""

import os

from keras_vit.command import UsageError
from keras_vit.command import load_model_file
from keras_vit.command import model_file
from keras_vit.command import rate
from keras_vit.command import transform_from_args
from keras_vit.commands.predict import _read_images


def add_parser(commands, parents):
    """Adds `attention` to the `keras-vit` subcommands."""
    attention = commands.add_parser(
        "attention",
        parents=[parents["logs"], parents["model_file"], parents["transform"]],
        help="pictures of where the model looks",
        description="For each image, write NAME_rollout.png (the image and "
        "its attention rollout from the class token, or from the mean patch "
        "token for pooling='gap' models) and NAME_heads.png (the last "
        "block's class-token attention, one panel per head); and "
        "mean_attention_distance.png over all images. Images are "
        "preprocessed as `predict` does.",
    )
    attention.add_argument("model", help="a .keras file of a keras-vit model")
    attention.add_argument("images", nargs="+", help="image files")
    attention.add_argument("--out", required=True, help="output folder")
    attention.add_argument(
        "--head-fusion", choices=("mean", "max", "min"), default="mean"
    )
    attention.add_argument(
        "--discard-ratio",
        type=rate,
        default=0.0,
        help="fraction of the weakest attention dropped before rollout",
    )
    attention.add_argument(
        "--overwrite", action="store_true", help="replace existing PNGs"
    )


def run(args):
    from keras_vit.attention import attention_maps
    from keras_vit.attention import attention_rollout
    from keras_vit.attention import class_token_attention
    from keras_vit.attention import mean_attention_distance
    from keras_vit.attention import model_grid
    from keras_vit.attention import model_patch_size
    from keras_vit.files import atomic_path
    from keras_vit.model import vit_config
    from keras_vit.plots import plot_head_maps
    from keras_vit.plots import plot_mean_attention_distance
    from keras_vit.plots import plot_rollout
    from keras_vit.saving import transform_for

    model = load_model_file(args.model, args.unsafe)
    transform = transform_from_args(args, transform_for(model_file(args.model)))
    grid = model_grid(model)
    _, height, width, channels = model.input_shape
    stems = [os.path.splitext(os.path.basename(p))[0] for p in args.images]
    if len(set(stems)) != len(stems):
        raise UsageError(
            "Image file names must differ (outputs are named by them)"
        )
    targets = [
        os.path.join(args.out, f"{stem}_{kind}.png")
        for stem in stems
        for kind in ("rollout", "heads")
    ] + [os.path.join(args.out, "mean_attention_distance.png")]
    existing = [t for t in targets if os.path.exists(t)]
    if existing and not args.overwrite:
        raise UsageError(
            f"{existing[0]!r} exists; pass --overwrite to replace it"
        )
    images = _read_images(args.images, height, width, channels, transform)
    maps = attention_maps(model, images)
    pooling = vit_config(model)["pooling"]
    rollouts = attention_rollout(
        maps,
        head_fusion=args.head_fusion,
        discard_ratio=args.discard_ratio,
        grid_size=grid,
        pooling=pooling,
    )
    heads = class_token_attention(maps, grid_size=grid)
    os.makedirs(args.out, exist_ok=True)
    figures = []
    for stem, image, rollout, head_maps in zip(stems, images, rollouts, heads):
        figures.append(
            (
                plot_rollout(
                    image, rollout, title=f"rollout ({args.head_fusion})"
                ),
                f"{stem}_rollout.png",
            )
        )
        figures.append(
            (
                plot_head_maps(
                    head_maps, image, title="last block, class token"
                ),
                f"{stem}_heads.png",
            )
        )
    patch = model_patch_size(model)
    distances = mean_attention_distance(maps, patch, grid_size=grid)
    figures.append(
        (
            plot_mean_attention_distance(distances, patch_size=patch[0]),
            "mean_attention_distance.png",
        )
    )
    for figure, name in figures:
        path = os.path.join(args.out, name)
        with atomic_path(path, suffix=".png") as tmp:
            figure.savefig(tmp)
        print(path)
    return 0
