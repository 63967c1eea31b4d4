"""Files written whole or not at all, output-folder locks and labels files.

Every file keras-vit writes goes through `atomic_path`: a hidden temporary
name beside the target, renamed over it only when complete, removed on any
failure, so that a crash, a full disk or a lost permission leaves either the
previous file or the new one, never half of one. Write failures surface as
an `OSError` naming the target and the cause (`write_error`). Standard
library only, so that importing it costs nothing.
"""

import contextlib
import errno
import json
import os
import shutil
import tempfile


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


class FolderInUseError(OSError):
    """Another process holds the lock of an output folder."""


@contextlib.contextmanager
def folder_lock(folder):
    """Holds an exclusive OS lock on `folder/.lock` while the block runs.

    The lock (`fcntl.flock`; `msvcrt.locking` on Windows) belongs to the
    open file, so it dies with the process: a killed run never leaves a
    stale lock, and the same command resumes. The file records the
    holder's pid for the message a second run gets.

    When the block fails, the lock file it made goes, and so does the
    folder if it made it and nothing else is in it.

    Raises:
        FolderInUseError: another process holds the lock; the message names
            the folder and the holder's pid.
    """
    made_folder = not os.path.exists(folder)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, ".lock")
    made_lock = not os.path.exists(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    failed = True
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
        failed = False
    finally:
        os.close(fd)  # Releases the lock.
        if failed and made_lock:
            _remove_lock(folder, path, made_folder)


def _remove_lock(folder, path, made_folder):
    """After a failed run: the lock file it made, and its folder if the run
    made it and left nothing else in it (no half-written output)."""
    with contextlib.suppress(OSError):
        os.remove(path)
        if made_folder and not os.listdir(folder):
            os.rmdir(folder)


def _lock(fd):
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def read_labels(path):
    """Class names from a JSON list, or a `{"0": name, ...}` dict, at `path`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No labels file at {path!r}")
    with open(path) as f:
        labels = json.load(f)
    if isinstance(labels, dict):
        labels = [labels[k] for k in sorted(labels, key=int)]
    return [str(name) for name in labels]


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def publish(staged, target):
    """Moves `staged` to `target`, replacing it, with one rename at the end.

    A directory target is first moved aside, so that at every moment the
    target is either the old complete artifact or the new one. The staged
    entry gets the permissions of a normally created one.
    """
    default_permissions(staged)
    if os.path.isdir(target) and not os.path.islink(target):
        aside = tempfile.mkdtemp(
            prefix=f".{os.path.basename(target)}.old-",
            dir=os.path.dirname(os.path.abspath(target)),
        )
        os.rmdir(aside)
        os.replace(target, aside)
        os.replace(staged, target)
        _remove(aside)
    else:
        os.replace(staged, target)


@contextlib.contextmanager
def staging_path(target, directory=False, suffix=""):
    """Yields a fresh hidden path beside `target`, removed if not published.

    The caller publishes it (`publish`) when it is complete; whatever is
    left at the staged path when the block ends is removed.
    """
    parent = os.path.dirname(os.path.abspath(target))
    prefix = f".{os.path.basename(target)}.partial-"
    if directory:
        staged = tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent)
    else:
        fd, staged = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
        os.close(fd)
    try:
        yield staged
    finally:
        _remove(staged)


@contextlib.contextmanager
def atomic_path(path, directory=False, suffix=""):
    """Yields a temporary path to write; it replaces `path` when complete.

    with atomic_path("run/metrics.json") as tmp:
        with open(tmp, "w") as f: ...

    On success the temporary file (or folder, with `directory=True`) is
    renamed over `path`; on any exception it is removed and `path` is left
    as it was. `suffix` ends the temporary name, for writers that check the
    extension (`.keras`, `.png`).

    Raises:
        OSError: the write failed (full disk, read-only filesystem, denied
            permission); the message names `path` and the cause.
    """
    path = os.fspath(path)
    try:
        with staging_path(path, directory, suffix) as staged:
            if directory:
                os.rmdir(staged)  # The writer creates it.
            yield staged
            publish(staged, path)
    except OSError as error:
        if isinstance(error, FileNotFoundError) and os.path.isdir(
            os.path.dirname(os.path.abspath(path))
        ):
            raise
        raise write_error(path, error) from None


def write_json(path, data):
    """Writes `data` as indented JSON at `path`, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")


def keras_vit_home():
    """`$KERAS_VIT_HOME`; default `$KERAS_HOME/keras_vit` (`~/.keras/...`).

    The folder of downloaded weights (`weights/`) and caches (`cache/`).
    """
    home = os.environ.get("KERAS_VIT_HOME")
    if not home:
        keras_home = os.environ.get("KERAS_HOME") or os.path.join(
            os.path.expanduser("~"), ".keras"
        )
        home = os.path.join(keras_home, "keras_vit")
    return os.path.expanduser(home)
