"""Checking the image files of a folder before training, fast.

`find_bad_images` returns the files that cannot be decoded. A file whose
header and end are those of a complete JPEG, PNG, GIF or BMP image is taken
as good without decoding it (read in parallel threads, a few hundred bytes
per file); any other file is decoded in full by TensorFlow, as training
would, to decide. `check="decode"` decodes every file instead (finds damage
in the middle of a file, at the cost of a full decode). Results are cached
per file (path, size, modification time) under
`$KERAS_VIT_HOME/cache/image_checks/`, so a rerun or a resumed run does not
check unchanged files again.
"""

import concurrent.futures
import hashlib
import json
import logging
import os
import struct

logger = logging.getLogger(__name__)

CHECKS = ("headers", "decode")
_HEAD = 32
_TAIL = 64
_CHUNK = 256
_PROGRESS_FROM = 2000  # files; fewer are checked in well under a second


def looks_complete(head, tail, size):
    """Whether the bytes at both ends are those of a complete image file.

    `head`: the first bytes, `tail`: the last bytes, `size`: the file size.
    `False` means "decode it to know", not "bad".
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        if head[12:16] != b"IHDR" or len(head) < 24:
            return False
        width, height = struct.unpack(">II", head[16:24])
        return width > 0 and height > 0 and b"IEND" in tail
    if head.startswith(b"\xff\xd8\xff"):
        return b"\xff\xd9" in tail.rstrip(b"\0")[-4:]
    if head.startswith((b"GIF87a", b"GIF89a")):
        return tail.rstrip(b"\0").endswith(b";")
    if head.startswith(b"BM") and len(head) >= 26:
        declared = struct.unpack("<I", head[2:6])[0]
        width, height = struct.unpack("<ii", head[18:26])
        return 0 < declared <= size and width > 0 and height != 0
    return False


def _ends(path, cache):
    """`(key, complete)`: the file's cache key and `looks_complete`.

    `complete` is `None` when `cache` holds this very file (same size and
    modification time): its ends are not read again.
    """
    try:
        stat = os.stat(path)
        key = [stat.st_size, stat.st_mtime_ns]
        cached = cache.get(path)
        if cached is not None and cached[:2] == key:
            return key, None
        with open(path, "rb") as f:
            head = f.read(_HEAD)
            if stat.st_size > _HEAD + _TAIL:
                f.seek(-_TAIL, os.SEEK_END)
                tail = f.read(_TAIL)
            else:
                tail = head + f.read()
    except OSError:
        return None, False
    return key, looks_complete(head, tail, stat.st_size)


def undecodable(paths):
    """Indices of the files in `paths` that TensorFlow cannot decode as
    training would, found in one parallel `tf.data` pass."""
    import numpy as np
    import tensorflow as tf

    from keras_vit.preprocessing import decode_image

    index = tf.data.Dataset.from_tensor_slices(
        (np.arange(len(paths)), np.asarray(paths))
    )
    good = index.map(
        lambda i, path: (i, tf.shape(decode_image(tf.io.read_file(path)))),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).ignore_errors()
    ok = {int(i) for i, _ in good.as_numpy_iterator()}
    return [i for i in range(len(paths)) if i not in ok]


def _cached_bad(entry, key):
    return entry is not None and entry[:2] == key and entry[2] is False


def _cache_path(folder, check):
    from keras_vit.files import keras_vit_home

    name = hashlib.sha256(os.path.realpath(folder).encode()).hexdigest()[:24]
    return os.path.join(
        keras_vit_home(), "cache", "image_checks", f"{name}.{check}.json"
    )


def _read_cache(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _write_cache(path, entries):
    from keras_vit.files import write_json

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, entries)
    except OSError as error:  # A read-only home: checks are redone.
        logger.debug("Image check cache not written: %s", error)


def find_bad_images(
    files, folder=None, check="headers", progress=True, decode=None
):
    """Indices of the files in `files` that cannot be decoded.

    Args:
        files: list of image file paths.
        folder: the folder they come from, naming the cache (no cache when
            `None`).
        check: `"headers"` (default: header and end of each file; decode
            only the doubtful ones) or `"decode"` (decode every file).
        progress: show a progress bar for 2,000 files and more. Defaults to
            `True`.
        decode: `decode(paths) -> indices of undecodable paths`, the full
            decode. Defaults to `undecodable` (TensorFlow's decoders, as
            training reads the files).

    Returns:
        Sorted list of indices into `files`.
    """
    if check not in CHECKS:
        raise ValueError(
            f"`check` must be one of {CHECKS}. Received: check={check!r}"
        )
    cache_file = _cache_path(folder, check) if folder is not None else None
    cache = _read_cache(cache_file) if cache_file else {}
    bar = None
    if progress and len(files) >= _PROGRESS_FROM:
        from keras.utils import Progbar

        bar = Progbar(len(files), unit_name="file")
    keys, doubtful, done = {}, [], 0
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=min(32, 4 * (os.cpu_count() or 1))
    ) as pool:
        for start in range(0, len(files), _CHUNK):
            chunk = files[start : start + _CHUNK]
            results = pool.map(lambda path: _ends(path, cache), chunk)
            for offset, (key, complete) in enumerate(results):
                i = start + offset
                if key is None:
                    doubtful.append(i)  # Unreadable: the decode names it.
                    continue
                keys[files[i]] = key
                if complete is None:
                    continue  # Checked before, unchanged since.
                if check == "decode" or not complete:
                    doubtful.append(i)
            done += len(chunk)
            if bar is not None:
                bar.update(done)
    bad_now = set()
    if doubtful:
        found = (decode or undecodable)([files[i] for i in doubtful])
        bad_now = {doubtful[j] for j in found}
    bad = sorted(
        i
        for i, path in enumerate(files)
        if i in bad_now or _cached_bad(cache.get(path), keys.get(path))
    )
    bad_set = set(bad)
    entries = {
        path: [*keys[path], i not in bad_set]
        for i, path in enumerate(files)
        if path in keys
    }
    if cache_file and entries != cache:
        _write_cache(cache_file, entries)
    return bad
