"""GELU activations written so that every export path understands them.

TensorFlow's own `tf.nn.gelu` lowers the exact form to an `Erfc` op that
tf2onnx cannot convert, so the exact form is spelled out here with `erf`.
The TFLite converter fuses this pattern into its `GELU` builtin and tf2onnx
maps it to ONNX `Erf`.
"""

import math

import keras
from keras import ops

from keras_vit.config import ACTIVATIONS
from keras_vit.config import resolve_activation  # noqa: F401

_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


@keras.saving.register_keras_serializable(package="keras_vit")
def gelu(x):
    """Exact Gaussian error linear unit, `0.5 * x * (1 + erf(x / sqrt(2)))`.

    Args:
        x: tensor. Input.

    Returns:
        A tensor of the same shape and dtype as `x`.

    Example:

    >>> float(gelu(keras.ops.convert_to_tensor(1.0)))  # doctest: +ELLIPSIS
    0.841...
    """
    return 0.5 * x * (1.0 + ops.erf(x * _INV_SQRT_2))


@keras.saving.register_keras_serializable(package="keras_vit")
def gelu_approximate(x):
    """Tanh approximation of GELU, as in BERT and GPT-2.

    `0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3)))`.

    Args:
        x: tensor. Input.

    Returns:
        A tensor of the same shape and dtype as `x`.
    """
    inner = _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
    return 0.5 * x * (1.0 + ops.tanh(inner))


@keras.saving.register_keras_serializable(package="keras_vit")
def quick_gelu(x):
    """QuickGELU of OpenAI's CLIP, `x * sigmoid(1.702 * x)`.

    A sigmoid approximation of GELU; OpenAI's CLIP image towers were
    trained with it, so they compute their own outputs only with it.

    Args:
        x: tensor. Input.

    Returns:
        A tensor of the same shape and dtype as `x`.
    """
    return x * ops.sigmoid(1.702 * x)


# The MLP activations a model can use, by name (`keras_vit.config` lists
# the names without loading Keras).
_FUNCTIONS = {
    "gelu": gelu,
    "gelu_approximate": gelu_approximate,
    "quick_gelu": quick_gelu,
}
assert tuple(_FUNCTIONS) == ACTIVATIONS


def get_activation(name):
    """The MLP activation called `name`, one of `ACTIVATIONS`."""
    if name not in _FUNCTIONS:
        raise ValueError(
            f"`activation` must be one of {ACTIVATIONS}. "
            f"Received: activation={name!r}"
        )
    return _FUNCTIONS[name]


def get_gelu(approximate=False):
    """Returns the exact GELU, or its tanh approximation when `approximate`."""
    if not isinstance(approximate, bool):
        raise TypeError(
            "`approximate` must be a bool. "
            f"Received: approximate={approximate!r} "
            f"of type {type(approximate).__name__}"
        )
    return gelu_approximate if approximate else gelu
