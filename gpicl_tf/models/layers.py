"""Reusable layers of the sequence learners (keras.layers / keras.ops only)."""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="gpicl_tf")
class TransformerBlock(layers.Layer):
    """Pre-LayerNorm causal Transformer block.

    x + MHA(LN(x)) with a causal mask, then x + MLP(LN(x)).

    Args:
        model_size: width N_M of the residual stream.
        num_heads: attention heads.
        key_size: size of each head's keys, queries and values.
        mlp_ratio: MLP width as a multiple of model_size (paper: 4).
        dropout: dropout rate after attention and MLP (0 = none).

    Example:
        >>> block = TransformerBlock(16, num_heads=2, key_size=8)
        >>> block(keras.ops.zeros((2, 5, 16))).shape
        (2, 5, 16)
    """

    def __init__(self, model_size: int, num_heads: int, key_size: int, mlp_ratio: int = 4,
                 dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.model_size, self.num_heads, self.key_size = model_size, num_heads, key_size
        self.mlp_ratio, self.dropout = mlp_ratio, dropout
        self.attention_norm = layers.LayerNormalization(epsilon=1e-5, name="attention_norm")
        self.attention = layers.MultiHeadAttention(num_heads, key_size, dropout=dropout,
                                                   name="self_attention")
        self.attention_dropout = layers.Dropout(dropout, name="attention_dropout")
        self.feedforward_norm = layers.LayerNormalization(epsilon=1e-5, name="feedforward_norm")
        self.feedforward_intermediate_dense = layers.Dense(
            mlp_ratio * model_size, activation="gelu", name="feedforward_intermediate_dense")
        self.feedforward_output_dense = layers.Dense(model_size, name="feedforward_output_dense")
        self.feedforward_dropout = layers.Dropout(dropout, name="feedforward_dropout")

    def build(self, input_shape):
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.feedforward_norm.build(input_shape)
        self.feedforward_intermediate_dense.build(input_shape)
        self.feedforward_output_dense.build(
            tuple(input_shape[:-1]) + (self.mlp_ratio * self.model_size,))
        self.built = True

    def call(self, x, training=None):
        h = self.attention_norm(x)                                   # (B, T, N_M)
        h = self.attention(h, h, use_causal_mask=True, training=training)
        x = x + self.attention_dropout(h, training=training)
        h = self.feedforward_norm(x)
        h = self.feedforward_intermediate_dense(h)                   # (B, T, 4 N_M)
        h = self.feedforward_output_dense(h)                         # (B, T, N_M)
        return x + self.feedforward_dropout(h, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "model_size": self.model_size,
                "num_heads": self.num_heads, "key_size": self.key_size,
                "mlp_ratio": self.mlp_ratio, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="gpicl_tf")
class TakeFeatures(layers.Layer):
    """Keeps the first `size` features of each token: x_j without the label part."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = size

    def call(self, tokens):
        return tokens[..., :self.size]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.size,)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def sequence_accuracy_parts(targets, logits):
    """Per-position correctness float32 (B, T) of argmax(logits) against targets."""
    predicted = ops.argmax(logits, axis=-1)
    return ops.cast(ops.equal(ops.cast(targets, predicted.dtype), predicted), "float32")
