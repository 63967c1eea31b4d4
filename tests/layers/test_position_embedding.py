import keras
import numpy as np
import pytest

from keras_vit.layers import PositionEmbedding
from keras_vit.layers import resize_position_embedding
from tests.helpers import run_layer_test
from tests.helpers import to_numpy


def test_layer_contract():
    run_layer_test(
        PositionEmbedding,
        {"grid_size": (2, 3)},
        input_shape=(2, 7, 8),
        expected_output_shape=(2, 7, 8),
        expected_num_weights=1,
        expected_num_params=7 * 8,
    )


def test_adds_one_learned_vector_per_position():
    layer = PositionEmbedding()
    x = np.random.default_rng(0).normal(size=(3, 5, 4)).astype("float32")
    out = to_numpy(layer(x))
    np.testing.assert_allclose(
        out - x, np.broadcast_to(to_numpy(layer.embedding), x.shape), atol=1e-6
    )
    assert layer.embedding.shape == (1, 5, 4)


def test_sequence_length_must_match_grid():
    with pytest.raises(
        ValueError, match=r"sequence length=6, grid_size=\(2, 3\)"
    ):
        PositionEmbedding(grid_size=(2, 3))(np.zeros((1, 6, 4), "float32"))


def test_negative_prefix_raises():
    with pytest.raises(ValueError, match=r"num_prefix_tokens=-1"):
        PositionEmbedding(num_prefix_tokens=-1)


def test_resize_keeps_class_row_and_grid_values():
    dim = 3
    rng = np.random.default_rng(0)
    table = rng.normal(size=(1, 1 + 2 * 2, dim)).astype("float32")
    out = resize_position_embedding(table, (2, 2), (4, 4))
    assert out.shape == (1, 17, dim)
    np.testing.assert_array_equal(out[:, 0], table[:, 0])
    grid = out[0, 1:].reshape(4, 4, dim)
    source = table[0, 1:].reshape(2, 2, dim)
    # Half-pixel bilinear: corners of the 4x4 grid copy the 2x2 corners.
    np.testing.assert_allclose(grid[0, 0], source[0, 0], atol=1e-6)
    np.testing.assert_allclose(grid[3, 3], source[1, 1], atol=1e-6)
    # Output pixel 1 sits at source coordinate 0.25 between rows 0 and 1.
    np.testing.assert_allclose(
        grid[1, 0], 0.75 * source[0, 0] + 0.25 * source[1, 0], atol=1e-6
    )


def test_resize_non_square_and_linear_ramp_is_preserved():
    # A ramp in the row direction stays a ramp along rows.
    gh, gw, dim = 3, 5, 2
    rows = np.arange(gh, dtype="float32")[:, None, None] * np.ones((1, gw, dim))
    table = np.concatenate(
        [np.zeros((1, 1, dim)), rows.reshape(1, gh * gw, dim)], axis=1
    )
    out = resize_position_embedding(table, (gh, gw), (6, 2), method="bilinear")
    grid = out[0, 1:].reshape(6, 2, dim)
    assert out.shape == (1, 13, dim)
    np.testing.assert_allclose(grid[:, 0], grid[:, 1], atol=1e-6)
    assert np.all(np.diff(grid[:, 0, 0]) >= 0)


def test_same_grid_is_identity_and_copy():
    table = np.ones((1, 5, 2), "float32")
    out = resize_position_embedding(table, 2, 2)
    np.testing.assert_array_equal(out, table)
    assert out is not table


def test_layer_resized_embedding_loads_into_new_grid():
    layer = PositionEmbedding(grid_size=(2, 3))
    layer(np.zeros((1, 7, 4), "float32"))
    new = PositionEmbedding(grid_size=(4, 6))
    new.build((None, 25, 4))
    new.embedding.assign(layer.resized_embedding((4, 6), method="bicubic"))
    assert new.embedding.shape == (1, 25, 4)


def test_resize_errors():
    table = np.zeros((1, 5, 2), "float32")
    with pytest.raises(ValueError, match=r"Received: method='area'"):
        resize_position_embedding(table, 2, 3, method="area")
    with pytest.raises(
        ValueError, match=r"\(1, 10, D\).*Received: embedding.shape=\(1, 5, 2\)"
    ):
        resize_position_embedding(table, 3, 4)
    layer = PositionEmbedding()
    with pytest.raises(ValueError, match="must be built"):
        layer.resized_embedding(3)
    layer(keras.ops.zeros((1, 7, 2)))
    with pytest.raises(ValueError, match=r"non-square.*num_patches=6"):
        layer.resized_embedding(3)
