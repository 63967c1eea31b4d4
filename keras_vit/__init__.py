"""keras-vit: Vision Transformers for Keras 3.

`import keras_vit` loads the model and its layers (registered with Keras, so
`.keras` files that use them load). The data pipelines (`keras_vit.data`,
`keras_vit.preprocessing`), the training recipe (`keras_vit.training`) and
the attention-map tools load on first use.
"""

import importlib
import os

from keras_vit.command import quiet_startup

quiet_startup()  # A command line: quiet TensorFlow before it loads.

# The model API: loaded here (it imports Keras and registers the layers, so
# `.keras` files that use them load), except under the `keras-vit` command,
# which loads it only for the subcommands that need it
# (`keras_vit_cli`): `keras-vit weights` then starts without TensorFlow.
_MODEL_API = {
    "activations": ("keras_vit.activations", None),
    "fused": ("keras_vit.fused", None),
    "layers": ("keras_vit.layers", None),
    # Registers the optimizers that compiled `.keras` files name.
    "optimizers": ("keras_vit.optimizers", None),
    "load_weights": ("keras_vit.checkpoints", "load_weights"),
    "save_npz": ("keras_vit.checkpoints", "save_npz"),
    "ViTConfig": ("keras_vit.config", "ViTConfig"),
    "assemble": ("keras_vit.model", "assemble"),
    "build_vit": ("keras_vit.model", "build_vit"),
    "class_names": ("keras_vit.model", "class_names"),
    "from_preset": ("keras_vit.model", "from_preset"),
    "vit_config": ("keras_vit.model", "vit_config"),
}


def load_model_api():
    """Imports the model, its layers and Keras (registering the layers)."""
    for name, (module, attribute) in _MODEL_API.items():
        loaded = importlib.import_module(module)
        globals()[name] = (
            loaded if attribute is None else getattr(loaded, attribute)
        )


from keras_vit import presets
from keras_vit.presets import get_preset
from keras_vit.presets import imagenet_labels
from keras_vit.presets import list_presets
from keras_vit.presets import preset_labels
from keras_vit.transform import Transform
from keras_vit.variants import VARIANTS
from keras_vit.variants import decode_variant

if os.environ.get("KERAS_VIT_LIGHT_IMPORT") != "1":
    load_model_api()

__version__ = "0.1.0"

# Loaded on first access: they import tf.data and the training stack.
_LAZY_MODULES = (
    "data",
    "features",
    "lora",
    "preprocessing",
    "training",
)
_LAZY_NAMES = {
    "attention_maps": "keras_vit.attention",
    "attention_rollout": "keras_vit.attention",
    "class_token_attention": "keras_vit.attention",
    "mean_attention_distance": "keras_vit.attention",
    "dense_features": "keras_vit.features",
    "feature_extractor": "keras_vit.features",
    "enable_lora": "keras_vit.lora",
    "merge_lora": "keras_vit.lora",
}


def __getattr__(name):
    if name in _MODEL_API:
        load_model_api()
        return globals()[name]
    if name in _LAZY_MODULES:
        return importlib.import_module(f"keras_vit.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'keras_vit' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


__all__ = [
    "VARIANTS",
    "ViTConfig",
    "__version__",
    "assemble",
    "activations",
    "attention_maps",
    "attention_rollout",
    "build_vit",
    "class_names",
    "class_token_attention",
    "data",
    "decode_variant",
    "dense_features",
    "enable_lora",
    "feature_extractor",
    "features",
    "from_preset",
    "fused",
    "get_preset",
    "imagenet_labels",
    "layers",
    "list_presets",
    "load_weights",
    "lora",
    "mean_attention_distance",
    "merge_lora",
    "optimizers",
    "preprocessing",
    "preset_labels",
    "presets",
    "save_npz",
    "training",
    "Transform",
    "vit_config",
]
