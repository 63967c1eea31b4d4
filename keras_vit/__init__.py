"""keras-vit: Vision Transformers for Keras 3.

`import keras_vit` loads the model and its layers (registered with Keras, so
`.keras` files that use them load). The data pipelines (`keras_vit.data`,
`keras_vit.preprocessing`), the training recipe (`keras_vit.training`) and
the attention-map tools load on first use.
"""

import importlib

from keras_vit.command import quiet_startup

quiet_startup()  # A command line: quiet TensorFlow before it loads.

from keras_vit import activations
from keras_vit import fused
from keras_vit import layers
from keras_vit import presets
from keras_vit.checkpoints import load_weights
from keras_vit.checkpoints import save_npz
from keras_vit.model import build_vit
from keras_vit.model import class_names
from keras_vit.model import from_preset
from keras_vit.model import vit_config
from keras_vit.presets import get_preset
from keras_vit.presets import imagenet_labels
from keras_vit.presets import list_presets
from keras_vit.presets import preset_labels
from keras_vit.variants import VARIANTS
from keras_vit.variants import decode_variant

__version__ = "0.1.0"

# Loaded on first access: they import tf.data and the training stack.
_LAZY_MODULES = ("data", "preprocessing", "training")
_LAZY_NAMES = {
    "attention_maps": "keras_vit.attention",
    "attention_rollout": "keras_vit.attention",
    "class_token_attention": "keras_vit.attention",
    "mean_attention_distance": "keras_vit.attention",
}


def __getattr__(name):
    if name in _LAZY_MODULES:
        return importlib.import_module(f"keras_vit.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'keras_vit' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


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
    "vit_config",
]
