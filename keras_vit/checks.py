"""Argument checks: the standard library only.

`keras_vit.config`, the layers and the command line share them; importing
them loads neither Keras nor TensorFlow.
"""


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


def check_class_names(class_names, units):
    """`class_names` as a list of `units` str; raises a clear error else."""
    if isinstance(class_names, str) or not all(
        isinstance(n, str) for n in class_names
    ):
        raise TypeError(
            "`class_names` must be a list of str. "
            f"Received: class_names={class_names!r}"
        )
    class_names = list(class_names)
    if len(class_names) != units:
        raise ValueError(
            f"`class_names` must name each of the {units} classes. "
            f"Received: {len(class_names)} names"
        )
    return class_names
