import keras
import numpy as np
import pytest

from keras_vit.layers import DropPath
from keras_vit.layers import TransformerEncoderBlock
from tests.helpers import run_layer_test
from tests.helpers import to_numpy
from tests.reference import block_weights
from tests.reference import encoder_block


def _randomize(layer, seed=0):
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        w.assign(rng.normal(scale=0.2, size=w.shape).astype("float32"))


def test_layer_contract():
    d, m = 8, 16
    params = 2 * 2 * d + 4 * (d * d + d) + d * m + m + m * d + d
    run_layer_test(
        TransformerEncoderBlock,
        {"num_heads": 2, "mlp_dim": m},
        input_shape=(2, 5, d),
        expected_output_shape=(2, 5, d),
        expected_num_weights=2 + 8 + 2 + 4,
        expected_num_params=params,
    )


@pytest.mark.parametrize("approximate", [False, True])
def test_matches_numpy_reference(approximate):
    layer = TransformerEncoderBlock(
        num_heads=2, mlp_dim=12, approximate_gelu=approximate
    )
    x = np.random.default_rng(1).normal(size=(3, 5, 8)).astype("float32")
    layer.build(x.shape)
    _randomize(layer)
    expected = encoder_block(
        x.astype("float64"), block_weights(layer), 1e-6, approximate
    )
    np.testing.assert_allclose(
        to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-5
    )


def test_returns_attention_weights():
    layer = TransformerEncoderBlock(num_heads=2, mlp_dim=8)
    x = np.random.default_rng(0).normal(size=(2, 4, 6)).astype("float32")
    out, weights = layer(x, return_attention_scores=True)
    assert weights.shape == (2, 2, 4, 4)
    np.testing.assert_allclose(to_numpy(weights).sum(-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(to_numpy(out), to_numpy(layer(x)))
    inputs = keras.Input((4, 6))
    sym_out, sym_weights = layer(inputs, return_attention_scores=True)
    assert tuple(sym_weights.shape) == (None, 2, 4, 4)


def test_no_drop_path_layer_when_rate_is_zero():
    assert not isinstance(TransformerEncoderBlock(2, 8).drop_path, DropPath)
    assert isinstance(
        TransformerEncoderBlock(2, 8, drop_path_rate=0.1).drop_path, DropPath
    )


def test_drop_path_skips_whole_blocks_for_some_samples():
    # Both branches dropped for a sample -> the block is its identity.
    layer = TransformerEncoderBlock(2, 8, drop_path_rate=0.9, seed=0)
    x = np.random.default_rng(2).normal(size=(64, 4, 6)).astype("float32")
    out = to_numpy(layer(x, training=True))
    identical = [np.array_equal(out[i], x[i]) for i in range(len(x))]
    assert 0 < sum(identical) < len(x)
    changed = [not np.allclose(out[i], x[i]) for i in range(len(x))]
    assert sum(changed) > 0
    inference = to_numpy(layer(x, training=False))
    assert not any(np.array_equal(inference[i], x[i]) for i in range(len(x)))


def test_dropout_changes_training_outputs_only():
    layer = TransformerEncoderBlock(
        2, 8, dropout=0.3, attention_dropout=0.3, drop_path_rate=0.2
    )
    x = np.random.default_rng(3).normal(size=(2, 4, 6)).astype("float32")
    inference = to_numpy(layer(x))
    np.testing.assert_array_equal(inference, to_numpy(layer(x, training=False)))
    assert not np.allclose(to_numpy(layer(x, training=True)), inference)


def test_errors():
    with pytest.raises(
        ValueError,
        match=r"divisible by `num_heads`.*hidden_dim=10, num_heads=4",
    ):
        TransformerEncoderBlock(4, 8)(np.zeros((1, 3, 10), "float32"))
    with pytest.raises(ValueError, match=r"layer_norm_epsilon=0"):
        TransformerEncoderBlock(2, 8, layer_norm_epsilon=0)
    with pytest.raises(ValueError, match=r"drop_path_rate=1.0"):
        TransformerEncoderBlock(2, 8, drop_path_rate=1.0)
    with pytest.raises(ValueError, match=r"attention_dropout=-0.5"):
        TransformerEncoderBlock(2, 8, attention_dropout=-0.5)
