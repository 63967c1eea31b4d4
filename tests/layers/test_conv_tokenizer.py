import keras
import numpy as np
import pytest

from keras_vit.layers import ConvTokenizer
from tests.helpers import run_layer_test
from tests.helpers import to_numpy


def test_layer_contract():
    run_layer_test(
        ConvTokenizer,
        {"hidden_dim": 8, "num_layers": 2, "filters": 4},
        input_shape=(2, 16, 12, 3),
        expected_output_shape=(2, 4 * 3, 8),
        expected_num_weights=2,
        expected_num_params=3 * 3 * 3 * 4 + 3 * 3 * 4 * 8,
    )


def test_matches_keras_convolution_relu_and_pooling():
    layer = ConvTokenizer(6, num_layers=2, filters=5)
    images = np.random.default_rng(0).normal(size=(2, 8, 8, 3))
    images = images.astype("float32")
    tokens = to_numpy(layer(images))
    x = images
    for conv in layer.convolutions:
        x = keras.ops.relu(conv(x))
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
    # Tokens are the final feature map read row by row.
    np.testing.assert_allclose(
        tokens, to_numpy(x).reshape(2, 4, 6), rtol=1e-5, atol=1e-6
    )
    assert layer.patch_size == (4, 4)


@pytest.mark.parametrize(
    "kwargs, shape, match",
    [
        ({"hidden_dim": 0}, (1, 8, 8, 3), "hidden_dim"),
        ({"hidden_dim": 4, "num_layers": 0}, (1, 8, 8, 3), "num_layers"),
        ({"hidden_dim": 4, "num_layers": 2}, (1, 10, 8, 3), "divisible by"),
    ],
)
def test_bad_arguments_raise(kwargs, shape, match):
    with pytest.raises(ValueError, match=match):
        ConvTokenizer(**kwargs)(np.zeros(shape, "float32"))
