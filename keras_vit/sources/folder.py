"""A folder with one sub-folder of images per class as a data source."""

import logging
import os

import numpy as np
import tensorflow as tf

from keras_vit.image_ops import BadImageError
from keras_vit.image_ops import decode_image
from keras_vit.preprocessing import IMAGE_EXTENSIONS
from keras_vit.sources.base import Source
from keras_vit.sources.base import file_rows
from keras_vit.sources.base import stratified_splits

logger = logging.getLogger("keras_vit.data")


def decode_path(path):
    """A file path tensor's decoded `uint8` RGB pixels."""
    return decode_image(tf.io.read_file(path))


def sampled_shape(files, where):
    """`(height, width, channels)`: the median size of up to 32 of the
    files, 1 channel only if all of them are gray."""
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
            f"None of the sampled images of {where!r} can be decoded, e.g. "
            f"{files[0]!r}"
        )
    height = int(np.median([s[0] for s in shapes]))
    width = int(np.median([s[1] for s in shapes]))
    return (height, width, max(3 if s[2] != 1 else 1 for s in shapes))


def checked_files(files, labels, where, skip_bad, check, progress):
    """`(files, labels)` without undecodable files when `skip_bad` (logged),
    else `BadImageError` naming them."""
    from keras_vit.image_files import find_bad_images

    bad = find_bad_images(files, where, check=check, progress=progress)
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
            where,
            files[bad[0]],
        )
        keep = np.setdiff1d(np.arange(len(files)), bad)
        files = [files[i] for i in keep]
        labels = labels[keep]
    return files, labels


def list_folder(folder):
    """`(files, labels, class names)` of a folder of class sub-folders."""
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


class FileSource(Source):
    """Image files with labels, listed up front: `files`, integer `labels`
    and class names, checked for undecodable files when split."""

    def __init__(self, files, labels, names, where, options):
        self.files, self.labels, self._names = files, labels, names
        self.where = where  # Names the source, and the check's cache.
        self.options = options  # (skip_bad_images, check, progress)

    def native_shape(self):
        return sampled_shape(self.files, self.where)

    def count(self):
        return len(self.files)

    def class_names(self):
        return [str(n) for n in self._names]

    def splits(self, validation_split, test_split, seed):
        files, labels = checked_files(
            self.files, self.labels, self.where, *self.options
        )
        rows = file_rows(files, labels, decode_path)
        return stratified_splits(
            labels, validation_split, test_split, seed, rows
        )


class FolderSource(FileSource):
    """A folder with one sub-folder of `.jpg/.jpeg/.png/.bmp/.gif` files per
    class (at any depth inside it), the sub-folders' names the classes."""

    name = "folder"

    def __init__(
        self, folder, skip_bad_images=False, check="headers", progress=True
    ):
        folder = os.fspath(folder)
        files, labels, names = list_folder(folder)
        options = (skip_bad_images, check, progress)
        super().__init__(files, labels, names, folder, options)
