"""The export targets: checked before anything is written.

Every artifact is then written under a hidden staging name beside its target
(`keras_vit.files.staging_path`) and renamed into place only once it is
complete and verified (`keras_vit.files.publish`), so an interrupted export
leaves either nothing or the previous complete artifact at the target.
"""

import os


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
