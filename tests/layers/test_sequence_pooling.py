import numpy as np
import pytest

from keras_vit.layers import SequencePooling
from tests.helpers import run_layer_test
from tests.helpers import to_numpy


def test_layer_contract():
    run_layer_test(
        SequencePooling,
        {},
        input_shape=(2, 7, 8),
        expected_output_shape=(2, 8),
        expected_num_weights=2,
        expected_num_params=8 + 1,
    )


def test_is_a_softmax_weighted_sum_of_the_tokens():
    layer = SequencePooling()
    tokens = np.random.default_rng(0).normal(size=(3, 5, 4)).astype("float32")
    out = to_numpy(layer(tokens))
    scores = tokens @ to_numpy(layer.kernel) + to_numpy(layer.bias)
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        out, (weights * tokens).sum(axis=1), rtol=1e-5, atol=1e-6
    )


def test_needs_a_sequence():
    with pytest.raises(ValueError, match="num_tokens"):
        SequencePooling()(np.zeros((2, 4), "float32"))
