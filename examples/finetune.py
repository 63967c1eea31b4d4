"""Fine-tunes a pretrained ViT on a folder of images with the Python API.

    python examples/finetune.py PATH [--weights NAME_OR_FILE]
        [--image-size 224] [--epochs 5] [--out runs/finetune]

PATH holds one sub-folder of images per class. --weights is a preset name
(`keras-vit weights list`; downloaded once) or a checkpoint file (.npz,
.safetensors, .keras). The checkpoint's head is replaced for PATH's classes,
its position embedding resized to --image-size, and the network trained with
the ViT paper's fine-tuning recipe. `keras-vit train --dataset PATH
--weights NAME` does the same with resuming, metrics and the best model.
"""

import argparse
import json
import os

import keras_vit
from keras_vit.data import load_datasets
from keras_vit.training import compile_for_training


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="folder with one sub-folder per class")
    parser.add_argument(
        "--weights", default="vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--out", default="runs/finetune")
    args = parser.parse_args()

    data = load_datasets(
        args.path,
        image_size=args.image_size,
        channels=3,  # the checkpoints are RGB; grayscale is repeated
        batch_size=args.batch_size,
        augment=["crop", "flip"],
        one_hot=True,
    )
    # The checkpoint's architecture and weights with a new head.
    model = keras_vit.from_preset(
        args.weights, num_classes=data.num_classes, image_size=args.image_size
    )
    steps = len(data.train) * args.epochs
    compile_for_training(
        model,
        optimizer="sgd",  # momentum 0.9, as the ViT paper fine-tunes
        learning_rate=args.lr,
        weight_decay=0.0,
        label_smoothing=0.0,
        total_steps=steps,
        warmup_steps=min(len(data.train), steps - 1),
    )
    model.fit(data.train, validation_data=data.validation, epochs=args.epochs)
    os.makedirs(args.out, exist_ok=True)
    model.save(os.path.join(args.out, "model.keras"))
    with open(os.path.join(args.out, "labels.json"), "w") as f:
        json.dump(data.class_names, f)
    if data.test is not None:
        _, accuracy = model.evaluate(data.test, verbose=0)
        print(json.dumps({"test_accuracy": round(float(accuracy), 4)}))


if __name__ == "__main__":
    main()
