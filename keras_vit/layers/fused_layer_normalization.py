import keras

from keras_vit import fused


@keras.saving.register_keras_serializable(package="keras_vit")
class FusedLayerNormalization(keras.layers.LayerNormalization):
    """Keras' `LayerNormalization` whose training pass is one fused kernel.

    Same arguments, weights (`gamma`, `beta`) and outputs as
    `keras.layers.LayerNormalization`. When called with `training=True` on
    the TensorFlow backend, a LayerNorm over the last axis with both a scale
    and an offset runs as `keras_vit.fused.layer_norm`: its forward and
    backward passes are each one XLA-compiled function instead of a dozen
    TensorFlow ops. Inference and every other case run Keras' own
    computation.

    Example:

    >>> tokens = keras.random.normal((2, 5, 8))
    >>> norm = FusedLayerNormalization(epsilon=1e-6)
    >>> tuple(norm(tokens, training=True).shape)
    (2, 5, 8)
    """

    def call(self, inputs, training=None):
        if fused.use_fused(training) and self._fusable(inputs):
            outputs = fused.layer_norm(
                inputs, self.gamma, self.beta, self.epsilon
            )
            return keras.ops.cast(outputs, self.compute_dtype)
        return super().call(inputs)

    def _fusable(self, inputs):
        if not self.center or not self.scale or self.rms_scaling:
            return False
        axes = [self.axis] if isinstance(self.axis, int) else list(self.axis)
        rank = len(inputs.shape)
        return [a % rank for a in axes] == [rank - 1]
