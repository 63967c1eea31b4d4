"""NumPy arrays `(images, labels)` as a data source."""

import numpy as np
import tensorflow as tf

from keras_vit.sources.base import Rows
from keras_vit.sources.base import Source
from keras_vit.sources.base import stratified_splits


def check_arrays(source):
    """`(images (N, H, W, C), labels (N,))` of an `(images, labels)` pair,
    checked."""
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


def array_splits(images, labels, validation_split, test_split, seed):
    """Stratified splits of in-memory arrays: indices are shuffled, the
    images gathered after."""
    if len(np.unique(labels)) < 2:
        raise ValueError(
            "A classification dataset needs at least 2 classes. "
            f"Received: labels {sorted(set(labels.tolist()))}"
        )

    def rows(index):
        split_images = tf.convert_to_tensor(images[index])
        split_labels = tf.convert_to_tensor(labels[index])
        return Rows(
            keys=tf.data.Dataset.range(len(index)),
            fetch=lambda i: (
                tf.gather(split_images, i),
                tf.gather(split_labels, i),
            ),
        )

    return stratified_splits(labels, validation_split, test_split, seed, rows)


class ArraySource(Source):
    """`(images, labels)`: images `(N, H, W[, C])`, integer labels `(N,)`;
    `class_names` names the labels (default `"0"`, `"1"`, ...)."""

    name = "arrays"

    def __init__(self, source, class_names=None):
        self.images, self.labels = check_arrays(source)
        count = int(self.labels.max()) + 1 if len(self.labels) else 0
        names = (
            list(class_names) if class_names else [str(i) for i in range(count)]
        )
        if len(names) < count:
            raise ValueError(
                "`class_names` must name every label. Received: "
                f"{len(names)} names for labels up to {count - 1}"
            )
        self._names = names

    def native_shape(self):
        return tuple(self.images.shape[1:])

    def count(self):
        return len(self.labels)

    def class_names(self):
        return list(self._names)

    def splits(self, validation_split, test_split, seed):
        return array_splits(
            self.images, self.labels, validation_split, test_split, seed
        )
