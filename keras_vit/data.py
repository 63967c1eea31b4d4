"""`tf.data` input pipelines for training and evaluating ViTs.

`load_datasets(source, ...)` returns batched, prefetched datasets of
`(images, labels)` and the class names, from:

- `"digits"`: scikit-learn's 8x8 handwritten digits (works offline);
- `"tfds:NAME"`: a TensorFlow Datasets dataset, e.g. `"tfds:cifar10"`;
- a folder with one sub-folder of images per class;
- NumPy arrays `(images, labels)`.

Integer images are scaled from [0, 255] (`uint16`: [0, 65535]) to `input_range`
(default [-1, 1], the range of the original ViT checkpoints); float images
are taken as already scaled.
"""

import dataclasses
import logging
import os

import keras
import numpy as np
import tensorflow as tf

from keras_vit.layers._utils import check_positive_int
from keras_vit.layers._utils import normalize_pair
from keras_vit.preprocessing import IMAGE_EXTENSIONS
from keras_vit.preprocessing import BadImageError
from keras_vit.preprocessing import decode_image
from keras_vit.preprocessing import preprocess_image
from keras_vit.recipes import AUGMENTATIONS  # noqa: F401 (re-exported)
from keras_vit.transform import Transform

logger = logging.getLogger(__name__)

_NAMED_SOURCES = ("digits", "tfds:NAME", "a folder path", "(images, labels)")
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


def native_image_shape(source, data_dir=None):
    """`(height, width, channels)` of a source's images before resizing.

    For a folder, the median size of up to 32 of its images.
    """
    _check_source(source)
    if isinstance(source, str) and source == "digits":
        return (8, 8, 1)
    if isinstance(source, str) and source.startswith("tfds:"):
        info = _tfds_builder(source, data_dir).info
        shape = info.features[_tfds_keys(info)[0]].shape
        return tuple(int(s) if s is not None else 224 for s in shape)
    if isinstance(source, (str, os.PathLike)):
        files, _, _ = _list_folder(os.fspath(source))
        step = max(1, len(files) // 32)
        shapes = []
        for file in files[::step][:32]:
            try:
                shapes.append(
                    tf.io.decode_image(
                        tf.io.read_file(file), expand_animations=False
                    ).shape
                )
            except tf.errors.InvalidArgumentError:
                continue  # Named later by the decode check, or skipped.
        if not shapes:
            raise BadImageError(
                f"None of the sampled images of {os.fspath(source)!r} can be "
                f"decoded, e.g. {files[0]!r}"
            )
        height = int(np.median([s[0] for s in shapes]))
        width = int(np.median([s[1] for s in shapes]))
        return (height, width, max(3 if s[2] != 1 else 1 for s in shapes))
    images, _ = _check_arrays(source)
    shape = images.shape[1:]
    return tuple(shape) if len(shape) == 3 else (*shape, 1)


def count_examples(source, data_dir=None):
    """Number of labelled examples a source holds (all splits together).

    For `tfds:` datasets, what the dataset's metadata says, or `None` when
    it is not known before download.
    """
    _check_source(source)
    if isinstance(source, str) and source == "digits":
        return 1797
    if isinstance(source, str) and source.startswith("tfds:"):
        splits = _tfds_builder(source, data_dir).info.splits
        total = sum(split.num_examples for split in splits.values())
        return total or None
    if isinstance(source, (str, os.PathLike)):
        return len(_list_folder(os.fspath(source))[0])
    return len(_check_arrays(source)[1])


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
            class of `.jpg/.jpeg/.png/.bmp/.gif` files, or a tuple
            `(images, labels)` of NumPy arrays.
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
    one_hot = one_hot or "mixup" in augment or "cutmix" in augment

    _check_source(source)
    if image_size is None or channels is None:
        native = native_image_shape(source, data_dir)
    size = (
        normalize_pair(image_size, "image_size") if image_size else native[:2]
    )
    channels = channels or native[2]
    shape = (*size, channels)
    scaling, (low, high) = _scaling(input_range)

    if isinstance(source, str) and source == "digits":
        splits, names = _digits(validation_split, test_split, seed)
    elif isinstance(source, str) and source.startswith("tfds:"):
        splits, names = _tfds(
            source, data_dir, tfds_splits, validation_split, seed
        )
    elif isinstance(source, (str, os.PathLike)):
        splits, names = _folder(
            os.fspath(source),
            validation_split,
            test_split,
            seed,
            skip_bad_images,
            check_images,
            progress,
        )
    else:
        images, labels = _check_arrays(source)
        splits = _split_arrays(
            images, labels, validation_split, test_split, seed
        )
        count = int(labels.max()) + 1
        names = (
            list(class_names) if class_names else [str(i) for i in range(count)]
        )
        if len(names) < count:
            raise ValueError(
                "`class_names` must name every label. Received: "
                f"{len(names)} names for labels up to {count - 1}"
            )

    def preprocess(image, label):
        image = preprocess_image(image, size, channels, scaling)
        label = tf.cast(label, tf.int32)
        if one_hot:
            label = tf.one_hot(label, len(names))
        return image, label

    out, sizes, in_memory = {}, {}, []
    for split, (rows, count) in splits.items():
        if rows is None:
            out[split] = None
            continue
        sizes[split] = count
        cached = cache and count * np.prod(shape) * 4 <= _CACHE_BYTES
        if cached:
            in_memory.append(split)
        out[split] = _pipeline(
            rows,
            count,
            training=split == "train",
            preprocess=preprocess,
            cached=cached,
            batch_size=batch_size,
            seed=seed,
        )
        if split == "train" and augment:
            out[split] = _augment(out[split], augment, size, (low, high), seed)
        out[split] = out[split].prefetch(tf.data.AUTOTUNE)
    return Datasets(
        train=out["train"],
        validation=out.get("validation"),
        test=out.get("test"),
        class_names=list(names),
        image_shape=shape,
        sizes=sizes,
        in_memory=tuple(in_memory),
    )


@dataclasses.dataclass
class _Rows:
    """One split before decoding: cheap keys, and how to read an example.

    `keys` holds what is cheap to hold and shuffle (an index, or a file
    path and its label); `fetch(*key)` reads `(image, label)` from a key,
    the costly part. `buffer` is the shuffle buffer for the keys when they
    are the decoded examples themselves (tfds), `None` when a buffer of
    the whole split is cheap.
    """

    keys: tf.data.Dataset
    fetch: object
    buffer: int | None = None


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


def _check_source(source):
    if isinstance(source, str) and not (
        source == "digits"
        or source.startswith("tfds:")
        or os.path.sep in source
        or os.path.exists(source)
    ):
        raise ValueError(
            f"Unknown dataset. Expected one of {', '.join(_NAMED_SOURCES)}. "
            f"Received: {source!r}"
        )
    if not isinstance(source, (str, os.PathLike)) and not (
        isinstance(source, tuple) and len(source) == 2
    ):
        raise TypeError(
            f"Unknown dataset. Expected one of {', '.join(_NAMED_SOURCES)}. "
            f"Received: {type(source).__name__}"
        )


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


def _check_arrays(source):
    images, labels = (np.asarray(a) for a in source)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(
            "`images` must have shape (N, height, width[, channels]). "
            f"Received: shape {images.shape}"
        )
    if labels.shape != (len(images),) or not np.issubdtype(
        labels.dtype, np.integer
    ):
        raise ValueError(
            "`labels` must be N integers, one per image. Received: "
            f"labels of shape {labels.shape} and dtype {labels.dtype} "
            f"for {len(images)} images"
        )
    if len(images) and labels.min() < 0:
        raise ValueError(f"Labels must be >= 0. Received: {labels.min()}")
    return images, labels


def _split_indices(labels, validation_split, test_split, seed):
    """Stratified index split into train/validation/test."""
    rng = np.random.default_rng(seed)
    parts = {"train": [], "validation": [], "test": []}
    for label in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(len(index) * test_split))
        n_val = int(round(len(index) * validation_split))
        parts["test"].append(index[:n_test])
        parts["validation"].append(index[n_test : n_test + n_val])
        parts["train"].append(index[n_test + n_val :])
    return {k: np.sort(np.concatenate(v)).astype(int) for k, v in parts.items()}


def _splits(labels, validation_split, test_split, seed, make_rows):
    """`{split: (_Rows or None, size)}` from a stratified index split."""
    index = _split_indices(labels, validation_split, test_split, seed)
    return {
        name: (make_rows(rows), len(rows)) if len(rows) else (None, 0)
        for name, rows in index.items()
    }


def _split_arrays(images, labels, validation_split, test_split, seed):
    if len(np.unique(labels)) < 2:
        raise ValueError(
            "A classification dataset needs at least 2 classes. "
            f"Received: labels {sorted(set(labels.tolist()))}"
        )

    def rows(index):
        # Indices are what is shuffled; the images are gathered after.
        split_images = tf.convert_to_tensor(images[index])
        split_labels = tf.convert_to_tensor(labels[index])
        return _Rows(
            keys=tf.data.Dataset.range(len(index)),
            fetch=lambda i: (
                tf.gather(split_images, i),
                tf.gather(split_labels, i),
            ),
        )

    return _splits(labels, validation_split, test_split, seed, rows)


def _digits(validation_split, test_split, seed):
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(
            'The "digits" dataset comes from scikit-learn: '
            "pip install scikit-learn"
        ) from None
    digits = load_digits()
    # 0..16 gray levels -> 0..255, so they scale like any 8-bit image.
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[
        ..., None
    ]
    splits = _split_arrays(
        images, digits.target, validation_split, test_split, seed
    )
    return splits, [str(i) for i in range(10)]


def _tfds_builder(source, data_dir):
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ImportError(
            "`tfds:` datasets need TensorFlow Datasets: "
            "pip install tensorflow-datasets"
        ) from None
    name = source[len("tfds:") :]
    if not name:
        raise ValueError(
            f"Expected `tfds:NAME`, e.g. `tfds:cifar10`. Received: {source!r}"
        )
    try:
        return tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # tfds raises its own DatasetNotFoundError.
        first_line = str(error).strip().splitlines()[0]
        raise ValueError(
            "Unknown TensorFlow Datasets name; see "
            "https://www.tensorflow.org/datasets/catalog. "
            f"Received: {name!r} ({first_line})"
        ) from None


def _tfds_keys(info):
    keys = info.supervised_keys
    if not keys:
        raise ValueError(
            f"TensorFlow Datasets' {info.name!r} has no (image, label) "
            "supervised keys."
        )
    return keys


def _tfds(source, data_dir, tfds_splits, validation_split, seed):
    import tensorflow_datasets as tfds

    builder = _tfds_builder(source, data_dir)
    info = builder.info
    available = set(info.splits.keys()) if info.splits else set()
    if tfds_splits is None:
        train = "train"
        if "validation" in available:
            validation = "validation"
        elif validation_split > 0:
            cut = int(round(100 * (1 - validation_split)))
            train, validation = f"train[:{cut}%]", f"train[{cut}%:]"
        else:
            validation = None
        test = "test" if "test" in available else None
        tfds_splits = (train, validation, test)
    splits = {}
    for name, split in zip(("train", "validation", "test"), tfds_splits):
        if split is None:
            splits[name] = (None, 0)
            continue
        training = name == "train"
        dataset = tfds.load(
            source[len("tfds:") :],
            split=split,
            as_supervised=True,
            data_dir=data_dir,
            # The training split reads its files in a new order each epoch
            # (and `_pipeline` shuffles examples on top); others in order.
            shuffle_files=training,
            read_config=tfds.ReadConfig(
                shuffle_seed=seed, shuffle_reshuffle_each_iteration=True
            ),
        )
        count = int(dataset.cardinality().numpy())
        count = count if count > 0 else 10_000
        splits[name] = (
            _Rows(
                keys=dataset,
                fetch=lambda image, label: (image, label),
                buffer=min(count, 10_000),
            ),
            count,
        )
    label = info.features[_tfds_keys(info)[1]]
    names = list(getattr(label, "names", None) or range(label.num_classes))
    return splits, [str(n) for n in names]


def _list_folder(folder):
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"No dataset folder at the given path. Received: {folder!r}"
        )
    classes = sorted(
        d
        for d in os.listdir(folder)
        if os.path.isdir(os.path.join(folder, d)) and not d.startswith(".")
    )
    files, labels = [], []
    for index, name in enumerate(classes):
        for root, _, names in sorted(os.walk(os.path.join(folder, name))):
            for file in sorted(names):
                if file.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.join(root, file))
                    labels.append(index)
    if not files:
        raise ValueError(
            "The dataset folder holds no images in class sub-folders "
            f"({', '.join(IMAGE_EXTENSIONS)}). Received: {folder!r}"
        )
    used = sorted(set(labels))
    if len(used) < 2:
        raise ValueError(
            "A classification dataset needs at least 2 class sub-folders "
            f"with images. Received: {folder!r} with classes "
            f"{[classes[i] for i in used]}"
        )
    empty = [classes[i] for i in range(len(classes)) if i not in used]
    if empty:
        logger.warning("Class folders without images (ignored): %s", empty)
        remap = {old: new for new, old in enumerate(used)}
        labels = [remap[label] for label in labels]
        classes = [classes[i] for i in used]
    return files, np.asarray(labels), classes


def _decode(path):
    return decode_image(tf.io.read_file(path))


def _folder(
    folder, validation_split, test_split, seed, skip_bad, check, progress
):
    from keras_vit.image_files import find_bad_images

    files, labels, classes = _list_folder(folder)
    bad = find_bad_images(files, folder, check=check, progress=progress)
    if bad and not skip_bad:
        listed = ", ".join(repr(files[i]) for i in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise BadImageError(
            f"Cannot decode {len(bad)} image file(s): {listed}{more}. "
            "Remove or fix them, or pass skip_bad_images=True "
            "(--skip-bad-images) to skip them."
        )
    if bad:
        logger.warning(
            "Skipped %d undecodable image file(s) in %s, e.g. %s",
            len(bad),
            folder,
            files[bad[0]],
        )
        keep = np.setdiff1d(np.arange(len(files)), bad)
        files = [files[i] for i in keep]
        labels = labels[keep]
    paths = np.asarray(files)

    def rows(index):
        # File paths are what is shuffled; images are decoded after.
        return _Rows(
            keys=tf.data.Dataset.from_tensor_slices(
                (paths[index], labels[index])
            ),
            fetch=lambda path, label: (_decode(path), label),
        )

    splits = _splits(labels, validation_split, test_split, seed, rows)
    return splits, classes
