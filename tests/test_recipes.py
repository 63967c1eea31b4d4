import pytest

from keras_vit import build_vit
from keras_vit.recipes import MODEL_KEYS
from keras_vit.recipes import SMALL_DATA
from keras_vit.recipes import choose_recipe


@pytest.mark.parametrize(
    "shape, count",
    [((8, 8, 1), 1797), ((28, 28, 1), 8000), ((32, 32, 3), 5000)],
)
def test_small_datasets_get_the_small_data_model(shape, count):
    recipe = choose_recipe(shape, count)
    assert recipe["tokenizer"] == "conv"
    assert recipe["pooling"] == "sequence"
    assert recipe["image_size"] % recipe["patch_size"] == 0
    assert recipe["augment"] == (["crop", "flip"] if shape[2] == 3 else [])
    assert f"{count:,} images" in recipe["reason"]
    # The recipe builds as it is.
    model = build_vit(
        image_size=recipe["image_size"],
        channels=shape[2],
        num_classes=10,
        **{k: recipe[k] for k in MODEL_KEYS},
    )
    assert model.output_shape == (None, 10)


def test_large_datasets_get_the_plain_vit():
    recipe = choose_recipe((256, 256, 3), SMALL_DATA * 10)
    assert (recipe["tokenizer"], recipe["pooling"]) == ("patch", "token")
    assert recipe["image_size"] == 224 and recipe["patch_size"] == 16
    assert "from 256x256" in recipe["reason"]


def test_the_schedule_follows_the_epochs_asked_for():
    chosen = choose_recipe((28, 28, 1), 8000)
    asked = choose_recipe((28, 28, 1), 8000, epochs=10)
    assert asked["epochs"] == 10 and "10 epochs as asked" in asked["reason"]
    assert chosen["epochs"] != 10
    assert asked["warmup_epochs"] >= 1
    assert asked["warmup_epochs"] < asked["epochs"]


@pytest.mark.parametrize("count", [0, None, -3])
def test_bad_example_counts_raise(count):
    with pytest.raises(ValueError, match="num_examples"):
        choose_recipe((28, 28, 1), count)


def test_the_fine_tuning_recipe_is_the_papers():
    from keras_vit.recipes import choose_finetune_recipe

    small = {"image_size": 224, "hidden_dim": 192}
    recipe = choose_finetune_recipe((28, 28, 1), 2_000, small)
    assert recipe["optimizer"] == "sgd"
    assert recipe["weight_decay"] == 0.0 and recipe["label_smoothing"] == 0.0
    # Gray images stay gray: the checkpoint's patch kernel is adapted.
    assert recipe["image_size"] == 224 and recipe["channels"] == 1
    assert recipe["augment"] == []  # grayscale
    assert recipe["batch_size"] == 64 and recipe["learning_rate"] == 0.03
    # About 1,000 steps: 2,000 images at 64 are 32 steps an epoch.
    assert recipe["epochs"] == 31
    assert (
        "gray: not augmented" in recipe["reason"]
        and "(from 28x28)" in recipe["reason"]
    )

    big = {"image_size": 384, "hidden_dim": 768}
    recipe = choose_finetune_recipe((500, 400, 3), 1_000_000, big)
    assert recipe["batch_size"] == 32 and recipe["epochs"] == 3  # the floor
    assert recipe["learning_rate"] == 0.01
    assert recipe["augment"] == ["crop", "flip"] and recipe["channels"] == 3
    assert choose_finetune_recipe((32, 32, 3), 50, big)["epochs"] == 50

    probe = choose_finetune_recipe(
        (32, 32, 3), 5_000, small, freeze_backbone=True
    )
    assert probe["learning_rate"] > recipe["learning_rate"]
    assert probe["reason"].startswith("linear probe")
    asked = choose_finetune_recipe((32, 32, 3), 5_000, small, epochs=7)
    assert asked["epochs"] == 7 and "7 epochs as asked" in asked["reason"]
    with pytest.raises(ValueError, match="num_examples"):
        choose_finetune_recipe((32, 32, 3), 0, small)


def test_images_that_are_not_augmented_get_at_most_thirty_epochs():
    # 1,437 digits: 23 steps an epoch, so 6,000 steps would be 100 epochs.
    gray = choose_recipe((8, 8, 1), 1437)
    assert gray["augment"] == [] and gray["epochs"] == 30
    assert "at most 30 passes" in gray["reason"]
    # Augmented images keep the step target (capped at 100 epochs).
    colour = choose_recipe((8, 8, 3), 1437)
    assert colour["augment"] and colour["epochs"] == 100
    assert "about 6,000 steps" in colour["reason"]
    # Large gray datasets reach the step target first, and keep it.
    mnist = choose_recipe((28, 28, 1), 60_000)
    assert mnist["epochs"] == 13 and "about 6,000 steps" in mnist["reason"]
    # Asked-for lengths are kept whatever the data.
    assert choose_recipe((8, 8, 1), 1437, epochs=80)["epochs"] == 80
