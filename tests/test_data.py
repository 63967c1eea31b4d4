import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_vit.data import BadImageError
from keras_vit.data import load_datasets
from keras_vit.data import native_image_shape


def _all(dataset):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(xs), np.concatenate(ys)


def test_digits_splits_are_stratified_and_scaled():
    data = load_datasets("digits", image_size=16, batch_size=50, seed=3)
    assert data.class_names == [str(i) for i in range(10)]
    assert data.image_shape == (16, 16, 1)
    assert sum(data.sizes.values()) == 1797
    assert data.sizes["test"] == pytest.approx(0.2 * 1797, abs=10)
    x, y = _all(data.test)
    assert x.shape[1:] == (16, 16, 1) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() == -1.0
    assert np.bincount(y).min() >= 34  # every class is in the test split
    train_x, _ = _all(data.train)
    assert len(train_x) == data.sizes["train"]


def test_shuffling_is_seeded():
    first = _all(load_datasets("digits", batch_size=64, seed=5).train)[1]
    second = _all(load_datasets("digits", batch_size=64, seed=5).train)[1]
    other = _all(load_datasets("digits", batch_size=64, seed=6).train)[1]
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_native_size_is_kept_without_image_size():
    data = load_datasets("digits", batch_size=8)
    assert data.image_shape == (8, 8, 1)
    assert native_image_shape("digits") == (8, 8, 1)


def test_numpy_arrays_uint8_and_float():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 6, 6, 3), dtype=np.uint8)
    labels = np.arange(40) % 4
    data = load_datasets(
        (images, labels),
        batch_size=100,
        validation_split=0.0,
        test_split=0.0,
        input_range=(0.0, 1.0),
    )
    x, y = _all(data.train)
    np.testing.assert_allclose(
        np.sort(x.ravel()), np.sort(images.ravel() / 255.0), atol=1e-6
    )
    assert sorted(y.tolist()) == sorted(labels.tolist())
    floats = rng.uniform(-3, 3, size=(20, 4, 4, 1)).astype("float32")
    data = load_datasets(
        (floats, np.arange(20) % 2),
        batch_size=100,
        validation_split=0.0,
        test_split=0.0,
        channels=3,
    )
    x, _ = _all(data.train)
    assert x.shape == (20, 4, 4, 3)
    # Floats pass through unscaled; gray becomes RGB.
    np.testing.assert_allclose(
        np.sort(x[..., 0].ravel()), np.sort(floats.ravel()), atol=1e-6
    )


def test_sixteen_bit_arrays_use_their_full_range():
    images = np.array([[[[0]], [[65535]]], [[[32768]], [[0]]]], np.uint16)
    data = load_datasets(
        (images, np.array([0, 1])),
        batch_size=2,
        validation_split=0.0,
        test_split=0.0,
    )
    x, _ = _all(data.train)
    assert x.min() == -1.0 and x.max() == 1.0


def test_array_errors():
    with pytest.raises(ValueError, match=r"at least 2 classes.*\[0\]"):
        load_datasets((np.zeros((4, 4, 4, 1), np.uint8), np.zeros(4, int)))
    with pytest.raises(
        ValueError, match=r"`labels` must be N integers.*\(3,\)"
    ):
        load_datasets((np.zeros((4, 4, 4, 1), np.uint8), np.zeros(3, int)))
    with pytest.raises(ValueError, match=r"`images` must have shape.*\(4, 4\)"):
        load_datasets((np.zeros((4, 4)), np.zeros(4, int)))


def test_unknown_sources_and_options():
    with pytest.raises(
        ValueError, match=r"Unknown dataset.*digits.*Received: 'mnist'"
    ):
        load_datasets("mnist")
    with pytest.raises(TypeError, match=r"Unknown dataset.*Received: int"):
        load_datasets(3)
    with pytest.raises(ValueError, match=r"Unknown augmentation.*'blur'"):
        load_datasets("digits", augment=["flip", "blur"])
    with pytest.raises(ValueError, match=r"validation_split=1.0"):
        load_datasets("digits", validation_split=1.0)
    with pytest.raises(
        ValueError, match=r"Unknown TensorFlow Datasets name.*'no_such_set_xyz'"
    ):
        load_datasets("tfds:no_such_set_xyz")


def test_augmentations_run_and_mixup_gives_one_hot_labels():
    data = load_datasets(
        "digits",
        image_size=16,
        batch_size=32,
        augment=[
            "translate",
            "rotate",
            "crop",
            "randaugment",
            "mixup",
            "cutmix",
        ],
    )
    x, y = next(iter(data.train))
    assert x.shape == (32, 16, 16, 1)
    assert y.shape == (32, 10)
    np.testing.assert_allclose(y.numpy().sum(-1), 1.0, atol=1e-5)
    assert np.isfinite(x.numpy()).all()
    x_val, y_val = next(iter(data.validation))
    assert y_val.shape == (x_val.shape[0], 10)


def test_tfds_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=24):
        data = load_datasets("tfds:cifar10", image_size=16, batch_size=8)
        x, y = next(iter(data.train))
        assert x.shape == (8, 16, 16, 3)
        assert data.num_classes == 10
        assert x.numpy().min() >= -1.0 and x.numpy().max() <= 1.0
        data = load_datasets(
            "tfds:tf_flowers",
            image_size=12,
            batch_size=4,
            tfds_splits=("train[:50%]", "train[50%:]", None),
        )
        assert data.test is None
        assert "roses" in data.class_names
        assert next(iter(data.validation))[0].shape == (4, 12, 12, 3)


def _write(path, pixels, fmt="png"):
    pixels = tf.convert_to_tensor(pixels)
    if fmt == "png":
        data = tf.io.encode_png(pixels)
    elif fmt == "jpeg":
        data = tf.io.encode_jpeg(pixels)
    else:
        raise ValueError(fmt)
    tf.io.write_file(str(path), data)


def _bmp(path, pixels):
    # A minimal 24-bit uncompressed BMP, rows bottom-up, BGR, padded to 4.
    height, width, _ = pixels.shape
    row = (width * 3 + 3) // 4 * 4
    body = bytearray()
    for y in range(height - 1, -1, -1):
        line = pixels[y, :, ::-1].tobytes()
        body += line + b"\0" * (row - len(line))
    header = b"BM" + (54 + len(body)).to_bytes(4, "little") + b"\0" * 4
    header += (54).to_bytes(4, "little") + (40).to_bytes(4, "little")
    header += width.to_bytes(4, "little") + height.to_bytes(4, "little")
    header += (1).to_bytes(2, "little") + (24).to_bytes(2, "little")
    header += b"\0" * 24
    path.write_bytes(header + bytes(body))


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "flowers"
    for name in ("cat", "dog", "eel"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            size = (10 + i, 14, 3)
            _write(
                root / name / f"{i}.png", rng.integers(0, 255, size, np.uint8)
            )
    _write(root / "cat" / "gray.png", rng.integers(0, 255, (9, 9, 1), np.uint8))
    _write(root / "cat" / "rgba.png", rng.integers(0, 255, (9, 9, 4), np.uint8))
    _write(
        root / "dog" / "wide.png", rng.integers(0, 65535, (5, 30, 3), np.uint16)
    )
    _write(
        root / "dog" / "photo.jpg",
        rng.integers(0, 255, (40, 40, 3), np.uint8),
        "jpeg",
    )
    _bmp(root / "eel" / "b.bmp", rng.integers(0, 255, (7, 5, 3), np.uint8))
    (root / "eel" / "notes.txt").write_text("not an image")
    return root


def test_image_folder(folder):
    data = load_datasets(
        folder,
        image_size=8,
        channels=3,
        batch_size=4,
        validation_split=0.25,
        test_split=0.0,
        seed=1,
    )
    assert data.class_names == ["cat", "dog", "eel"]
    assert data.sizes["train"] + data.sizes["validation"] == 23
    assert data.test is None
    x, y = _all(data.train)
    assert x.shape[1:] == (8, 8, 3)
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert set(y.tolist()) == {0, 1, 2}
    grayscale = load_datasets(folder, image_size=8, channels=1, batch_size=64)
    assert _all(grayscale.train)[0].shape[1:] == (8, 8, 1)
    assert native_image_shape(folder)[2] == 3


def test_corrupt_images_are_named_or_skipped(folder, caplog):
    (folder / "dog" / "broken.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + b"\0" * 20
    )
    (folder / "eel" / "empty.jpg").write_bytes(b"")
    with pytest.raises(
        BadImageError,
        match=r"2 image file.*broken.png.*empty.jpg|2 image file.*empty.jpg.*broken.png",
    ):
        load_datasets(folder, image_size=8, channels=3)
    with caplog.at_level(logging.WARNING, logger="keras_vit.data"):
        data = load_datasets(
            folder,
            image_size=8,
            channels=3,
            skip_bad_images=True,
            batch_size=64,
            validation_split=0.0,
            test_split=0.0,
        )
    assert "Skipped 2 undecodable" in caplog.text
    assert data.sizes["train"] == 23
    assert len(_all(data.train)[0]) == 23


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing"):
        load_datasets(str(tmp_path / "missing"), image_size=8)
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"holds no images.*empty"):
        load_datasets(str(tmp_path / "empty"), image_size=8)
    one = tmp_path / "one" / "only"
    one.mkdir(parents=True)
    _write(one / "x.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(
        ValueError, match=r"at least 2 class sub-folders.*\['only'\]"
    ):
        load_datasets(str(tmp_path / "one"), image_size=8)
    assert os.path.isdir(tmp_path / "one")


# Shuffling. Sources listed class by class and larger than any shuffle
# buffer: the order a training epoch sees must mix the classes everywhere.

_CLASSES = 10


def _class_sorted_arrays(per_class=4_000):
    count = _CLASSES * per_class
    # Each image holds its own index, so an epoch's order can be read back.
    images = np.arange(count, dtype=np.float32).reshape(count, 1, 1, 1)
    labels = np.repeat(np.arange(_CLASSES), per_class)
    return images, labels


def _largest_class_share(labels, chunks):
    """The largest share one class has in any of `chunks` equal parts."""
    return max(
        np.bincount(part, minlength=_CLASSES).max() / len(part)
        for part in np.array_split(labels, chunks)
    )


def _epoch(dataset):
    x, y = _all(dataset)
    return x.ravel().astype(np.int64), y


@pytest.mark.parametrize("cache", [True, False], ids=["cached", "streamed"])
def test_class_sorted_arrays_are_mixed_over_the_whole_split(cache):
    images, labels = _class_sorted_arrays()

    def load(seed):
        return load_datasets(
            (images, labels),
            batch_size=64,
            validation_split=0.1,
            test_split=0.0,
            seed=seed,
            cache=cache,
        )

    data = load(7)
    first, first_labels = _epoch(data.train)
    second, _ = _epoch(data.train)
    assert sorted(first.tolist()) == sorted(second.tolist())
    assert len(first) == data.sizes["train"]
    # The first 10 batches hold every class in its share (1/10 each; with
    # 640 draws a share above 0.15 is four standard errors away), and so
    # does every tenth of the epoch.
    assert _largest_class_share(first_labels[:640], 1) < 0.15
    assert _largest_class_share(first_labels, 10) < 0.12
    # A whole-split order: the first batch's examples come from all over
    # the index range, not from a window of it.
    assert np.ptp(first[:64]) > 0.8 * len(images)
    # Each epoch has a new order; the same seed repeats the sequence.
    assert not np.array_equal(first, second)
    again = load(7)
    np.testing.assert_array_equal(_epoch(again.train)[0], first)
    np.testing.assert_array_equal(_epoch(again.train)[0], second)
    assert not np.array_equal(_epoch(load(8).train)[0], first)


def test_validation_and_test_splits_stay_in_order():
    images, labels = _class_sorted_arrays()
    data = load_datasets(
        (images, labels),
        batch_size=256,
        validation_split=0.1,
        test_split=0.1,
        seed=7,
    )
    for split in (data.validation, data.test):
        order, _ = _epoch(split)
        np.testing.assert_array_equal(order, np.sort(order))
        np.testing.assert_array_equal(_epoch(split)[0], order)


def _class_sorted_folder(root, per_class=2_100):
    """`_CLASSES` class folders of 1x1 PNGs whose gray level is the class."""
    for label in range(_CLASSES):
        png = tf.io.encode_png(np.full((1, 1, 1), 20 * label, np.uint8))
        png = png.numpy()
        (root / f"class{label}").mkdir(parents=True)
        for i in range(per_class):
            (root / f"class{label}" / f"{i:05d}.png").write_bytes(png)
    return root


@pytest.mark.parametrize("cache", [True, False], ids=["cached", "streamed"])
def test_class_sorted_folder_is_mixed_over_the_whole_split(tmp_path, cache):
    root = _class_sorted_folder(tmp_path / "sorted")
    data = load_datasets(
        root,
        channels=1,
        batch_size=64,
        validation_split=0.05,
        test_split=0.0,
        seed=3,
        input_range=(0.0, 255.0),
        cache=cache,
    )
    first, labels = _epoch(data.train)
    # The image says which class folder it came from.
    np.testing.assert_array_equal(first // 20, labels)
    assert _largest_class_share(labels[:640], 1) < 0.15
    assert _largest_class_share(labels, 10) < 0.125
    second, second_labels = _epoch(data.train)
    assert not np.array_equal(labels, second_labels)
    _, validation_labels = _epoch(data.validation)
    np.testing.assert_array_equal(validation_labels, np.sort(validation_labels))


def test_tfds_training_files_are_shuffled_with_the_seed(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    calls = []
    load = tfds.load

    def recording_load(name, **kwargs):
        calls.append(kwargs)
        return load(name, **kwargs)

    monkeypatch.setattr(tfds, "load", recording_load)
    with tfds.testing.mock_data(num_examples=24):
        data = load_datasets("tfds:cifar10", image_size=8, batch_size=8, seed=9)
        assert len(_all(data.train)[1]) == data.sizes["train"]
    # Mock cifar10 has no validation split: it is cut from the training
    # files, and only the training part is read in a shuffled order.
    by_split = {c["split"]: c for c in calls}
    assert by_split["train[:90%]"]["shuffle_files"] is True
    assert by_split["train[:90%]"]["read_config"].shuffle_seed == 9
    assert by_split["train[90%:]"]["shuffle_files"] is False


def test_the_splits_kept_in_memory_are_named(folder):
    data = load_datasets(folder, image_size=8, channels=3)
    assert set(data.in_memory) == {"train", "validation", "test"}
    streamed = load_datasets(folder, image_size=8, channels=3, cache=False)
    assert streamed.in_memory == ()


def test_a_large_folder_check_shows_progress_unless_asked_not_to(
    tmp_path, capsys, monkeypatch
):
    import keras_vit.image_files as image_files

    root = tmp_path / "many"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        _write(root / name / "0.png", np.zeros((4, 4, 3), np.uint8))
    # Progress from this many files on; the folder stands in for a large one.
    monkeypatch.setattr(image_files, "_PROGRESS_FROM", 2)
    load_datasets(
        root, image_size=4, channels=3, test_split=0.0, validation_split=0.0
    )
    assert "2/2" in capsys.readouterr().out
    (root / "a" / "1.png").write_bytes((root / "a" / "0.png").read_bytes())
    load_datasets(
        root,
        image_size=4,
        channels=3,
        test_split=0.0,
        validation_split=0.0,
        progress=False,
    )
    assert capsys.readouterr().out == ""
