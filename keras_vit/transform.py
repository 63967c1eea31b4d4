"""A model's evaluation transform: how a decoded image becomes its input.

`Transform` is plain data (JSON in `config.json`, presets and export
manifests) with the TensorFlow code that applies it; TensorFlow is imported
only when a transform is applied, so the preset registry and
`keras-vit weights` stay light.
"""

import dataclasses
import math

import numpy as np

RESIZE_MODES = ("stretch", "crop")
INTERPOLATIONS = ("bilinear", "bicubic")


def _floats(values, name):
    if isinstance(values, (int, float)):
        values = (values,)
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        out = ()
    if len(out) not in (1, 3) or not all(math.isfinite(v) for v in out):
        raise ValueError(
            f"`{name}` must be one number or three (one per RGB channel). "
            f"Received: {name}={values!r}"
        )
    return out


@dataclasses.dataclass(frozen=True)
class Transform:
    """How a decoded image becomes a model input at evaluation.

    Attributes:
        resize: `"stretch"` (the whole image to the model's size, aspect
            ratio not kept) or `"crop"` (the shorter side to
            `floor(size / crop_pct)`, the longer in proportion, then the
            centre `size` cut out: timm's and torchvision's evaluation
            transform).
        crop_pct: float in (0, 1]. The fraction of the resized shorter side
            the crop keeps (`"crop"` only; timm: 0.9 at 224, 1.0 at 384).
        interpolation: `"bilinear"` or `"bicubic"` (Keys, a = -0.5, as PIL
            and TensorFlow). Both filters are antialiased: widened by the
            downscale factor, so a large photo is averaged over.
        mean, std: per-channel normalization of pixels scaled to [0, 1]:
            `(pixel / 255 - mean) / std`. One number or three (RGB);
            0.5/0.5 gives [-1, 1], the original ViT's range.
    """

    resize: str = "stretch"
    crop_pct: float = 1.0
    interpolation: str = "bilinear"
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.5, 0.5, 0.5)

    def __post_init__(self):
        if self.resize not in RESIZE_MODES:
            raise ValueError(
                f"`resize` must be one of {RESIZE_MODES}. "
                f"Received: resize={self.resize!r}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"`interpolation` must be one of {INTERPOLATIONS}. "
                f"Received: interpolation={self.interpolation!r}"
            )
        try:
            crop = float(self.crop_pct)
        except (TypeError, ValueError):
            crop = float("nan")
        if not 0.0 < crop <= 1.0:
            raise ValueError(
                "`crop_pct` must be a number in (0, 1]. "
                f"Received: crop_pct={self.crop_pct!r}"
            )
        mean, std = _floats(self.mean, "mean"), _floats(self.std, "std")
        if not all(v > 0 for v in std):
            raise ValueError(
                f"`std` must be positive. Received: std={self.std!r}"
            )
        object.__setattr__(self, "crop_pct", crop)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def from_input_range(cls, input_range, **kwargs):
        """The transform that scales [0, 255] to `(low, high)`."""
        low, high = (float(v) for v in input_range)
        if not high > low:
            raise ValueError(
                "An input range must be LOW,HIGH with HIGH > LOW. "
                f"Received: {input_range!r}"
            )
        return cls(
            mean=(-low / (high - low),) * 3,
            std=(1.0 / (high - low),) * 3,
            **kwargs,
        )

    @classmethod
    def from_dict(cls, config):
        """The inverse of `to_dict`; unknown keys are refused."""
        if not isinstance(config, dict):
            raise TypeError(
                f"Expected a dict of Transform fields. Received: {config!r}"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - fields)
        if unknown:
            raise ValueError(
                f"Unknown Transform fields {unknown}; expected some of "
                f"{sorted(fields)}"
            )
        return cls(**config)

    def to_dict(self):
        return {
            "resize": self.resize,
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def describe(self):
        """One line, e.g. `resize shorter side to 248, centre crop 224x224,
        bicubic, mean 0.5 std 0.5` for a size."""
        norm = (
            f"mean {'/'.join(f'{v:g}' for v in self.mean)} "
            f"std {'/'.join(f'{v:g}' for v in self.std)}"
        )
        if self.resize == "stretch":
            return f"stretch to the model's size, {self.interpolation}, {norm}"
        return (
            f"resize shorter side to size/{self.crop_pct:g}, centre crop, "
            f"{self.interpolation}, {norm}"
        )

    @property
    def input_range(self):
        """`(low, high)` that pixels 0 and 255 map to, if the same for every
        channel; else `None`."""
        lows = {-m / s for m, s in zip(self.mean, self.std)}
        highs = {(1.0 - m) / s for m, s in zip(self.mean, self.std)}
        if len(lows) == 1 and len(highs) == 1:
            return lows.pop(), highs.pop()
        return None

    def _per_channel(self, values, channels):
        if len(values) == channels:
            return values
        if len(values) == 1:
            return values * channels
        # Three values for a one-channel model: their mean.
        return (sum(values) / len(values),) * channels

    def normalize(self, image):
        """Integer pixels to float32 inputs; float images unchanged.

        `uint16` images are taken on [0, 65535]. With mean = std = 0.5 this
        is `scale_image`'s arithmetic to the last bit.
        """
        import tensorflow as tf

        image = tf.convert_to_tensor(image)
        if not image.dtype.is_integer:
            return tf.cast(image, tf.float32)
        top = 65535.0 if image.dtype == tf.uint16 else 255.0
        channels = image.shape[-1]
        mean = self._per_channel(self.mean, channels)
        std = self._per_channel(self.std, channels)
        if len(set(mean)) == 1 and len(set(std)) == 1:
            gain = 1.0 / (std[0] * top)
            return tf.cast(image, tf.float32) * gain - mean[0] / std[0]
        gain = tf.constant([1.0 / (s * top) for s in std], tf.float32)
        shift = tf.constant([m / s for m, s in zip(mean, std)], tf.float32)
        return tf.cast(image, tf.float32) * gain - shift

    def to_pixels(self, inputs):
        """Model inputs (NumPy) back to [0, 255] floats (not rounded)."""
        inputs = np.asarray(inputs, dtype=np.float64)
        channels = inputs.shape[-1]
        mean = np.asarray(self._per_channel(self.mean, channels))
        std = np.asarray(self._per_channel(self.std, channels))
        return (inputs * std + mean) * 255.0

    def resize_images(self, images, size):
        """Float images `(..., H, W, C)` to `size` (`(B, H, W, C)` or one
        image `(H, W, C)`), by this transform's geometry and filter.

        `"stretch"` with `"bilinear"` is `resize_image` (TensorFlow's
        kernel); every other combination is `resize_images_matmul`'s
        matrix products, the same arithmetic in eager code and in
        exported graphs.
        """
        from keras_vit.image_ops import resize_image
        from keras_vit.image_ops import resize_images_matmul

        if self.resize == "stretch" and self.interpolation == "bilinear":
            return resize_image(images, size)
        single = images.shape.rank == 3
        batch = images[None] if single else images
        out = resize_images_matmul(batch, size, self)
        return out[0] if single else out

    def __call__(self, image, size, channels):
        """A decoded image `(H, W, C)` (integers or floats) as the model
        input `(*size, channels)`."""
        import tensorflow as tf

        from keras_vit.image_ops import to_channels

        image = to_channels(image, channels)
        image = self.resize_images(self.normalize(image), size)
        return tf.ensure_shape(image, (*size, channels))

    def read_images(self, paths, size, channels=3):
        """Image files as one float32 NumPy batch `(N, *size, channels)` of
        model inputs (`keras_vit.preprocessing.read_images`).

        Raises:
            FileNotFoundError: a path is not a file.
            keras_vit.preprocessing.BadImageError: a file is no image.
        """
        import numpy as np

        from keras_vit.image_ops import decode_image_file

        if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__"):
            paths = [paths]
        if isinstance(size, int):
            size = (size, size)
        size = tuple(size)
        return np.stack(
            [self(decode_image_file(p), size, channels).numpy() for p in paths]
        )

    def graph(self, images, size):
        """Exported graphs' preprocessing of a `uint8` batch `(B, H, W, C)`,
        with built-in ops only."""
        from keras_vit.image_ops import resize_images_matmul

        return resize_images_matmul(self.normalize(images), size, self)


DEFAULT_TRANSFORM = Transform()


def as_transform(value):
    """A `Transform` from a `Transform`, its dict, an input range
    `(low, high)` or `None` (the default)."""
    if value is None:
        return DEFAULT_TRANSFORM
    if isinstance(value, Transform):
        return value
    if isinstance(value, dict):
        return Transform.from_dict(value)
    return Transform.from_input_range(value)
