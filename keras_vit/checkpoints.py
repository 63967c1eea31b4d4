"""Pretrained ViT checkpoints: the original `.npz` files and `.safetensors`.

`load_weights(model, path)` loads into a `build_vit` model:

- the `.npz` files of google-research/vision_transformer, original and
  AugReg releases (`embedding/kernel`, `cls`,
  `Transformer/posembed_input/pos_embedding`,
  `Transformer/encoderblock_{i}/...`, `Transformer/encoder_norm`,
  `pre_logits`, `head`);
- `.safetensors` state dicts of timm's `VisionTransformer` and of Hugging
  Face transformers' `ViTModel`/`ViTForImageClassification`.

Every format is first converted to the `.npz` names, whose layout equals
keras_vit's (per-head `(D, H, D/H)` attention kernels, `(p, p, C, D)` patch
kernel), then checked completely before any weight is assigned.
`save_npz(model, path)` writes that layout back.
"""

import logging
import os
import re
import zipfile
import zlib

import numpy as np

from keras_vit.layers import AttentionPooling
from keras_vit.layers import TransformerEncoderBlock
from keras_vit.layers.position_embedding import resize_position_embedding

logger = logging.getLogger(__name__)

FORMATS = (".npz", ".safetensors")
_BLOCK = "Transformer/encoderblock_{}/"


class CheckpointError(ValueError):
    """A checkpoint does not fit the model; nothing was loaded."""


# ---------------------------------------------------------------- reading


_DAMAGED = "a cut or damaged download? Delete it and download it again"


def _read_safetensors(path):
    """Every tensor of a `.safetensors` file as float32, by name.

    Read through the `safetensors` package: the file is memory-mapped and
    its header validated (JSON object, known dtypes, shapes matching the
    byte ranges, ranges covering the data exactly) before any tensor is
    read; tensors are then converted one at a time, so the file is never
    held twice. bfloat16 tensors are read through `ml_dtypes`.
    """
    import ml_dtypes
    from safetensors import SafetensorError
    from safetensors import safe_open

    numeric = (np.float64, np.float32, np.float16, ml_dtypes.bfloat16)
    tensors = {}
    try:
        with safe_open(path, framework="numpy") as f:
            for name in f.keys():
                array = f.get_tensor(name)
                if array.dtype.kind not in "iu" and array.dtype not in numeric:
                    raise CheckpointError(
                        f"Unsupported tensor dtype {array.dtype} for {name!r} "
                        f"in {path!r}; expected floating point or integer"
                    )
                tensors[name] = array.astype(np.float32)
    except (SafetensorError, TypeError, ValueError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(
            f"Cannot read {path!r} as a safetensors file: {error} ({_DAMAGED})"
        ) from None
    return tensors


def _read_npz(path):
    """Every array of a `.npz` file, by name; never runs pickled code."""
    try:
        # allow_pickle=False: a checkpoint must never run code when read.
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError) as error:
        raise CheckpointError(
            f"Cannot read {path!r} as a .npz archive: "
            f"{error or type(error).__name__} ({_DAMAGED})"
        ) from None
    except ValueError as error:  # pickled objects, a malformed array header
        raise CheckpointError(
            f"Cannot read {path!r} as a .npz checkpoint: {error}"
        ) from None
    bad = sorted(k for k, v in arrays.items() if v.dtype.kind not in "fiub")
    if bad:
        raise CheckpointError(
            f"{path!r} holds arrays that are not numbers: {bad[:5]}"
        )
    return arrays


def read_checkpoint(path):
    """The raw arrays of a `.npz` or `.safetensors` file, by name.

    Raises:
        FileNotFoundError: no file at `path`.
        CheckpointError: the file is damaged or not a checkpoint; the
            message names the file and what is wrong.
        ValueError: an extension other than `.npz` or `.safetensors`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No checkpoint file at the given path: {path!r}"
        )
    if path.endswith(".npz"):
        arrays = _read_npz(path)
        for prefix in ("opt/target/", "params/"):
            if any(k.startswith(prefix) for k in arrays):
                arrays = {
                    k[len(prefix) :]: v
                    for k, v in arrays.items()
                    if k.startswith(prefix)
                }
        return arrays
    if path.endswith(".safetensors"):
        return _read_safetensors(path)
    raise ValueError(
        f"Unknown checkpoint format; expected one of {', '.join(FORMATS)}. "
        f"Received: {path!r}"
    )


# ------------------------------------------------- other names -> npz names


def _split_heads_in(weight, num_heads):
    """PyTorch `(out, in)` -> `(in, H, out // H)`."""
    return weight.T.reshape(weight.shape[1], num_heads, -1)


def _block_indices(state, pattern):
    """Sorted block numbers in the names that match `pattern`."""
    return sorted(
        {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    )


def _from_timm(state, num_heads):
    out = {}
    conv = state.pop("patch_embed.proj.weight")  # (D, C, p, p)
    out["embedding/kernel"] = conv.transpose(2, 3, 1, 0)
    # CLIP's patch embedding has no bias (a LayerNorm follows it).
    out["embedding/bias"] = state.pop(
        "patch_embed.proj.bias", np.zeros(conv.shape[0], conv.dtype)
    )
    for timm_key, key in _TIMM_TOKENS:
        if timm_key in state:
            out[key] = state.pop(timm_key)
    out["Transformer/posembed_input/pos_embedding"] = state.pop("pos_embed")
    if "norm_pre.weight" in state:
        out["Transformer/pre_norm/scale"] = state.pop("norm_pre.weight")
        out["Transformer/pre_norm/bias"] = state.pop("norm_pre.bias")
    blocks = _block_indices(state, r"blocks\.(\d+)\.")
    for i in blocks:
        b, p = f"blocks.{i}.", _BLOCK.format(i)
        out[p + "LayerNorm_0/scale"] = state.pop(b + "norm1.weight")
        out[p + "LayerNorm_0/bias"] = state.pop(b + "norm1.bias")
        for r in (0, 1):
            gamma = state.pop(b + f"ls{r + 1}.gamma", None)
            if gamma is not None:
                out[p + f"LayerScale_{r}/scale"] = gamma
        qkv_w = np.split(state.pop(b + "attn.qkv.weight"), 3, axis=0)
        qkv_b = np.split(state.pop(b + "attn.qkv.bias"), 3, axis=0)
        for name, w, bias in zip(("query", "key", "value"), qkv_w, qkv_b):
            m = p + f"MultiHeadDotProductAttention_1/{name}/"
            out[m + "kernel"] = _split_heads_in(w, num_heads)
            out[m + "bias"] = bias.reshape(num_heads, -1)
        proj = state.pop(b + "attn.proj.weight")  # (D, H * Dh)
        m = p + "MultiHeadDotProductAttention_1/out/"
        out[m + "kernel"] = proj.T.reshape(num_heads, -1, proj.shape[0])
        out[m + "bias"] = state.pop(b + "attn.proj.bias")
        out[p + "LayerNorm_2/scale"] = state.pop(b + "norm2.weight")
        out[p + "LayerNorm_2/bias"] = state.pop(b + "norm2.bias")
        for r, fc in ((0, "fc1"), (1, "fc2")):
            out[p + f"MlpBlock_3/Dense_{r}/kernel"] = state.pop(
                b + f"mlp.{fc}.weight"
            ).T
            out[p + f"MlpBlock_3/Dense_{r}/bias"] = state.pop(
                b + f"mlp.{fc}.bias"
            )
    if "fc_norm.weight" in state:
        raise CheckpointError(
            "This timm checkpoint normalizes after average pooling (fc_norm); "
            "keras_vit, like the original ViT, normalizes before pooling."
        )
    out["Transformer/encoder_norm/scale"] = state.pop("norm.weight")
    out["Transformer/encoder_norm/bias"] = state.pop("norm.bias")
    if "attn_pool.latent" in state:
        out.update(_map_head_from_timm(state, num_heads))
    for name in ("head", "head_dist"):
        if f"{name}.weight" in state:
            out[f"{name}/kernel"] = state.pop(f"{name}.weight").T
            out[f"{name}/bias"] = state.pop(f"{name}.bias")
    out.update(state)  # Whatever is left is reported as unexpected.
    return out


# timm's extra tokens and their names here (big_vision's for registers).
_TIMM_TOKENS = (
    ("cls_token", "cls"),
    ("dist_token", "dist"),
    ("reg_token", "reg"),
)
_MAP = "MAPHead_0/"


def _map_head_from_timm(state, num_heads):
    """timm's `attn_pool` (SigLIP's MAP head) in big_vision's names."""
    out = {_MAP + "probe": state.pop("attn_pool.latent")}
    m = _MAP + "MultiHeadDotProductAttention_0/"
    query = state.pop("attn_pool.q.weight")
    out[m + "query/kernel"] = _split_heads_in(query, num_heads)
    out[m + "query/bias"] = state.pop("attn_pool.q.bias").reshape(num_heads, -1)
    key, value = np.split(state.pop("attn_pool.kv.weight"), 2, axis=0)
    key_bias, value_bias = np.split(state.pop("attn_pool.kv.bias"), 2)
    for name, w, bias in (("key", key, key_bias), ("value", value, value_bias)):
        out[m + f"{name}/kernel"] = _split_heads_in(w, num_heads)
        out[m + f"{name}/bias"] = bias.reshape(num_heads, -1)
    proj = state.pop("attn_pool.proj.weight")
    out[m + "out/kernel"] = proj.T.reshape(num_heads, -1, proj.shape[0])
    out[m + "out/bias"] = state.pop("attn_pool.proj.bias")
    out[_MAP + "LayerNorm_0/scale"] = state.pop("attn_pool.norm.weight")
    out[_MAP + "LayerNorm_0/bias"] = state.pop("attn_pool.norm.bias")
    for r, fc in ((0, "fc1"), (1, "fc2")):
        out[_MAP + f"MlpBlock_0/Dense_{r}/kernel"] = state.pop(
            f"attn_pool.mlp.{fc}.weight"
        ).T
        out[_MAP + f"MlpBlock_0/Dense_{r}/bias"] = state.pop(
            f"attn_pool.mlp.{fc}.bias"
        )
    return out


def _from_transformers(state, num_heads):
    state = {
        (k[len("vit.") :] if k.startswith("vit.") else k): v
        for k, v in state.items()
    }
    out = {}
    e = "embeddings."
    conv = state.pop(e + "patch_embeddings.projection.weight")
    out["embedding/kernel"] = conv.transpose(2, 3, 1, 0)
    out["embedding/bias"] = state.pop(e + "patch_embeddings.projection.bias")
    out["cls"] = state.pop(e + "cls_token")
    out["Transformer/posembed_input/pos_embedding"] = state.pop(
        e + "position_embeddings"
    )
    blocks = _block_indices(state, r"encoder\.layer\.(\d+)\.")
    for i in blocks:
        b, p = f"encoder.layer.{i}.", _BLOCK.format(i)
        out[p + "LayerNorm_0/scale"] = state.pop(b + "layernorm_before.weight")
        out[p + "LayerNorm_0/bias"] = state.pop(b + "layernorm_before.bias")
        for name in ("query", "key", "value"):
            m = p + f"MultiHeadDotProductAttention_1/{name}/"
            w = state.pop(b + f"attention.attention.{name}.weight")
            out[m + "kernel"] = _split_heads_in(w, num_heads)
            out[m + "bias"] = state.pop(
                b + f"attention.attention.{name}.bias"
            ).reshape(num_heads, -1)
        proj = state.pop(b + "attention.output.dense.weight")
        m = p + "MultiHeadDotProductAttention_1/out/"
        out[m + "kernel"] = proj.T.reshape(num_heads, -1, proj.shape[0])
        out[m + "bias"] = state.pop(b + "attention.output.dense.bias")
        out[p + "LayerNorm_2/scale"] = state.pop(b + "layernorm_after.weight")
        out[p + "LayerNorm_2/bias"] = state.pop(b + "layernorm_after.bias")
        for r, name in ((0, "intermediate.dense"), (1, "output.dense")):
            out[p + f"MlpBlock_3/Dense_{r}/kernel"] = state.pop(
                b + f"{name}.weight"
            ).T
            out[p + f"MlpBlock_3/Dense_{r}/bias"] = state.pop(
                b + f"{name}.bias"
            )
    out["Transformer/encoder_norm/scale"] = state.pop("layernorm.weight")
    out["Transformer/encoder_norm/bias"] = state.pop("layernorm.bias")
    if "pooler.dense.weight" in state:  # Dense + tanh on the class token.
        out["pre_logits/kernel"] = state.pop("pooler.dense.weight").T
        out["pre_logits/bias"] = state.pop("pooler.dense.bias")
    if "classifier.weight" in state:
        out["head/kernel"] = state.pop("classifier.weight").T
        out["head/bias"] = state.pop("classifier.bias")
    out.update(state)
    return out


def to_npz_layout(arrays, num_heads):
    """Converts timm or transformers names to the original `.npz` names."""
    arrays = dict(arrays)
    try:
        if "patch_embed.proj.weight" in arrays:
            return _from_timm(arrays, num_heads)
        if any(
            k.endswith("embeddings.patch_embeddings.projection.weight")
            for k in arrays
        ):
            return _from_transformers(arrays, num_heads)
    except KeyError as error:
        raise CheckpointError(
            f"The checkpoint lacks {error.args[0]!r}, which every ViT "
            "checkpoint of its kind holds."
        ) from None
    return _normalize_npz_names(arrays)


def _normalize_npz_names(arrays):
    """Maps big_vision's sub-module numbering to the original release's.

    big_vision numbers a block's modules LayerNorm_0, MultiHeadDot...
    Attention_0, LayerNorm_1, MlpBlock_0; the original release numbers them
    0, 1, 2, 3.
    """
    if not any(
        k.startswith("Transformer/encoderblock_") and "/MlpBlock_0/" in k
        for k in arrays
    ):
        return arrays
    renames = (
        (
            "/MultiHeadDotProductAttention_0/",
            "/MultiHeadDotProductAttention_1/",
        ),
        ("/MlpBlock_0/", "/MlpBlock_3/"),
        ("/LayerNorm_1/", "/LayerNorm_2/"),
    )
    out = {}
    for key, value in arrays.items():
        if key.startswith("Transformer/encoderblock_"):
            for old, new in renames:
                key = key.replace(old, new)
        out[key] = value
    return out


# ------------------------------------------------------------ the mapping


def model_layout(model):
    """`{npz_name: variable}` for every weight of a `build_vit` model."""
    names = {layer.name for layer in model.layers}
    required = ("patch_embedding", "position_embedding", "encoder_norm")
    absent = [n for n in required if n not in names]
    if absent:
        raise ValueError(
            "Expected a model built by `keras_vit.build_vit`. Received: a "
            f"model without the layers {absent}"
        )
    layout = {}
    embed = model.get_layer("patch_embedding")
    layout["embedding/kernel"] = embed.kernel
    layout["embedding/bias"] = embed.bias
    if "class_token" in names:
        layout["cls"] = model.get_layer("class_token").token
    if "distillation_token" in names:
        layout["dist"] = model.get_layer("distillation_token").token
    if "register_tokens" in names:
        layout["reg"] = model.get_layer("register_tokens").tokens
    layout["Transformer/posembed_input/pos_embedding"] = model.get_layer(
        "position_embedding"
    ).embedding
    if "pre_norm" in names:
        norm = model.get_layer("pre_norm")
        layout["Transformer/pre_norm/scale"] = norm.gamma
        layout["Transformer/pre_norm/bias"] = norm.beta
    for i, block in enumerate(_blocks(model)):
        p = _BLOCK.format(i)
        layout[p + "LayerNorm_0/scale"] = block.attention_norm.gamma
        layout[p + "LayerNorm_0/bias"] = block.attention_norm.beta
        if block.layer_scale is not None:
            layout[p + "LayerScale_0/scale"] = block.attention_scale.gamma
            layout[p + "LayerScale_1/scale"] = block.mlp_scale.gamma
        attention = block.attention
        for name in ("query", "key", "value", "output"):
            m = p + "MultiHeadDotProductAttention_1/"
            m += "out/" if name == "output" else f"{name}/"
            layout[m + "kernel"] = getattr(attention, f"{name}_kernel")
            layout[m + "bias"] = getattr(attention, f"{name}_bias")
        layout[p + "LayerNorm_2/scale"] = block.mlp_norm.gamma
        layout[p + "LayerNorm_2/bias"] = block.mlp_norm.beta
        for r, dense in enumerate((block.mlp.dense_0, block.mlp.dense_1)):
            layout[p + f"MlpBlock_3/Dense_{r}/kernel"] = dense.kernel
            layout[p + f"MlpBlock_3/Dense_{r}/bias"] = dense.bias
    norm = model.get_layer("encoder_norm")
    layout["Transformer/encoder_norm/scale"] = norm.gamma
    layout["Transformer/encoder_norm/bias"] = norm.beta
    pooling = model.get_layer("pooling")
    if isinstance(pooling, AttentionPooling):
        layout.update(_map_head_layout(pooling))
    for top in ("pre_logits", "head", "head_dist"):
        if top in names:
            dense = model.get_layer(top)
            layout[f"{top}/kernel"] = dense.kernel
            layout[f"{top}/bias"] = dense.bias
    return layout


def _map_head_layout(pooling):
    m = _MAP + "MultiHeadDotProductAttention_0/"
    layout = {_MAP + "probe": pooling.probe}
    for name in ("query", "key", "value", "output"):
        key = m + ("out/" if name == "output" else f"{name}/")
        layout[key + "kernel"] = getattr(pooling, f"{name}_kernel")
        layout[key + "bias"] = getattr(pooling, f"{name}_bias")
    layout[_MAP + "LayerNorm_0/scale"] = pooling.norm.gamma
    layout[_MAP + "LayerNorm_0/bias"] = pooling.norm.beta
    for r, dense in enumerate((pooling.mlp.dense_0, pooling.mlp.dense_1)):
        layout[_MAP + f"MlpBlock_0/Dense_{r}/kernel"] = dense.kernel
        layout[_MAP + f"MlpBlock_0/Dense_{r}/bias"] = dense.bias
    return layout


def _blocks(model):
    return [
        layer
        for layer in model.layers
        if isinstance(layer, TransformerEncoderBlock)
    ]


def _num_heads(model):
    blocks = _blocks(model)
    return blocks[0].num_heads if blocks else 1


def _arrays(checkpoint):
    """A checkpoint path, or the dict `read_checkpoint` already returned."""
    if isinstance(checkpoint, dict):
        return checkpoint, "The checkpoint"
    return read_checkpoint(
        checkpoint
    ), f"The checkpoint {os.fspath(checkpoint)!r}"


def representation_size(checkpoint):
    """Width of the checkpoint's `pre_logits` layer, or `None`.

    `checkpoint` is a path or the dict of arrays `read_checkpoint` returns.
    """
    arrays, _ = _arrays(checkpoint)
    for key in (
        "pre_logits/bias",
        "pooler.dense.bias",
        "vit.pooler.dense.bias",
    ):
        if key in arrays:
            return int(arrays[key].shape[-1])
    return None


_HEAD_KEYS = ("head/kernel", "head.weight", "classifier.weight")


def has_head(checkpoint):
    """Whether a checkpoint (path or arrays) holds a classification head."""
    arrays, _ = _arrays(checkpoint)
    return any(key.removeprefix("vit.") in _HEAD_KEYS for key in arrays)


def model_arrays(model):
    """A `build_vit` model's weights as NumPy arrays under the `.npz` names.

    The same dict `read_checkpoint` returns for a file, so a trained Keras
    model can serve as a checkpoint (`load_weights`, `checkpoint_config`).
    """
    arrays = {}
    for name, variable in model_layout(model).items():
        array = np.asarray(variable.numpy(), dtype=np.float32)
        if name == "embedding/kernel":
            # (p * p * C, D) -> the files' (p, p, C, D).
            ph, pw = model.get_layer("patch_extractor").patch_size
            array = array.reshape(ph, pw, -1, array.shape[-1])
        arrays[name] = array
    return arrays


def checkpoint_config(checkpoint, num_heads=None):
    """The `build_vit` arguments of the model a checkpoint holds.

    `checkpoint` is a path or the dict `read_checkpoint` returned. timm and
    Hugging Face files fuse the attention heads, so unless `num_heads` is
    given their head count is that of the ViT variant of the same width,
    depth and MLP width; for other sizes `num_heads` must be given.

    Returns:
        A dict: `patch_size`, `hidden_dim`, `depth`, `num_heads`, `mlp_dim`,
        `image_size`, `channels`, `num_classes` (0 without a head) and
        `representation_size`.

    Raises:
        CheckpointError: the arrays do not describe a ViT.
    """
    from keras_vit.variants import VARIANTS
    from keras_vit.variants import decode_variant

    raw, source = _arrays(checkpoint)
    fused = "patch_embed.proj.weight" in raw or any(
        k.endswith("embeddings.patch_embeddings.projection.weight") for k in raw
    )
    arrays = to_npz_layout(raw, 1)
    try:
        kernel = arrays["embedding/kernel"]
        positions = arrays["Transformer/posembed_input/pos_embedding"]
    except KeyError as error:
        raise CheckpointError(
            f"{source} holds no ViT patch embedding "
            f"({error.args[0]!r} is missing)."
        ) from None
    if kernel.ndim != 4 or kernel.shape[0] != kernel.shape[1]:
        raise CheckpointError(
            f"{source} has a patch kernel of shape "
            f"{kernel.shape}; expected (p, p, channels, width)."
        )
    patch, _, channels, hidden = (int(n) for n in kernel.shape)
    depth = len(_block_indices(arrays, r"Transformer/encoderblock_(\d+)/"))
    mlp_key = _BLOCK.format(0) + "MlpBlock_3/Dense_0/kernel"
    if not depth or mlp_key not in arrays:
        raise CheckpointError(f"{source} holds no encoder blocks.")
    mlp = int(arrays[mlp_key].shape[1])
    if num_heads is not None:
        heads = int(num_heads)
    elif fused:
        heads = None
        for variant in VARIANTS:
            dims = decode_variant(variant)
            if (dims["hidden_dim"], dims["depth"], dims["mlp_dim"]) == (
                hidden,
                depth,
                mlp,
            ):
                heads = dims["num_heads"]
                break
        if heads is None:
            raise CheckpointError(
                f"{source} fuses its attention heads and its size (width "
                f"{hidden}, {depth} blocks, MLP {mlp}) is no standard ViT "
                "variant's, so its head count is unknown; give num_heads "
                "(--num-heads on the command line)."
            )
    else:
        query = arrays[
            _BLOCK.format(0) + "MultiHeadDotProductAttention_1/query/kernel"
        ]
        heads = int(query.shape[1])
    family = _family_options(arrays, source)
    prefix = family["_position_prefix"]
    side = int(round((positions.shape[-2] - prefix) ** 0.5))
    head = arrays.get("head/kernel")
    family.pop("_position_prefix")
    return {
        **family,
        "patch_size": patch,
        "hidden_dim": hidden,
        "depth": depth,
        "num_heads": heads,
        "mlp_dim": mlp,
        "image_size": side * patch,
        "channels": channels,
        "num_classes": 0 if head is None else int(head.shape[-1]),
        "representation_size": representation_size(raw),
    }


def family_options(checkpoint):
    """The architecture options a checkpoint's arrays hold.

    Returns:
        A dict of `ViTConfig` fields: `class_token`, `distillation_token`,
        `num_registers`, `class_token_position`, `layer_scale` (its usual
        initial value when the file has LayerScale factors, else `None`),
        `pre_norm` and `pooling` (`"map"` for an attention-pooling head,
        else `None`: the caller's choice).
    """
    raw, source = _arrays(checkpoint)
    options = _family_options(to_npz_layout(raw, 1), source)
    options.pop("_position_prefix")
    return options


def _family_options(arrays, source):
    tokens = int("cls" in arrays) + int("dist" in arrays)
    registers = arrays.get("reg")
    positions = arrays.get("Transformer/posembed_input/pos_embedding")
    rows = 0 if positions is None else int(positions.shape[-2])

    def square(n):
        return n > 0 and int(round(n**0.5)) ** 2 == n

    # The position embedding covers the class (and distillation) token,
    # or, as with DINOv2's registers, the patches only.
    on_tokens = tokens > 0 and square(rows - tokens)
    if positions is not None and not on_tokens and not square(rows):
        raise CheckpointError(
            f"{source} has a position embedding of {rows} rows, which is no "
            f"square patch grid with or without its {tokens} prefix tokens."
        )
    return {
        "class_token": "cls" in arrays,
        "distillation_token": "dist" in arrays,
        "num_registers": 0 if registers is None else int(registers.shape[1]),
        "class_token_position": on_tokens or tokens == 0,
        "layer_scale": (
            1e-5 if _BLOCK.format(0) + "LayerScale_0/scale" in arrays else None
        ),
        "pre_norm": "Transformer/pre_norm/scale" in arrays,
        "pooling": "map" if _MAP + "probe" in arrays else None,
        "_position_prefix": tokens if on_tokens else 0,
    }


# Hugging Face image processors' `resample` codes (PIL's).
_RESAMPLE = {2: "bilinear", 3: "bicubic"}


def _read_json(path):
    import json

    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def settings_beside(path):
    """What a Hugging Face checkpoint's own files say beside it.

    From `config.json`: `layer_norm_eps` (transformers' ViT uses 1e-12,
    not the original 1e-6). From `preprocessor_config.json`: the
    evaluation transform (`image_mean`, `image_std`, `resample`, and a
    centre crop when `do_center_crop`). Files that are absent or not
    Hugging Face's give nothing.

    Returns:
        A dict: `config` (`{"layer_norm_epsilon": ...}` or empty) and
        `transform` (a `keras_vit.Transform` or `None`).
    """
    from keras_vit.transform import Transform

    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    config, transform = {}, None
    model_config = _read_json(os.path.join(folder, "config.json")) or {}
    eps = model_config.get("layer_norm_eps")
    if isinstance(eps, (int, float)) and eps > 0:
        config["layer_norm_epsilon"] = float(eps)
    processor = _read_json(os.path.join(folder, "preprocessor_config.json"))
    if processor:
        fields = {}
        for key, name in (("image_mean", "mean"), ("image_std", "std")):
            if processor.get(key) is not None:
                fields[name] = processor[key]
        fields["interpolation"] = _RESAMPLE.get(
            processor.get("resample"), "bilinear"
        )
        crop, size = processor.get("crop_size"), processor.get("size")
        if processor.get("do_center_crop") and crop and size:
            kept = crop.get("height") if isinstance(crop, dict) else crop
            edge = (
                size.get("shortest_edge") or size.get("height")
                if isinstance(size, dict)
                else size
            )
            if kept and edge and kept <= edge:
                fields.update(resize="crop", crop_pct=kept / edge)
        try:
            transform = Transform(**fields)
        except (TypeError, ValueError):
            transform = None
    return {"config": config, "transform": transform}


def _skip_heads(arrays, layout, report):
    """Leaves out of `arrays` and `layout` the heads that do not fit (a
    new head for other classes, a backbone-only checkpoint), each with its
    reason in `report["skipped"]`."""
    for key in ("head", "head_dist", "pre_logits"):
        kernel = arrays.get(f"{key}/kernel")
        if kernel is None:
            # A backbone-only checkpoint: the model's layer keeps its
            # initialization (a zero head, ready for fine-tuning).
            for part in ("kernel", "bias"):
                if layout.pop(f"{key}/{part}", None) is not None:
                    report["skipped"][f"{key}/{part}"] = (
                        "not in the checkpoint; kept as initialized"
                    )
            continue
        target = layout.get(f"{key}/kernel")
        if target is None:
            reason = f"the model has no {key} layer"
        elif tuple(target.shape) != kernel.shape:
            reason = (
                f"shape {kernel.shape} in the checkpoint, "
                f"{tuple(target.shape)} in the model"
            )
        else:
            continue
        for part in ("kernel", "bias"):
            arrays.pop(f"{key}/{part}", None)
            layout.pop(f"{key}/{part}", None)
            report["skipped"][f"{key}/{part}"] = reason


def load_weights(model, checkpoint, resize_method=None):
    """Loads a pretrained ViT checkpoint into a `build_vit` model.

    The whole checkpoint is converted and checked before any weight is
    assigned: on an error the model is unchanged.

    - A head whose class count differs from the model's, or any head when
      the model has none (`include_top=False`), is not loaded (reported).
      So is a `pre_logits` layer the model does not have. A head or
      `pre_logits` layer the checkpoint lacks (backbone-only checkpoints)
      keeps its initialization (reported).
    - A patch embedding for another number of image channels is adapted
      to the model's (`adapt_input_channels`, as timm's
      `adapt_input_conv`): one channel from RGB sums the RGB kernels; N
      channels repeat the checkpoint's and rescale them (reported).
    - A position embedding for another patch grid is resized over the grid
      as timm resamples the same file: a timm `.safetensors` file with
      PyTorch's antialiased bicubic filter (timm's `resample_abs_pos_embed`),
      an `.npz` or Hugging Face file bilinearly with half-pixel centres
      (timm's `.npz` loader); `resize_method="bilinear"` or `"bicubic"`
      chooses Keras' filter without antialiasing instead. The class-token
      row is kept. The checkpoint's grid must be square; the model's may
      not be.
    - A missing weight, an unexpected one, or a shape that differs raises
      `CheckpointError` naming the key and both shapes.

    Args:
        model: a `keras.Model` built by `keras_vit.build_vit`.
        checkpoint: str. A `.npz` (original or AugReg layout) or
            `.safetensors` (timm or Hugging Face transformers) file; or the
            dict of arrays `read_checkpoint` returned for one.
        resize_method: `None` (as timm, above), `"bilinear"` or
            `"bicubic"`. Defaults to `None`.

    Returns:
        A dict: `loaded` (list of names), `skipped` (`{name: reason}`),
        `resized` (`{name: [old_shape, new_shape]}`) and `adapted`
        (`{name: [checkpoint_channels, model_channels]}`).
    """
    if resize_method not in (None, "bilinear", "bicubic"):
        raise ValueError(
            "`resize_method` must be None, 'bilinear' or 'bicubic'. "
            f"Received: resize_method={resize_method!r}"
        )
    layout = model_layout(model)
    raw, source = _arrays(checkpoint)
    antialias = False
    if resize_method is None:
        antialias = "patch_embed.proj.weight" in raw  # timm's layout
        resize_method = "bicubic" if antialias else "bilinear"
    arrays = to_npz_layout(raw, _num_heads(model))
    report = {"loaded": [], "skipped": {}, "resized": {}, "adapted": {}}
    assignments, problems = [], []

    _skip_heads(arrays, layout, report)

    for name, variable in layout.items():
        if name not in arrays:
            problems.append(
                f"missing key {name!r} (model shape {tuple(variable.shape)})"
            )
            continue
        array = np.asarray(arrays.pop(name), dtype=np.float32)
        target = tuple(variable.shape)
        if name == "embedding/kernel":
            array, adapted = _fit_patch_kernel(model, array, target)
            if adapted:
                report["adapted"][name] = adapted
        if name in ("cls", "dist") and array.ndim == 1:
            array = array.reshape(target)
        if name.endswith("pos_embedding") and array.shape != target:
            array, resized = _resize_positions(
                model, array, target, resize_method, antialias
            )
            if resized:
                report["resized"][name] = [list(resized), list(target)]
        if array.shape != target:
            problems.append(
                f"shape mismatch for {name!r}: checkpoint {array.shape}, "
                f"model {target}"
            )
            continue
        assignments.append((variable, array))
        report["loaded"].append(name)
    if arrays:
        listed = ", ".join(repr(k) for k in sorted(arrays)[:5])
        more = f" and {len(arrays) - 5} more" if len(arrays) > 5 else ""
        problems.append(f"unexpected keys {listed}{more}")
    if problems:
        raise CheckpointError(
            f"{source} does not fit the model; "
            f"nothing was loaded: {'; '.join(problems[:6])}"
            + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        )
    for variable, array in assignments:
        variable.assign(array.astype(variable.dtype))
    for name, reason in report["skipped"].items():
        logger.info("Not loaded: %s (%s)", name, reason)
    return report


def adapt_input_channels(kernel, channels):
    """A `(p, p, C, D)` patch kernel for images of `channels` channels.

    As timm's `adapt_input_conv`: to one channel, the sum over the
    checkpoint's channels (a gray image seen as equal R, G and B gives the
    same embedding); to N channels, the checkpoint's repeated until there
    are N, scaled by `C / N` so that the embedding keeps its magnitude
    (multispectral images).
    """
    kernel = np.asarray(kernel, dtype=np.float32)
    have = kernel.shape[2]
    if channels == have:
        return kernel
    if channels == 1:
        return kernel.sum(axis=2, keepdims=True)
    repeats = -(-channels // have)
    tiled = np.concatenate([kernel] * repeats, axis=2)[:, :, :channels]
    return tiled * (have / channels)


def _fit_patch_kernel(model, array, target):
    """The checkpoint's patch kernel in the model's `(p * p * C, D)` shape,
    adapted to the model's channels; `(array, [from, to] or None)`."""
    if array.size == np.prod(target):
        return array.reshape(target), None  # (p, p, C, D) -> (p * p * C, D)
    extractor = model.get_layer("patch_extractor")
    ph, pw = extractor.patch_size
    if array.ndim != 4 or array.shape[:2] != (ph, pw):
        return array, None  # a mismatch, reported as such
    if array.shape[3] != target[1] or target[0] % (ph * pw):
        return array, None
    channels = target[0] // (ph * pw)
    adapted = adapt_input_channels(array, channels)
    return adapted.reshape(target), [int(array.shape[2]), int(channels)]


def _resize_positions(model, array, target, method, antialias=False):
    """Resizes a position table to the model's grid, if it is a grid."""
    layer = model.get_layer("position_embedding")
    prefix = layer.num_prefix_tokens
    if array.ndim != 3 or array.shape[-1] != target[-1]:
        return array, None
    patches = array.shape[1] - prefix
    side = int(round(patches**0.5))
    if side * side != patches:
        return array, None
    grid = layer.grid_size
    if grid is None:
        grid = (int(round((target[1] - prefix) ** 0.5)),) * 2
    resized = resize_position_embedding(
        array,
        (side, side),
        grid,
        num_prefix_tokens=prefix,
        method=method,
        antialias=antialias,
    )
    return resized, array.shape


def _check_npz_layout(model):
    """The `.npz` layout is the original ViT's: patches, a linear embedding."""
    names = {layer.name for layer in getattr(model, "layers", ())}
    tokenizer = None
    if "conv_tokenizer" in names:
        tokenizer = "conv"
    elif "patch_norm" in names:
        tokenizer = "shifted_patch"
    if tokenizer:
        raise ValueError(
            "The .npz layout holds ViTs with the patch tokenizer only (the "
            f"original checkpoints' layout); this model has "
            f"tokenizer={tokenizer!r}. Save it as a .keras file instead: "
            "model.save('model.keras')"
        )


def save_npz(model, path, overwrite=False):
    """Writes a `build_vit` model's weights in the original `.npz` layout.

    The file loads back with `load_weights` (exactly) and in other tools that
    read the original ViT checkpoints. The write is atomic.

    Args:
        model: a `keras.Model` built by `keras_vit.build_vit`.
        path: str. The `.npz` file to write.
        overwrite: bool. Replace an existing file. Defaults to `False`.
    """
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise ValueError(f"The path must end in .npz. Received: {path!r}")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path!r} exists; pass overwrite=True to replace it"
        )
    _check_npz_layout(model)
    arrays = model_arrays(model)
    from keras_vit.files import atomic_path

    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
