"""LayerScale, RegisterTokens, AttentionPooling and QuickGELU against NumPy."""

import keras
import numpy as np
import pytest

from keras_vit.activations import quick_gelu
from keras_vit.layers import AttentionPooling
from keras_vit.layers import LayerScale
from keras_vit.layers import RegisterTokens
from keras_vit.layers import TransformerEncoderBlock
from tests.helpers import run_layer_test
from tests.helpers import to_numpy

RNG = np.random.default_rng(0)


def test_layer_scale_contract_and_values():
    run_layer_test(
        LayerScale,
        {"init_value": 0.1},
        input_shape=(2, 5, 8),
        expected_output_shape=(2, 5, 8),
        expected_num_weights=1,
        expected_num_params=8,
    )
    layer = LayerScale(0.5)
    x = RNG.normal(size=(2, 3, 4)).astype("float32")
    layer.build(x.shape)
    gamma = RNG.normal(size=4).astype("float32")
    layer.gamma.assign(gamma)
    np.testing.assert_allclose(to_numpy(layer(x)), x * gamma, rtol=1e-6)
    with pytest.raises(ValueError, match="init_value=0"):
        LayerScale(0)


def test_register_tokens_go_after_the_prefix():
    run_layer_test(
        RegisterTokens,
        {"num_tokens": 3, "position": 1},
        input_shape=(2, 5, 8),
        expected_output_shape=(2, 8, 8),
        expected_num_weights=1,
        expected_num_params=24,
    )
    layer = RegisterTokens(2, position=1)
    x = RNG.normal(size=(3, 4, 6)).astype("float32")
    out = to_numpy(layer(x))
    tokens = to_numpy(layer.tokens)[0]
    np.testing.assert_array_equal(out[:, 0], x[:, 0])
    for sample in out:
        np.testing.assert_array_equal(sample[1:3], tokens)
    np.testing.assert_array_equal(out[:, 3:], x[:, 1:])
    with pytest.raises(ValueError, match="num_tokens"):
        RegisterTokens(0)


def _layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _gelu(x):
    from math import erf

    return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


def test_attention_pooling_matches_numpy():
    heads, dim, mlp = 2, 8, 16
    layer = AttentionPooling(num_heads=heads, mlp_dim=mlp)
    x = RNG.normal(size=(3, 5, dim)).astype("float32")
    layer(x)
    for v in layer.weights:
        v.assign(RNG.normal(0, 0.5, v.shape).astype("float32"))
    mlp_0 = layer.mlp.dense_0
    mlp_1 = layer.mlp.dense_1
    probe = to_numpy(layer.probe)[0]  # (1, D)
    q = probe @ to_numpy(layer.query_kernel).reshape(dim, -1)
    q = (q + to_numpy(layer.query_bias).reshape(-1)).reshape(1, heads, -1)
    k = x @ to_numpy(layer.key_kernel).reshape(dim, -1)
    k = (k + to_numpy(layer.key_bias).reshape(-1)).reshape(3, 5, heads, -1)
    v = x @ to_numpy(layer.value_kernel).reshape(dim, -1)
    v = (v + to_numpy(layer.value_bias).reshape(-1)).reshape(3, 5, heads, -1)
    logits = np.einsum("qhd,bnhd->bhqn", q, k) / np.sqrt(dim // heads)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    context = np.einsum("bhqn,bnhd->bqhd", weights, v).reshape(3, 1, dim)
    y = context @ to_numpy(layer.output_kernel).reshape(dim, dim)
    y = y + to_numpy(layer.output_bias)
    normed = _layer_norm(
        y, to_numpy(layer.norm.gamma), to_numpy(layer.norm.beta), 1e-6
    )
    hidden = _gelu(normed @ to_numpy(mlp_0.kernel) + to_numpy(mlp_0.bias))
    y = y + hidden @ to_numpy(mlp_1.kernel) + to_numpy(mlp_1.bias)
    np.testing.assert_allclose(to_numpy(layer(x)), y[:, 0], atol=1e-5)


def test_quick_gelu_and_a_block_that_uses_it():
    x = np.linspace(-4, 4, 9).astype("float32")
    np.testing.assert_allclose(
        to_numpy(quick_gelu(keras.ops.convert_to_tensor(x))),
        x / (1 + np.exp(-1.702 * x)),
        rtol=1e-6,
    )
    block = TransformerEncoderBlock(
        num_heads=2, mlp_dim=16, activation="quick_gelu", layer_scale=0.1
    )
    block(RNG.normal(size=(2, 3, 8)).astype("float32"))
    config = block.get_config()
    assert config["activation"] == "quick_gelu" and config["layer_scale"] == 0.1
    rebuilt = TransformerEncoderBlock.from_config(config)
    assert rebuilt.activation == "quick_gelu" and rebuilt.layer_scale == 0.1
