"""Where the README's main job spends its training time, and what length pays.

Runs `keras-vit train --dataset digits` (the CLI's defaults, or `--epochs N`
for each N given) and splits every epoch's wall time into the optimizer
steps, the validation pass and the end-of-epoch callbacks (history.csv,
the resumable backup, best.keras, TensorBoard), then prints one JSON line
per run with the test accuracy. Runs are alternated over `--repeats`, so a
slow spell of the machine falls on every setting alike.

    python benchmarks/main_job.py --epochs default 15 20 30 --seeds 0 1 2
"""

import argparse
import contextlib
import json
import os
import tempfile
import time

import keras


class _Mark(keras.callbacks.Callback):
    """Time stamps of one epoch's phases; one instance first, one last."""

    def __init__(self, times, first):
        super().__init__()
        self.times, self.first = times, first

    def on_epoch_begin(self, epoch, logs=None):
        if self.first:
            self.times.append({"begin": time.perf_counter()})

    def on_test_begin(self, logs=None):
        if self.first and self.times:
            self.times[-1]["test_begin"] = time.perf_counter()

    def on_test_end(self, logs=None):
        if self.first and self.times:
            self.times[-1]["test_end"] = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        key = "callbacks_begin" if self.first else "end"
        self.times[-1][key] = time.perf_counter()


@contextlib.contextmanager
def _timed_callbacks(times):
    from keras_vit import training

    original = training.training_callbacks

    def wrapped(*args, **kwargs):
        inner = original(*args, **kwargs)
        return [_Mark(times, True), *inner, _Mark(times, False)]

    training.training_callbacks = wrapped
    try:
        yield
    finally:
        training.training_callbacks = original


def run(epochs, extra):
    from keras_vit.cli import main

    times = []
    with tempfile.TemporaryDirectory() as out:
        argv = ["train", "--dataset", "digits", "--out", out, "--quiet"]
        if epochs != "default":
            argv += ["--epochs", str(epochs)]
        argv += extra
        with (
            _timed_callbacks(times),
            contextlib.redirect_stdout(open(os.devnull, "w")),
        ):
            status = main(argv)
        with open(os.path.join(out, "metrics.json")) as f:
            metrics = json.load(f)
        with open(os.path.join(out, "config.json")) as f:
            config = json.load(f)
    assert status == 0, status
    steps = sum(t["test_begin"] - t["begin"] for t in times)
    validation = sum(t["test_end"] - t["test_begin"] for t in times)
    callbacks = sum(t["end"] - t["callbacks_begin"] for t in times)
    return {
        "epochs": config["epochs"],
        "options": " ".join(extra),
        "train_seconds": metrics["train_seconds"],
        "steps_s": round(steps, 1),
        "validation_s": round(validation, 1),
        "callbacks_s": round(callbacks, 1),
        "other_s": round(
            metrics["train_seconds"] - steps - validation - callbacks, 1
        ),
        "test_accuracy": metrics["test_accuracy"],
        "validation_accuracy": metrics.get("validation_accuracy"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", nargs="+", default=["default"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="training seeds (the split, initialization and order); "
        "the CLI's default is 0",
    )
    parser.add_argument(
        "--no-tensorboard",
        action="store_true",
        help="also run each length without TensorBoard logs",
    )
    args = parser.parse_args()
    variants = [[]] + ([["--no-tensorboard"]] if args.no_tensorboard else [])
    for _ in range(args.repeats):
        for seed in args.seeds:
            for epochs in args.epochs:
                for extra in variants:
                    seeded = [] if seed == 0 else ["--seed", str(seed)]
                    options = extra + seeded
                    print(json.dumps(run(epochs, options)), flush=True)


if __name__ == "__main__":
    main()
