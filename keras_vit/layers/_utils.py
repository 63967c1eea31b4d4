"""Argument checks shared by the layers and the model builder."""

import keras


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


def normalize_pair(value, name):
    """Returns `value` as a `(height, width)` tuple of positive ints.

    Accepts an int (used for both sides) or a sequence of two ints.
    """
    if isinstance(value, bool):
        raise TypeError(
            f"`{name}` must be an int or a tuple of two ints. "
            f"Received: {name}={value!r}"
        )
    if isinstance(value, int):
        pair = (value, value)
    elif (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(
            f"`{name}` must be an int or a tuple of two ints. "
            f"Received: {name}={value!r}"
        )
    if pair[0] <= 0 or pair[1] <= 0:
        raise ValueError(
            f"`{name}` must be positive. Received: {name}={value!r}"
        )
    return pair


def check_positive_int(value, name):
    """Returns `value` as an int, raising when it is not a positive int."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"`{name}` must be a positive int. Received: {name}={value!r}"
        )
    if value <= 0:
        raise ValueError(
            f"`{name}` must be a positive int. Received: {name}={value!r}"
        )
    return int(value)


def check_non_negative_int(value, name):
    """Returns `value` as an int, raising when it is not an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"`{name}` must be a non-negative int. Received: {name}={value!r}"
        )
    return int(value)


def check_rate(value, name):
    """Returns `value` as a float in [0, 1), raising otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"`{name}` must be a float in [0, 1). Received: {name}={value!r}"
        )
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"`{name}` must be in [0, 1). Received: {name}={value!r}"
        )
    return float(value)


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
