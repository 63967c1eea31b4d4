import numpy as np
import pytest

from keras_vit.layers import PatchEmbedding
from tests.helpers import run_layer_test
from tests.helpers import to_numpy


def test_layer_contract():
    run_layer_test(
        PatchEmbedding,
        {"hidden_dim": 8},
        input_shape=(2, 5, 12),
        expected_output_shape=(2, 5, 8),
        expected_num_weights=2,
        expected_num_params=12 * 8 + 8,
    )


def test_is_a_linear_map_with_bias():
    layer = PatchEmbedding(4, bias_initializer="random_normal")
    x = np.random.default_rng(0).normal(size=(3, 6, 10)).astype("float32")
    out = to_numpy(layer(x))
    expected = x @ to_numpy(layer.kernel) + to_numpy(layer.bias)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert np.any(to_numpy(layer.bias) != 0)


def test_initializers_round_trip():
    layer = PatchEmbedding(
        4, kernel_initializer="zeros", bias_initializer="ones"
    )
    clone = PatchEmbedding.from_config(layer.get_config())
    clone(np.zeros((1, 2, 3), "float32"))
    np.testing.assert_array_equal(to_numpy(clone.kernel), 0.0)
    np.testing.assert_array_equal(to_numpy(clone.bias), 1.0)


def test_bad_hidden_dim_raises():
    with pytest.raises(
        ValueError, match=r"`hidden_dim`.*Received: hidden_dim=0"
    ):
        PatchEmbedding(0)
    with pytest.raises(TypeError, match=r"Received: hidden_dim=3.5"):
        PatchEmbedding(3.5)


def test_wrong_input_rank_raises():
    with pytest.raises(ValueError, match=r"\(batch, num_patches, patch_dim\)"):
        PatchEmbedding(4)(np.zeros((2, 12), "float32"))
