"""`build_vit`: the Vision Transformer as a functional Keras model."""

import dataclasses
import os

import keras

from keras_vit import checkpoints
from keras_vit import presets
from keras_vit.activations import resolve_activation
from keras_vit.config import FAMILY_OPTIONS
from keras_vit.config import ViTConfig
from keras_vit.layers import AttentionPooling
from keras_vit.layers import ClassifierHead
from keras_vit.layers import ClassToken
from keras_vit.layers import ConvTokenizer
from keras_vit.layers import PatchEmbedding
from keras_vit.layers import PatchExtractor
from keras_vit.layers import PositionEmbedding
from keras_vit.layers import RegisterTokens
from keras_vit.layers import SequencePooling
from keras_vit.layers import ShiftedPatchExtractor
from keras_vit.layers import TokenPooling
from keras_vit.layers import TransformerEncoderBlock
from keras_vit.layers.classifier_head import check_class_names
from keras_vit.layers.classifier_head import class_names  # noqa: F401
from keras_vit.variants import decode_variant

# Used when neither a variant nor an explicit value is given: ViT-B/16.
_DEFAULTS = decode_variant("B/16")
_WEIGHT_FORMATS = (".npz", ".safetensors", ".weights.h5")
_DIM_KEYS = ("patch_size", "hidden_dim", "depth", "num_heads", "mlp_dim")


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
    activation=None,
    class_token=None,
    distillation_token=None,
    num_registers=None,
    class_token_position=None,
    layer_scale=None,
    pre_norm=None,
    dynamic_image_size=False,
):
    """Builds a Vision Transformer (Dosovitskiy et al., 2021).

    What it does: resolve a preset (`_resolve_preset`), make the checked
    configuration (`make_config`, a `keras_vit.ViTConfig`), assemble the
    graph (`assemble`) and load the weights.

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
            patch tokens, without the class token), `"sequence"`
            (`SequencePooling`: a learned softmax weighting of all tokens,
            as in Compact Convolutional Transformers) or `"map"`
            (`AttentionPooling`: one learned query attends to all tokens, as
            in SigLIP). Defaults to `"token"`.
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
        activation: `"gelu"`, `"gelu_approximate"` or `"quick_gelu"`
            (OpenAI's CLIP): the MLPs' activation. Defaults to `None`: the
            preset's, else GELU (`approximate_gelu` says which form).

        The family options below default to `None`: what the checkpoint
        (`weights`) holds, else off. See `keras_vit.ViTConfig`.

        class_token: bool. Prepend a learned class token (`class_token`).
            `False` for SigLIP, which pools by attention.
        distillation_token: bool. DeiT's distillation token after the class
            token (`distillation_token`), read by a second head
            (`head_dist`); the two heads are averaged (`head_average`), and
            without a head the two tokens' features.
        num_registers: int. Register tokens after the class token
            (`register_tokens`, DINOv2 "reg"), without position embedding.
        class_token_position: bool. Whether the position embedding has
            rows for the class/distillation token (`True`, the ViT's) or the
            patches only (`False`, DINOv2 with registers).
        layer_scale: float. A learned per-channel scale on both residual
            branches of every block, started at this value (DINOv2,
            DeiT III).
        pre_norm: bool. A LayerNorm (`pre_norm`) between the embeddings and
            the first block (CLIP).
        dynamic_image_size: bool. Take images of any size whose sides are
            multiples of the patch size (the input is `(None, None,
            channels)`): the position embedding, trained for `image_size`,
            is resampled in the graph with PyTorch's antialiased bicubic
            filter, as timm's `dynamic_img_size` models do. Defaults to
            `False`.

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
    options = dict(
        activation=activation,
        class_token=class_token,
        distillation_token=distillation_token,
        num_registers=num_registers,
        class_token_position=class_token_position,
        layer_scale=layer_scale,
        pre_norm=pre_norm,
    )
    preset, variant, image_size, num_classes, class_names = _resolve_preset(
        weights, variant, image_size, num_classes, class_names
    )
    if preset is not None:
        for key, value in preset.architecture.items():
            if key in options and options[key] is None:
                options[key] = value
        if layer_norm_epsilon == _DEFAULT_EPSILON:
            layer_norm_epsilon = preset.architecture.get(
                "layer_norm_epsilon", layer_norm_epsilon
            )
        if pooling == "token":
            pooling = preset.architecture.get("pooling", pooling)
    dims = _dimensions(
        variant,
        patch_size=patch_size,
        hidden_dim=hidden_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_dim=mlp_dim,
    )
    config_args = dict(
        image_size=224 if image_size is None else image_size,
        channels=channels,
        **dims,
        include_top=include_top,
        pooling=pooling,
        representation_size=representation_size,
        dropout=dropout,
        attention_dropout=attention_dropout,
        drop_path_rate=drop_path_rate,
        layer_norm_epsilon=layer_norm_epsilon,
        classifier_activation=classifier_activation,
        tokenizer=tokenizer,
        locality_attention=locality_attention,
        dynamic_image_size=dynamic_image_size,
        name=name or _default_name(variant),
    )
    activation = resolve_activation(options.pop("activation"), approximate_gelu)
    config_args.update(activation=activation)
    # Checked before any download: a wrong argument fails at once.
    make_config(config_args, options, num_classes, class_names, None)
    checkpoint, weights = _read_weights(weights, preset, tokenizer, progress)
    config = make_config(
        config_args, options, num_classes, class_names, checkpoint, preset
    )
    model = assemble(config)
    if checkpoint is not None:
        checkpoints.load_weights(model, checkpoint)
    elif weights is not None:
        model.load_weights(os.fspath(weights))
    return model


_DEFAULT_EPSILON = 1e-6


def _default_name(variant):
    return (
        "vit" if variant is None else "vit_" + variant.lower().replace("/", "")
    )


def _resolve_preset(weights, variant, image_size, num_classes, class_names):
    """A preset's variant, image size, classes and class names as defaults."""
    if not (isinstance(weights, str) and presets.is_preset(weights)):
        return None, variant, image_size, num_classes, class_names
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
    return preset, variant, image_size, num_classes, class_names


def _dimensions(variant, **overrides):
    """The variant's (or B/16's) dimensions with the explicit ones on top."""
    dims = dict(_DEFAULTS) if variant is None else decode_variant(variant)
    dims.update({k: v for k, v in overrides.items() if v is not None})
    return dims


def _read_weights(weights, preset, tokenizer, progress):
    """`(arrays or None, path or None)`: a preset downloaded, a file read."""
    if weights is None:
        return None, None
    shown = weights
    if preset is not None:
        weights = presets.preset_path(weights, progress=progress)
    else:
        _check_weights_path(weights)
        shown = os.fspath(weights)
    if tokenizer != "patch":
        raise ValueError(
            "Pretrained checkpoints use the patch tokenizer. Received: "
            f"weights={shown!r} with tokenizer={tokenizer!r}"
        )
    if os.fspath(weights).endswith(".weights.h5"):
        return None, weights
    # Read once: checkpoints of large variants run to gigabytes.
    return checkpoints.read_checkpoint(weights), weights


def make_config(
    args, options, num_classes, class_names, checkpoint, preset=None
):
    """The `ViTConfig` of `build_vit`'s arguments and a checkpoint's arrays.

    `options` are the family options (`None`: the checkpoint's, else off);
    a checkpoint also gives `representation_size` when not given, and a
    checkpoint or preset without a head and no `num_classes` give the
    features (`include_top=False`).
    """
    args = dict(args)
    found = {}
    if checkpoint is not None:
        found = checkpoints.family_options(checkpoint)
        if args["representation_size"] is None:
            args["representation_size"] = checkpoints.representation_size(
                checkpoint
            )
        if args["pooling"] == "token" and found.get("pooling"):
            args["pooling"] = found["pooling"]
    for key, value in options.items():
        args[key] = (
            found.get(key, _OPTION_DEFAULTS[key]) if value is None else value
        )
    headless = (preset is not None and not preset.num_classes) or (
        checkpoint is not None and not checkpoints.has_head(checkpoint)
    )
    if class_names is not None and num_classes is None:
        if not isinstance(class_names, str):
            num_classes = len(class_names)
    if num_classes is None and headless:
        # A backbone-only checkpoint: its features, not a head of zeros.
        args["include_top"] = False
    if num_classes is None:
        num_classes = 1000
    if not args["include_top"]:
        # The head is not built; its class count is only kept when valid.
        num_classes = num_classes if _is_count(num_classes) else None
        if class_names is not None and num_classes is not None:
            check_class_names(class_names, num_classes)
            class_names = None
    return ViTConfig(**args, num_classes=num_classes, class_names=class_names)


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


_OPTION_DEFAULTS = {
    f.name: f.default
    for f in dataclasses.fields(ViTConfig)
    if f.name in FAMILY_OPTIONS
}


def assemble(config):
    """The functional model of a `ViTConfig` (random initialization)."""
    if not isinstance(config, ViTConfig):
        config = ViTConfig.from_dict(dict(config))
    size = (None, None) if config.dynamic_image_size else config.image_size
    images = keras.Input(shape=(*size, config.channels), name="images")
    x = _tokens(config, images)  # (B, N, D)
    x = _embeddings(config, x, images)  # (B, prefix + N, D)
    for i in range(config.depth):
        x = TransformerEncoderBlock(**_block_args(config, i))(x)
    x = keras.layers.LayerNormalization(
        epsilon=config.layer_norm_epsilon, name="encoder_norm"
    )(x)
    return keras.Model(images, _pool_and_head(config, x), name=config.name)


def _tokens(config, images):
    """Images to a sequence of embedded patches."""
    if config.tokenizer == "conv":
        return ConvTokenizer(
            config.hidden_dim,
            num_layers=config.patch_size[0].bit_length() - 1,
            name="conv_tokenizer",
        )(images)
    if config.tokenizer == "shifted_patch":
        x = ShiftedPatchExtractor(config.patch_size, name="patch_extractor")(
            images
        )
        x = keras.layers.LayerNormalization(
            epsilon=config.layer_norm_epsilon, name="patch_norm"
        )(x)
    else:
        x = PatchExtractor(config.patch_size, name="patch_extractor")(images)
    return PatchEmbedding(config.hidden_dim, name="patch_embedding")(x)


def _embeddings(config, x, images):
    """Class/distillation tokens, position embedding, registers, pre-norm."""

    def prefix(x):
        # Prepended in turn: [class, distillation, patches].
        if config.distillation_token:
            x = ClassToken(name="distillation_token")(x)
        if config.class_token:
            x = ClassToken(name="class_token")(x)
        return x

    if config.class_token_position:
        x = prefix(x)
    if config.dynamic_image_size:
        # The table follows the images' size, resampled in the graph.
        x = PositionEmbedding(
            grid_size=config.grid_size,
            num_prefix_tokens=config.position_prefix_tokens,
            patch_size=config.patch_size,
            name="position_embedding",
        )(x, images=images)
    else:
        x = PositionEmbedding(
            grid_size=config.grid_size,
            num_prefix_tokens=config.position_prefix_tokens,
            name="position_embedding",
        )(x)
    if not config.class_token_position:
        x = prefix(x)
    if config.num_registers:
        x = RegisterTokens(
            config.num_registers,
            position=int(config.class_token) + int(config.distillation_token),
            name="register_tokens",
        )(x)
    x = keras.layers.Dropout(config.dropout, name="embedding_dropout")(x)
    if config.pre_norm:
        x = keras.layers.LayerNormalization(
            epsilon=config.layer_norm_epsilon, name="pre_norm"
        )(x)
    return x


def _block_args(config, i):
    depth = config.depth
    return dict(
        num_heads=config.num_heads,
        mlp_dim=config.mlp_dim,
        dropout=config.dropout,
        attention_dropout=config.attention_dropout,
        # Stochastic depth grows linearly from 0 in the first block.
        drop_path_rate=(
            config.drop_path_rate * i / (depth - 1) if depth > 1 else 0.0
        ),
        layer_norm_epsilon=config.layer_norm_epsilon,
        approximate_gelu=config.approximate_gelu,
        activation=config.activation,
        locality_attention=config.locality_attention,
        layer_scale=config.layer_scale,
        name=f"encoder_block_{i}",
    )


def _pool_and_head(config, x):
    """Pooling, the optional `pre_logits` layer and the head(s)."""
    if config.pooling == "sequence":
        pooled = SequencePooling(name="pooling")(x)
    elif config.pooling == "map":
        pooled = AttentionPooling(
            config.num_heads,
            config.mlp_dim,
            layer_norm_epsilon=config.layer_norm_epsilon,
            activation=config.activation,
            name="pooling",
        )(x)
    else:
        pooled = TokenPooling(
            config.pooling,
            num_prefix_tokens=config.num_prefix_tokens,
            name="pooling",
        )(x)
    if config.representation_size is not None:
        pooled = keras.layers.Dense(
            config.representation_size, activation="tanh", name="pre_logits"
        )(pooled)
    distilled = None
    if config.distillation_token:
        distilled = TokenPooling(
            "distillation",
            num_prefix_tokens=config.num_prefix_tokens,
            name="distillation_pooling",
        )(x)
    if not config.include_top:
        if distilled is None:
            return pooled
        # DeiT's features: the mean of its two tokens.
        return keras.layers.Average(name="features")([pooled, distilled])
    # Logits in float32 keep the loss stable under mixed precision.
    head = dict(
        activation=config.classifier_activation,
        kernel_initializer="zeros",
        dtype=_head_dtype(),
    )
    if config.class_names is None:
        outputs = keras.layers.Dense(config.num_classes, name="head", **head)(
            pooled
        )
    else:
        outputs = ClassifierHead(
            config.num_classes,
            class_names=list(config.class_names),
            name="head",
            **head,
        )(pooled)
    if distilled is None:
        return outputs
    second = keras.layers.Dense(config.num_classes, name="head_dist", **head)(
        distilled
    )
    # DeiT at inference: the class and distillation heads averaged.
    return keras.layers.Average(name="head_average")([outputs, second])


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
        config.update(preset.architecture)
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
        # What arrays cannot say, the model's own configuration does.
        own = vit_config(trained)
        kept = {
            "activation": own.activation,
            "layer_norm_epsilon": own.layer_norm_epsilon,
            "layer_scale": own.layer_scale,
        }
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

        beside = {"config": kept, "transform": transform_for(path)}
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
    for key in ("layer_norm_epsilon", "activation", *_OPTION_DEFAULTS):
        if config.get(key) is not None:
            kwargs.setdefault(key, config[key])
    if config.get("pooling"):
        kwargs.setdefault("pooling", config["pooling"])
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


def _check_layers(model, layers, blocks):
    """Raises naming the layers `build_vit` makes that `model` lacks."""
    missing = [n for n in ("position_embedding", "pooling") if n not in layers]
    if "patch_embedding" not in layers and "conv_tokenizer" not in layers:
        missing.append("patch_extractor or conv_tokenizer")
    if not blocks:
        missing.append("encoder_block_0")
    if missing:
        raise ValueError(
            "Expected a model built by `keras_vit.build_vit`. Received: "
            f"{getattr(model, 'name', model)!r}, without the layers "
            f"{', '.join(missing)}"
        )


def _tokenizer_and_pooling(layers):
    """`(tokenizer, its layer, pooling)` as `ViTConfig` names them."""
    if "conv_tokenizer" in layers:
        tokenizer, extractor = "conv", layers["conv_tokenizer"]
    else:
        extractor = layers["patch_extractor"]
        tokenizer = (
            "shifted_patch"
            if isinstance(extractor, ShiftedPatchExtractor)
            else "patch"
        )
    pooling = layers["pooling"]
    if isinstance(pooling, SequencePooling):
        mode = "sequence"
    elif isinstance(pooling, AttentionPooling):
        mode = "map"
    else:
        mode = pooling.mode
    return tokenizer, extractor, mode


def vit_config(model):
    """The `ViTConfig` of a model `build_vit` built, read from the model.

    The contract between a model and everything that reads one (attention
    maps, checkpoint conversion, `keras-vit attention`): the layer names
    `build_vit` documents, read here and nowhere else. Works on a model just
    built and on one loaded from a `.keras` file; `build_vit(**config)`
    (or `assemble(config)`) builds the same architecture again, without the
    trained weights.

    Returns:
        A `keras_vit.ViTConfig` (it unpacks like a dict of `build_vit`
        keyword arguments).

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
    _check_layers(model, layers, blocks)
    tokenizer, extractor, pooling_mode = _tokenizer_and_pooling(layers)
    first = blocks[0]
    head = layers.get("head")
    activation = getattr(getattr(head, "activation", None), "__name__", None)
    _, height, width, channels = model.input_shape
    positions = layers["position_embedding"]
    dynamic = getattr(positions, "patch_size", None) is not None
    if dynamic:
        # Any size at run time: the size the table was trained for.
        height = positions.grid_size[0] * positions.patch_size[0]
        width = positions.grid_size[1] * positions.patch_size[1]
    has_class = "class_token" in layers
    has_dist = "distillation_token" in layers
    registers = layers.get("register_tokens")
    return ViTConfig(
        image_size=(height, width),
        patch_size=tuple(extractor.patch_size),
        channels=channels,
        hidden_dim=int(layers["position_embedding"].output.shape[-1]),
        depth=len(blocks),
        num_heads=first.num_heads,
        mlp_dim=first.mlp_dim,
        attention_dropout=first.attention_dropout,
        layer_norm_epsilon=first.layer_norm_epsilon,
        activation=first.activation,
        locality_attention=first.locality_attention,
        layer_scale=first.layer_scale,
        tokenizer=tokenizer,
        pooling=pooling_mode,
        representation_size=(
            layers["pre_logits"].units if "pre_logits" in layers else None
        ),
        include_top=head is not None,
        num_classes=head.units if head is not None else None,
        classifier_activation=(
            None if activation in (None, "linear") else activation
        ),
        class_names=class_names(model),
        dropout=float(layers["embedding_dropout"].rate),
        drop_path_rate=float(blocks[-1].drop_path_rate),
        class_token=has_class,
        distillation_token=has_dist,
        num_registers=registers.num_tokens if registers is not None else 0,
        class_token_position=(
            layers["position_embedding"].num_prefix_tokens > 0
            or not (has_class or has_dist)
        ),
        pre_norm="pre_norm" in layers,
        dynamic_image_size=dynamic,
        name=model.name,
    )
