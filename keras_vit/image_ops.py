"""Image primitives: decode, convert channels, resize.

What `keras_vit.transform.Transform` and `keras_vit.preprocessing` build
on (and re-export): no policy about sizes or value ranges lives here.
`resize_images_matmul` is the antialiased filter of
`tf.image.resize(..., antialias=True)` (and, for bicubic, of PIL) as two
matrix products, which exported graphs can run.
"""

import math
import os

import tensorflow as tf


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


def resize_image(image, size):
    """Bilinear, antialiased resize of `(..., H, W, C)` floats to `size`.

    Images already `size` are returned unchanged.
    """
    size = tuple(int(s) for s in size)
    if tuple(image.shape[-3:-1]) == size:
        return image
    return tf.image.resize(image, size, antialias=True)


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


def _kernel(distance, interpolation):
    """The filter at `distance` (in input pixels, already widened)."""
    if interpolation == "bicubic":
        # Keys' cubic convolution, a = -0.5 (PIL, TensorFlow, timm).
        a = -0.5
        x = tf.abs(distance)
        near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
        return tf.where(x < 1.0, near, tf.where(x < 2.0, far, 0.0))
    return tf.maximum(1.0 - tf.abs(distance), 0.0)


def resize_weights(
    input_size, output_size, resized_size=None, offset=0, kernel="bilinear"
):
    """`(output_size, input_size)` weights of an antialiased resize filter.

    Row `i` holds the normalized weights that output pixel `i` gives each
    input pixel, as TensorFlow's `ScaleAndTranslate` kernel (behind
    `tf.image.resize(..., antialias=True)`) and PIL compute them: sample
    position `(i + 0.5) / scale`, filter radius widened by
    `max(1 / scale, 1)`. With `resized_size` and `offset`, the input is
    resized to `resized_size` and output pixels `offset ... offset +
    output_size - 1` of it are kept (a crop folded into the filter).
    `input_size`, `resized_size` and `offset` may be tensors known only
    when the graph runs.
    """
    source = tf.cast(input_size, tf.float32)
    if resized_size is None:
        resized_size = output_size
    inverse = source / tf.cast(resized_size, tf.float32)
    widening = tf.maximum(inverse, 1.0)
    first = tf.cast(offset, tf.float32)
    centres = (tf.range(output_size, dtype=tf.float32) + first + 0.5) * inverse
    pixels = tf.range(source) + 0.5
    distance = (pixels[None, :] - centres[:, None]) * (1.0 / widening)
    weights = _kernel(distance, kernel)
    return weights * (1.0 / tf.reduce_sum(weights, axis=1, keepdims=True))


def _crop_geometry(rows, cols, size, crop_pct):
    """Resized sizes and crop offsets of a `"crop"` transform, as int32
    tensors.

    Square sizes follow torchvision's `Resize(int)` + `CenterCrop` as timm
    uses them, in integers: the shorter side to `floor(size / crop_pct)`,
    the longer to `floor(short * long / shorter)`, the crop at
    `round((resized - size) / 2)`. Other sizes scale the image to cover
    `size / crop_pct` in both directions, then crop the centre.
    """
    height, width = size
    rows = tf.cast(rows, tf.int32)
    cols = tf.cast(cols, tf.int32)
    if height == width:
        short = math.floor(height / crop_pct + 1e-9)
        tall = rows > cols
        new_rows = tf.where(tall, (short * rows) // cols, short)
        new_cols = tf.where(tall, short, (short * cols) // rows)
    else:
        want_rows = math.floor(height / crop_pct + 1e-9)
        want_cols = math.floor(width / crop_pct + 1e-9)
        r, c = tf.cast(rows, tf.float32), tf.cast(cols, tf.float32)
        scale = tf.maximum(want_rows / r, want_cols / c)
        new_rows = tf.maximum(want_rows, tf.cast(tf.floor(r * scale), tf.int32))
        new_cols = tf.maximum(want_cols, tf.cast(tf.floor(c * scale), tf.int32))

    def centre(resized, kept):
        # torchvision: int(round((resized - kept) / 2.0)), half to even.
        half = tf.cast(resized - kept, tf.float32) / 2.0
        return tf.cast(tf.round(half), tf.int32)

    return new_rows, new_cols, centre(new_rows, height), centre(new_cols, width)


def resize_images_matmul(images, size, transform=None):
    """`resize_image` of a batch `(B, H, W, C)` by two matrix products.

    Built from ops every runtime has (range, elementwise, reduce, batched
    matmul, reshape), so that it converts to LiteRT built-in ops and to
    ONNX; `H` and `W` may vary from call to call. At the model's size the
    bilinear weights are the identity and the images come through
    unchanged. A `transform` sets the filter (bicubic values are clipped
    to the pixel range after each pass, as PIL's 8-bit passes are) and a
    centre crop (folded into the weights: no slicing).
    """
    # No transform: the default's stretch with a bilinear filter.
    kernel = getattr(transform, "interpolation", "bilinear")
    height, width = (int(s) for s in size)
    shape = tf.shape(images)
    batch, rows, cols, channels = shape[0], shape[1], shape[2], shape[3]
    if getattr(transform, "resize", "stretch") == "crop":
        new_rows, new_cols, top, left = _crop_geometry(
            rows, cols, (height, width), transform.crop_pct
        )
    else:
        new_rows, new_cols, top, left = height, width, 0, 0
    along_rows = resize_weights(rows, height, new_rows, top, kernel)
    along_cols = resize_weights(cols, width, new_cols, left, kernel)
    clip = _clip_range(transform) if kernel == "bicubic" else None
    # Columns first, as PIL: (width, cols) @ (B * rows, cols, C).
    x = tf.reshape(images, tf.stack([batch * rows, cols, channels]))
    x = tf.matmul(along_cols[None], x)
    if clip is not None:
        x = tf.clip_by_value(x, *clip)
    # Rows: (height, rows) @ (B, rows, width * C) -> (B, height, width * C).
    x = tf.reshape(x, tf.stack([batch, rows, width * channels]))
    x = tf.matmul(along_rows[None], x)
    x = tf.reshape(x, tf.stack([batch, height, width, channels]))
    if clip is not None:
        x = tf.clip_by_value(x, *clip)
    return x


def _clip_range(transform):
    """Bounds of normalized pixels over all channels (a bicubic filter
    overshoots at edges; 8-bit resizers clip there)."""
    lows = [-m / s for m, s in zip(transform.mean, transform.std)]
    highs = [(1.0 - m) / s for m, s in zip(transform.mean, transform.std)]
    if len(set(lows)) > 1 or len(set(highs)) > 1:
        # Per-channel bounds broadcast over the last axis.
        return (
            tf.constant(lows, tf.float32) if len(lows) > 1 else lows[0],
            tf.constant(highs, tf.float32) if len(highs) > 1 else highs[0],
        )
    return lows[0], highs[0]
