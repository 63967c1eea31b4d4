"""keras-vit: Vision Transformers for Keras 3."""

from keras_vit import activations
from keras_vit import data
from keras_vit import fused
from keras_vit import layers
from keras_vit import preprocessing
from keras_vit import presets
from keras_vit import training
from keras_vit.attention import attention_maps
from keras_vit.attention import attention_rollout
from keras_vit.attention import class_token_attention
from keras_vit.attention import mean_attention_distance
from keras_vit.checkpoints import load_weights
from keras_vit.checkpoints import save_npz
from keras_vit.model import build_vit
from keras_vit.model import class_names
from keras_vit.model import from_preset
from keras_vit.presets import get_preset
from keras_vit.presets import imagenet_labels
from keras_vit.presets import list_presets
from keras_vit.presets import preset_labels
from keras_vit.variants import VARIANTS
from keras_vit.variants import decode_variant

__version__ = "0.1.0"

__all__ = [
    "VARIANTS",
    "__version__",
    "activations",
    "attention_maps",
    "attention_rollout",
    "build_vit",
    "class_names",
    "class_token_attention",
    "data",
    "decode_variant",
    "from_preset",
    "fused",
    "get_preset",
    "imagenet_labels",
    "layers",
    "list_presets",
    "load_weights",
    "mean_attention_distance",
    "preprocessing",
    "preset_labels",
    "presets",
    "save_npz",
    "training",
]
