"""`ViTConfig`: one checked description of an architecture, and the files
saved before it still load, compute and describe themselves the same."""

import json
import os

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit import ViTConfig
from keras_vit.model import assemble
from keras_vit.model import vit_config

SAVED = os.path.join(os.path.dirname(__file__), "fixtures", "saved")
NAMES = ("plain", "small_data", "options", "features")


@pytest.mark.parametrize("name", NAMES)
def test_a_file_saved_before_the_config_loads_the_same(name):
    with open(os.path.join(SAVED, "configs.json")) as f:
        saved_config = json.load(f)[name]
    outputs = np.load(os.path.join(SAVED, "outputs.npz"))
    model = keras.saving.load_model(os.path.join(SAVED, f"{name}.keras"))
    got = keras.ops.convert_to_numpy(model(outputs[f"{name}/x"]))
    np.testing.assert_allclose(got, outputs[f"{name}/y"], atol=1e-5)
    # Its configuration is JSON-equal to the one it was saved with, and
    # building its ViTConfig again gives that configuration too.
    as_json = json.loads(json.dumps(model.get_config()))
    assert as_json == saved_config
    rebuilt = keras_vit.build_vit(**vit_config(model))
    assert json.loads(json.dumps(rebuilt.get_config())) == saved_config


def test_a_config_round_trips_through_json_and_the_model():
    config = ViTConfig(
        image_size=(16, 24),
        patch_size=4,
        hidden_dim=16,
        depth=2,
        num_heads=2,
        mlp_dim=32,
        num_classes=3,
        class_names=["a", "b", "c"],
        layer_scale=1e-4,
        num_registers=2,
        name="round_trip",
    )
    assert ViTConfig.from_json(config.to_json()) == config
    assert config.grid_size == (4, 6) and config.patch_size == (4, 4)
    model = assemble(config)
    assert vit_config(model) == config
    assert model.output_shape == (None, 3)
    assert keras_vit.class_names(model) == ["a", "b", "c"]


def test_the_older_spelling_of_an_activation_is_read():
    config = ViTConfig.from_dict({"approximate_gelu": True, "depth": 1})
    assert config.activation == "gelu_approximate" and config.approximate_gelu
    assert config["approximate_gelu"] is True


@pytest.mark.parametrize(
    "values, error, match",
    [
        ({"image_size": 30}, ValueError, "divisible by `patch_size`"),
        ({"hidden_dim": 10, "num_heads": 3}, ValueError, "num_heads=3"),
        ({"pooling": "max"}, ValueError, "pooling='max'"),
        (
            {"tokenizer": "conv", "patch_size": 6, "image_size": 24},
            ValueError,
            "power of two",
        ),
        (
            {"colour": True},
            ValueError,
            r"Unknown ViTConfig fields \['colour'\]",
        ),
        ({"layer_norm_epsilon": 0}, ValueError, "layer_norm_epsilon=0"),
        ({"class_names": ["a"], "num_classes": 2}, ValueError, "2 classes"),
        ({"include_top": "no"}, TypeError, "include_top='no'"),
    ],
)
def test_a_wrong_field_is_one_clear_error(values, error, match):
    with pytest.raises(error, match=match):
        ViTConfig.from_dict(values)


def test_a_config_is_frozen():
    config = ViTConfig()
    with pytest.raises(AttributeError):
        config.depth = 3
    assert config.replace(depth=3).depth == 3
