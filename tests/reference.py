"""A NumPy Vision Transformer written from the equations, for comparison.

Nothing here calls keras_vit: weights are read from a model by layer name,
and every step is computed with plain NumPy in float64.
"""

import numpy as np
from scipy.special import erf


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def gelu_tanh(x):
    return (
        0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
    )


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def patches(images, ph, pw):
    """Loops over the grid; row-major patches, (row, col, channel) inside."""
    b, h, w, c = images.shape
    out = []
    for i in range(h // ph):
        for j in range(w // pw):
            block = images[:, i * ph : (i + 1) * ph, j * pw : (j + 1) * pw, :]
            out.append(block.reshape(b, ph * pw * c))
    return np.stack(out, axis=1)


def attention(x, w, temperature=None):
    """w: dict of query/key/value kernels (D, H, Dh), biases (H, Dh), output.

    With `temperature`, Locality Self-Attention: scores divided by it and
    each token's score for itself removed from the softmax.
    """
    q = (
        np.einsum("bnd,dhk->bhnk", x, w["query_kernel"])
        + w["query_bias"][None, :, None]
    )
    k = (
        np.einsum("bnd,dhk->bhnk", x, w["key_kernel"])
        + w["key_bias"][None, :, None]
    )
    v = (
        np.einsum("bnd,dhk->bhnk", x, w["value_kernel"])
        + w["value_bias"][None, :, None]
    )
    scale = np.sqrt(q.shape[-1]) if temperature is None else temperature
    scores = np.einsum("bhnk,bhmk->bhnm", q, k) / scale
    if temperature is not None:
        scores = np.where(np.eye(scores.shape[-1], dtype=bool), -np.inf, scores)
    weights = softmax(scores)
    context = np.einsum("bhnm,bhmk->bnhk", weights, v)
    out = np.einsum("bnhk,hkd->bnd", context, w["output_kernel"])
    return out + w["output_bias"], weights


def encoder_block(x, w, eps, approximate_gelu=False):
    act = gelu_tanh if approximate_gelu else gelu
    h, _ = attention(layer_norm(x, *w["attention_norm"], eps), w["attention"])
    x = x + h
    y = layer_norm(x, *w["mlp_norm"], eps)
    y = act(y @ w["dense_0"][0] + w["dense_0"][1])
    y = y @ w["dense_1"][0] + w["dense_1"][1]
    return x + y


ATTENTION_WEIGHT_NAMES = (
    "query_kernel",
    "query_bias",
    "key_kernel",
    "key_bias",
    "value_kernel",
    "value_bias",
    "output_kernel",
    "output_bias",
)


def _f64(variable):
    return np.asarray(variable.numpy(), dtype=np.float64)


def block_weights(block):
    """Reads an encoder block's weights by name into plain arrays."""
    attn = block.attention
    return {
        "attention_norm": (
            _f64(block.attention_norm.gamma),
            _f64(block.attention_norm.beta),
        ),
        "attention": {
            name: _f64(getattr(attn, name)) for name in ATTENTION_WEIGHT_NAMES
        },
        "mlp_norm": (_f64(block.mlp_norm.gamma), _f64(block.mlp_norm.beta)),
        "dense_0": (
            _f64(block.mlp.dense_0.kernel),
            _f64(block.mlp.dense_0.bias),
        ),
        "dense_1": (
            _f64(block.mlp.dense_1.kernel),
            _f64(block.mlp.dense_1.bias),
        ),
    }


def vit_forward(
    model, images, eps=1e-6, pooling="token", approximate_gelu=False
):
    """The whole forward pass of a `build_vit` model, step by step."""
    images = np.asarray(images, dtype=np.float64)
    ph, pw = model.get_layer("patch_extractor").patch_size
    x = patches(images, ph, pw)  # (B, N, P)
    embed = model.get_layer("patch_embedding")
    x = x @ _f64(embed.kernel) + _f64(embed.bias)  # (B, N, D)
    token = _f64(model.get_layer("class_token").token)
    x = np.concatenate([np.repeat(token, len(x), axis=0), x], axis=1)
    x = x + _f64(model.get_layer("position_embedding").embedding)
    i = 0
    while True:
        try:
            block = model.get_layer(f"encoder_block_{i}")
        except ValueError:
            break
        x = encoder_block(x, block_weights(block), eps, approximate_gelu)
        i += 1
    norm = model.get_layer("encoder_norm")
    x = layer_norm(x, _f64(norm.gamma), _f64(norm.beta), eps)
    x = x[:, 0] if pooling == "token" else x[:, 1:].mean(axis=1)
    names = [layer.name for layer in model.layers]
    if "pre_logits" in names:
        dense = model.get_layer("pre_logits")
        x = np.tanh(x @ _f64(dense.kernel) + _f64(dense.bias))
    if "head" in names:
        head = model.get_layer("head")
        x = x @ _f64(head.kernel) + _f64(head.bias)
    return x
