"""Loading `.keras` files that other people sent, and saving without tears.

`load_model` refuses files that would run serialized Python code (Keras'
safe mode) unless the caller opts in, and archives whose member names
escape the archive. `save_model_atomic` writes to a temporary file and
renames it, so a crash never leaves a half-written model at the path.
"""

import contextlib
import errno
import json
import os
import posixpath
import shutil
import tempfile
import zipfile

import keras
import numpy as np


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


def write_error(path, error):
    """An `OSError` that names `path` and the cause, from a failed write.

    A full disk, a read-only filesystem or a denied permission surface in
    h5py, zipfile and TensorFlow as errors that name neither; the caller
    re-raises this one instead (`raise write_error(path, e) from None`).
    Its `str()` is the message alone; `errno` keeps the code.
    """
    if str(error).startswith("Cannot write"):
        return error
    code = getattr(error, "errno", None)
    if code is None:
        text = str(error).lower()
        for candidate in _WRITE_ERRNOS:
            if os.strerror(candidate).lower() in text:
                code = candidate
                break
    cause = os.strerror(code) if code else str(error) or type(error).__name__
    return _message_error(code, f"Cannot write {os.fspath(path)!r}: {cause}")


_WRITE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT)


def is_write_failure(error):
    """Whether `error` (of any library) is a full disk, a read-only
    filesystem or a denied permission."""
    if getattr(error, "errno", None) in _WRITE_ERRNOS:
        return True
    text = str(error).lower()
    return any(os.strerror(code).lower() in text for code in _WRITE_ERRNOS)


def _message_error(code, message):
    error = OSError(message)
    error.errno = code
    return error


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


def check_free_space(path, needed):
    """Raises an `OSError` (ENOSPC) naming `path` if `needed` bytes won't fit.

    Checked before h5py writes: h5py left half-way by a full disk cannot
    close its file, and the process can then crash at exit.
    """
    directory = os.path.dirname(os.path.abspath(path))
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise _message_error(
            errno.ENOSPC,
            f"Cannot write {os.fspath(path)!r}: No space left on device "
            f"({needed / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB free)",
        )


def save_model_atomic(model, path):
    """`model.save(path)` through a temporary file and a rename.

    Raises:
        OSError: the file could not be written (full disk, permission,
            read-only filesystem); the message names `path` and the cause,
            the temporary file is removed and a previous file at `path` is
            left as it was.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}.", suffix=".keras", dir=directory
        )
    except OSError as error:
        raise write_error(path, error) from None
    os.close(fd)
    try:
        check_free_space(tmp, int(state_bytes(model) * 1.1) + 2**20)
        model.save(tmp)
        default_permissions(tmp)
        os.replace(tmp, path)
    except OSError as error:
        raise write_error(path, error) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class FolderInUseError(OSError):
    """Another process holds the lock of an output folder."""


@contextlib.contextmanager
def folder_lock(folder):
    """Holds an exclusive OS lock on `folder/.lock` while the block runs.

    The lock (`fcntl.flock`; `msvcrt.locking` on Windows) belongs to the
    open file, so it dies with the process: a killed run never leaves a
    stale lock, and the same command resumes. The file records the
    holder's pid for the message a second run gets.

    Raises:
        FolderInUseError: another process holds the lock; the message names
            the folder and the holder's pid.
    """
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            _lock(fd)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            error = FolderInUseError(
                f"{os.fspath(folder)!r} is in use by another run (pid "
                f"{holder or 'unknown'}); wait for it to finish or choose "
                "another folder"
            )
            error.errno = errno.EBUSY
            raise error from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # Releases the lock.


def _lock(fd):
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


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
