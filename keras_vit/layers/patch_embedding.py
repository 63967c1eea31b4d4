import keras
from keras import ops

from keras_vit.layers._utils import check_positive_int


@keras.saving.register_keras_serializable(package="keras_vit")
class PatchEmbedding(keras.layers.Layer):
    """Embeds each flattened patch with one linear map (weights and bias).

    This is the "embedding layer" of ViT: a learned projection of every
    `ph * pw * C` patch vector to the model width `hidden_dim`. Nothing but
    the final classification loss trains it; its gradient flows back through
    the encoder to here.

    Args:
        hidden_dim: int. Width `D` of the embedded patches.
        kernel_initializer: initializer for the `(patch_dim, hidden_dim)`
            kernel. Defaults to `"lecun_normal"`, the initializer of the
            original ViT patch projection.
        bias_initializer: initializer for the bias. Defaults to `"zeros"`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        `(batch_size, num_patches, patch_dim)`.

    Output shape:
        `(batch_size, num_patches, hidden_dim)`.

    Example:

    >>> patches = keras.random.uniform((2, 16, 192))
    >>> tuple(PatchEmbedding(64)(patches).shape)
    (2, 16, 64)
    """

    def __init__(
        self,
        hidden_dim,
        kernel_initializer="lecun_normal",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = check_positive_int(hidden_dim, "hidden_dim")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "`PatchEmbedding` expects flattened patches of shape "
                "(batch, num_patches, patch_dim) with a known patch_dim. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_shape[-1], self.hidden_dim),
            initializer=self.kernel_initializer,
        )
        self.bias = self.add_weight(
            name="bias",
            shape=(self.hidden_dim,),
            initializer=self.bias_initializer,
        )

    def call(self, inputs):
        # (B, N, P) @ (P, D) + (D,) -> (B, N, D)
        return ops.matmul(inputs, self.kernel) + self.bias

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config
