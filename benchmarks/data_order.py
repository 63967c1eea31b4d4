"""What a training pipeline costs and how well it mixes the classes.

Builds `keras_vit.data.load_datasets` on a dataset (a folder of class
sub-folders, `digits` or `tfds:NAME`) exactly as `keras-vit train` does, then
iterates the training split alone, no model, and reports:

- `setup_s`: the call to `load_datasets` (listing and checking the files);
- `first_batch_s`: from the first `next()` to the first batch (decoding and,
  for a cached split, filling the shuffle buffer);
- `epoch_s`: each full pass over the training split;
- `first_batches_largest_share`: the largest share one class has in the
  first 10 batches (1/classes is perfect mixing);
- `chunks_largest_share`: the same over every tenth of the first epoch;
- `epochs_differ`: whether epochs 1 and 2 visit the examples in different
  orders.

    python benchmarks/data_order.py cifar10/train --image-size 32 \\
        --batch-size 128 --epochs 3 --json after.json

Run it under two versions of the package (e.g. `PYTHONPATH=old-checkout`)
to compare them on the same machine.
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.processor() or "unknown"
    names = [
        line.split(":", 1)[1].strip()
        for line in info.splitlines()
        if line.startswith("model name")
    ]
    name = names[0] if names else platform.processor() or "unknown"
    return f"{name}, {os.cpu_count()} cores, AMX: {'amx_bf16' in info}"


def largest_share(labels, num_classes, chunks=1):
    return max(
        float(np.bincount(part, minlength=num_classes).max() / len(part))
        for part in np.array_split(labels, chunks)
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--validation-split", type=float, default=0.1)
    parser.add_argument("--test-split", type=float, default=0.0)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import keras_vit
    from keras_vit.data import load_datasets

    start = time.perf_counter()
    data = load_datasets(
        args.dataset,
        image_size=args.image_size,
        batch_size=args.batch_size,
        validation_split=args.validation_split,
        test_split=args.test_split,
        seed=args.seed,
        one_hot=False,
        cache=not args.no_cache,
    )
    result = {
        "package": os.path.dirname(keras_vit.__file__),
        "cpu": cpu_name(),
        "dataset": args.dataset,
        "train_examples": data.sizes["train"],
        "batch_size": args.batch_size,
        "setup_s": round(time.perf_counter() - start, 2),
        "epoch_s": [],
    }
    orders = []
    for epoch in range(args.epochs):
        labels = []
        start = time.perf_counter()
        for i, (_, y) in enumerate(data.train):
            if epoch == 0 and i == 0:
                result["first_batch_s"] = round(time.perf_counter() - start, 2)
            labels.append(y.numpy())
        result["epoch_s"].append(round(time.perf_counter() - start, 2))
        orders.append(np.concatenate(labels))
    first = orders[0]
    classes = data.num_classes
    result["first_batches_largest_share"] = round(
        largest_share(first[: 10 * args.batch_size], classes), 3
    )
    result["chunks_largest_share"] = round(
        largest_share(first, classes, chunks=10), 3
    )
    result["perfect_share"] = round(1 / classes, 3)
    if len(orders) > 1:
        result["epochs_differ"] = bool(not np.array_equal(orders[0], orders[1]))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
