import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vit

IMAGE_SHAPE = (16, 16, 3)


def synthetic_images(count, seed=0):
    """Images whose class (0, 1, 2) sets their mean brightness."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=count)
    images = rng.normal(scale=0.3, size=(count, *IMAGE_SHAPE))
    images += (labels[:, None, None, None] - 1.0) * 0.8
    return images.astype("float32"), labels


@pytest.fixture(scope="session")
def trained_model():
    """A tiny ViT trained until it is confident, so top-1 is meaningful."""
    keras.utils.set_random_seed(0)
    model = keras_vit.build_vit(
        image_size=16,
        patch_size=4,
        hidden_dim=16,
        depth=1,
        num_heads=2,
        mlp_dim=32,
        num_classes=3,
    )
    x, y = synthetic_images(256)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    model.fit(data, epochs=8, verbose=0)
    assert model.evaluate(x, y, verbose=0)[1] > 0.9
    return model


@pytest.fixture(scope="session")
def samples():
    return synthetic_images(12, seed=1)[0]


@pytest.fixture(scope="session")
def calibration():
    return synthetic_images(64, seed=2)[0]


@pytest.fixture(scope="session")
def saved_model_file(trained_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    trained_model.save(path)
    return path
