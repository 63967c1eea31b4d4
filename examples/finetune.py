"""Fine-tunes a pretrained ViT on a folder of images at another resolution.

    python examples/finetune.py CHECKPOINT PATH [--variant B/16]
        [--image-size 160] [--epochs 10] [--out runs/finetune]

CHECKPOINT is an original ViT .npz file (e.g. ViT-B_16.npz from
gs://vit_models/imagenet21k/, or an AugReg file from gs://vit_models/augreg/)
or a timm/Hugging Face model.safetensors. PATH holds one sub-folder of images
per class. The checkpoint's head is dropped (the class count differs), the
position embedding is resized to the new patch grid, and the whole network is
trained with a small learning rate.
"""

import argparse
import json
import os

import keras_vit
from keras_vit.data import load_datasets
from keras_vit.training import compile_for_training
from keras_vit.training import training_callbacks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("path", help="folder with one sub-folder per class")
    parser.add_argument("--variant", default="B/16")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--out", default="runs/finetune")
    parser.add_argument("--overrides", default="{}", help="JSON build_vit args")
    args = parser.parse_args()

    data = load_datasets(
        args.path,
        image_size=args.image_size,
        channels=3,
        batch_size=args.batch_size,
        augment=["crop", "flip"],
        one_hot=True,
    )
    model = keras_vit.build_vit(
        args.variant,
        image_size=args.image_size,
        num_classes=data.num_classes,
        **json.loads(args.overrides),
    )
    report = keras_vit.load_weights(model, args.checkpoint)
    print(
        f"loaded {len(report['loaded'])} arrays; not loaded: "
        f"{sorted(report['skipped']) or 'none'}; resized: "
        f"{report['resized'] or 'none'}"
    )
    steps = len(data.train)
    compile_for_training(
        model,
        learning_rate=args.lr,
        total_steps=args.epochs * steps,
        warmup_steps=min(steps, args.epochs * steps - 1),  # up to one epoch
    )
    os.makedirs(args.out, exist_ok=True)
    model.fit(
        data.train,
        validation_data=data.validation,
        epochs=args.epochs,
        callbacks=training_callbacks(args.out),
        shuffle=False,
    )
    model.save(os.path.join(args.out, "model.keras"))
    with open(os.path.join(args.out, "labels.json"), "w") as f:
        json.dump(data.class_names, f)
    if data.test is not None:
        loss, accuracy = model.evaluate(data.test, verbose=0)
        print(json.dumps({"test_accuracy": round(float(accuracy), 4)}))


if __name__ == "__main__":
    main()
