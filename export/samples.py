"""Image files to verify exported files end to end, and what they hold.

An exported file with preprocessing inside is checked on image files, not
on arrays: `ImageFiles` holds, for each file, its encoded bytes (for a
SavedModel's `serving_bytes`), its decoded `uint8` pixels (what an app
passes to the file) and the array the training pipeline makes of it (what
the Keras model is given), all three from `keras_vit.preprocessing`.
"""

import collections
import dataclasses
import os

import numpy as np

from keras_vit.preprocessing import DEFAULT_INPUT_RANGE
from keras_vit.preprocessing import list_images
from keras_vit.preprocessing import read_image
from keras_vit.preprocessing import read_raw_image


@dataclasses.dataclass
class ImageFiles:
    """Image files with their pixels and their model inputs.

    Attributes:
        paths: the files.
        encoded: their bytes, an object array of `bytes`.
        pixels: list of `uint8` `(H, W, channels)` arrays, decoded.
        inputs: float32 `(N, height, width, channels)`, the training
            pipeline's arrays of the files.
        generated: bool array `(N,)`: which files are generated pictures
            (smooth noise of other sizes and formats, no class), not given
            images. `None`: all were given.
    """

    paths: list
    encoded: np.ndarray
    pixels: list
    inputs: np.ndarray
    generated: np.ndarray | None = None

    def given(self):
        """Indices of the given images; all when every file was generated."""
        if self.generated is None or self.generated.all():
            return np.arange(len(self.paths))
        return np.flatnonzero(~self.generated)

    def __len__(self):
        return len(self.paths)

    def largest_same_size_group(self):
        """Indices of the most common pixel size (at least 2 entries)."""
        sizes = collections.defaultdict(list)
        for i, image in enumerate(self.pixels):
            sizes[image.shape].append(i)
        group = max(sizes.values(), key=len)
        return group if len(group) > 1 else [group[0], group[0]]

    def describe(self):
        kinds = collections.Counter(
            os.path.splitext(p)[1].lower().lstrip(".") for p in self.paths
        )
        shapes = sorted({f"{p.shape[1]}x{p.shape[0]}" for p in self.pixels})
        listed = ", ".join(shapes[:6]) + (" ..." if len(shapes) > 6 else "")
        formats = ", ".join(
            f"{n} {k.upper()}" for k, n in sorted(kinds.items())
        )
        return f"{len(self)} image files ({formats}; sizes {listed})"


def image_files(paths, image_shape, input_range=DEFAULT_INPUT_RANGE):
    """Reads `paths` into an `ImageFiles` for a model of `image_shape`."""
    height, width, channels = image_shape
    paths = [os.fspath(p) for p in paths]
    if len(paths) < 2:
        raise ValueError(
            f"Verification needs at least 2 image files. Received: {len(paths)}"
        )
    encoded = np.empty(len(paths), dtype=object)
    for i, path in enumerate(paths):
        with open(path, "rb") as f:
            encoded[i] = f.read()
    return ImageFiles(
        paths=paths,
        encoded=encoded,
        pixels=[read_raw_image(p, channels) for p in paths],
        inputs=np.stack(
            [
                read_image(p, (height, width), channels, input_range)
                for p in paths
            ]
        ),
    )


def folder_files(folder, limit=64, seed=0):
    """Up to `limit` image files of `folder`, a seeded spread over all."""
    files = list_images(folder)
    if not files:
        raise ValueError(
            f"The folder holds no image files (.jpg, .png, .bmp, .gif): "
            f"{folder!r}"
        )
    if len(files) > limit:
        pick = np.random.default_rng(seed).choice(len(files), limit, False)
        files = [files[i] for i in np.sort(pick)]
    return files


def as_image_files(samples, image_shape, input_range=DEFAULT_INPUT_RANGE):
    """`samples` as `ImageFiles`: files, a folder, arrays or `None`.

    Given files (or a folder's, up to 64) are joined by the files
    `write_test_images` generates; arrays (model inputs in `input_range`,
    up to 64) are written as PNG files among them. The generated files are
    marked (`ImageFiles.generated`): a quantized file's top-1 agreement is
    measured on the given images, not on generated noise. Generated files
    live in a temporary folder, read and then removed.
    """
    import tempfile

    if isinstance(samples, ImageFiles):
        return samples
    files, arrays = [], None
    if isinstance(samples, (str, os.PathLike)):
        if not os.path.isdir(samples):
            raise FileNotFoundError(
                f"No folder of image files at the given path: {samples!r}"
            )
        files = folder_files(samples)
    elif isinstance(samples, (list, tuple)) and all(
        isinstance(p, (str, os.PathLike)) for p in samples
    ):
        files = list(samples)
    elif samples is not None:
        arrays = np.asarray(samples)[:64]
    # Generated files of other sizes and formats always join, so that
    # resizing, grayscale and alpha are exercised whatever was given.
    with tempfile.TemporaryDirectory() as scratch:
        written = write_test_images(
            scratch, image_shape, arrays, input_range=input_range
        )
        noise = {p for p in written if os.path.basename(p).startswith("test_")}
        files += written
        result = image_files(files, image_shape, input_range)
    result.generated = np.array([os.fspath(p) in noise for p in files])
    return result


def write_test_images(
    directory, image_shape, arrays=None, seed=0, input_range=DEFAULT_INPUT_RANGE
):
    """Writes image files of several sizes and formats; returns their paths.

    Smooth random pictures (so that resizing matters) at the model's size,
    larger, smaller and non-square, as JPEG and PNG, RGB, grayscale and
    RGBA. `arrays`, float model inputs in `input_range` such as a dataset's
    test images, are added as PNG files at the model's size, which gives the
    comparison real images to classify.
    """
    import tensorflow as tf

    height, width, _ = image_shape
    rng = np.random.default_rng(seed)
    sizes = [
        (height, width, 3, "png"),
        (height, width, 3, "jpg"),
        (2 * height, 2 * width, 3, "png"),
        (3 * height + 5, 2 * width + 1, 3, "jpg"),
        (max(2, height // 2 + 1), max(2, width // 2), 3, "png"),
        (height + 7, width, 1, "png"),
        (height, width + 9, 4, "png"),
        (4 * height, 5 * width, 3, "jpg"),
    ]
    paths = []
    for i, (h, w, c, kind) in enumerate(sizes):
        coarse = rng.uniform(0, 255, (1, 4, 4, c)).astype("float32")
        image = tf.image.resize(coarse, (h, w), method="bicubic")[0]
        image = image + rng.normal(0, 12, (h, w, c)).astype("float32")
        pixels = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        if c == 4:
            pixels = tf.concat([pixels[..., :3], 255 - pixels[..., 3:]], -1)
        paths.append(_write(directory, f"test_{i}.{kind}", pixels, kind))
    if arrays is not None:
        arrays = np.asarray(arrays, dtype=np.float32)
        for i, array in enumerate(arrays):
            pixels = to_pixels(array, input_range)
            paths.append(
                _write(
                    directory, f"sample_{i}.png", pixels.astype("uint8"), "png"
                )
            )
    return paths


def _write(directory, name, pixels, kind):
    import tensorflow as tf

    encode = tf.io.encode_png if kind == "png" else tf.io.encode_jpeg
    path = os.path.join(directory, name)
    tf.io.write_file(path, encode(pixels))
    return path


def to_pixels(images, input_range):
    """Model inputs in `input_range` (or normalized by a `Transform`) back
    to the `uint8` pixels they were."""
    from keras_vit.transform import Transform

    if isinstance(input_range, Transform):
        pixels = input_range.to_pixels(images)
        return np.clip(np.round(pixels), 0, 255).astype(np.uint8)
    low, high = input_range
    pixels = (np.asarray(images, np.float32) - low) * (255.0 / (high - low))
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)
