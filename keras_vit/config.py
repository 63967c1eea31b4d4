"""`ViTConfig`: the one description of a ViT architecture.

Every way of naming a model ends here: `build_vit`'s keywords, a variant
such as `"B/16"`, a preset, the arrays of a checkpoint file, a model read
back with `vit_config(model)`, the `config.json` of a training run and the
command line's architecture flags. The configuration is checked once, when
it is made; `keras_vit.model.assemble(config)` builds the graph from it.

Adding an architecture option (as `pre_norm` was added): here, a field with
its check and its entry in `ARCHITECTURE_OPTIONS` (the command line's flag
and the recipes' key follow) and, for a family option, `FAMILY_OPTIONS`;
in `keras_vit.model`, its `build_vit` keyword, its layer in `assemble` and
the line of `vit_config` that reads it back; where checkpoints hold it, its
names in `keras_vit.checkpoints` (the timm key, the model layout and what
`family_options` reads from the arrays).
"""

import dataclasses
import json

from keras_vit.checks import check_class_names
from keras_vit.checks import check_non_negative_int
from keras_vit.checks import check_positive_int
from keras_vit.checks import check_rate
from keras_vit.checks import normalize_pair

# The choices of the named options (the standard library only: the command
# line builds its parser from them without loading TensorFlow).
TOKENIZERS = ("patch", "shifted_patch", "conv")
POOLINGS = ("token", "gap", "sequence", "map")
ACTIVATIONS = ("gelu", "gelu_approximate", "quick_gelu")


def resolve_activation(activation, approximate_gelu):
    """One activation name from the two ways of asking for one.

    `approximate_gelu=True` is the older spelling of
    `activation="gelu_approximate"`; asking for two different ones raises.
    """
    if not isinstance(approximate_gelu, bool):
        raise TypeError(
            "`approximate_gelu` must be a bool. "
            f"Received: approximate_gelu={approximate_gelu!r}"
        )
    if activation is None:
        return "gelu_approximate" if approximate_gelu else "gelu"
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"`activation` must be one of {ACTIVATIONS}. "
            f"Received: activation={activation!r}"
        )
    if approximate_gelu and activation != "gelu_approximate":
        raise ValueError(
            "`approximate_gelu=True` asks for the tanh approximation, "
            f"which contradicts activation={activation!r}"
        )
    return activation


# The architecture options `keras-vit train` takes as flags (`--hidden-dim`,
# `--num-registers`, ...) and the training recipes choose: each a ViTConfig
# field, with its help text. The flag's type follows the field's default.
ARCHITECTURE_OPTIONS = {
    "patch_size": "patch side in pixels",
    "hidden_dim": "token width",
    "depth": "number of encoder blocks",
    "num_heads": "attention heads",
    "mlp_dim": "MLP hidden width",
    "tokenizer": "patch (the ViT's), shifted_patch (Shifted Patch "
    "Tokenization) or conv (convolutional tokenizer); default: conv below "
    "100,000 images, else patch",
    "pooling": "class token, average, sequence (learned weighting) or map "
    "(attention pooling); default: sequence below 100,000 images, else token",
    "locality_attention": "Locality Self-Attention in every block "
    "(default off)",
    "class_token": "a learned class token (default on; off needs "
    "--pooling gap, sequence or map)",
    "num_registers": "register tokens after the class token (default 0)",
    "layer_scale": "LayerScale on both residual branches, started at this "
    "value (default off)",
    "pre_norm": "a LayerNorm before the first block, as in CLIP (default off)",
    "activation": "the MLPs' activation (default gelu)",
    "layer_norm_epsilon": "the LayerNorms' epsilon (default 1e-06; CLIP's "
    "is 1e-05)",
}
# The options the families need, which a checkpoint's arrays say (`None` as
# a `build_vit` keyword: the checkpoint's, else the default).
FAMILY_OPTIONS = (
    "class_token",
    "distillation_token",
    "num_registers",
    "class_token_position",
    "layer_scale",
    "pre_norm",
)
CHOICES = {
    "tokenizer": TOKENIZERS,
    "pooling": POOLINGS,
    "activation": ACTIVATIONS,
}


def option_defaults():
    """ViTConfig's default of each of `ARCHITECTURE_OPTIONS`."""
    fields = {f.name: f.default for f in dataclasses.fields(ViTConfig)}
    return {key: fields[key] for key in ARCHITECTURE_OPTIONS}


def _check_bool(value, name):
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool. Received: {name}={value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """A Vision Transformer's architecture, checked when made.

    The fields are `build_vit`'s keyword arguments (see its docstring for
    each); `weights`, `variant` and `progress` are not part of an
    architecture. The family options are off by default:

    - `class_token`: prepend a learned class token (off for SigLIP).
    - `distillation_token`: DeiT's second token after the class token,
      read by a second head (`head_dist`); the two heads' outputs are
      averaged.
    - `num_registers`: register tokens after the class token (DINOv2
      "reg"), without a position embedding.
    - `class_token_position`: whether the position embedding has rows for
      the class and distillation tokens (`True`, the ViT's) or for the
      patches only (`False`; DINOv2 with registers).
    - `layer_scale`: a per-channel learned scale on both residual branches,
      started at this value (DINOv2, DeiT III).
    - `pre_norm`: a LayerNorm between the embeddings and the first block
      (CLIP).
    - `activation`: the MLPs' `"gelu"`, `"gelu_approximate"` or
      `"quick_gelu"` (OpenAI's CLIP).
    - `pooling="map"`: multi-head attention pooling (SigLIP).
    - `dynamic_image_size`: the model takes images of any size whose sides
      are multiples of the patch size; its position embedding, trained for
      `image_size`, is resampled in the graph (bicubic, as timm's
      `dynamic_img_size`).

    A config unpacks into `build_vit` (`build_vit(**config)`) and reads
    like a dict (`config["hidden_dim"]`); `to_dict`/`from_dict` and
    `to_json`/`from_json` give its JSON form.

    Example:

    >>> config = ViTConfig(image_size=32, patch_size=4, hidden_dim=64,
    ...                    depth=2, num_heads=4, mlp_dim=128, num_classes=10)
    >>> config.grid_size, config.num_prefix_tokens
    ((8, 8), 1)
    >>> ViTConfig.from_json(config.to_json()) == config
    True
    """

    image_size: tuple = (224, 224)
    patch_size: tuple = (16, 16)
    channels: int = 3
    hidden_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    num_classes: int | None = 1000
    include_top: bool = True
    pooling: str = "token"
    representation_size: int | None = None
    dropout: float = 0.0
    attention_dropout: float = 0.0
    drop_path_rate: float = 0.0
    layer_norm_epsilon: float = 1e-6
    classifier_activation: str | None = None
    activation: str = "gelu"
    tokenizer: str = "patch"
    locality_attention: bool = False
    class_token: bool = True
    distillation_token: bool = False
    num_registers: int = 0
    class_token_position: bool = True
    layer_scale: float | None = None
    pre_norm: bool = False
    dynamic_image_size: bool = False
    class_names: tuple | None = None
    name: str | None = None

    def __post_init__(self):
        self._check_values()
        self._check_combinations()
        self._check_head()

    def _put(self, field, value):
        object.__setattr__(self, field, value)

    def _check_values(self):
        """Each field alone: its type and range, normalized in place."""
        put = self._put
        put("image_size", normalize_pair(self.image_size, "image_size"))
        put("patch_size", normalize_pair(self.patch_size, "patch_size"))
        for field in (
            "channels",
            "hidden_dim",
            "depth",
            "num_heads",
            "mlp_dim",
        ):
            put(field, check_positive_int(getattr(self, field), field))
        for field in ("dropout", "attention_dropout", "drop_path_rate"):
            put(field, check_rate(getattr(self, field), field))
        for field in (
            "include_top",
            "locality_attention",
            "class_token",
            "distillation_token",
            "class_token_position",
            "pre_norm",
            "dynamic_image_size",
        ):
            _check_bool(getattr(self, field), field)
        put(
            "num_registers",
            check_non_negative_int(self.num_registers, "num_registers"),
        )
        if self.representation_size is not None:
            put(
                "representation_size",
                check_positive_int(
                    self.representation_size, "representation_size"
                ),
            )
        epsilon = self.layer_norm_epsilon
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)):
            raise TypeError(
                "`layer_norm_epsilon` must be a positive float. "
                f"Received: layer_norm_epsilon={epsilon!r}"
            )
        if not epsilon > 0:
            raise ValueError(
                "`layer_norm_epsilon` must be a positive float. "
                f"Received: layer_norm_epsilon={epsilon!r}"
            )
        put("layer_norm_epsilon", float(epsilon))
        if self.layer_scale is not None:
            scale = self.layer_scale
            if isinstance(scale, bool) or not isinstance(scale, (int, float)):
                raise TypeError(
                    "`layer_scale` must be None or a positive float. "
                    f"Received: layer_scale={scale!r}"
                )
            if not scale > 0:
                raise ValueError(
                    "`layer_scale` must be None or a positive float. "
                    f"Received: layer_scale={scale!r}"
                )
            put("layer_scale", float(scale))
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"`activation` must be one of {ACTIVATIONS}. "
                f"Received: activation={self.activation!r}"
            )
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(
                f"`tokenizer` must be one of {TOKENIZERS}. "
                f"Received: tokenizer={self.tokenizer!r}"
            )
        if self.pooling not in POOLINGS:
            raise ValueError(
                f"`pooling` must be one of {POOLINGS}. "
                f"Received: pooling={self.pooling!r}"
            )

    def _check_combinations(self):
        """The fields that constrain one another."""
        image, patch = self.image_size, self.patch_size
        if image[0] % patch[0] or image[1] % patch[1]:
            raise ValueError(
                "`image_size` must be divisible by `patch_size`. "
                f"Received: image_size={image}, patch_size={patch}"
            )
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                "`hidden_dim` must be divisible by `num_heads`. "
                f"Received: hidden_dim={self.hidden_dim}, "
                f"num_heads={self.num_heads}"
            )
        if self.tokenizer == "conv" and (
            patch[0] != patch[1] or patch[0] & (patch[0] - 1) or patch[0] < 2
        ):
            raise ValueError(
                '`tokenizer="conv"` needs a square patch size that is a power '
                f"of two (2, 4, 8, ...). Received: patch_size={patch}"
            )
        if self.dynamic_image_size and self.tokenizer != "patch":
            raise ValueError(
                "Any image size at run time needs the patch tokenizer. "
                f"Received: tokenizer={self.tokenizer!r} with "
                "dynamic_image_size=True"
            )
        if self.pooling == "token" and not self.class_token:
            raise ValueError(
                '`pooling="token"` reads the class token; a model without '
                'one pools with "gap", "map" or "sequence". Received: '
                "class_token=False, pooling='token'"
            )
        if self.distillation_token:
            if not self.class_token or self.pooling != "token":
                raise ValueError(
                    "A distillation token goes with a class token and "
                    f'pooling="token". Received: class_token='
                    f"{self.class_token}, pooling={self.pooling!r}"
                )
            if self.representation_size is not None:
                raise ValueError(
                    "A distilled model has no `pre_logits` layer. Received: "
                    f"representation_size={self.representation_size}"
                )

    def _check_head(self):
        """The head's class count and names."""
        put = self._put
        if self.include_top:
            if self.num_classes is None:
                put("num_classes", 1000)
            put(
                "num_classes",
                check_positive_int(self.num_classes, "num_classes"),
            )
        elif self.num_classes is not None:
            put(
                "num_classes",
                check_non_negative_int(self.num_classes, "num_classes"),
            )
        if self.class_names is not None:
            units = self.num_classes if self.include_top else None
            if units is None:
                units = len(list(self.class_names))
            put(
                "class_names", tuple(check_class_names(self.class_names, units))
            )

    # ----------------------------------------------------------- derived

    @property
    def grid_size(self):
        """The patch grid `(rows, columns)`."""
        return (
            self.image_size[0] // self.patch_size[0],
            self.image_size[1] // self.patch_size[1],
        )

    @property
    def num_prefix_tokens(self):
        """Tokens before the patches: class, distillation, registers."""
        return (
            int(self.class_token)
            + int(self.distillation_token)
            + self.num_registers
        )

    @property
    def position_prefix_tokens(self):
        """Rows of the position embedding that are not patches."""
        if not self.class_token_position:
            return 0
        return int(self.class_token) + int(self.distillation_token)

    @property
    def approximate_gelu(self):
        return self.activation == "gelu_approximate"

    # ------------------------------------------------------------ access

    def keys(self):
        return [f.name for f in dataclasses.fields(self)]

    def __getitem__(self, key):
        if key not in self.keys() and key != "approximate_gelu":
            raise KeyError(key)
        value = getattr(self, key)
        if key == "class_names" and value is not None:
            return list(value)  # as `build_vit` and JSON take them
        return value

    def replace(self, **changes):
        """A copy with `changes`, checked again."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------- JSON

    def to_dict(self):
        """The fields as JSON values (pairs and names as lists)."""
        out = {}
        for key in self.keys():
            value = getattr(self, key)
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, values):
        """A config from `to_dict`'s form (or `build_vit` keywords).

        `approximate_gelu` (the older spelling of
        `activation="gelu_approximate"`) is read too; any other unknown key
        raises `ValueError` naming it.
        """
        if not isinstance(values, dict):
            raise TypeError(
                f"Expected a dict of ViTConfig fields. Received: {values!r}"
            )
        values = dict(values)
        approximate = values.pop("approximate_gelu", False)
        values["activation"] = resolve_activation(
            values.get("activation"), approximate
        )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"Unknown ViTConfig fields {unknown}. Expected some of "
                f"{sorted(known)}"
            )
        return cls(**values)

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))
