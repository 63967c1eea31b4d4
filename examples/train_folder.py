"""Trains a ViT on a folder of images, one sub-folder per class.

    python examples/train_folder.py PATH [--out runs/folder] [--epochs N]

    PATH/
      cats/  001.jpg 002.png ...
      dogs/  001.jpg ...

Images may be JPEG, PNG, BMP or GIF, of any size and colour mode; they are
resized to one size chosen from the folder's images. 10% are held out for
validation and 20% for testing, chosen with the seed. Unreadable files stop
the run with their names; add --skip-bad-images to skip them instead. After
training, classify new images with:

    keras-vit predict runs/folder/model.keras photo.jpg --top-k 3
"""

import argparse
import sys

from keras_vit.cli import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="folder with one sub-folder per class")
    parser.add_argument("--out", default="runs/folder")
    parser.add_argument("--epochs", help="default: chosen for the data size")
    parser.add_argument("--skip-bad-images", action="store_true")
    args = parser.parse_args()
    argv = ["train", "--dataset", args.path, "--out", args.out]
    if args.epochs:
        argv += ["--epochs", args.epochs]
    if args.skip_bad_images:
        argv.append("--skip-bad-images")
    sys.exit(main(argv))
