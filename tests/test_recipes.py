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
