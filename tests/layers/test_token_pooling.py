import numpy as np
import pytest

from keras_vit.layers import TokenPooling
from tests.helpers import run_layer_test
from tests.helpers import to_numpy


@pytest.mark.parametrize("mode", ["token", "gap"])
def test_layer_contract(mode):
    run_layer_test(
        TokenPooling,
        {"mode": mode},
        input_shape=(2, 5, 4),
        expected_output_shape=(2, 4),
        expected_num_weights=0,
    )


def test_token_and_gap_values():
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    np.testing.assert_array_equal(to_numpy(TokenPooling("token")(x)), x[:, 0])
    np.testing.assert_allclose(
        to_numpy(TokenPooling("gap")(x)), x[:, 1:].mean(1), atol=1e-6
    )


def test_unknown_mode_raises():
    with pytest.raises(
        ValueError, match=r"\('token', 'gap', 'distillation'\).*mode='max'"
    ):
        TokenPooling("max")


def test_token_mode_needs_a_class_token():
    with pytest.raises(ValueError, match=r"num_prefix_tokens=0"):
        TokenPooling("token", num_prefix_tokens=0)
