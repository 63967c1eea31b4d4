"""Seconds from `keras-vit train` to its first training step, by phase.

python benchmarks/first_step.py FOLDER

Runs the train command in this process (a tiny model: the data path is what
is timed) and prints when imports end, how long `load_datasets` takes (the
folder listing and check), when `fit` begins and when its first step ends.
To compare two versions, run it with `PYTHONPATH` set to each checkout and
the same `KERAS_VIT_HOME` (the second run of a version then shows the
cached check).
"""

import os
import sys
import tempfile
import time

STARTED = time.perf_counter()


def _since():
    return time.perf_counter() - STARTED


def main():
    import keras

    import keras_vit.data as data
    import keras_vit.training as training
    from keras_vit.cli import main as cli

    print(f"imports done at {_since():.1f} s", flush=True)

    class FirstStep(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            print(f"fit begins at {_since():.1f} s", flush=True)

        def on_train_batch_end(self, batch, logs=None):
            print(f"first step done at {_since():.1f} s", flush=True)
            os._exit(0)

    callbacks = training.training_callbacks
    training.training_callbacks = lambda *a, **k: [
        *callbacks(*a, **k),
        FirstStep(),
    ]
    load = data.load_datasets

    def timed_load(*args, **kwargs):
        started = time.perf_counter()
        result = load(*args, **kwargs)
        seconds = time.perf_counter() - started
        print(f"load_datasets {seconds:.1f} s", flush=True)
        return result

    data.load_datasets = timed_load
    # A tiny model; the recipe's own image size, augmentation and batch.
    cli(
        [
            "train",
            "--dataset",
            sys.argv[1],
            "--out",
            tempfile.mkdtemp(),
            "--epochs",
            "1",
            "--hidden-dim",
            "32",
            "--depth",
            "1",
            "--num-heads",
            "2",
            "--mlp-dim",
            "32",
            "--no-tensorboard",
            "--quiet",
        ]
    )


if __name__ == "__main__":
    main()
