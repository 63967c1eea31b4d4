"""How an image file becomes a model input: one definition for every path.

Training pipelines (`keras_vit.data`), `keras-vit predict` and `attention`,
the export's sample images and the graphs inside exported files all call
the functions here, so one image file gives one input array everywhere:

1. decode (`decode_image`): any JPEG, PNG, BMP or GIF (first frame) as
   `uint8` RGB; grayscale, RGBA and 16-bit PNGs are converted;
2. channels (`to_channels`): RGB to the model's 1 or 3 channels (gray
   values rounded back to integers, as a decoded grayscale file holds);
3. scale (`scale_image`): integers from `[0, 255]` (`uint16`:
   `[0, 65535]`) to `input_range`, default `[-1, 1]`, the range of the
   original ViT checkpoints; float images are taken as already scaled;
4. resize (`resize_image`): to the model's size, bilinear with
   antialiasing (a triangle filter widened by the downscale factor), so a
   large photo is averaged over, not sampled at a few points; an image
   already at the model's size is left as it is.

A model's evaluation transform (`Transform`) says how steps 3 and 4 go:
the default stretches the whole image to the model's size (bilinear,
antialiased) and scales to [-1, 1], as the original ViT evaluates; a
pretrained preset from timm's repositories records timm's own (resize the
shorter side to `size / crop_pct` with a bicubic filter, centre crop,
normalize with `mean`/`std`), so that its published accuracy is what a
user measures. Every path below takes a `Transform` wherever it takes an
`input_range`.

Exported graphs cannot use TensorFlow's `ScaleAndTranslate` kernel (neither
LiteRT's built-in ops nor ONNX have it), so `resize_images_matmul` computes
the same filter as two matrix products with weights built in the graph from
the input size. The two differ only by float32 rounding (largest difference
measured: 3.5e-5 on a [-1, 1] scale, 500x375 noise to 224x224; on photos
less); `tests/test_preprocessing.py` pins them within 1e-4.
"""

import os

import numpy as np
import tensorflow as tf

# The primitives, kept importable from here.
from keras_vit.image_ops import BadImageError  # noqa: F401
from keras_vit.image_ops import decode_image  # noqa: F401
from keras_vit.image_ops import decode_image_file
from keras_vit.image_ops import resize_image
from keras_vit.image_ops import resize_images_matmul  # noqa: F401
from keras_vit.image_ops import resize_weights  # noqa: F401
from keras_vit.image_ops import to_channels
from keras_vit.transform import Transform
from keras_vit.transform import as_transform

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
DEFAULT_INPUT_RANGE = (-1.0, 1.0)


def scale_image(image, input_range=DEFAULT_INPUT_RANGE):
    """Integer pixels to float32 in `input_range` (or normalized by a
    `Transform`); float images unchanged."""
    if isinstance(input_range, (Transform, dict)):
        return as_transform(input_range).normalize(image)
    low, high = (float(v) for v in input_range)
    if image.dtype.is_integer:
        top = 65535.0 if image.dtype == tf.uint16 else 255.0
        return tf.cast(image, tf.float32) * ((high - low) / top) + low
    return tf.cast(image, tf.float32)


def preprocess_image(image, size, channels, input_range=DEFAULT_INPUT_RANGE):
    """A decoded image `(H, W, C)` as the model input `(*size, channels)`.

    `input_range` is `(low, high)` or a `Transform` (`None`: the default).
    """
    if input_range is None or isinstance(input_range, (Transform, dict)):
        return as_transform(input_range)(image, size, channels)
    image = to_channels(image, channels)
    image = resize_image(scale_image(image, input_range), size)
    return tf.ensure_shape(image, (*size, channels))


def read_image(path, size, channels, input_range=DEFAULT_INPUT_RANGE):
    """The model input for an image file, as a float32 NumPy array.

    Raises:
        FileNotFoundError: no file at `path`.
        BadImageError: the file is not a decodable image.
    """
    image = decode_image_file(path)
    return preprocess_image(image, size, channels, input_range).numpy()


def read_images(paths, size, channels, input_range=DEFAULT_INPUT_RANGE):
    """`read_image` of each path, stacked into `(N, *size, channels)`."""
    return np.stack([read_image(p, size, channels, input_range) for p in paths])


def read_raw_image(path, channels):
    """An image file as the `uint8` `(H, W, channels)` array an app passes.

    What an exported file with built-in preprocessing takes: the decoded
    pixels, converted to the model's channels, not resized or scaled.
    """
    return to_channels(decode_image_file(path), channels).numpy()


def list_images(folder):
    """Image files under `folder` (any depth), sorted."""
    return sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder, followlinks=True)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )


def preprocess_batch_graph(images, size, input_range=DEFAULT_INPUT_RANGE):
    """Exported graphs' preprocessing: `uint8` `(B, H, W, C)` to model input.

    The scaling of `scale_image` and the filter of `resize_image` (or a
    `Transform`'s), written with built-in ops only
    (`resize_images_matmul`).
    """
    if isinstance(input_range, (Transform, dict)):
        return as_transform(input_range).graph(images, size)
    return resize_images_matmul(scale_image(images, input_range), size)
