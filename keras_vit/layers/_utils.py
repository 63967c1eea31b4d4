"""Argument checks shared by the layers and the model builder."""

import keras

# The argument checks are the standard library's (`keras_vit.checks`): the
# configuration and the command line use them without loading Keras.
from keras_vit.checks import check_class_names  # noqa: F401
from keras_vit.checks import check_non_negative_int  # noqa: F401
from keras_vit.checks import check_positive_int  # noqa: F401
from keras_vit.checks import check_rate  # noqa: F401
from keras_vit.checks import normalize_pair  # noqa: F401


def fresh_initializer(initializer):
    """A new instance of `initializer`, for one more weight.

    A Keras random initializer without a seed draws its seed once, when it
    is made: the same instance used for two weights gives both the same
    values (a block's query, key, value and output kernels would start
    equal). Each weight gets its own instance; one with an explicit seed
    still repeats its values, as in Keras' own layers.
    """
    if isinstance(initializer, keras.initializers.Initializer):
        return initializer.__class__.from_config(initializer.get_config())
    return initializer


def refreeze(layer):
    """Applies `trainable=False` to sublayers a frozen layer just built.

    A layer loaded from a file with `trainable=False` gets the flag before
    its `build` creates its sublayers' variables, which are then trainable;
    and Keras' setter does nothing when the value does not change. Setting
    the flag again, through `True`, reaches every sublayer and variable.
    """
    if not layer.trainable:
        layer.trainable = True
        layer.trainable = False
