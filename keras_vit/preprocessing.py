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

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
DEFAULT_INPUT_RANGE = (-1.0, 1.0)


class BadImageError(ValueError):
    """An image file cannot be decoded; the message names the file."""


def decode_image(data):
    """Encoded image bytes (a scalar string tensor) to `uint8` RGB `(H, W, 3)`.

    Grayscale, RGBA, 16-bit PNG, BMP and GIF (first frame) files all come
    out as 8-bit RGB; `to_channels` then converts to the model's channels.
    """
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    if image.dtype != tf.uint8:
        image = tf.image.convert_image_dtype(image, tf.uint8)
    return tf.ensure_shape(image, (None, None, 3))


def to_channels(image, channels):
    """`image` (`(..., H, W, C)`) with `channels` channels (1 or 3).

    RGBA drops alpha; RGB to gray uses ITU-R 601 luma and, for integer
    images, rounds back to integers.
    """
    have = image.shape[-1]
    if have == channels:
        return image
    if have == 4:  # RGBA: drop alpha.
        image, have = image[..., :3], 3
    if have == 1 and channels == 3:
        return tf.image.grayscale_to_rgb(image)
    if have == 3 and channels == 1:
        if image.dtype.is_integer:
            gray = tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))
            return tf.cast(tf.round(gray), image.dtype)
        return tf.image.rgb_to_grayscale(image)
    return image


def scale_image(image, input_range=DEFAULT_INPUT_RANGE):
    """Integer pixels to float32 in `input_range`; float images unchanged."""
    low, high = (float(v) for v in input_range)
    if image.dtype.is_integer:
        top = 65535.0 if image.dtype == tf.uint16 else 255.0
        return tf.cast(image, tf.float32) * ((high - low) / top) + low
    return tf.cast(image, tf.float32)


def resize_image(image, size):
    """Bilinear, antialiased resize of `(..., H, W, C)` floats to `size`.

    Images already `size` are returned unchanged.
    """
    size = tuple(int(s) for s in size)
    if tuple(image.shape[-3:-1]) == size:
        return image
    return tf.image.resize(image, size, antialias=True)


def preprocess_image(image, size, channels, input_range=DEFAULT_INPUT_RANGE):
    """A decoded image `(H, W, C)` as the model input `(*size, channels)`."""
    image = to_channels(image, channels)
    image = resize_image(scale_image(image, input_range), size)
    return tf.ensure_shape(image, (*size, channels))


def decode_image_file(path):
    """An image file's decoded `uint8` pixels, as a tensor.

    Raises:
        FileNotFoundError: no file at `path`.
        BadImageError: the file is not a decodable image.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No image file at the given path: {path!r}")
    try:
        return decode_image(tf.io.read_file(path))
    except tf.errors.InvalidArgumentError:
        raise BadImageError(
            f"Cannot decode image {path!r}: not a JPEG, PNG, BMP or GIF file"
        ) from None


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


def resize_weights(input_size, output_size):
    """`(output_size, input_size)` weights of the antialiased bilinear filter.

    Row `i` holds the normalized triangle-filter weights that output pixel
    `i` gives each input pixel, as TensorFlow's `ScaleAndTranslate` kernel
    (behind `tf.image.resize(..., antialias=True)`) computes them: sample
    position `(i + 0.5) / scale`, filter radius `max(1 / scale, 1)`.
    `input_size` may be a tensor known only when the graph runs.
    """
    source = tf.cast(input_size, tf.float32)
    inverse = source / float(output_size)
    widening = tf.maximum(inverse, 1.0)
    centres = (tf.range(output_size, dtype=tf.float32) + 0.5) * inverse
    pixels = tf.range(source) + 0.5
    distance = tf.abs(pixels[None, :] - centres[:, None]) * (1.0 / widening)
    weights = tf.maximum(1.0 - distance, 0.0)
    return weights * (1.0 / tf.reduce_sum(weights, axis=1, keepdims=True))


def resize_images_matmul(images, size):
    """`resize_image` of a batch `(B, H, W, C)` by two matrix products.

    Built from ops every runtime has (range, elementwise, reduce, batched
    matmul, reshape), so that it converts to LiteRT built-in ops and to
    ONNX; `H` and `W` may vary from call to call. At the model's size the
    weights are the identity and the images come through unchanged.
    """
    height, width = (int(s) for s in size)
    shape = tf.shape(images)
    batch, rows, cols, channels = shape[0], shape[1], shape[2], shape[3]
    along_rows = resize_weights(rows, height)  # (height, rows)
    along_cols = resize_weights(cols, width)  # (width, cols)
    # Rows: (height, rows) @ (B, rows, cols * C) -> (B, height, cols * C).
    x = tf.reshape(images, tf.stack([batch, rows, cols * channels]))
    x = tf.matmul(along_rows[None], x)
    # Columns: (width, cols) @ (B * height, cols, C) -> (B * height, width, C).
    x = tf.reshape(x, tf.stack([batch * height, cols, channels]))
    x = tf.matmul(along_cols[None], x)
    return tf.reshape(x, tf.stack([batch, height, width, channels]))


def preprocess_batch_graph(images, size, input_range=DEFAULT_INPUT_RANGE):
    """Exported graphs' preprocessing: `uint8` `(B, H, W, C)` to model input.

    The scaling of `scale_image` and the filter of `resize_image`, written
    with built-in ops only (`resize_images_matmul`).
    """
    return resize_images_matmul(scale_image(images, input_range), size)
