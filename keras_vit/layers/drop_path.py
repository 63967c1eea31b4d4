import keras
from keras import ops

from keras_vit.layers._utils import check_rate


@keras.saving.register_keras_serializable(package="keras_vit")
class DropPath(keras.layers.Layer):
    """Stochastic depth: drops a residual branch for whole samples.

    During training each sample's branch output is zeroed with probability
    `rate` and kept ones are scaled by `1 / (1 - rate)`, so the expected
    output equals the input. The block then reduces to its identity
    shortcut for the dropped samples. At inference it is the identity.

    Args:
        rate: float in [0, 1). Probability of dropping a sample's branch.
        seed: int or `None`. Seed of the random masks. Defaults to `None`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: tensor whose first axis is the batch.
        training: bool. Drops only when `True`.

    Input shape:
        Any, batch first.

    Output shape:
        Same as the input.

    Example:

    >>> x = keras.ops.ones((4, 3, 2))
    >>> y = DropPath(0.5, seed=1)(x, training=True)
    >>> per_sample = keras.ops.convert_to_numpy(y).reshape(4, -1)
    >>> sorted({float(v) for v in per_sample.ravel()})  # Dropped or scaled.
    [0.0, 2.0]
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_rate(rate, "rate")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        # One draw per sample, broadcast over every other axis.
        mask_shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        noise = keras.random.uniform(
            mask_shape, seed=self.seed_generator, dtype=inputs.dtype
        )
        mask = ops.cast(noise < keep, inputs.dtype)
        return inputs * mask / ops.cast(keep, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
