"""`keras-vit predict`: the top-k classes of images."""

import json

from keras_vit.command import UsageError
from keras_vit.command import load_model_file
from keras_vit.command import model_file
from keras_vit.command import positive_int
from keras_vit.command import transform_from_args


def add_parser(commands, parents):
    """Adds `predict` to the `keras-vit` subcommands."""
    predict = commands.add_parser(
        "predict",
        parents=[parents["logs"], parents["model_file"], parents["transform"]],
        help="top-k classes of images",
        description="Top-k class names and probabilities for each image. "
        "Images are made into model inputs by the model's transform (a "
        "preset's own, or the one its training run recorded in config.json; "
        "the options below override it), as `evaluate` and the exported "
        "files do.",
    )
    predict.add_argument(
        "inputs",
        nargs="+",
        metavar="MODEL_OR_IMAGE",
        help="a .keras file, then image files (with --weights: image files "
        "only)",
    )
    predict.add_argument(
        "--weights",
        help="predict with a pretrained checkpoint instead of a .keras file: "
        "a preset name (ImageNet-1k presets print class names) or a .npz "
        "or .safetensors file",
    )
    predict.add_argument("--top-k", type=positive_int, default=5)
    predict.add_argument(
        "--labels",
        help="JSON list of class names (default: labels.json beside the model)",
    )
    predict.add_argument("--json", action="store_true", help="print JSON")


def _read_images(paths, height, width, channels, transform=None):
    from keras_vit.preprocessing import BadImageError
    from keras_vit.preprocessing import read_images

    try:
        return read_images(paths, (height, width), channels, transform)
    except BadImageError as error:
        raise UsageError(str(error)) from None


def _pretrained_for_predict(weights, progress):
    from keras_vit.model import build_pretrained
    from keras_vit.model import read_pretrained

    checkpoint = read_pretrained(weights, progress=progress)
    if not checkpoint["config"]["num_classes"]:
        raise UsageError(
            f"The checkpoint {weights!r} has no classification head; "
            "fine-tune it first (keras-vit train --weights ...)"
        )
    model, _ = build_pretrained(checkpoint)
    return model, checkpoint["transform"]


def run(args):
    import numpy as np

    from keras_vit.model import outputs_probabilities
    from keras_vit.saving import class_names_for
    from keras_vit.saving import transform_for

    if args.weights:
        # --json keeps stdout to the JSON document.
        model, base = _pretrained_for_predict(args.weights, not args.json)
        images_paths = args.inputs
        model_path = None
    else:
        if len(args.inputs) < 2:
            raise UsageError(
                "give a .keras model file and at least one image, or "
                "--weights NAME and images"
            )
        model_path, images_paths = args.inputs[0], args.inputs[1:]
        model_path = model_file(model_path)  # labels.json lies beside it
        model = load_model_file(model_path, args.unsafe)
        base = transform_for(model_path)
    transform = transform_from_args(args, base)
    _, height, width, channels = model.input_shape
    num_classes = model.output_shape[-1]
    names = class_names_for(model, args.labels, model_path)
    if names is None:
        names = [str(i) for i in range(num_classes)]
    images = _read_images(images_paths, height, width, channels, transform)
    outputs = np.asarray(model.predict(images, verbose=0), dtype=np.float64)
    if outputs_probabilities(model):
        probs = outputs  # the head's own softmax; no second one
    else:
        probs = np.exp(outputs - outputs.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
    k = min(args.top_k, num_classes)
    results = []
    for path, row in zip(images_paths, probs):
        top = np.argsort(-row)[:k]
        results.append(
            {
                "image": path,
                "top_k": [
                    {"label": names[i], "probability": round(float(row[i]), 4)}
                    for i in top
                ],
            }
        )
    if args.json:
        print(json.dumps(results))
    else:
        for result in results:
            ranked = ", ".join(
                f"{t['label']} {t['probability']:.3f}" for t in result["top_k"]
            )
            print(f"{result['image']}: {ranked}")
    return 0
