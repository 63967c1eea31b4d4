"""Loading `.keras` files that other people sent, and saving without tears.

`load_model` refuses files that would run serialized Python code (Keras'
safe mode) unless the caller opts in, and archives whose member names
escape the archive. `save_model_atomic` writes to a temporary file and
renames it, so a crash never leaves a half-written model at the path.
"""

import json
import os
import posixpath
import tempfile
import zipfile

import keras


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
    import keras_vit  # noqa: F401  (registers keras_vit's layers)

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


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_permissions(path):
    """Gives a file or folder made by `tempfile` the mode `open` would have.

    `tempfile.mkstemp`/`mkdtemp` create private (0600/0700) entries; what
    is published under its final name should be readable as any file the
    user writes (`0666`/`0777` less the umask).
    """
    mode = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, mode & ~_umask())


def save_model_atomic(model, path):
    """`model.save(path)` through a temporary file and a rename."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", suffix=".keras", dir=directory
    )
    os.close(fd)
    try:
        model.save(tmp)
        default_permissions(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _read_labels(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No labels file at {path!r}")
    with open(path) as f:
        labels = json.load(f)
    if isinstance(labels, dict):
        labels = [labels[k] for k in sorted(labels, key=int)]
    return [str(name) for name in labels]


def class_names_for(model, labels_path=None, model_path=None):
    """The class names of a model's outputs, or `None` when unknown.

    In order: the JSON list (or `{"0": name, ...}` dict) at `labels_path`
    when given; the names the model's head carries
    (`keras_vit.class_names`); `labels.json` beside `model_path`.
    """
    from keras_vit.model import class_names

    if labels_path:
        return _read_labels(labels_path)
    names = class_names(model)
    if names is None and model_path is not None:
        beside = os.path.join(
            os.path.dirname(os.path.abspath(model_path)), "labels.json"
        )
        if os.path.isfile(beside):
            names = _read_labels(beside)
    return names
