"""The layers of a Vision Transformer, one step of the model per layer."""

from keras_vit.layers.attention_pooling import AttentionPooling
from keras_vit.layers.class_token import ClassToken
from keras_vit.layers.classifier_head import ClassifierHead
from keras_vit.layers.conv_tokenizer import ConvTokenizer
from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.fused_layer_normalization import FusedLayerNormalization
from keras_vit.layers.layer_scale import LayerScale
from keras_vit.layers.mlp_block import MLPBlock
from keras_vit.layers.multi_head_self_attention import MultiHeadSelfAttention
from keras_vit.layers.patch_embedding import PatchEmbedding
from keras_vit.layers.patch_extractor import PatchExtractor
from keras_vit.layers.position_embedding import PositionEmbedding
from keras_vit.layers.position_embedding import resize_position_embedding
from keras_vit.layers.register_tokens import RegisterTokens
from keras_vit.layers.sequence_pooling import SequencePooling
from keras_vit.layers.shifted_patch_extractor import ShiftedPatchExtractor
from keras_vit.layers.token_grid import TokenGrid
from keras_vit.layers.token_pooling import TokenPooling
from keras_vit.layers.transformer_encoder_block import TransformerEncoderBlock

__all__ = [
    "AttentionPooling",
    "ClassToken",
    "ClassifierHead",
    "ConvTokenizer",
    "DropPath",
    "FusedLayerNormalization",
    "LayerScale",
    "MLPBlock",
    "MultiHeadSelfAttention",
    "PatchEmbedding",
    "PatchExtractor",
    "PositionEmbedding",
    "RegisterTokens",
    "SequencePooling",
    "ShiftedPatchExtractor",
    "TokenGrid",
    "TokenPooling",
    "TransformerEncoderBlock",
    "resize_position_embedding",
]
