"""Trains a ViT on a TensorFlow Datasets dataset (downloads it on first use).

    python examples/train_tfds.py [--dataset tfds:cifar10] [--epochs 100]
        [--out runs/cifar10]

CIFAR-10 at 32x32 with 4x4 patches gives 64 patch tokens; the model is the
CIFAR-size ViT (width 192, depth 6, 3 heads), trained with random crops and
flips. The same as:

    keras-vit train --dataset tfds:cifar10 --out runs/cifar10
"""

import argparse
import sys

from keras_vit.cli import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="tfds:cifar10")
    parser.add_argument("--epochs", default="100")
    parser.add_argument("--out", default="runs/cifar10")
    parser.add_argument("--data-dir", help="TensorFlow Datasets folder")
    args = parser.parse_args()
    argv = [
        "train",
        "--dataset",
        args.dataset,
        "--epochs",
        args.epochs,
        "--out",
        args.out,
        "--augment",
        "crop,flip",
    ]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    sys.exit(main(argv))
