import numpy as np
import pytest

from keras_vit.layers import DropPath
from tests.helpers import check_dropout_behavior
from tests.helpers import run_layer_test
from tests.helpers import to_numpy


def test_layer_contract():
    run_layer_test(
        DropPath,
        {"rate": 0.2},
        input_shape=(2, 3, 4),
        expected_output_shape=(2, 3, 4),
        expected_num_weights=0,
    )


def test_drops_whole_samples_and_rescales_the_rest():
    layer = DropPath(0.5, seed=3)
    x = np.ones((64, 5, 6), "float32")
    out = to_numpy(layer(x, training=True))
    per_sample = out.reshape(64, -1)
    # Each sample is all zeros or all 1 / (1 - rate), never a mix.
    for row in per_sample:
        assert set(np.unique(row)) <= {0.0, 2.0}
        assert len(np.unique(row)) == 1
    dropped = np.mean(per_sample[:, 0] == 0.0)
    assert 0.25 < dropped < 0.75


def test_expectation_is_kept():
    layer = DropPath(0.4, seed=0)
    x = np.random.default_rng(0).normal(size=(8, 3, 2)).astype("float32")
    check_dropout_behavior(layer, x, samples=1500)


def test_identity_at_inference():
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    np.testing.assert_array_equal(to_numpy(DropPath(0.9)(x)), x)


def test_bad_rate_raises():
    with pytest.raises(
        ValueError, match=r"`rate` must be in \[0, 1\).*rate=1.5"
    ):
        DropPath(1.5)
