"""Trains a small ViT on scikit-learn's handwritten digits and reports accuracy.

The digits (1,797 grayscale 8x8 images, 10 classes) ship with scikit-learn,
so this runs offline. Images are upsampled (bilinear) to 16x16. The model is
the one `keras-vit train` chooses for such data (`keras_vit.recipes`): a
convolutional tokenizer (two 3x3 convolution + pooling stages: 4x4 tokens)
with sequence pooling, which learns from few images where patches do not.

    python examples/train_digits.py [--epochs 40] [--out runs/digits]

With `--out DIR` it writes DIR/model.keras, DIR/labels.json, DIR/metrics.json,
and DIR/train_images.npy (200 training images, for int8 calibration) and
DIR/test_images.npy (the test images), ready for `python -m export`.
"""

import argparse
import json
import os

import keras
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_vit
from keras_vit.recipes import MODEL_KEYS
from keras_vit.recipes import choose_recipe


def load_data(seed):
    digits = load_digits()
    # 0..16 -> [-1, 1], the input range of the original ViT.
    images = digits.images.astype("float32")[..., None] / 8.0 - 1.0
    images = tf.image.resize(images, (16, 16), method="bilinear").numpy()
    return train_test_split(
        images,
        digits.target,
        test_size=0.2,
        random_state=seed,
        stratify=digits.target,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="folder for the model and its data")
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    x_train, x_test, y_train, y_test = load_data(args.seed)
    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=args.seed)
        .batch(args.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    test = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(256)

    recipe = choose_recipe((8, 8, 1), len(x_train) + len(x_test))
    model = keras_vit.build_vit(
        image_size=16,
        channels=1,
        num_classes=10,
        name="vit_digits",
        **{k: recipe[k] for k in MODEL_KEYS},
    )
    steps = args.epochs * len(train)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0,
        steps,
        warmup_target=recipe["learning_rate"],
        warmup_steps=len(train) * 2,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(train, epochs=args.epochs, verbose=2)
    loss, accuracy = model.evaluate(test, verbose=0)
    metrics = {
        "test_accuracy": round(float(accuracy), 4),
        "test_loss": round(float(loss), 4),
        "test_images": int(len(x_test)),
        "parameters": int(model.count_params()),
    }
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        model.save(os.path.join(args.out, "model.keras"))
        np.save(os.path.join(args.out, "train_images.npy"), x_train[:200])
        np.save(os.path.join(args.out, "test_images.npy"), x_test)
        with open(os.path.join(args.out, "labels.json"), "w") as f:
            json.dump([str(d) for d in range(10)], f)
        with open(os.path.join(args.out, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
    print(json.dumps(metrics))
    return accuracy


if __name__ == "__main__":
    main()
