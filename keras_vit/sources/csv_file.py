"""A CSV file of image paths and labels as a data source.

    path,label
    images/0001.jpg,cat
    images/0002.png,dog

The header names the two columns: the path column is `path`, `file`,
`filename` or `image`; the label column `label`, `class` or `category`
(case does not matter; other columns are ignored). Relative paths are
relative to the CSV file's folder. Labels are class names (any text) or
integers; the classes are the distinct labels in sorted order (integers
in numeric order), so that a name gets the same index in every run.
"""

import csv
import os

import numpy as np

from keras_vit.preprocessing import IMAGE_EXTENSIONS
from keras_vit.sources.folder import FileSource

PATH_COLUMNS = ("path", "file", "filename", "image")
LABEL_COLUMNS = ("label", "class", "category")


def _column(header, names, path, what):
    found = [i for i, name in enumerate(header) if name in names]
    if not found:
        raise ValueError(
            f"The CSV file's header names no {what} column (one of "
            f"{', '.join(names)}). Received: {path!r} with columns "
            f"{header}"
        )
    return found[0]


def _classes(labels):
    """Sorted distinct labels: integers in numeric order, else as text."""
    distinct = set(labels)
    try:
        return sorted(distinct, key=int)
    except ValueError:
        return sorted(distinct)


def read_csv(path):
    """`(files, labels, class names)` of a CSV file of paths and labels.

    Raises:
        FileNotFoundError: no CSV file, or a listed image file missing.
        ValueError: no header naming the columns, an empty file, a row
            without path or label, or fewer than 2 classes.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No CSV file at the given path: {path!r}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [row for row in csv.reader(f) if any(c.strip() for c in row)]
    if len(rows) < 2:
        raise ValueError(
            "The CSV file needs a header and at least one row of path and "
            f"label. Received: {path!r} with {len(rows)} lines"
        )
    header = [c.strip().lower() for c in rows[0]]
    at_path = _column(header, PATH_COLUMNS, path, "path")
    at_label = _column(header, LABEL_COLUMNS, path, "label")
    base = os.path.dirname(os.path.abspath(path))
    files, labels = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) <= max(at_path, at_label) or not (
            row[at_path].strip() and row[at_label].strip()
        ):
            raise ValueError(
                f"Line {line} of {path!r} has no path or no label. "
                f"Received: {row}"
            )
        files.append(os.path.join(base, row[at_path].strip()))
        labels.append(row[at_label].strip())
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise FileNotFoundError(
            f"{len(missing)} image file(s) listed in {path!r} do not exist: "
            f"{', '.join(map(repr, missing[:3]))}{more}"
        )
    others = [f for f in files if not f.lower().endswith(IMAGE_EXTENSIONS)]
    if others:
        raise ValueError(
            f"The CSV file lists files that are not images "
            f"({', '.join(IMAGE_EXTENSIONS)}). Received: {others[0]!r}"
        )
    classes = _classes(labels)
    if len(classes) < 2:
        raise ValueError(
            "A classification dataset needs at least 2 classes. Received: "
            f"{path!r} with labels {classes}"
        )
    index = {name: i for i, name in enumerate(classes)}
    return files, np.asarray([index[label] for label in labels]), classes


class CsvSource(FileSource):
    """A `.csv` file of image paths and labels (see the module's text)."""

    name = "csv"

    def __init__(
        self, path, skip_bad_images=False, check="headers", progress=True
    ):
        self.path = os.fspath(path)
        files, labels, names = read_csv(self.path)
        options = (skip_bad_images, check, progress)
        super().__init__(files, labels, names, self.path, options)
