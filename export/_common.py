"""The steps every exporter shares: check, stage, write, verify, publish."""

import ctypes
import gc
import os

import numpy as np

from export._files import check_target
from export._model import image_spec
from export.samples import ImageFiles
from export.samples import as_image_files
from export.samples import to_pixels  # noqa: F401
from export.verify import VerificationError
from export.verify import check_samples
from export.verify import default_samples
from export.verify import verify
from keras_vit.files import publish
from keras_vit.files import staging_path
from keras_vit.preprocessing import DEFAULT_INPUT_RANGE


def prepare(
    model, path, overwrite, samples, preprocessing=False, input_range=None
):
    """Validates the arguments; returns `(path, samples)`.

    With `preprocessing` the samples become `ImageFiles` (see
    `export.samples.as_image_files`).
    """
    shape = image_spec(model)
    path = check_target(path, overwrite)
    if preprocessing:
        return path, as_image_files(
            samples, shape, input_range or DEFAULT_INPUT_RANGE
        )
    if isinstance(samples, ImageFiles):
        return path, samples
    if samples is None:
        samples = default_samples(shape)
    else:
        samples = check_samples(samples, shape)
    return path, samples


def release_freed_memory():
    """Hands memory freed by the last stage back to the system.

    glibc's allocator keeps freed heap pages for reuse, so after a large
    conversion the process stays at its high-water mark and the next stage
    (a runtime loading the file) adds to it. `malloc_trim` returns them.
    Does nothing where the C library has no `malloc_trim`.
    """
    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def write_verified(
    model, path, samples, write, directory=False, force=False, **verify_kwargs
):
    """Writes an artifact with `write(staged_path)`, verifies it, publishes it.

    The artifact is written in a hidden folder beside `path` under its final
    name (so that an ONNX file finds its `.data` file by the same relative
    name), and moved to `path` only once it passed verification (or `force`
    is set). The staging folder is removed in every case.
    """
    with staging_path(path, directory=True) as staging:
        staged = os.path.join(staging, os.path.basename(path))
        if directory:
            os.mkdir(staged)
        write(staged)
        release_freed_memory()
        report = verify(model, staged, samples, **verify_kwargs)
        report.path = path
        if not report.passed:
            if not force:
                raise VerificationError(report)
            report.forced = True
        sidecar = path + ".data"
        if os.path.isfile(staged + ".data"):
            publish(staged + ".data", sidecar)
        elif os.path.isfile(sidecar):
            os.remove(sidecar)  # Left by an earlier export with external data.
        publish(staged, path)
    return report


def write_checked(
    model, path, samples, write, force, quantize, min_top1_agreement
):
    """`write_verified` for a float file (compared within the tolerance)
    or a quantized one (compared by top-1 agreement)."""
    return write_verified(
        model,
        path,
        samples,
        write,
        force=force,
        min_top1_agreement=None if quantize is None else min_top1_agreement,
        quantize=quantize,
    )


def as_image_array(data, image_shape, name, limit=None):
    """Collects images from an array or an iterable of batches/(x, y) pairs."""
    if data is None:
        return None
    if isinstance(data, ImageFiles):
        data = data.inputs
    if isinstance(data, np.ndarray) or hasattr(data, "__array__"):
        array = np.asarray(data)
    else:
        chunks, total = [], 0
        for item in data:
            if isinstance(item, (tuple, list)):
                item = item[0]
            item = np.asarray(item)
            if item.ndim == len(image_shape):
                item = item[None]
            chunks.append(item)
            total += len(item)
            if limit is not None and total >= limit:
                break
        if not chunks:
            raise ValueError(f"`{name}` yielded no images.")
        array = np.concatenate(chunks)
    if limit is not None:
        array = array[:limit]
    return check_samples(array, image_shape, name=name)


def class_names_of(model, class_names):
    """`class_names` checked against the model, else the names it carries."""
    from keras_vit.model import class_names as carried

    image_spec(model)  # A clear error for what is not an image model.
    if class_names is None:
        return carried(model)
    names = [str(n) for n in class_names]
    count = int(model.outputs[0].shape[-1])
    if len(names) != count:
        raise ValueError(
            f"`class_names` must name each of the model's {count} outputs. "
            f"Received: {len(names)} names"
        )
    return names
