"""Data sources: one adapter per kind of labelled image set.

`open_source(source)` picks the adapter once:

- `"digits"`: scikit-learn's 8x8 handwritten digits, offline
  (`DigitsSource`);
- `"tfds:NAME"`: a TensorFlow Datasets dataset (`TfdsSource`);
- a path ending in `.csv`: a CSV file of image paths and labels
  (`CsvSource`);
- a folder with one sub-folder of images per class (`FolderSource`);
- a tuple `(images, labels)` of NumPy arrays (`ArraySource`).

Each implements `keras_vit.sources.base.Source` (class names, native
shape, count, splits as `Rows`). A new kind of source is one module here
with its `Source` subclass and one line in `open_source`.
"""

import os

from keras_vit.sources.arrays import ArraySource
from keras_vit.sources.base import Rows
from keras_vit.sources.base import Source
from keras_vit.sources.csv_file import CsvSource
from keras_vit.sources.digits import DigitsSource
from keras_vit.sources.folder import FolderSource
from keras_vit.sources.tfds import TfdsSource

NAMED_SOURCES = (
    "digits",
    "tfds:NAME",
    "a folder path",
    "a .csv file of paths and labels",
    "(images, labels)",
)

__all__ = [
    "ArraySource",
    "CsvSource",
    "DigitsSource",
    "FolderSource",
    "Rows",
    "Source",
    "TfdsSource",
    "check_source",
    "open_source",
]


def check_source(source):
    """Raises for what names no kind of source (before anything is read)."""
    if isinstance(source, str) and not (
        source == "digits"
        or source.startswith("tfds:")
        or os.path.sep in source
        or os.path.exists(source)
    ):
        raise ValueError(
            f"Unknown dataset. Expected one of {', '.join(NAMED_SOURCES)}. "
            f"Received: {source!r}"
        )
    if not isinstance(source, (str, os.PathLike)) and not (
        isinstance(source, tuple) and len(source) == 2
    ):
        raise TypeError(
            f"Unknown dataset. Expected one of {', '.join(NAMED_SOURCES)}. "
            f"Received: {type(source).__name__}"
        )


def open_source(
    source,
    *,
    data_dir=None,
    tfds_splits=None,
    class_names=None,
    skip_bad_images=False,
    check_images="headers",
    progress=True,
):
    """The `Source` for `source` (see the module's list).

    `data_dir` and `tfds_splits` are for `tfds:` sources, `class_names`
    for arrays, `skip_bad_images`, `check_images` and `progress` for image
    files (folders and CSV files).
    """
    check_source(source)
    files = dict(
        skip_bad_images=skip_bad_images, check=check_images, progress=progress
    )
    if isinstance(source, tuple):
        return ArraySource(source, class_names)
    if isinstance(source, str) and source == "digits":
        return DigitsSource()
    if isinstance(source, str) and source.startswith("tfds:"):
        return TfdsSource(source, data_dir, tfds_splits)
    if os.fspath(source).lower().endswith(".csv"):
        return CsvSource(source, **files)
    return FolderSource(source, **files)
