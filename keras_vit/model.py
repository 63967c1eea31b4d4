"""`build_vit`: the Vision Transformer as a functional Keras model."""

import os

import keras

from keras_vit import checkpoints
from keras_vit import presets
from keras_vit.layers import ClassifierHead
from keras_vit.layers import ClassToken
from keras_vit.layers import ConvTokenizer
from keras_vit.layers import PatchEmbedding
from keras_vit.layers import PatchExtractor
from keras_vit.layers import PositionEmbedding
from keras_vit.layers import SequencePooling
from keras_vit.layers import ShiftedPatchExtractor
from keras_vit.layers import TokenPooling
from keras_vit.layers import TransformerEncoderBlock
from keras_vit.layers._utils import check_positive_int
from keras_vit.layers._utils import check_rate
from keras_vit.layers._utils import normalize_pair
from keras_vit.layers.classifier_head import check_class_names
from keras_vit.recipes import TOKENIZERS
from keras_vit.variants import decode_variant

# Used when neither a variant nor an explicit value is given: ViT-B/16.
_DEFAULTS = decode_variant("B/16")
_POOLINGS = ("token", "gap", "sequence")
_WEIGHT_FORMATS = (".npz", ".safetensors", ".weights.h5")
_DIM_KEYS = ("patch_size", "hidden_dim", "depth", "num_heads", "mlp_dim")


def _check_optional_positive_int(value, name):
    return None if value is None else check_positive_int(value, name)


def build_vit(
    variant=None,
    *,
    image_size=None,
    patch_size=None,
    hidden_dim=None,
    depth=None,
    num_heads=None,
    mlp_dim=None,
    num_classes=None,
    include_top=True,
    pooling="token",
    representation_size=None,
    dropout=0.0,
    attention_dropout=0.0,
    drop_path_rate=0.0,
    layer_norm_epsilon=1e-6,
    channels=3,
    classifier_activation=None,
    approximate_gelu=False,
    tokenizer="patch",
    locality_attention=False,
    weights=None,
    name=None,
    progress=True,
    class_names=None,
):
    """Builds a Vision Transformer (Dosovitskiy et al., 2021).

    The model is a plain functional `keras.Model`: images are split into
    patches (`patch_extractor`), each patch is embedded linearly
    (`patch_embedding`), a learnable class token is prepended
    (`class_token`), a learnable position embedding is added
    (`position_embedding`), `depth` pre-norm encoder blocks follow
    (`encoder_block_0`, ...), then a final LayerNorm (`encoder_norm`),
    pooling (`pooling`), an optional tanh representation layer
    (`pre_logits`) and the classification head (`head`). Every layer keeps
    that name, so intermediate features can be fetched with
    `model.get_layer(name).output`.

    The model takes images as they are: the original checkpoints expect
    pixel values scaled to [-1, 1].

    Args:
        variant: str or `None`. One of `"Ti/16"`, `"S/16"`, `"S/32"`,
            `"B/8"`, `"B/16"`, `"B/32"`, `"L/16"`, `"L/32"`, `"H/14"`. Sets
            `hidden_dim`, `depth`, `num_heads`, `mlp_dim` and `patch_size`;
            explicit keyword arguments override it. Defaults to `None`
            (the B/16 dimensions for whatever is not given).
        image_size: int or tuple `(height, width)`. Input image size; must
            be divisible by the patch size. Defaults to the named
            checkpoint's (`weights`), else `224`.
        patch_size: int or tuple `(height, width)`. Patch size. Defaults to
            the variant's, else `16`.
        hidden_dim: int. Token width `D`. Defaults to the variant's, else
            `768`.
        depth: int. Number of encoder blocks. Defaults to the variant's,
            else `12`.
        num_heads: int. Attention heads; must divide `hidden_dim`. Defaults
            to the variant's, else `12`.
        mlp_dim: int. Hidden width of each block's MLP. Defaults to the
            variant's, else `3072`.
        num_classes: int. Number of output classes. Defaults to the number
            of `class_names`, else the named checkpoint's (`weights`), else
            `1000`. A checkpoint without a head (a backbone-only preset
            such as `"vit_base_patch32_224.orig_in21k"`) and no
            `num_classes` give the features instead (`include_top=False`):
            never a head of zeros.
        include_top: bool. When `False`, the model ends at the pooled
            features (after `pre_logits` if present) instead of the head.
            Defaults to `True`.
        pooling: `"token"` (read the class token), `"gap"` (average the
            patch tokens, without the class token) or `"sequence"`
            (`SequencePooling`: a learned softmax weighting of all tokens,
            as in Compact Convolutional Transformers). Defaults to
            `"token"`.
        representation_size: int or `None`. Width of a tanh Dense layer
            (`pre_logits`) before the head, as in the original ImageNet-21k
            models. Defaults to `None` (no such layer).
        dropout: float. Dropout rate after the position embedding, after
            each attention output and inside each MLP. Defaults to `0.0`.
        attention_dropout: float. Dropout rate on the attention weights.
            Defaults to `0.0`.
        drop_path_rate: float. Stochastic-depth rate of the last block; the
            rate grows linearly from 0 in the first block to this value in
            the last. Defaults to `0.0`.
        layer_norm_epsilon: float. Epsilon of every LayerNorm. Defaults to
            `1e-6`.
        channels: int. Number of image channels. Defaults to `3`.
        classifier_activation: activation of the head, e.g. `"softmax"`, or
            `None` for logits. Defaults to `None`.
        approximate_gelu: bool. Use the tanh approximation of GELU instead
            of the exact erf form. Defaults to `False`.
        tokenizer: how images become tokens. `"patch"`: the ViT's
            non-overlapping patches, each embedded linearly.
            `"shifted_patch"`: Shifted Patch Tokenization (Lee, Lee & Song,
            2021): each patch also holds the half patches around it
            (`ShiftedPatchExtractor`), then a LayerNorm (`patch_norm`) and
            the linear embedding. `"conv"`: a convolutional tokenizer
            (`ConvTokenizer`, named `conv_tokenizer`; Hassani et al., 2021):
            `log2(patch_size)` stages of 3x3 convolution, ReLU and stride-2
            max-pooling, so `patch_size` must be a power of two and square.
            The options other than `"patch"` are for training from scratch
            on small datasets; the pretrained checkpoints use `"patch"`.
            Defaults to `"patch"`.
        locality_attention: bool. Locality Self-Attention (Lee, Lee & Song,
            2021) in every block: a learned softmax temperature and no
            attention of a token to itself. Defaults to `False`.
        weights: `None`, the name of a pretrained checkpoint from
            `keras_vit.list_presets()` (downloaded once and cached, see
            `keras_vit.presets`; `variant` and `image_size` default to the
            checkpoint's), or the path of a checkpoint file: an original
            ViT `.npz` file (original or AugReg release), a timm or Hugging
            Face `.safetensors` file, or a Keras `.weights.h5` file of the
            same configuration. For `.npz`/`.safetensors`,
            `representation_size` defaults to the checkpoint's `pre_logits`
            width, a head of another class count is not loaded and the
            position embedding is resized to `image_size` (see
            `keras_vit.load_weights`). Defaults to `None` (random
            initialization).
        name: str or `None`. Model name. Defaults to `"vit_<variant>"` or
            `"vit"`.
        progress: bool. Show a progress bar while a named checkpoint
            downloads. Defaults to `True`.
        class_names: list of str, or `None`. Names of the classes, kept in
            the model file (the head is then a `ClassifierHead`; read them
            back with `keras_vit.class_names(model)`). Defaults to `None`.

    Returns:
        A `keras.Model` mapping `(batch, height, width, channels)` images to
        `(batch, num_classes)` outputs, or to `(batch, features)` when
        `include_top=False`.

    Example:

    >>> model = build_vit(
    ...     image_size=32, patch_size=4, hidden_dim=64, depth=2,
    ...     num_heads=4, mlp_dim=128, num_classes=10)
    >>> model.output_shape
    (None, 10)
    >>> build_vit("Ti/16", num_classes=10).count_params()
    5526346
    """
    preset = None
    if isinstance(weights, str) and presets.is_preset(weights):
        preset = presets.get_preset(weights)
        if variant is None:
            variant = preset.variant
        elif variant != preset.variant:
            raise ValueError(
                f"The checkpoint {weights!r} is a {preset.variant} model. "
                f"Received: variant={variant!r}"
            )
        if image_size is None:
            image_size = preset.image_size
        if num_classes is None and class_names is None and preset.num_classes:
            num_classes = preset.num_classes
            # An ImageNet-1k head keeps its names in the model file.
            class_names = presets.preset_labels(weights)
    if image_size is None:
        image_size = 224
    dims = dict(_DEFAULTS)
    if variant is not None:
        dims = decode_variant(variant)
    overrides = {
        "patch_size": patch_size,
        "hidden_dim": hidden_dim,
        "depth": depth,
        "num_heads": num_heads,
        "mlp_dim": mlp_dim,
    }
    dims.update({k: v for k, v in overrides.items() if v is not None})

    image_size = normalize_pair(image_size, "image_size")
    patch_size = normalize_pair(dims["patch_size"], "patch_size")
    hidden_dim = check_positive_int(dims["hidden_dim"], "hidden_dim")
    depth = check_positive_int(dims["depth"], "depth")
    num_heads = check_positive_int(dims["num_heads"], "num_heads")
    mlp_dim = check_positive_int(dims["mlp_dim"], "mlp_dim")
    channels = check_positive_int(channels, "channels")
    representation_size = _check_optional_positive_int(
        representation_size, "representation_size"
    )
    dropout = check_rate(dropout, "dropout")
    attention_dropout = check_rate(attention_dropout, "attention_dropout")
    drop_path_rate = check_rate(drop_path_rate, "drop_path_rate")
    if image_size[0] % patch_size[0] or image_size[1] % patch_size[1]:
        raise ValueError(
            "`image_size` must be divisible by `patch_size`. "
            f"Received: image_size={image_size}, patch_size={patch_size}"
        )
    if hidden_dim % num_heads:
        raise ValueError(
            "`hidden_dim` must be divisible by `num_heads`. "
            f"Received: hidden_dim={hidden_dim}, num_heads={num_heads}"
        )
    if tokenizer not in TOKENIZERS:
        raise ValueError(
            f"`tokenizer` must be one of {TOKENIZERS}. "
            f"Received: tokenizer={tokenizer!r}"
        )
    if tokenizer == "conv" and (
        patch_size[0] != patch_size[1]
        or patch_size[0] & (patch_size[0] - 1)
        or patch_size[0] < 2
    ):
        raise ValueError(
            '`tokenizer="conv"` needs a square patch size that is a power of '
            f"two (2, 4, 8, ...). Received: patch_size={patch_size}"
        )
    if not isinstance(locality_attention, bool):
        raise TypeError(
            "`locality_attention` must be a bool. "
            f"Received: locality_attention={locality_attention!r}"
        )
    if pooling not in _POOLINGS:
        raise ValueError(
            f"`pooling` must be one of {_POOLINGS}. "
            f"Received: pooling={pooling!r}"
        )
    if not isinstance(include_top, bool):
        raise TypeError(
            "`include_top` must be a bool. "
            f"Received: include_top={include_top!r}"
        )
    if class_names is not None:
        if num_classes is None and not isinstance(class_names, str):
            num_classes = len(class_names)
        class_names = check_class_names(class_names, num_classes)
    checkpoint = None
    headless = preset is not None and not preset.num_classes
    if preset is not None:
        if tokenizer != "patch":
            raise ValueError(
                "Pretrained checkpoints use the patch tokenizer. Received: "
                f"weights={weights!r} with tokenizer={tokenizer!r}"
            )
        weights = presets.preset_path(weights, progress=progress)
    if weights is not None:
        _check_weights_path(weights)
        if tokenizer != "patch":
            raise ValueError(
                "Pretrained checkpoints use the patch tokenizer. Received: "
                f"weights={os.fspath(weights)!r} with tokenizer={tokenizer!r}"
            )
        if not os.fspath(weights).endswith(".weights.h5"):
            # Read once: checkpoints of large variants run to gigabytes.
            checkpoint = checkpoints.read_checkpoint(weights)
            if representation_size is None:
                representation_size = checkpoints.representation_size(
                    checkpoint
                )
            headless = headless or not checkpoints.has_head(checkpoint)
    if num_classes is None and headless:
        # A backbone-only checkpoint: its features, not a head of zeros.
        include_top = False
    if num_classes is None:
        num_classes = 1000
    if include_top:
        num_classes = check_positive_int(num_classes, "num_classes")
    grid = (image_size[0] // patch_size[0], image_size[1] // patch_size[1])
    if name is None:
        name = (
            "vit"
            if variant is None
            else "vit_" + variant.lower().replace("/", "")
        )

    images = keras.Input(shape=(*image_size, channels), name="images")
    if tokenizer == "conv":
        x = ConvTokenizer(
            hidden_dim,
            num_layers=patch_size[0].bit_length() - 1,
            name="conv_tokenizer",
        )(images)
    elif tokenizer == "shifted_patch":
        x = ShiftedPatchExtractor(patch_size, name="patch_extractor")(images)
        x = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, name="patch_norm"
        )(x)
        x = PatchEmbedding(hidden_dim, name="patch_embedding")(x)
    else:
        x = PatchExtractor(patch_size, name="patch_extractor")(images)
        x = PatchEmbedding(hidden_dim, name="patch_embedding")(x)
    x = ClassToken(name="class_token")(x)
    x = PositionEmbedding(grid_size=grid, name="position_embedding")(x)
    x = keras.layers.Dropout(dropout, name="embedding_dropout")(x)
    for i in range(depth):
        block_rate = drop_path_rate * i / (depth - 1) if depth > 1 else 0.0
        x = TransformerEncoderBlock(
            num_heads=num_heads,
            mlp_dim=mlp_dim,
            dropout=dropout,
            attention_dropout=attention_dropout,
            drop_path_rate=block_rate,
            layer_norm_epsilon=layer_norm_epsilon,
            approximate_gelu=approximate_gelu,
            locality_attention=locality_attention,
            name=f"encoder_block_{i}",
        )(x)
    x = keras.layers.LayerNormalization(
        epsilon=layer_norm_epsilon, name="encoder_norm"
    )(x)
    if pooling == "sequence":
        x = SequencePooling(name="pooling")(x)
    else:
        x = TokenPooling(pooling, name="pooling")(x)
    if representation_size is not None:
        x = keras.layers.Dense(
            representation_size, activation="tanh", name="pre_logits"
        )(x)
    if include_top:
        # Logits in float32 keep the loss stable under mixed precision.
        head = dict(
            activation=classifier_activation,
            kernel_initializer="zeros",
            dtype=_head_dtype(),
            name="head",
        )
        if class_names is None:
            x = keras.layers.Dense(num_classes, **head)(x)
        else:
            x = ClassifierHead(num_classes, class_names=class_names, **head)(x)
    model = keras.Model(images, x, name=name)
    if checkpoint is not None:
        checkpoints.load_weights(model, checkpoint)
    elif weights is not None:
        model.load_weights(os.fspath(weights))
    return model


def _head_dtype():
    policy = keras.config.dtype_policy()
    if policy.compute_dtype != policy.variable_dtype:
        return "float32"
    return None


def _check_weights_path(weights):
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            "`weights` must be None or the path of a checkpoint file. "
            f"Received: weights={weights!r}"
        )
    path = os.fspath(weights)
    if not path.endswith(_WEIGHT_FORMATS):
        close = presets.close_names(path)
        hint = f" Close preset names: {', '.join(close)}." if close else ""
        raise ValueError(
            "`weights` must be a preset name from `keras_vit.list_presets()`"
            " or a .npz, .safetensors or .weights.h5 file. "
            f"Received: weights={path!r}.{hint}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No weights file at the given path. Received: weights={path!r}"
        )


def from_preset(name, num_classes=None, image_size=None, **kwargs):
    """Builds the model of a pretrained checkpoint, with its weights.

    `name` is a registered preset (`keras_vit.list_presets()`, downloaded
    once and cached) or the path of a checkpoint file: an original/AugReg
    `.npz`, a timm or Hugging Face `.safetensors` (the architecture is read
    from the arrays), or a `.keras` file of a `build_vit` model with the
    patch tokenizer.

    With no other argument the model is the checkpoint's, head included: an
    ImageNet-1k preset classifies into `keras_vit.preset_labels(name)`.
    Give `num_classes` for a new (zero-initialized) head to fine-tune, and
    `image_size` for another resolution (the position embedding is
    resized).

    Args:
        name: str. A preset name or a checkpoint path.
        num_classes: int or `None`. Classes of the head. Defaults to the
            checkpoint's; a checkpoint without a head then gives a model
            without one (`include_top=False`).
        image_size: int or tuple, or `None`. Defaults to the checkpoint's.
        **kwargs: further `build_vit` arguments (`dropout`,
            `drop_path_rate`, `include_top`, `classifier_activation`,
            `progress`, ...); `num_heads` for a `.safetensors` file whose
            size is no standard variant's.

    Returns:
        A `keras.Model` built by `build_vit`.

    Example (downloads the file once):

    ```python
    model = keras_vit.from_preset("vit_base_patch16_224.augreg2_in21k_ft_in1k")
    ```
    """
    checkpoint = read_pretrained(
        name,
        progress=kwargs.pop("progress", True),
        num_heads=kwargs.pop("num_heads", None),
    )
    model, _ = build_pretrained(
        checkpoint, num_classes=num_classes, image_size=image_size, **kwargs
    )
    return model


def read_pretrained(weights, progress=True, num_heads=None):
    """The arrays and architecture of a preset or a checkpoint file.

    `num_heads` is needed only for a timm/Hugging Face `.safetensors` file
    of a size that is no standard variant's (those files fuse the heads).

    A Hugging Face file's `config.json` and `preprocessor_config.json`
    beside it are read too (`keras_vit.checkpoints.settings_beside`): its
    LayerNorm epsilon and its evaluation transform.

    Returns:
        A dict: `arrays` (the `.npz`-layout arrays), `config` (as
        `keras_vit.checkpoints.checkpoint_config`, with the preset's
        dimensions for a preset, and `layer_norm_epsilon` where the file's
        config gives one), `preset` (the `Preset` or `None`), `source`
        (the name or path) and `transform` (the preset's or the file's
        `keras_vit.Transform`, or `None` when unknown).
    """
    from keras_vit.variants import decode_variant

    if isinstance(weights, str) and presets.is_preset(weights):
        preset = presets.get_preset(weights)
        path = presets.preset_path(weights, progress=progress)
        arrays = checkpoints.read_checkpoint(path)
        config = checkpoints.checkpoint_config(arrays)
        dims = decode_variant(preset.variant)
        config.update({k: dims[k] for k in _DIM_KEYS})
        return {
            "arrays": arrays,
            "config": config,
            "preset": preset,
            "source": weights,
            "transform": preset.transform,
        }
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            "Expected a preset name or the path of a checkpoint file. "
            f"Received: {weights!r}"
        )
    path = os.fspath(weights)
    if path.endswith(".keras"):
        from keras_vit.saving import load_model

        if not os.path.isfile(path):
            raise FileNotFoundError(f"No model file at {path!r}")
        trained = load_model(path)
        if "patch_embedding" not in {layer.name for layer in trained.layers}:
            raise ValueError(
                "Only ViTs with the patch tokenizer serve as pretrained "
                f"checkpoints. Received: {path!r}, a model without a "
                "patch_embedding layer"
            )
        arrays = checkpoints.model_arrays(trained)
    else:
        _check_weights_path(path)
        if path.endswith(".weights.h5"):
            raise ValueError(
                "A .weights.h5 file does not say which architecture it "
                "holds; use build_vit(..., weights=path) with that "
                f"architecture. Received: {path!r}"
            )
        arrays = checkpoints.read_checkpoint(path)
    config = checkpoints.checkpoint_config(arrays, num_heads=num_heads)
    if path.endswith(".keras"):
        from keras_vit.saving import transform_for

        beside = {"config": {}, "transform": transform_for(path)}
    else:
        beside = checkpoints.settings_beside(path)
    config.update(beside["config"])
    return {
        "arrays": arrays,
        "config": config,
        "preset": None,
        "source": path,
        "transform": beside["transform"],
    }


def build_pretrained(checkpoint, num_classes=None, image_size=None, **kwargs):
    """Builds a model for `read_pretrained`'s result and loads the arrays.

    `channels=` gives the model another number of image channels than the
    checkpoint's; its patch embedding is then adapted
    (`keras_vit.checkpoints.adapt_input_channels`).

    Returns:
        `(model, report)`, `report` as `keras_vit.load_weights` returns it.
    """
    config = checkpoint["config"]
    preset = checkpoint["preset"]
    if num_classes is None:
        num_classes = config["num_classes"]
        if not num_classes:
            kwargs.setdefault("include_top", False)
            num_classes = 1
        elif preset is not None:
            # An ImageNet-1k head keeps its names in the model file.
            kwargs.setdefault("class_names", presets.preset_labels(preset.name))
    if image_size is None:
        image_size = preset.image_size if preset else config["image_size"]
    if preset is not None:
        kwargs.setdefault(
            "name", "vit_" + preset.variant.lower().replace("/", "")
        )
    if "layer_norm_epsilon" in config:
        kwargs.setdefault("layer_norm_epsilon", config["layer_norm_epsilon"])
    model = build_vit(
        **{k: config[k] for k in _DIM_KEYS},
        image_size=image_size,
        channels=kwargs.pop("channels", config["channels"]),
        num_classes=num_classes,
        representation_size=config["representation_size"],
        **kwargs,
    )
    report = checkpoints.load_weights(model, checkpoint["arrays"])
    return model, report


def class_names(model):
    """The class names a model's head carries, or `None`.

    Models built with `class_names=` (and by `keras-vit train`, and
    ImageNet-1k presets) keep them in their `head`, also after saving.
    """
    try:
        head = model.get_layer("head")
    except ValueError:
        return None
    names = getattr(head, "class_names", None)
    return list(names) if names is not None else None


def outputs_probabilities(model):
    """Whether a model's head ends in a softmax (probabilities, not logits).

    `build_vit(classifier_activation="softmax")` builds such a model; the
    default head outputs logits. Training losses, `evaluate` and `predict`
    read this to avoid a second softmax.
    """
    try:
        head = model.get_layer("head")
    except ValueError:
        return False
    activation = getattr(head, "activation", None)
    return getattr(activation, "__name__", None) == "softmax"


# The layer names `build_vit` gives are the model's documented contract
# (see its docstring); `vit_config` is the one reader of it.
_BLOCK_KEYS = (
    "num_heads",
    "mlp_dim",
    "attention_dropout",
    "layer_norm_epsilon",
    "approximate_gelu",
    "locality_attention",
)


def vit_config(model):
    """The `build_vit` arguments of a model it built, read from the model.

    The contract between a model and everything that reads one (attention
    maps, checkpoint conversion, `keras-vit attention`): the layer names
    `build_vit` documents, read here and nowhere else. Works on a model just
    built and on one loaded from a `.keras` file; `build_vit(**config)`
    builds the same architecture again (without the trained weights).

    Returns:
        A dict of `build_vit` keyword arguments: `image_size`,
        `patch_size` (pairs), `channels`, `hidden_dim`, `depth`,
        `num_heads`, `mlp_dim`, `tokenizer`, `pooling`,
        `representation_size`, `include_top`, `num_classes`,
        `classifier_activation`, `class_names`, `dropout`,
        `attention_dropout`, `drop_path_rate`, `layer_norm_epsilon`,
        `approximate_gelu`, `locality_attention` and `name`.

    Raises:
        ValueError: `model` was not built by `build_vit`; the message names
            what is missing.
    """
    layers = {layer.name: layer for layer in getattr(model, "layers", ())}
    blocks = [
        layer
        for layer in layers.values()
        if isinstance(layer, TransformerEncoderBlock)
    ]
    missing = [
        n
        for n in ("class_token", "position_embedding", "pooling")
        if n not in layers
    ]
    if "patch_extractor" not in layers and "conv_tokenizer" not in layers:
        missing.append("patch_extractor or conv_tokenizer")
    if not blocks:
        missing.append("encoder_block_0")
    if missing:
        raise ValueError(
            "Expected a model built by `keras_vit.build_vit`. Received: "
            f"{getattr(model, 'name', model)!r}, without the layers "
            f"{', '.join(missing)}"
        )
    if "conv_tokenizer" in layers:
        tokenizer, extractor = "conv", layers["conv_tokenizer"]
    else:
        extractor = layers["patch_extractor"]
        tokenizer = (
            "shifted_patch"
            if isinstance(extractor, ShiftedPatchExtractor)
            else "patch"
        )
    first = blocks[0].get_config()
    pooling = layers["pooling"]
    head = layers.get("head")
    activation = getattr(getattr(head, "activation", None), "__name__", None)
    _, height, width, channels = model.input_shape
    return {
        "image_size": (height, width),
        "patch_size": tuple(extractor.patch_size),
        "channels": channels,
        "hidden_dim": int(layers["class_token"].output.shape[-1]),
        "depth": len(blocks),
        **{key: first[key] for key in _BLOCK_KEYS},
        "tokenizer": tokenizer,
        "pooling": (
            "sequence" if isinstance(pooling, SequencePooling) else pooling.mode
        ),
        "representation_size": (
            layers["pre_logits"].units if "pre_logits" in layers else None
        ),
        "include_top": head is not None,
        "num_classes": head.units if head is not None else None,
        "classifier_activation": (
            None if activation in (None, "linear") else activation
        ),
        "class_names": class_names(model),
        "dropout": float(layers["embedding_dropout"].rate),
        "drop_path_rate": float(blocks[-1].get_config()["drop_path_rate"]),
        "name": model.name,
    }
