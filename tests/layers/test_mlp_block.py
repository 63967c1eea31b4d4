import numpy as np
import pytest

from keras_vit.layers import MLPBlock
from tests.helpers import check_dropout_behavior
from tests.helpers import run_layer_test
from tests.helpers import to_numpy
from tests.reference import gelu
from tests.reference import gelu_tanh


def test_layer_contract():
    run_layer_test(
        MLPBlock,
        {"mlp_dim": 16},
        input_shape=(2, 3, 6),
        expected_output_shape=(2, 3, 6),
        expected_num_weights=4,
        expected_num_params=6 * 16 + 16 + 16 * 6 + 6,
    )


@pytest.mark.parametrize("approximate", [False, True])
def test_matches_reference(approximate):
    layer = MLPBlock(8, approximate_gelu=approximate)
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32")
    out = to_numpy(layer(x))
    act = gelu_tanh if approximate else gelu
    w0, b0 = to_numpy(layer.dense_0.kernel), to_numpy(layer.dense_0.bias)
    w1, b1 = to_numpy(layer.dense_1.kernel), to_numpy(layer.dense_1.bias)
    x64 = x.astype("float64")
    expected = act(x64 @ w0 + b0) @ w1 + b1
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_bias_initializer_is_tiny_normal():
    layer = MLPBlock(4096)
    layer.build((None, 1, 8))
    bias = to_numpy(layer.dense_0.bias)
    assert 0 < bias.std() < 1e-5


def test_dropout_in_training():
    layer = MLPBlock(16, dropout=0.3)
    x = np.random.default_rng(1).normal(size=(2, 3, 4)).astype("float32")
    layer(x)
    check_dropout_behavior(layer, x, samples=800)


def test_errors():
    with pytest.raises(ValueError, match=r"mlp_dim=0"):
        MLPBlock(0)
    with pytest.raises(ValueError, match=r"dropout=-0.1"):
        MLPBlock(4, dropout=-0.1)
    with pytest.raises(
        TypeError, match=r"`approximate_gelu` must be a bool.*'yes'"
    ):
        MLPBlock(4, approximate_gelu="yes")
