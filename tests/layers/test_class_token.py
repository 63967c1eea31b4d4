import keras
import numpy as np
import pytest

from keras_vit.layers import ClassToken
from tests.helpers import run_layer_test
from tests.helpers import to_numpy


def test_layer_contract():
    run_layer_test(
        ClassToken,
        {},
        input_shape=(3, 4, 8),
        expected_output_shape=(3, 5, 8),
        expected_num_weights=1,
        expected_num_params=8,
    )


def test_prepends_the_same_token_to_every_sample():
    layer = ClassToken()
    x = np.random.default_rng(0).normal(size=(3, 4, 6)).astype("float32")
    out = to_numpy(layer(x))
    token = to_numpy(layer.token)[0, 0]
    for sample in out:
        np.testing.assert_array_equal(sample[0], token)
    np.testing.assert_array_equal(out[:, 1:], x)


def test_initial_values_are_standard_normal():
    layer = ClassToken()
    layer.build((None, 1, 20000))
    values = to_numpy(layer.token).ravel()
    assert abs(values.mean()) < 0.03
    assert abs(values.std() - 1.0) < 0.03
    # Not truncated: a standard normal exceeds 3 in ~0.27% of draws.
    assert np.mean(np.abs(values) > 3.0) > 0.001


def test_initializer_is_configurable_and_round_trips():
    layer = ClassToken(initializer="zeros")
    clone = ClassToken.from_config(layer.get_config())
    clone.build((None, 2, 4))
    np.testing.assert_array_equal(to_numpy(clone.token), 0.0)


def test_token_gets_gradient():
    # Through `fit`, so that every backend's gradient path is exercised.
    inputs = keras.Input((3, 4))
    outputs = keras.layers.Flatten()(ClassToken(name="token")(inputs))
    model = keras.Model(inputs, outputs)
    before = keras.ops.convert_to_numpy(model.get_layer("token").token)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.train_on_batch(np.zeros((2, 3, 4)), np.ones((2, 16)))
    after = keras.ops.convert_to_numpy(model.get_layer("token").token)
    assert np.any(after != before)


def test_wrong_input_rank_raises():
    with pytest.raises(ValueError, match=r"\(batch, num_tokens, hidden_dim\)"):
        ClassToken()(keras.ops.zeros((2, 4)))
