"""What every data source gives the input pipeline (`keras_vit.data`).

A source is a set of labelled images: its class names, the shape of its
images before resizing, how many examples it holds, and its train,
validation and test splits as `Rows`: cheap keys to shuffle (an index, a
file path and its label, a decoded tfds example) and how to read one
`(image, label)` from a key. `keras_vit.data.load_datasets` builds the
shuffling, caching, preprocessing, augmentation and batching on top, the
same for every source; the export's calibration and verification images
come from the same sources (`keras_vit.sources.labelled_arrays`).
"""

import dataclasses

import numpy as np
import tensorflow as tf


@dataclasses.dataclass
class Rows:
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


class Source:
    """A labelled image dataset: the interface each adapter implements.

    Subclasses set `name` (what error messages call it) and implement the
    methods below; `splits` returns `{"train": (Rows or None, count),
    "validation": ..., "test": ...}`.
    """

    name = "source"

    def native_shape(self):
        """`(height, width, channels)` of the images before resizing."""
        raise NotImplementedError

    def count(self):
        """Number of labelled examples in all splits, or `None` when the
        source cannot say before it is read."""
        raise NotImplementedError

    def class_names(self):
        """List of str, index `i` naming label `i`."""
        raise NotImplementedError

    def splits(self, validation_split, test_split, seed):
        """`{split: (Rows or None, count)}` for train, validation, test."""
        raise NotImplementedError


def split_indices(labels, validation_split, test_split, seed):
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


def stratified_splits(labels, validation_split, test_split, seed, make_rows):
    """`{split: (Rows or None, size)}` from a stratified index split;
    `make_rows(index)` makes one split's `Rows` from its indices."""
    index = split_indices(labels, validation_split, test_split, seed)
    return {
        name: (make_rows(rows), len(rows)) if len(rows) else (None, 0)
        for name, rows in index.items()
    }


def file_rows(paths, labels, decode):
    """`make_rows` for sources of image files: the paths are shuffled, each
    decoded (`decode(path)`) only when read."""
    paths = np.asarray(paths)

    def rows(index):
        return Rows(
            keys=tf.data.Dataset.from_tensor_slices(
                (paths[index], labels[index])
            ),
            fetch=lambda path, label: (decode(path), label),
        )

    return rows
