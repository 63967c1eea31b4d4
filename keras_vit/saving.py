"""Loading `.keras` files that other people sent, and saving without tears.

`load_model` refuses files that would run serialized Python code (Keras'
safe mode) unless the caller opts in, and archives whose member names
escape the archive. `save_model_atomic` writes to a temporary file and
renames it, so a crash never leaves a half-written model at the path.
"""

import os
import posixpath
import zipfile

import keras
import numpy as np

from keras_vit.files import atomic_path
from keras_vit.files import check_free_space
from keras_vit.files import read_labels


class UnsafeModelError(ValueError):
    """The model file holds serialized Python code and was not trusted."""


def _check_archive(path):
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        raise ValueError(
            f"Not a .keras file (not a zip archive): {path!r}"
        ) from None
    for name in names:
        normalized = posixpath.normpath(name.replace("\\", "/"))
        if (
            normalized.startswith(("/", "../"))
            or normalized == ".."
            or (len(normalized) > 1 and normalized[1] == ":")
        ):
            raise ValueError(
                "Refusing a model archive with a member path outside the "
                f"archive: {name!r} in {path!r}"
            )


def load_model(path, unsafe=False):
    """Loads a `.keras` model in Keras' safe mode.

    Args:
        path: str. A `.keras` file.
        unsafe: bool. Allow files with serialized Python code (for example
            `Lambda` layers). Only for files you trust: loading them can run
            any code. Defaults to `False`.

    Returns:
        The `keras.Model`.

    Raises:
        FileNotFoundError: no file at `path`.
        UnsafeModelError: the file holds code and `unsafe` is `False`.
        ValueError: not a `.keras` archive, or an archive member path that
            escapes the archive.
    """
    # Registers keras_vit's layers and optimizers with Keras.
    import keras_vit.layers  # noqa: F401
    import keras_vit.optimizers  # noqa: F401

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"The model path must be a str. Received: {path!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No model file at the given path: {path!r}")
    if not path.endswith(".keras"):
        raise ValueError(
            f"The model file must be a Keras `.keras` file. Received: {path!r}"
        )
    _check_archive(path)
    try:
        return keras.saving.load_model(path, safe_mode=not unsafe)
    except ValueError as error:
        if "safe_mode" in str(error) and not unsafe:
            raise UnsafeModelError(
                f"Refusing to load {path!r}: it contains serialized Python "
                "code (such as a Lambda layer), which would run on loading. "
                "Pass unsafe=True (--unsafe) only if you trust the file."
            ) from None
        raise


def state_bytes(model):
    """Bytes of a model's variables and its optimizer's, as saved."""
    variables = list(model.variables)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        variables += list(optimizer.variables)
    total = 0
    for v in variables:
        count = 1
        for dim in v.shape:
            count *= int(dim)
        total += count * np.dtype(str(v.dtype)).itemsize
    return total


def save_model_atomic(model, path):
    """`model.save(path)` through a temporary file and a rename.

    Raises:
        OSError: the file could not be written (full disk, permission,
            read-only filesystem); the message names `path` and the cause,
            the temporary file is removed and a previous file at `path` is
            left as it was.
    """
    with atomic_path(path, suffix=".keras") as tmp:
        check_free_space(tmp, int(state_bytes(model) * 1.1) + 2**20)
        model.save(tmp)


def transform_for(model_path):
    """The evaluation transform a model was trained with: `"transform"` in
    the `config.json` beside `model_path` (`keras-vit train` writes it),
    else the default one (stretch, bilinear, [-1, 1])."""
    import json

    from keras_vit.transform import Transform

    if model_path is None:
        return Transform()
    beside = os.path.join(
        os.path.dirname(os.path.abspath(model_path)), "config.json"
    )
    try:
        with open(beside) as f:
            saved = json.load(f).get("transform")
    except (OSError, ValueError, AttributeError):
        saved = None
    if not saved:
        return Transform()
    try:
        return Transform.from_dict(saved)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"The transform in {beside!r} is malformed: {error}"
        ) from None


def class_names_for(model, labels_path=None, model_path=None):
    """The class names of a model's outputs, or `None` when unknown.

    In order: the JSON list (or `{"0": name, ...}` dict) at `labels_path`
    when given; the names the model's head carries
    (`keras_vit.class_names`); `labels.json` beside `model_path`.
    """
    from keras_vit.layers.classifier_head import class_names

    if labels_path:
        return read_labels(labels_path)
    names = class_names(model)
    if names is None and model_path is not None:
        beside = os.path.join(
            os.path.dirname(os.path.abspath(model_path)), "labels.json"
        )
        if os.path.isfile(beside):
            names = read_labels(beside)
    return names
