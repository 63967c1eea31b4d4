"""`keras-vit evaluate`: accuracy and loss of a model on a dataset."""

import json
import os

from keras_vit.command import UsageError
from keras_vit.command import damaged_images_named
from keras_vit.command import data_options
from keras_vit.command import load_model_file
from keras_vit.command import model_file
from keras_vit.command import positive_int
from keras_vit.command import source_options
from keras_vit.command import transform_from_args


def add_parser(commands, parents):
    """Adds `evaluate` to the `keras-vit` subcommands."""
    evaluate = commands.add_parser(
        "evaluate",
        parents=[parents["logs"], parents["model_file"], parents["transform"]],
        help="accuracy and loss of a model on a dataset",
        description="Accuracy and loss of a .keras model. On the dataset it "
        "was trained on (config.json beside the model), or on digits and "
        "tfds: datasets: the test split (the one `train` held out for the "
        "same --seed and --test-split). On any other image folder: every "
        "image in it. --split chooses.",
    )
    evaluate.add_argument(
        "model", help="a .keras file, or the --out folder of a training run"
    )
    data_options(evaluate)
    evaluate.add_argument(
        "--split",
        choices=("test", "validation", "train", "all"),
        help="default: all for a folder the model was not trained on, "
        "else test",
    )
    evaluate.add_argument("--batch-size", type=positive_int, default=128)
    evaluate.add_argument("--json", action="store_true", help="print JSON")


def _trained_on(model_path):
    """The --dataset of the run that wrote `model_path`, or `None`."""
    path = os.path.join(
        os.path.dirname(os.path.abspath(model_path)), "config.json"
    )
    try:
        with open(path) as f:
            return json.load(f).get("dataset")
    except (OSError, ValueError, AttributeError):
        return None


def _evaluation_split(args):
    """`(split, why)`: --split, or the whole of a folder or CSV file not
    trained on."""
    if args.split is not None:
        return args.split, "--split"
    csv = args.dataset.lower().endswith(".csv") and os.path.isfile(args.dataset)
    if not (os.path.isdir(args.dataset) or csv):
        return "test", "the dataset's test split"
    kind = "a CSV file" if csv else "a folder"
    trained_on = _trained_on(model_file(args.model))
    if trained_on is None:
        return "all", f"{kind}; no config.json beside the model names its own"
    if os.path.exists(trained_on) and os.path.samefile(
        trained_on, args.dataset
    ):
        where = "CSV file" if csv else "folder"
        return "test", f"the test split held out from the training {where}"
    return "all", f"{kind} the model was not trained on ({trained_on})"


def run(args):
    import keras

    from keras_vit.data import load_datasets
    from keras_vit.model import outputs_probabilities
    from keras_vit.saving import class_names_for
    from keras_vit.saving import transform_for

    model = load_model_file(args.model, args.unsafe)
    transform = transform_from_args(args, transform_for(model_file(args.model)))
    _, height, width, channels = model.input_shape
    num_classes = model.output_shape[-1]
    split, why = _evaluation_split(args)
    whole = split == "all"
    data = load_datasets(
        args.dataset,
        image_size=(height, width),
        channels=channels,
        batch_size=args.batch_size,
        validation_split=0.0 if whole else args.validation_split,
        test_split=0.0 if whole else args.test_split,
        one_hot=True,
        **source_options(args),
        progress=not args.json,
        input_range=transform,
    )
    if data.num_classes != num_classes:
        raise UsageError(
            f"The model predicts {num_classes} classes but {args.dataset!r} "
            f"has {data.num_classes}"
        )
    names = class_names_for(model, None, args.model)
    if (
        names is not None
        and os.path.isdir(args.dataset)
        and [str(n) for n in names] != [str(n) for n in data.class_names]
    ):
        raise UsageError(
            f"The class folders of {args.dataset!r} "
            f"({', '.join(map(str, data.class_names))}) are not the model's "
            f"classes ({', '.join(map(str, names))})"
        )
    dataset = data.train if whole else getattr(data, split)
    if dataset is None:
        raise UsageError(f"{args.dataset!r} has no {split} split")
    model.compile(
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=not outputs_probabilities(model)
        ),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    with damaged_images_named(args.dataset):
        loss, accuracy = model.evaluate(dataset, verbose=0)
    result = {
        "dataset": args.dataset,
        "split": split,
        "examples": data.sizes["train" if whole else split],
        "accuracy": round(float(accuracy), 4),
        "loss": round(float(loss), 4),
        "why": why,
    }
    if args.json:
        print(json.dumps(result))
    else:
        scored = (
            f"all {result['examples']} images of {args.dataset}"
            if whole
            else f"the {split} split of {args.dataset} "
            f"({result['examples']} examples)"
        )
        print(
            f"accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f} "
            f"on {scored}: {why}"
        )
    return 0
