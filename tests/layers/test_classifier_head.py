import json

import keras
import numpy as np
import pytest

import keras_vit
from keras_vit.layers import ClassifierHead
from keras_vit.saving import class_names_for
from tests.helpers import to_numpy

TINY = dict(image_size=16, patch_size=8, hidden_dim=8, depth=1, num_heads=2)


def test_it_is_a_dense_layer_with_names_in_its_config():
    head = ClassifierHead(3, class_names=["a", "b", "c"], activation="relu")
    x = np.ones((2, 4), "float32")
    dense = keras.layers.Dense(3, activation="relu")
    dense.build((None, 4))
    head.build((None, 4))
    head.set_weights(dense.get_weights())
    np.testing.assert_array_equal(to_numpy(head(x)), to_numpy(dense(x)))
    config = head.get_config()
    assert config["class_names"] == ["a", "b", "c"]
    again = ClassifierHead.from_config(config)
    assert again.class_names == ["a", "b", "c"] and again.units == 3


@pytest.mark.parametrize(
    "names, error, message",
    [
        (["a", "b"], ValueError, "each of the 3 classes. Received: 2"),
        ("abc", TypeError, "list of str"),
        (["a", 1, "c"], TypeError, "list of str"),
    ],
)
def test_bad_names_are_refused(names, error, message):
    with pytest.raises(error, match=message):
        ClassifierHead(3, class_names=names)
    with pytest.raises(error, match=message):
        keras_vit.build_vit(num_classes=3, class_names=names, **TINY)


def test_names_travel_in_the_model_file(tmp_path):
    model = keras_vit.build_vit(class_names=["cat", "dog"], **TINY)
    assert model.output_shape == (None, 2)  # the count from the names
    assert keras_vit.class_names(model) == ["cat", "dog"]
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert keras_vit.class_names(loaded) == ["cat", "dog"]
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3))
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(model(x)))
    assert keras_vit.class_names(keras_vit.build_vit(**TINY)) is None


def test_where_class_names_come_from(tmp_path):
    named = keras_vit.build_vit(class_names=["cat", "dog"], **TINY)
    plain = keras_vit.build_vit(num_classes=2, **TINY)
    beside = tmp_path / "labels.json"
    beside.write_text(json.dumps(["x", "y"]))
    given = tmp_path / "given.json"
    given.write_text(json.dumps({"1": "dog!", "0": "cat!"}))
    model_path = tmp_path / "model.keras"
    assert class_names_for(named, None, model_path) == ["cat", "dog"]
    assert class_names_for(plain, None, model_path) == ["x", "y"]
    assert class_names_for(named, given, model_path) == ["cat!", "dog!"]
    assert class_names_for(plain) is None
    with pytest.raises(FileNotFoundError, match="missing.json"):
        class_names_for(named, tmp_path / "missing.json")
