import keras

from keras_vit.activations import resolve_activation
from keras_vit.layers._utils import check_positive_int
from keras_vit.layers._utils import check_rate
from keras_vit.layers._utils import refreeze
from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.fused_layer_normalization import FusedLayerNormalization
from keras_vit.layers.layer_scale import LayerScale
from keras_vit.layers.mlp_block import MLPBlock
from keras_vit.layers.multi_head_self_attention import MultiHeadSelfAttention


@keras.saving.register_keras_serializable(package="keras_vit")
class TransformerEncoderBlock(keras.layers.Layer):
    """One pre-norm ViT encoder block.

    `x = x + DropPath(Dropout(MHSA(LayerNorm(x))))`, then
    `x = x + DropPath(MLP(LayerNorm(x)))` (each branch scaled by a
    `LayerScale` when `layer_scale` is given). Self-attention lets every token
    gather information from the tokens most similar to it; the MLP then
    transforms each token on its own. The two LayerNorms are
    `FusedLayerNormalization`s: Keras' LayerNorm, fused when training.

    Args:
        num_heads: int. Number of attention heads; must divide the width.
        mlp_dim: int. Width of the MLP's hidden layer.
        dropout: float. Dropout rate after the attention output and inside
            the MLP. Defaults to `0.0`.
        attention_dropout: float. Dropout rate on the attention weights.
            Defaults to `0.0`.
        drop_path_rate: float. Stochastic-depth rate of both residual
            branches. Defaults to `0.0` (no `DropPath` layer is created).
        layer_norm_epsilon: float. Epsilon of both LayerNorms. Defaults to
            `1e-6`.
        approximate_gelu: bool. Use the tanh approximation of GELU in the
            MLP. Defaults to `False` (exact erf form).
        locality_attention: bool. Locality Self-Attention: a learned
            softmax temperature and no attention of a token to itself (see
            `MultiHeadSelfAttention`'s `locality`). Defaults to `False`.
        seed: int or `None`. Seed of the stochastic-depth masks. Defaults to
            `None`.
        layer_scale: float or `None`. When given, both residual branches
            are scaled per channel by a learned `LayerScale` started at this
            value (DINOv2, DeiT III). Defaults to `None`.
        activation: str or `None`. The MLP's activation, `"gelu"`,
            `"gelu_approximate"` or `"quick_gelu"` (OpenAI's CLIP).
            Defaults to `None` (as `approximate_gelu` says).
        lora: dict or `None`. LoRA updates of the attention projections,
            `{"rank": int, "alpha": float or None, "mlp": bool}` (`mlp`:
            also the MLP's two layers); what a file saved after
            `keras_vit.lora.enable_lora` records. Defaults to `None`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: tensor `(batch_size, num_tokens, hidden_dim)`.
        training: bool. Whether dropout and stochastic depth are active.
        return_attention_scores: bool. Also return the attention weights
            `(batch_size, num_heads, num_tokens, num_tokens)`. Defaults to
            `False`.

    Input shape:
        `(batch_size, num_tokens, hidden_dim)`.

    Output shape:
        Same as the input (and the attention weights when requested).

    Example:

    >>> tokens = keras.random.uniform((2, 17, 64))
    >>> tuple(TransformerEncoderBlock(num_heads=4, mlp_dim=256)(tokens).shape)
    (2, 17, 64)
    """

    def __init__(
        self,
        num_heads,
        mlp_dim,
        dropout=0.0,
        attention_dropout=0.0,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-6,
        approximate_gelu=False,
        locality_attention=False,
        seed=None,
        layer_scale=None,
        activation=None,
        lora=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # LoRA of the attention (and MLP) projections, as a reloaded file
        # gives it: {"rank": r, "alpha": a or None, "mlp": bool}.
        lora = dict(lora or {})
        attention_lora = dict(
            lora_rank=lora.get("rank"), lora_alpha=lora.get("alpha")
        )
        self.num_heads = check_positive_int(num_heads, "num_heads")
        self.mlp_dim = check_positive_int(mlp_dim, "mlp_dim")
        self.dropout = check_rate(dropout, "dropout")
        self.attention_dropout = check_rate(
            attention_dropout, "attention_dropout"
        )
        self.drop_path_rate = check_rate(drop_path_rate, "drop_path_rate")
        if not isinstance(layer_norm_epsilon, (int, float)) or not (
            layer_norm_epsilon > 0
        ):
            raise ValueError(
                "`layer_norm_epsilon` must be a positive float. "
                f"Received: layer_norm_epsilon={layer_norm_epsilon!r}"
            )
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.activation = resolve_activation(activation, approximate_gelu)
        self.approximate_gelu = self.activation == "gelu_approximate"
        self.locality_attention = locality_attention
        self.seed = seed
        self.layer_scale = None if layer_scale is None else float(layer_scale)

        policy = self.dtype_policy
        self.attention_norm = FusedLayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="attention_norm"
        )
        self.attention = MultiHeadSelfAttention(
            self.num_heads,
            dropout=self.attention_dropout,
            locality=locality_attention,
            dtype=policy,
            name="attention",
            **attention_lora,
        )
        self.attention_output_dropout = keras.layers.Dropout(
            self.dropout, dtype=policy, name="attention_output_dropout"
        )
        self.mlp_norm = FusedLayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="mlp_norm"
        )
        self.mlp = MLPBlock(
            self.mlp_dim,
            dropout=self.dropout,
            activation=self.activation,
            dtype=policy,
            name="mlp",
            **(attention_lora if lora.get("mlp") else {}),
        )
        if self.layer_scale is None:
            self.attention_scale = self.mlp_scale = None
        else:
            self.attention_scale = LayerScale(
                self.layer_scale, dtype=policy, name="attention_scale"
            )
            self.mlp_scale = LayerScale(
                self.layer_scale, dtype=policy, name="mlp_scale"
            )
        # An identity instead of a rate-0 DropPath keeps `call` branch-free.
        self.drop_path = (
            DropPath(
                self.drop_path_rate, seed=seed, dtype=policy, name="drop_path"
            )
            if self.drop_path_rate > 0.0
            else keras.layers.Identity(dtype=policy, name="drop_path")
        )

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "`TransformerEncoderBlock` expects a sequence of shape "
                "(batch, num_tokens, hidden_dim) with a known hidden_dim. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        if input_shape[-1] % self.num_heads:
            raise ValueError(
                "`hidden_dim` must be divisible by `num_heads`. "
                f"Received: hidden_dim={input_shape[-1]}, "
                f"num_heads={self.num_heads}"
            )
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape)
        self.mlp_norm.build(input_shape)
        self.mlp.build(input_shape)
        if self.layer_scale is not None:
            self.attention_scale.build(input_shape)
            self.mlp_scale.build(input_shape)
        refreeze(self)  # a frozen layer loaded from a file

    def call(self, inputs, training=None, return_attention_scores=False):
        x, weights = self.attention(
            self.attention_norm(inputs, training=training),
            training=training,
            return_attention_scores=True,
        )
        x = self.attention_output_dropout(x, training=training)
        if self.attention_scale is not None:
            x = self.attention_scale(x)
        x = inputs + self.drop_path(x, training=training)  # (B, N, D)
        y = self.mlp(self.mlp_norm(x, training=training), training=training)
        if self.mlp_scale is not None:
            y = self.mlp_scale(y)
        outputs = x + self.drop_path(y, training=training)  # (B, N, D)
        if return_attention_scores:
            return outputs, weights
        return outputs

    def compute_output_shape(self, input_shape, return_attention_scores=False):
        return self.attention.compute_output_shape(
            input_shape, return_attention_scores=return_attention_scores
        )

    def compute_output_spec(
        self, inputs, training=None, return_attention_scores=False
    ):
        return self.attention.compute_output_spec(
            inputs, return_attention_scores=return_attention_scores
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "drop_path_rate": self.drop_path_rate,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "approximate_gelu": self.approximate_gelu,
                "locality_attention": self.locality_attention,
                "seed": self.seed,
            }
        )
        # Only when set: the files of models without them keep their configs.
        if self.layer_scale is not None:
            config["layer_scale"] = self.layer_scale
        if self.activation == "quick_gelu":
            config["activation"] = self.activation
        if self.attention.lora_rank:
            config["lora"] = {
                "rank": self.attention.lora_rank,
                "alpha": self.attention.lora_alpha,
                "mlp": bool(self.mlp.lora_rank),
            }
        return config
