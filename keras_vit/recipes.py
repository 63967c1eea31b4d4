"""Training recipes chosen from the data: `keras-vit train` defaults.

`choose_recipe(image_shape, num_examples, epochs=None)` returns the model,
optimizer, augmentation and schedule for a dataset, with the reason in one
line. The choices were measured with `benchmarks/accuracy.py` (tables in
BENCHMARKS.md): below 100,000 images a plain ViT learns slowly for want of
the locality bias of convolutions, so small datasets get a convolutional
tokenizer and sequence pooling (Hassani et al., "Escaping the Big Data
Paradigm with Compact Transformers", 2021); large ones the plain ViT.
"""

import math

from keras_vit.config import ARCHITECTURE_OPTIONS
from keras_vit.config import TOKENIZERS  # noqa: F401
from keras_vit.config import option_defaults

# The choices `keras-vit train` offers (standard library only: the command
# line builds its parser without loading TensorFlow).
AUGMENTATIONS = (
    "flip",
    "crop",
    "translate",
    "rotate",
    "randaugment",
    "mixup",
    "cutmix",
)
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")

# The model options a recipe chooses: the architecture options of the
# configuration (`keras_vit.config.ARCHITECTURE_OPTIONS`).
MODEL_KEYS = tuple(ARCHITECTURE_OPTIONS)
# What a recipe chooses besides the model, and the run's training options,
# as `keras-vit train` offers them (a flag each, in this order): the key
# (the flag without its dashes; `lr` is the recipe's `learning_rate`), the
# kind of value, its default (`None`: the recipe's) and the help text.
TRAINING_OPTIONS = {
    "image_size": ("positive_int", None, "image side in pixels"),
    "epochs": ("positive_int", None, "training epochs"),
    "batch_size": ("positive_int", None, "global batch size"),
    "warmup_epochs": (
        "positive_int",
        None,
        "epochs of linear learning-rate warm-up",
    ),
    "patience": (
        "positive_int",
        None,
        "stop after this many epochs without improvement",
    ),
    "dropout": ("rate", None, "default from the recipe"),
    "drop_path_rate": ("rate", 0.0, None),
    "lr": ("positive_float", None, "peak learning rate"),
    "weight_decay": ("float", None, "default from the recipe (0.05)"),
    "label_smoothing": ("rate", None, "default from the recipe (0.1)"),
    "clipnorm": ("positive_float", 1.0, None),
    "augment": (
        "text",
        None,
        f"comma-separated Keras augmentations: {', '.join(AUGMENTATIONS)} "
        "(default: crop,flip for colour images, none for grayscale; 'none' "
        "for none)",
    ),
}
# Below this many images the small-data recipe is used.
SMALL_DATA = 100_000
# Optimizer steps the default schedule aims at, and its epoch bounds.
_TARGET_STEPS = 6_000
_EPOCHS = (10, 100)
# Images that are not augmented look the same in every epoch: past this many
# passes they stop paying. On the 1,437 training digits (23 steps an epoch)
# 30 epochs reached 98.3-99.2% test accuracy over three seeds in a third of
# the 100 epochs' time (`benchmarks/main_job.py`, BENCHMARKS.md).
_UNAUGMENTED_EPOCHS = 30


def choose_recipe(image_shape, num_examples, epochs=None):
    """Model, schedule and augmentation for a dataset of this kind.

    Args:
        image_shape: `(height, width, channels)` of the dataset's images.
        num_examples: number of labelled examples in the dataset.
        epochs: int or `None`. A length of training the user asked for; the
            schedule (warm-up, cosine decay) follows it. `None` chooses one
            from the dataset size: about 6,000 optimizer steps, 10 to 100
            epochs, at most 30 for images that are not augmented.

    Returns:
        A dict with `image_size`, the `build_vit` arguments named in
        `MODEL_KEYS`, `epochs`, `batch_size`, `learning_rate`,
        `warmup_epochs`, `weight_decay`, `label_smoothing`, `dropout`,
        `augment` and `reason` (one line saying why).

    Example:

    >>> recipe = choose_recipe((28, 28, 1), 8000)
    >>> recipe["tokenizer"], recipe["pooling"], recipe["image_size"]
    ('conv', 'sequence', 28)
    """
    height, width, channels = (int(v) for v in image_shape)
    if num_examples is None or num_examples < 1:
        raise ValueError(
            "`num_examples` must be a positive number of images. "
            f"Received: num_examples={num_examples!r}"
        )
    side = max(16, min(224, max(height, width)))
    patch = 4 if side <= 64 else 8 if side <= 128 else 16
    side -= side % patch
    colour = channels == 3
    # Mirrored digits or letters are other symbols, and on the digits set
    # shifts and turns cost accuracy, so only colour images are augmented.
    augment = ["crop", "flip"] if colour else []
    if num_examples < SMALL_DATA:
        recipe = dict(
            tokenizer="conv",
            pooling="sequence",
            locality_attention=False,
            hidden_dim=128,
            depth=4 if num_examples < 20_000 else 6,
            num_heads=4,
            mlp_dim=256,
            batch_size=64 if num_examples < 20_000 else 128,
            # Measured on 8,000 28x28 digits, 10 epochs: 98.1% at 2e-3,
            # 97.9% at 1e-3; short schedules favour the larger rate.
            learning_rate=2e-3 if num_examples < 20_000 else 1e-3,
            weight_decay=0.05,
            label_smoothing=0.1,
            dropout=0.0,
        )
        why = (
            f"{num_examples:,} images (< {SMALL_DATA:,}): convolutional "
            "tokenizer and sequence pooling, which learn from few images "
            "where patches do not"
        )
    else:
        recipe = dict(
            tokenizer="patch",
            pooling="token",
            locality_attention=False,
            hidden_dim=192,
            depth=12,
            num_heads=3,
            mlp_dim=768,
            batch_size=256,
            learning_rate=1e-3,
            weight_decay=0.05,
            label_smoothing=0.1,
            dropout=0.1,
        )
        why = f"{num_examples:,} images: the plain ViT (Ti width, 12 blocks)"
    # The options this recipe does not choose keep the configuration's
    # defaults (no registers, no LayerScale, ...).
    recipe = {**option_defaults(), **recipe}
    steps_per_epoch = max(1, math.ceil(num_examples / recipe["batch_size"]))
    if epochs is None:
        low, high = _EPOCHS
        epochs = max(low, round(_TARGET_STEPS / steps_per_epoch))
        length = f"{min(high, epochs)} epochs (about {_TARGET_STEPS:,} steps)"
        if not augment and epochs > _UNAUGMENTED_EPOCHS:
            high = _UNAUGMENTED_EPOCHS
            length = (
                f"{high} epochs (at most {high} passes over images that are "
                "not augmented)"
            )
        epochs = min(high, epochs)
    else:
        length = f"{epochs} epochs as asked, the schedule fitted to them"
    recipe.update(
        image_size=side,
        patch_size=patch,
        epochs=int(epochs),
        warmup_epochs=max(1, round(epochs / 20)),
        augment=augment,
    )
    resized = "" if side == max(height, width) else f" (from {height}x{width})"
    augmented = "colour: crop and flip" if colour else "gray: not augmented"
    recipe["reason"] = f"{why}; {side}x{side}{resized}, {augmented}; {length}"
    return recipe


# Optimizer steps a default fine-tuning run aims at, and its epoch bounds.
_FINETUNE_STEPS = 1_000
_FINETUNE_EPOCHS = (3, 50)


def choose_finetune_recipe(
    image_shape,
    num_examples,
    checkpoint,
    epochs=None,
    freeze_backbone=False,
    lora=False,
):
    """Schedule and augmentation for fine-tuning a pretrained checkpoint.

    The ViT paper's fine-tuning: SGD with momentum 0.9, no weight decay,
    global-norm clipping at 1, a short linear warm-up then cosine decay, a
    small learning rate, no label smoothing and no dropout. Images are
    resized to the checkpoint's resolution (at least) and keep their own
    channels (the checkpoint's patch embedding is adapted to them: summed
    over RGB for gray images, as timm does); the architecture is the
    checkpoint's.

    Args:
        image_shape: `(height, width, channels)` of the dataset's images.
        num_examples: number of labelled examples in the dataset.
        checkpoint: the dict `keras_vit.checkpoints.checkpoint_config`
            returns for the checkpoint.
        epochs: int or `None`. A length the user asked for; `None` aims at
            about 1,000 optimizer steps (3 to 50 epochs).
        freeze_backbone: bool. Only the new head trains (a linear probe),
            which takes a larger learning rate.
        lora: bool. LoRA updates and the head train (`keras_vit.lora`),
            which also take the larger learning rate.

    Returns:
        A dict with `image_size`, `channels`, `epochs`, `batch_size`,
        `optimizer`, `learning_rate`, `warmup_epochs`, `weight_decay`,
        `label_smoothing`, `dropout`, `augment`, `layer_decay`, `ema`,
        `accumulate` (`None`: off) and `reason`.

    Example:

    >>> recipe = choose_finetune_recipe(
    ...     (28, 28, 1), 1000, {"image_size": 32, "hidden_dim": 192})
    >>> recipe["optimizer"], recipe["image_size"], recipe["channels"]
    ('sgd', 32, 1)
    """
    height, width, channels = (int(v) for v in image_shape)
    if num_examples is None or num_examples < 1:
        raise ValueError(
            "`num_examples` must be a positive number of images. "
            f"Received: num_examples={num_examples!r}"
        )
    side = int(checkpoint["image_size"])
    # Large models at 224 pixels fill a CPU's memory at larger batches.
    large = checkpoint["hidden_dim"] >= 768
    batch_size = 32 if large else 64
    # Measured (benchmarks/finetune.py, a width-192 ViT at batch 64, 1,000
    # CIFAR-10 images at 40x40): lr 0.03 72.3%, 0.01 70.2%, 0.003 67.6%.
    # Large models at batch 32 keep the paper's more cautious 0.01.
    # LoRA (rank 8, same task): lr 0.1 68.5%, 0.03 66.3%; full 0.03 68.0%.
    learning_rate = 0.1 if freeze_backbone or lora else 0.01 if large else 0.03
    steps_per_epoch = max(1, math.ceil(num_examples / batch_size))
    if epochs is None:
        low, high = _FINETUNE_EPOCHS
        epochs = min(high, max(low, round(_FINETUNE_STEPS / steps_per_epoch)))
        length = f"{epochs} epochs (about {_FINETUNE_STEPS:,} steps)"
    else:
        length = f"{epochs} epochs as asked"
    colour = channels == 3
    recipe = dict(
        image_size=side,
        channels=channels,
        epochs=int(epochs),
        batch_size=batch_size,
        optimizer="sgd",
        learning_rate=learning_rate,
        warmup_epochs=max(1, round(epochs / 20)),
        weight_decay=0.0,
        label_smoothing=0.0,
        dropout=0.0,
        augment=["crop", "flip"] if colour else [],
        # Off, as measured (benchmarks/finetune.py, 240 steps on 1,000
        # CIFAR-10 images, a 4-block DINOv2-shaped backbone; fine-tune
        # 68.0%): layer decay 0.75 67.7%, 0.9 68.15%; EMA 0.99 67.35%,
        # 0.998 43.3%; 4 batches per update 65.05% (lr 0.12: 64.4%).
        layer_decay=None,
        ema=None,
        accumulate=None,
    )
    what = (
        "linear probe (backbone frozen)"
        if freeze_backbone
        else "LoRA fine-tune"
        if lora
        else "fine-tune"
    )
    resized = "" if side == max(height, width) else f" (from {height}x{width})"
    recipe["reason"] = (
        f"{what} of a pretrained checkpoint on {num_examples:,} images: SGD "
        f"momentum 0.9, lr {learning_rate:g}, no weight decay, clip 1, "
        f"warm-up then cosine; {side}x{side}{resized} as the checkpoint, "
        f"{'colour: crop and flip' if colour else 'gray: not augmented'}; "
        f"{length}"
    )
    return recipe
