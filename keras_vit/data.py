"""`tf.data` input pipelines for training and evaluating ViTs.

`load_datasets(source, ...)` returns batched, prefetched datasets of
`(images, labels)` and the class names, from any source
`keras_vit.sources` reads:

- `"digits"`: scikit-learn's 8x8 handwritten digits (works offline);
- `"tfds:NAME"`: a TensorFlow Datasets dataset, e.g. `"tfds:cifar10"`;
- a folder with one sub-folder of images per class;
- a `.csv` file of image paths and labels;
- NumPy arrays `(images, labels)`.

The split, shuffle, cache, preprocessing and augmentation are written once
here, on top of the source's splits. Integer images are scaled from
[0, 255] (`uint16`: [0, 65535]) to `input_range` (default [-1, 1], the
range of the original ViT checkpoints); float images are taken as already
scaled.
"""

import dataclasses
import logging

import keras
import numpy as np
import tensorflow as tf

from keras_vit.layers._utils import check_positive_int
from keras_vit.layers._utils import normalize_pair
from keras_vit.preprocessing import BadImageError  # noqa: F401 (re-exported)
from keras_vit.preprocessing import preprocess_image
from keras_vit.recipes import AUGMENTATIONS  # noqa: F401 (re-exported)
from keras_vit.sources import open_source
from keras_vit.sources.folder import list_folder as _list_folder  # noqa: F401
from keras_vit.transform import Transform

logger = logging.getLogger(__name__)

# Datasets whose preprocessed images fit in this many bytes stay in memory.
_CACHE_BYTES = 2 * 1024**3


@dataclasses.dataclass
class Datasets:
    """The splits of one dataset, ready for `model.fit`.

    Attributes:
        train: batched, prefetched `tf.data.Dataset` of `(images,
            labels)`, in a new uniformly random order every epoch.
        validation: the same in a fixed order, without augmentation, or
            `None`.
        test: the same, or `None`.
        class_names: list of str, index `i` naming label `i`.
        image_shape: `(height, width, channels)` of the images.
        sizes: number of examples in each split.
        in_memory: the splits kept in memory once read; the training
            split's first batch then waits for all of it to be read.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    test: tf.data.Dataset | None
    class_names: list
    image_shape: tuple
    sizes: dict
    in_memory: tuple = ()

    @property
    def num_classes(self):
        return len(self.class_names)


def _shape(shape):
    shape = tuple(int(s) for s in shape)
    return shape if len(shape) == 3 else (*shape, 1)


def native_image_shape(source, data_dir=None):
    """`(height, width, channels)` of a source's images before resizing.

    For a folder or a CSV file, the median size of up to 32 of its images.
    """
    return _shape(open_source(source, data_dir=data_dir).native_shape())


def count_examples(source, data_dir=None):
    """Number of labelled examples a source holds (all splits together).

    For `tfds:` datasets, what the dataset's metadata says, or `None` when
    it is not known before download.
    """
    return open_source(source, data_dir=data_dir).count()


def load_datasets(
    source,
    *,
    image_size=None,
    channels=None,
    batch_size=64,
    validation_split=0.1,
    test_split=0.2,
    seed=0,
    augment=(),
    input_range=(-1.0, 1.0),
    one_hot=False,
    data_dir=None,
    tfds_splits=None,
    class_names=None,
    skip_bad_images=False,
    cache=True,
    check_images="headers",
    progress=True,
):
    """Builds train/validation/test pipelines for a dataset.

    Args:
        source: `"digits"`, `"tfds:NAME"`, a folder with one sub-folder per
            class of `.jpg/.jpeg/.png/.bmp/.gif` files, a `.csv` file of
            image paths and labels, or a tuple `(images, labels)` of NumPy
            arrays (`keras_vit.sources`).
        image_size: int, `(height, width)` or `None`. Size images are
            resized to; `None` keeps the source's size (the median size for
            a folder). Defaults to `None`.
        channels: int or `None`. 1 (grayscale) or 3 (RGB); images are
            converted. `None` keeps the source's. Defaults to `None`.
        batch_size: int. Global batch size. Defaults to `64`.
        validation_split: float. Fraction held out for validation from the
            training data, chosen with `seed`, when the source has no
            validation split. Defaults to `0.1`.
        test_split: float. Fraction held out for testing from sources without
            a test split (digits, arrays, folders). `0` for none. Defaults to
            `0.2`.
        seed: int. Seed of the splits, shuffling and augmentation.
            Defaults to `0`.
        augment: sequence of `"flip"`, `"crop"`, `"translate"`,
            `"rotate"`, `"randaugment"`, `"mixup"`, `"cutmix"`: Keras
            preprocessing layers applied to training batches. MixUp and
            CutMix imply one-hot labels. Defaults to `()`.
        input_range: `(low, high)` that integer images are scaled to, or
            a `keras_vit.Transform` (its resize, crop, filter and
            mean/std, for every split). Defaults to `(-1.0, 1.0)`.
        one_hot: bool. Return one-hot float labels instead of integers.
            Defaults to `False`.
        data_dir: str or `None`. TensorFlow Datasets data folder.
        tfds_splits: `(train, validation, test)` split strings for
            `tfds:` sources, any of them `None`. Defaults to the dataset's
            `train`, `validation` and `test` splits where they exist, else
            `validation_split` of `train`.
        class_names: list of str or `None`, for arrays. Defaults to
            `"0"`, `"1"`, ...
        skip_bad_images: bool. Skip undecodable image files of a folder
            (logging how many) instead of raising `BadImageError` naming
            them. Defaults to `False`.
        cache: bool. Keep preprocessed images in memory when they fit in
            2 GiB; the training split is then shuffled with a buffer of the
            whole split. Otherwise (or with `False`) file paths or array
            indices are shuffled over the whole split before decoding.
            Either way every epoch has a new, uniformly random order, and
            `seed` repeats the sequence. Defaults to `True`.
        check_images: how a folder's files are checked before any is
            used: `"headers"` (the start and end of each file, in parallel;
            doubtful files decoded) or `"decode"` (every file decoded).
            Results are cached per file (`keras_vit.image_files`).
            Defaults to `"headers"`.
        progress: bool. A progress bar while a large folder is checked.
            Defaults to `True`.

    Returns:
        A `Datasets`.

    Example:

    >>> data = load_datasets("digits", image_size=16, batch_size=32)
    >>> images, labels = next(iter(data.train))
    >>> tuple(images.shape), data.num_classes
    ((32, 16, 16, 1), 10)
    """
    augment = _check_augment(augment)
    batch_size = check_positive_int(batch_size, "batch_size")
    _check_arguments(validation_split, test_split, channels)
    one_hot = one_hot or "mixup" in augment or "cutmix" in augment
    source = open_source(
        source,
        data_dir=data_dir,
        tfds_splits=tfds_splits,
        class_names=class_names,
        skip_bad_images=skip_bad_images,
        check_images=check_images,
        progress=progress,
    )
    if image_size is None or channels is None:
        native = _shape(source.native_shape())
    size = (
        normalize_pair(image_size, "image_size") if image_size else native[:2]
    )
    shape = (*size, channels or native[2])
    splits = source.splits(validation_split, test_split, seed)
    names = source.class_names()
    scaling, value_range = _scaling(input_range)

    def preprocess(image, label):
        image = preprocess_image(image, size, shape[2], scaling)
        label = tf.cast(label, tf.int32)
        if one_hot:
            label = tf.one_hot(label, len(names))
        return image, label

    out, sizes, in_memory = {}, {}, []
    for split, (rows, count) in splits.items():
        out[split] = None
        if rows is None:
            continue
        sizes[split] = count
        cached = cache and count * np.prod(shape) * 4 <= _CACHE_BYTES
        if cached:
            in_memory.append(split)
        dataset = _pipeline(
            rows,
            count,
            training=split == "train",
            preprocess=preprocess,
            cached=cached,
            batch_size=batch_size,
            seed=seed,
        )
        if split == "train" and augment:
            dataset = _augment(dataset, augment, size, value_range, seed)
        out[split] = dataset.prefetch(tf.data.AUTOTUNE)
    return Datasets(
        train=out["train"],
        validation=out.get("validation"),
        test=out.get("test"),
        class_names=list(names),
        image_shape=shape,
        sizes=sizes,
        in_memory=tuple(in_memory),
    )


def _check_arguments(validation_split, test_split, channels):
    for name, value in (
        ("validation_split", validation_split),
        ("test_split", test_split),
    ):
        if not 0.0 <= value < 1.0:
            raise ValueError(
                f"`{name}` must be in [0, 1). Received: {name}={value!r}"
            )
    if channels not in (None, 1, 3):
        raise ValueError(
            f"`channels` must be 1, 3 or None. Received: channels={channels!r}"
        )


def _pipeline(rows, count, *, training, preprocess, cached, batch_size, seed):
    """Batched `(image, label)` dataset of one split.

    A training split visits its examples in a fresh, uniformly random order
    every epoch: kept in memory, the preprocessed examples are shuffled
    with a buffer the size of the split; otherwise the cheap keys (paths,
    indices) are shuffled over the whole split before decoding. `seed`
    makes the sequence of orders reproducible. Other splits keep their
    order.
    """
    keys = rows.keys
    if training and not cached:
        keys = keys.shuffle(
            rows.buffer or count, seed=seed, reshuffle_each_iteration=True
        )
    dataset = keys.map(
        lambda *key: preprocess(*rows.fetch(*key)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if cached:
        dataset = dataset.cache()
        if training:
            dataset = dataset.shuffle(
                count, seed=seed, reshuffle_each_iteration=True
            )
    return dataset.batch(batch_size)


def _scaling(input_range):
    """`(what preprocess_image takes, (low, high) bounds of the inputs)`."""
    if isinstance(input_range, Transform):
        lows = [-m / s for m, s in zip(input_range.mean, input_range.std)]
        highs = [(1 - m) / s for m, s in zip(input_range.mean, input_range.std)]
        return input_range, (min(lows), max(highs))
    low, high = (float(v) for v in input_range)
    return (low, high), (low, high)


def _check_augment(augment):
    if isinstance(augment, str):
        augment = [a for a in augment.split(",") if a]
    augment = tuple(augment or ())
    unknown = [a for a in augment if a not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"Unknown augmentation. Expected any of {', '.join(AUGMENTATIONS)}."
            f" Received: {', '.join(map(repr, unknown))}"
        )
    return augment


def _augment(dataset, augment, size, value_range, seed):
    """Keras preprocessing layers on training batches, in `augment` order."""
    layers = []
    fill = {"fill_mode": "constant", "fill_value": value_range[0]}
    for i, name in enumerate(augment):
        s = seed + i
        if name == "flip":
            layers.append(keras.layers.RandomFlip("horizontal", seed=s))
        elif name == "crop":
            # Zoom in by up to 20%, then crop back to the model's size.
            layers.append(keras.layers.RandomZoom((-0.2, 0.0), seed=s, **fill))
        elif name == "translate":
            layers.append(
                keras.layers.RandomTranslation(0.1, 0.1, seed=s, **fill)
            )
        elif name == "rotate":
            layers.append(keras.layers.RandomRotation(0.05, seed=s, **fill))
        elif name == "randaugment":
            layers.append(
                keras.layers.RandAugment(value_range=value_range, seed=s)
            )
    mixers = [
        keras.layers.MixUp(seed=seed + 100)
        if name == "mixup"
        else keras.layers.CutMix(seed=seed + 101)
        for name in augment
        if name in ("mixup", "cutmix")
    ]

    @tf.autograph.experimental.do_not_convert
    def apply(images, labels):
        for layer in layers:
            images = layer(images, training=True)
        for mixer in mixers:
            mixed = mixer({"images": images, "labels": labels}, training=True)
            images, labels = mixed["images"], mixed["labels"]
        return images, labels

    return dataset.map(apply, num_parallel_calls=tf.data.AUTOTUNE)
