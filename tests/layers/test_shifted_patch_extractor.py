import numpy as np
import pytest

from keras_vit.layers import PatchExtractor
from keras_vit.layers import ShiftedPatchExtractor
from tests.helpers import run_layer_test
from tests.helpers import to_numpy


def test_layer_contract():
    run_layer_test(
        ShiftedPatchExtractor,
        {"patch_size": 4},
        input_shape=(2, 8, 12, 3),
        expected_output_shape=(2, 6, 4 * 4 * 3 * 5),
        expected_num_weights=0,
    )


def _shift(image, dy, dx):
    """`image` moved by (dy, dx) pixels, zeros where nothing moved in."""
    out = np.zeros_like(image)
    height, width = image.shape[:2]
    for y in range(height):
        for x in range(width):
            sy, sx = y - dy, x - dx
            if 0 <= sy < height and 0 <= sx < width:
                out[y, x] = image[sy, sx]
    return out


def test_patches_hold_the_image_and_its_four_diagonal_half_shifts():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 8, 8, 2)).astype("float32")
    out = to_numpy(ShiftedPatchExtractor(4)(images))
    for b in range(2):
        copies = [images[b]] + [
            _shift(images[b], sy * 2, sx * 2)
            for sy, sx in ((-1, -1), (-1, 1), (1, -1), (1, 1))
        ]
        stacked = np.concatenate(copies, axis=-1)[None]
        expected = to_numpy(PatchExtractor(4)(stacked))[0]
        np.testing.assert_array_equal(out[b], expected)


def test_needs_a_known_image_size():
    import keras

    with pytest.raises(ValueError, match="known image height and width"):
        ShiftedPatchExtractor(4)(keras.KerasTensor((None, None, 8, 3)))
