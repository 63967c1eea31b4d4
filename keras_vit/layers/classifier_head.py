import keras

from keras_vit.checks import check_class_names  # noqa: F401


@keras.saving.register_keras_serializable(package="keras_vit")
class ClassifierHead(keras.layers.Dense):
    """The classification head: a `Dense` layer that knows its class names.

    The names travel inside the `.keras` file (the layer's config), so a
    saved model says what its outputs mean: `keras_vit.class_names(model)`
    reads them, and `keras-vit predict` and `python -m export` use them when
    no labels file is given.

    Args:
        units: int. Number of classes.
        class_names: list of str, or `None`. One name per class.
        **kwargs: `keras.layers.Dense` arguments (`activation`,
            `kernel_initializer`, `name`, `dtype`, ...).

    Example:

    >>> head = ClassifierHead(2, class_names=["cat", "dog"])
    >>> head.class_names
    ['cat', 'dog']
    """

    def __init__(self, units, class_names=None, **kwargs):
        super().__init__(units, **kwargs)
        if class_names is not None:
            class_names = check_class_names(class_names, units)
        self.class_names = class_names

    def get_config(self):
        config = super().get_config()
        config["class_names"] = self.class_names
        return config


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
