"""keras-vit: Vision Transformers for Keras 3."""

from keras_vit import activations
from keras_vit import layers
from keras_vit.model import build_vit
from keras_vit.variants import VARIANTS
from keras_vit.variants import decode_variant

__version__ = "0.1.0"

__all__ = [
    "VARIANTS",
    "__version__",
    "activations",
    "build_vit",
    "decode_variant",
    "layers",
]
