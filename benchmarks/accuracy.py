"""Held-out accuracy against wall time: keras-vit from scratch and a small CNN.

For each dataset, every model is trained on the same `keras_vit.data`
pipeline (same split, same augmentation) in this one process, one after the
other, and scored on the same held-out images:

- `defaults`: what `keras-vit train --dataset DATA` chooses with no options
  (`keras_vit.recipes.choose_recipe`), for its own number of epochs;
- `defaults@budget` and one row per data-efficient option switched on or off
  around the defaults, each given the same wall-clock budget;
- `previous`: the defaults before the small-data recipe (a plain ViT, patch
  4, width 192, depth 6 at lr 1e-3 for 5,000 or more images; width 64,
  depth 4 at lr 2e-3 below), at the same budget;
- `cnn`: the small Keras CNN of Keras' MNIST example (two 3x3 convolutions
  of 32 and 64 filters, max-pooling, dropout 0.5, 34,826 parameters for
  28x28x1 and 10 classes; Adam at 1e-3), at the same budget.

A budget is met by timing 10 training steps of a fresh copy of the model,
then training for as many whole epochs as fit, with the schedule set for that
many epochs (so every model gets a full warm-up and decay).

    python benchmarks/accuracy.py digits --budget 60
    python benchmarks/accuracy.py cifar10/train --test cifar10/test \\
        --subset 5000 --budget 300 --json cifar5k.json

`--subset N` trains on a seeded, class-balanced N-image subset of the folder;
`--test FOLDER` scores on a separate folder, else on the pipeline's test
split (20%). The CPU is printed with the results.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__)))
from data_order import cpu_name  # noqa: E402

from keras_vit.recipes import MODEL_KEYS  # noqa: E402

PREVIOUS = {
    # The `keras-vit train` defaults before the small-data recipe.
    "small": dict(
        tokenizer="patch",
        pooling="token",
        locality_attention=False,
        hidden_dim=64,
        depth=4,
        num_heads=4,
        mlp_dim=128,
        batch_size=64,
        learning_rate=2e-3,
    ),
    "medium": dict(
        tokenizer="patch",
        pooling="token",
        locality_attention=False,
        hidden_dim=192,
        depth=6,
        num_heads=3,
        mlp_dim=384,
        batch_size=128,
        learning_rate=1e-3,
    ),
}


def subset_folder(folder, count, seed=0):
    """A folder of links to a class-balanced, seeded `count`-image subset."""
    from keras_vit.data import _list_folder

    files, labels, classes = _list_folder(folder)
    rng = np.random.default_rng(seed)
    per_class = max(1, count // len(classes))
    out = tempfile.mkdtemp(prefix="subset-")
    for index, name in enumerate(classes):
        os.makedirs(os.path.join(out, name))
        rows = np.flatnonzero(labels == index)
        for row in rng.choice(rows, min(per_class, len(rows)), replace=False):
            src = os.path.abspath(files[row])
            os.symlink(src, os.path.join(out, name, os.path.basename(src)))
    return out


def build_cnn(image_shape, num_classes):
    import keras

    return keras.Sequential(
        [
            keras.Input(image_shape),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(num_classes),
        ],
        name="cnn",
    )


def make_vit(recipe, image_shape, num_classes):
    import keras_vit

    return keras_vit.build_vit(
        image_size=image_shape[:2],
        channels=image_shape[2],
        num_classes=num_classes,
        **{k: recipe[k] for k in MODEL_KEYS if k in recipe},
    )


def compile_model(model, recipe, epochs, steps_per_epoch):
    import keras

    from keras_vit.training import compile_for_training

    if model.name == "cnn":
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )
        return model
    total = epochs * steps_per_epoch
    compile_for_training(
        model,
        learning_rate=recipe["learning_rate"],
        total_steps=total,
        warmup_steps=min(
            total - 1, recipe.get("warmup_epochs", 1) * steps_per_epoch
        ),
        weight_decay=recipe.get("weight_decay", 0.05),
        label_smoothing=recipe.get("label_smoothing", 0.1),
    )
    return model


def seconds_per_epoch(make, recipe, train, steps_per_epoch):
    """Times 10 steps (after 3 warm-up steps) of a throwaway model."""
    import keras

    model = compile_model(make(), recipe, 1, steps_per_epoch)
    batches = train.repeat().take(13)

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                self.start = time.perf_counter()

    clock = Clock()
    model.fit(batches, epochs=1, verbose=0, callbacks=[clock])
    return (time.perf_counter() - clock.start) / 10 * steps_per_epoch


def train_and_score(make, recipe, data, test, epochs):
    import keras

    keras.utils.set_random_seed(0)
    steps = len(data.train)
    model = compile_model(make(), recipe, epochs, steps)
    start = time.perf_counter()
    model.fit(data.train, epochs=epochs, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(test, verbose=0)
    return {
        "epochs": epochs,
        "train_s": round(seconds, 1),
        "accuracy": round(float(accuracy), 4),
        "parameters": int(model.count_params()),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", help="digits, tfds:NAME or a folder")
    parser.add_argument("--test", help="a separate folder to score on")
    parser.add_argument("--subset", type=int, help="train on N images")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds of training per model (default: the defaults' time)",
    )
    parser.add_argument(
        "--rows",
        default="defaults,budget,options,previous,cnn",
        help="comma-separated: defaults, budget, options, previous, cnn",
    )
    parser.add_argument("--epochs", type=int, help="as `keras-vit train`")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    import keras

    import keras_vit
    from keras_vit.data import count_examples
    from keras_vit.data import load_datasets
    from keras_vit.data import native_image_shape

    source = args.dataset
    if args.subset:
        source = subset_folder(source, args.subset)
    native = native_image_shape(source)
    examples = count_examples(source)
    recipe = keras_vit.recipes.choose_recipe(native, examples, args.epochs)
    data = load_datasets(
        source,
        image_size=recipe["image_size"],
        batch_size=recipe["batch_size"],
        validation_split=0.0,
        test_split=0.0 if args.test else 0.2,
        augment=recipe["augment"],
        one_hot=True,
    )
    if args.test:
        test = load_datasets(
            args.test,
            image_size=recipe["image_size"],
            channels=data.image_shape[2],
            batch_size=256,
            validation_split=0.0,
            test_split=0.0,
            one_hot=True,
        ).train
    else:
        test = data.test
    shape, classes = data.image_shape, data.num_classes
    steps = len(data.train)
    rows = args.rows.split(",")
    results = {
        "cpu": cpu_name(),
        "dataset": args.dataset,
        "subset": args.subset,
        "train_images": data.sizes["train"],
        "image_shape": list(shape),
        "recipe": {k: v for k, v in recipe.items() if k != "reason"},
        "budget_note": "seconds of model.fit per model, same pipeline",
        "reason": recipe["reason"],
        "rows": {},
    }

    def report(name, row):
        results["rows"][name] = row
        print(json.dumps({name: row}), flush=True)

    from keras_vit.training import hardware_precision

    def set_precision(variant):
        # As `keras-vit train --precision auto` does.
        policy = hardware_precision(variant["hidden_dim"])
        keras.config.set_dtype_policy(policy)
        return policy

    results["precision"] = set_precision(recipe)
    budget = args.budget
    if "defaults" in rows:
        row = train_and_score(
            lambda: make_vit(recipe, shape, classes),
            recipe,
            data,
            test,
            recipe["epochs"],
        )
        report("defaults", row)
        budget = budget or row["train_s"]
    if budget is None:
        parser.error("--budget is needed without the defaults row")
    results["budget_s"] = budget

    variants = {}
    if "budget" in rows:
        variants["defaults@budget"] = dict(recipe)
    if "options" in rows:
        for key, off, on in (
            ("tokenizer", "patch", recipe["tokenizer"]),
            ("tokenizer", "shifted_patch", None),
            ("pooling", "token", recipe["pooling"]),
            ("locality_attention", False, True),
        ):
            for value in (off, on):
                if value is None or value == recipe[key]:
                    continue
                variants[f"{key}={value}"] = {**recipe, key: value}
    if "previous" in rows:
        size = "small" if examples < 5_000 else "medium"
        variants["previous"] = {**recipe, **PREVIOUS[size]}
    for name, variant in variants.items():
        make = lambda v=variant: make_vit(v, shape, classes)  # noqa: E731
        set_precision(variant)
        per_epoch = seconds_per_epoch(make, variant, data.train, steps)
        epochs = max(1, math.floor(budget / per_epoch))
        report(name, train_and_score(make, variant, data, test, epochs))
    if "cnn" in rows:
        keras.config.set_dtype_policy("float32")
        make = lambda: build_cnn(shape, classes)  # noqa: E731
        per_epoch = seconds_per_epoch(make, {}, data.train, steps)
        epochs = max(1, math.floor(budget / per_epoch))
        report("cnn", train_and_score(make, {}, data, test, epochs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    print(json.dumps({"cpu": results["cpu"], "reason": results["reason"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
