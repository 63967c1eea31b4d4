import keras
import numpy as np
import pytest

from keras_vit.layers import PatchExtractor
from tests.helpers import run_layer_test
from tests.helpers import to_numpy
from tests.reference import patches


def test_layer_contract():
    run_layer_test(
        PatchExtractor,
        {"patch_size": 4},
        input_shape=(2, 16, 12, 3),
        expected_output_shape=(2, 12, 48),
        expected_num_weights=0,
    )


@pytest.mark.parametrize(
    "image_shape, patch_size",
    [((2, 8, 8, 3), 4), ((3, 12, 8, 2), (4, 2)), ((1, 6, 15, 1), 3)],
)
def test_matches_patch_loop(image_shape, patch_size):
    images = np.random.default_rng(0).normal(size=image_shape).astype("float32")
    ph, pw = (
        (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    )
    out = to_numpy(PatchExtractor(patch_size)(images))
    np.testing.assert_array_equal(out, patches(images, ph, pw))


def test_patch_order_is_row_column_channel():
    # Pixel value encodes (row, col, channel), so the order is visible.
    rows, cols, chans = np.meshgrid(
        np.arange(4), np.arange(4), np.arange(2), indexing="ij"
    )
    image = (100 * rows + 10 * cols + chans)[None].astype("float32")
    out = to_numpy(PatchExtractor(2)(image))
    # Second patch: rows 0-1, columns 2-3.
    assert out[0, 1].tolist() == [20, 21, 30, 31, 120, 121, 130, 131]
    # Third patch starts the second row of patches.
    assert out[0, 2, :2].tolist() == [200, 201]


def test_flattened_patch_times_kernel_equals_strided_conv():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(2, 8, 12, 3)).astype("float32")
    kernel = rng.normal(size=(4, 4, 3, 5)).astype("float32")
    conv = keras.ops.conv(images, kernel, strides=4, padding="valid")
    linear = to_numpy(PatchExtractor(4)(images)) @ kernel.reshape(-1, 5)
    np.testing.assert_allclose(
        linear, to_numpy(conv).reshape(2, -1, 5), rtol=1e-5, atol=1e-5
    )


def test_dynamic_batch_in_a_model():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, PatchExtractor(4)(inputs))
    for batch in (1, 5):
        assert model(np.zeros((batch, 8, 8, 3), "float32")).shape == (
            batch,
            4,
            48,
        )


def test_indivisible_image_raises():
    with pytest.raises(
        ValueError, match=r"divisible by the patch size.*\(10, 8\)"
    ):
        PatchExtractor(4)(np.zeros((1, 10, 8, 3), "float32"))


def test_wrong_rank_raises():
    with pytest.raises(ValueError, match=r"\(batch, height, width, channels\)"):
        PatchExtractor(4)(np.zeros((8, 8, 3), "float32"))


@pytest.mark.parametrize("bad", [0, -2, (4, 0)])
def test_non_positive_patch_size_raises(bad):
    with pytest.raises(ValueError, match=r"`patch_size` must be positive"):
        PatchExtractor(bad)


@pytest.mark.parametrize("bad", [2.5, "4", (1, 2, 3), True])
def test_patch_size_type_raises(bad):
    with pytest.raises(TypeError, match=r"`patch_size` must be an int"):
        PatchExtractor(bad)
