import json
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_vit.preprocessing import BadImageError
from keras_vit.preprocessing import Transform
from keras_vit.preprocessing import preprocess_batch_graph
from keras_vit.preprocessing import read_image
from keras_vit.preprocessing import read_images
from keras_vit.preprocessing import read_raw_image
from keras_vit.preprocessing import resize_image
from keras_vit.preprocessing import resize_images_matmul
from keras_vit.preprocessing import scale_image


def _write_files(folder):
    """Two classes of images of several sizes, formats and channels."""
    rng = np.random.default_rng(0)
    specs = [
        ("a", "0.png", (20, 24, 3)),
        ("a", "1.jpg", (40, 31, 3)),
        ("a", "2.png", (12, 12, 1)),
        ("b", "3.png", (16, 16, 4)),
        ("b", "4.jpg", (64, 80, 3)),
        ("b", "5.png", (9, 33, 3)),
    ]
    paths = []
    for label, name, shape in specs:
        (folder / label).mkdir(exist_ok=True)
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        encode = tf.io.encode_png if name.endswith("png") else tf.io.encode_jpeg
        path = folder / label / name
        tf.io.write_file(str(path), encode(pixels))
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("channels", [1, 3])
def test_every_path_makes_the_same_array_of_a_file(tmp_path, channels):
    from export.cli import load_images
    from export.samples import image_files
    from keras_vit.cli import _read_images
    from keras_vit.data import load_datasets

    paths = _write_files(tmp_path)
    size = (16, 16)
    shape = (*size, channels)
    expected = read_images(paths, size, channels)
    assert expected.shape == (len(paths), *shape)
    # `keras-vit predict` and `attention` read through this function.
    np.testing.assert_array_equal(_read_images(paths, *shape), expected)
    # The export's image data and its end-to-end samples.
    np.testing.assert_array_equal(
        load_images(str(tmp_path), shape), expected
    )  # sorted listing == paths' order
    np.testing.assert_array_equal(image_files(paths, shape).inputs, expected)
    # The training pipeline, in its own (shuffled) order: every array it
    # makes is, bit for bit, one of the files' arrays.
    data = load_datasets(
        str(tmp_path),
        image_size=size,
        channels=channels,
        validation_split=0.0,
        test_split=0.0,
        batch_size=len(paths),
        cache=False,
    )
    trained = next(iter(data.train))[0].numpy()
    assert len(trained) == len(paths)
    for array in trained:
        assert any(np.array_equal(array, e) for e in expected)


@pytest.mark.parametrize(
    "source, size",
    [
        ((32, 32), (32, 32)),
        ((375, 500), (224, 224)),
        ((17, 40), (32, 32)),
        ((8, 8), (64, 48)),
        ((300, 37), (64, 48)),
    ],
)
def test_the_exported_resize_computes_the_training_filter(source, size):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (2, *source, 3), dtype=np.uint8)
    training = resize_image(scale_image(tf.constant(pixels)), size).numpy()
    exported = preprocess_batch_graph(tf.constant(pixels), size).numpy()
    assert exported.shape == training.shape
    # float32 rounding only: measured up to 3.5e-5 on noise.
    np.testing.assert_allclose(exported, training, atol=1e-4)
    if source == size:  # identity weights: exact
        np.testing.assert_array_equal(exported, training)


def test_matmul_resize_takes_sizes_known_only_at_run_time():
    fn = tf.function(
        lambda x: resize_images_matmul(x, (8, 8)),
        input_signature=[tf.TensorSpec((None, None, None, 1), tf.float32)],
    )
    for shape in ((1, 20, 9, 1), (3, 4, 4, 1)):
        x = tf.random.uniform(shape)
        np.testing.assert_allclose(
            fn(x), tf.image.resize(x, (8, 8), antialias=True), atol=1e-5
        )


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png", (8, 8), 3)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(BadImageError, match="bad.jpg"):
        read_image(bad, (8, 8), 3)
    with pytest.raises(BadImageError, match="bad.jpg"):
        read_raw_image(bad, 3)


def test_raw_pixels_are_decoded_and_converted_as_training_does(tmp_path):
    paths = _write_files(tmp_path)
    gray = read_raw_image(paths[3], 1)  # RGBA file to grayscale
    assert gray.dtype == np.uint8 and gray.shape == (16, 16, 1)
    # At the model's size the array is the pixels scaled, nothing more.
    np.testing.assert_array_equal(
        read_image(paths[3], (16, 16), 1),
        gray.astype(np.float32) * (2.0 / 255.0) - 1.0,
    )


# ------------------------------------------- evaluation transforms vs timm

_FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _golden():
    with np.load(os.path.join(_FIXTURES, "transform_golden.npz")) as data:
        return {k: data[k] for k in data.files}


def _golden_cases():
    golden = _golden()
    for key in sorted(k for k in golden if not k.endswith("/settings")):
        config, photo = key.split("/")
        yield pytest.param(config, int(photo), id=key)


@pytest.mark.parametrize("config, photo", list(_golden_cases()))
@pytest.mark.parametrize("path", ["eager", "graph"])
def test_a_transform_matches_timms_on_non_square_photos(config, photo, path):
    """timm's `resolve_data_config` + `create_transform` (written once by
    tests/fixtures/make_transform_golden.py): within one grey level."""
    golden = _golden()
    settings = json.loads(str(golden[f"{config}/settings"]))
    transform = Transform(
        resize="crop",
        crop_pct=settings["crop_pct"],
        interpolation=settings["interpolation"],
        mean=settings["mean"],
        std=settings["std"],
    )
    size = tuple(settings["size"])
    pixels = read_raw_image(
        os.path.join(_FIXTURES, f"transform_photo_{photo}.png"), 3
    )
    assert pixels.shape[0] != pixels.shape[1]
    if path == "eager":
        inputs = transform(tf.constant(pixels), size, 3).numpy()
    else:  # what exported files run
        inputs = preprocess_batch_graph(pixels[None], size, transform)[0]
    ours = np.round(transform.to_pixels(np.asarray(inputs)))
    expected = golden[f"{config}/{photo}"].astype(np.float64)
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() <= 1.0


def test_the_default_transform_is_the_input_range_arithmetic():
    pixels = tf.constant(
        np.random.default_rng(0).integers(0, 256, (3, 21, 17, 3)), tf.uint8
    )
    for low, high in ((-1.0, 1.0), (0.0, 1.0)):
        transform = Transform.from_input_range((low, high))
        assert transform.input_range == pytest.approx((low, high))
        np.testing.assert_array_equal(
            transform.normalize(pixels), scale_image(pixels, (low, high))
        )
    np.testing.assert_array_equal(
        preprocess_batch_graph(pixels, (8, 8), Transform()),
        preprocess_batch_graph(pixels, (8, 8)),
    )


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"resize": "squash"}, "`resize` must be one of"),
        ({"interpolation": "lanczos"}, "`interpolation` must be one of"),
        ({"crop_pct": 1.5}, r"`crop_pct` must be a number in \(0, 1\]"),
        ({"mean": (0.5, 0.5)}, "`mean` must be one number or three"),
        ({"std": 0.0}, "`std` must be positive"),
    ],
)
def test_a_bad_transform_names_the_value(fields, message):
    with pytest.raises(ValueError, match=message):
        Transform(**fields)


def test_a_transform_round_trips_through_json():
    transform = Transform("crop", 0.875, "bicubic", (0.1, 0.2, 0.3), 0.25)
    again = Transform.from_dict(json.loads(json.dumps(transform.to_dict())))
    assert again == transform
    with pytest.raises(ValueError, match="Unknown Transform fields"):
        Transform.from_dict({"resize": "crop", "size": 3})
