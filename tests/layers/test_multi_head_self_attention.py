import numpy as np
import pytest

from keras_vit.layers import MultiHeadSelfAttention
from tests.helpers import check_dropout_behavior
from tests.helpers import run_layer_test
from tests.helpers import to_numpy
from tests.reference import ATTENTION_WEIGHT_NAMES
from tests.reference import attention


def _randomize(layer, seed=0):
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        w.assign(rng.normal(scale=0.3, size=w.shape).astype("float32"))


def _reference_weights(layer):
    return {
        n: to_numpy(getattr(layer, n)).astype("float64")
        for n in ATTENTION_WEIGHT_NAMES
    }


def test_layer_contract():
    d, h = 12, 3
    run_layer_test(
        MultiHeadSelfAttention,
        {"num_heads": h},
        input_shape=(2, 5, d),
        expected_output_shape=(2, 5, d),
        expected_num_weights=8,
        expected_num_params=4 * (d * d + d),
    )


def test_per_head_kernel_layout():
    layer = MultiHeadSelfAttention(num_heads=4)
    layer.build((None, 7, 16))
    assert layer.query_kernel.shape == (16, 4, 4)
    assert layer.key_bias.shape == (4, 4)
    assert layer.output_kernel.shape == (4, 4, 16)
    assert layer.output_bias.shape == (16,)


def test_matches_numpy_reference_and_rows_sum_to_one():
    layer = MultiHeadSelfAttention(num_heads=4)
    x = np.random.default_rng(1).normal(size=(3, 6, 16)).astype("float32")
    layer.build(x.shape)
    _randomize(layer)
    out, weights = layer(x, return_attention_scores=True)
    ref_out, ref_weights = attention(
        x.astype("float64"), _reference_weights(layer)
    )
    np.testing.assert_allclose(to_numpy(out), ref_out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(weights), ref_weights, atol=1e-6)
    np.testing.assert_allclose(to_numpy(weights).sum(-1), 1.0, atol=1e-6)
    assert weights.shape == (3, 4, 6, 6)


def test_explicit_key_dim():
    layer = MultiHeadSelfAttention(num_heads=2, key_dim=5)
    x = np.random.default_rng(2).normal(size=(2, 3, 8)).astype("float32")
    out = layer(x)
    assert layer.query_kernel.shape == (8, 2, 5)
    assert layer.output_kernel.shape == (2, 5, 8)
    _randomize(layer)
    ref_out, _ = attention(x.astype("float64"), _reference_weights(layer))
    np.testing.assert_allclose(
        to_numpy(layer(x)), ref_out, rtol=1e-4, atol=1e-5
    )
    assert out.shape == (2, 3, 8)


def test_kernel_initializer_uses_matrix_fans():
    # glorot_uniform over the flat (D, H*Dh) matrix: limit sqrt(6 / (D + D)).
    layer = MultiHeadSelfAttention(num_heads=8)
    layer.build((None, 4, 256))
    values = to_numpy(layer.query_kernel)
    limit = np.sqrt(6.0 / 512)
    assert values.max() <= limit
    assert values.max() > 0.9 * limit


def test_no_bias():
    layer = MultiHeadSelfAttention(num_heads=2, use_bias=False)
    layer.build((None, 3, 4))
    assert len(layer.weights) == 4


def test_attention_dropout_in_training():
    layer = MultiHeadSelfAttention(num_heads=2, dropout=0.5)
    x = np.random.default_rng(3).normal(size=(2, 4, 8)).astype("float32")
    layer(x)
    check_dropout_behavior(layer, x, samples=600)


def test_symbolic_call_returns_scores():
    import keras

    inputs = keras.Input((5, 8))
    out, weights = MultiHeadSelfAttention(2)(
        inputs, return_attention_scores=True
    )
    assert tuple(out.shape) == (None, 5, 8)
    assert tuple(weights.shape) == (None, 2, 5, 5)


def test_errors():
    with pytest.raises(
        ValueError,
        match=r"`hidden_dim` must be divisible by `num_heads`.*hidden_dim=10, num_heads=3",
    ):
        MultiHeadSelfAttention(3)(np.zeros((1, 2, 10), "float32"))
    with pytest.raises(ValueError, match=r"num_heads=0"):
        MultiHeadSelfAttention(0)
    with pytest.raises(
        ValueError, match=r"`dropout` must be in \[0, 1\).*dropout=1.0"
    ):
        MultiHeadSelfAttention(2, dropout=1.0)


def test_locality_self_attention_matches_numpy_reference():
    layer = MultiHeadSelfAttention(num_heads=2, locality=True)
    x = np.random.default_rng(2).normal(size=(2, 5, 8)).astype("float32")
    layer.build(x.shape)
    # A learned temperature, starting at sqrt(key_dim).
    np.testing.assert_allclose(to_numpy(layer.temperature), np.sqrt(4.0))
    _randomize(layer)
    layer.temperature.assign(1.7)
    out, weights = layer(x, return_attention_scores=True)
    ref_out, ref_weights = attention(
        x.astype("float64"), _reference_weights(layer), temperature=1.7
    )
    np.testing.assert_allclose(to_numpy(out), ref_out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(to_numpy(weights), ref_weights, atol=1e-6)
    # No token attends to itself; every row still sums to 1.
    diagonal = np.diagonal(to_numpy(weights), axis1=-2, axis2=-1)
    np.testing.assert_array_equal(diagonal, 0.0)
    np.testing.assert_allclose(to_numpy(weights).sum(-1), 1.0, atol=1e-6)
    assert layer.temperature.trainable
    assert MultiHeadSelfAttention.from_config(layer.get_config()).locality


def test_locality_layer_contract():
    run_layer_test(
        MultiHeadSelfAttention,
        {"num_heads": 2, "locality": True},
        input_shape=(2, 5, 8),
        expected_output_shape=(2, 5, 8),
        expected_num_weights=9,
        expected_num_params=4 * (8 * 8 + 8) + 1,
    )
    with pytest.raises(TypeError, match="locality"):
        MultiHeadSelfAttention(num_heads=2, locality="yes")
