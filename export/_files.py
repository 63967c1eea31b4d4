"""Atomic placement of export artifacts.

Every artifact is written under a hidden staging name beside its target and
renamed into place only once it is complete and verified, so an interrupted
export leaves either nothing or the previous complete artifact at the target.
"""

import contextlib
import os
import shutil
import tempfile


class OutputExistsError(FileExistsError, ValueError):
    """The export target exists and `overwrite` was not given."""


def check_target(path, overwrite):
    """Returns `path` as a str; raises if it exists and may not be replaced."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"The output path must be a str or os.PathLike. Received: {path!r}"
        )
    path = os.fspath(path)
    if os.path.lexists(path) and not overwrite:
        raise OutputExistsError(
            "The output path already exists; pass `overwrite=True` "
            f"(`--overwrite` on the command line) to replace it. "
            f"Received: path={path!r}"
        )
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(
            f"The folder of the output path does not exist. Received: "
            f"path={path!r}"
        )
    return path


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
    from keras_vit.saving import default_permissions

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
def staging_path(target, directory=False):
    """Yields a fresh hidden path beside `target`, removed if not published."""
    parent = os.path.dirname(os.path.abspath(target))
    prefix = f".{os.path.basename(target)}.partial-"
    if directory:
        staged = tempfile.mkdtemp(prefix=prefix, dir=parent)
    else:
        fd, staged = tempfile.mkstemp(prefix=prefix, dir=parent)
        os.close(fd)
    try:
        yield staged
    finally:
        _remove(staged)
