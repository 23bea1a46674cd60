"""The parts of the cell backbone (`gpicl_tf.models.cell`): its layer, its norms and
the features each cell token is embedded from.

Axes as in `gpicl_tf.models.cell`: B tables, R rows, C columns, T = C + 1 tokens a
row, E the width, F the numbers a cell is embedded from.

The architecture options of the 2026 small-compute recipe (issue 38) live here,
each off by default so that a model built without them is the released one:
RMSNorm instead of LayerNorm (`make_norm`), a residual branch scale per layer
(`CellBlock(residual_scale=...)`), radial-basis scalar features (`cell_features`)
and feature grouping (`group_features`).

Example:
    >>> z = keras.ops.zeros((1, 3, 4))
    >>> tuple(cell_features(z, z, "rbf", 8, 6.0).shape)      # value, 8 RBFs, flag
    (1, 3, 4, 10)
    >>> tuple(group_features(keras.ops.zeros((1, 3, 4, 2)), (1, 3)).shape)
    (1, 3, 4, 6)
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from gpicl_tf.errors import InvalidInputError

NORMS = ("layer", "rms")
SCALAR_EMBEDDINGS = ("linear", "rbf")
DECODERS = ("label", "mean")


def check_cell_options(feature_groups, thinking_rows, norm, residual_decay,
                       scalar_embedding, rbf_centers, decoder) -> None:
    """Raises InvalidInputError naming the first recipe option the backbone cannot use."""
    shifts = tuple(feature_groups)
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shifts) or \
            len(set(shifts)) != len(shifts):
        raise InvalidInputError(f"cell.feature_groups={feature_groups!r} must be distinct "
                                "integers >= 1 (column shifts; the column itself is implied)")
    if isinstance(thinking_rows, bool) or not isinstance(thinking_rows, int) or thinking_rows < 0:
        raise InvalidInputError(f"cell.thinking_rows={thinking_rows!r} must be an integer >= 0")
    for name, value, choices in (("norm", norm, NORMS),
                                 ("scalar_embedding", scalar_embedding, SCALAR_EMBEDDINGS),
                                 ("decoder", decoder, DECODERS)):
        if value not in choices:
            raise InvalidInputError(f"cell.{name}={value!r} must be one of {choices}")
    if isinstance(residual_decay, bool) or not isinstance(residual_decay, (int, float)) or \
            not 0.0 < residual_decay <= 1.0:
        raise InvalidInputError(f"cell.residual_decay={residual_decay!r} must be in (0, 1]")
    if isinstance(rbf_centers, bool) or not isinstance(rbf_centers, int) or rbf_centers < 2:
        raise InvalidInputError(f"cell.rbf_centers={rbf_centers!r} must be an integer >= 2")


def make_norm(kind: str, name: str) -> layers.Layer:
    """LayerNorm ("layer", the released models') or RMSNorm ("rms"), epsilon 1e-5."""
    if kind == "rms":
        return layers.RMSNormalization(epsilon=1e-5, name=name)
    return layers.LayerNormalization(epsilon=1e-5, name=name)


def cell_features(z, flags, scalar_embedding: str, rbf_centers: int, clip: float):
    """The numbers each cell is embedded from.

    Args:
        z: (B, R, C) float32 standardised, clipped values (0 where missing).
        flags: (B, R, C) float32 missing flags.
        scalar_embedding: "linear": (value, flag), F = 2, the released models';
            "rbf": (value, `rbf_centers` Gaussian bumps, flag), F = rbf_centers + 2,
            the bumps centred evenly on [-clip, clip], each as wide as their spacing
            (LimiX), all 0 for a missing cell.
        rbf_centers: K, the bumps of "rbf".
        clip: the range of z.

    Returns:
        (B, R, C, F) float32.
    """
    if scalar_embedding == "linear":
        return ops.stack([z, flags], axis=-1)
    centers = np.linspace(-clip, clip, rbf_centers).astype("float32")
    width = float(centers[1] - centers[0])
    bumps = ops.exp(-ops.square((z[..., None] - centers) / width))       # (B, R, C, K)
    bumps = bumps * (1.0 - flags)[..., None]
    return ops.concatenate([z[..., None], bumps, flags[..., None]], axis=-1)


def group_features(features, shifts):
    """Feature grouping: each column's features with those of the columns `shifts`
    places further along (cyclically), side by side.

    Args:
        features: (B, R, C, F).
        shifts: column offsets, e.g. (1, 3, 7, 15); () returns `features`.

    Returns:
        (B, R, C, F * (1 + len(shifts))): column j holds columns j, j + s_1, ...
        (mod C), so a cyclic shift of the columns shifts the groups with them.
    """
    if not shifts:
        return features
    c = ops.shape(features)[2]
    columns = ops.arange(c)
    parts = [features] + [ops.take(features, ops.mod(columns + s, c), axis=2) for s in shifts]
    return ops.concatenate(parts, axis=-1)


@keras.saving.register_keras_serializable(package="gpicl_tf")
class CellBlock(layers.Layer):
    """One cell layer: attention across a row's tokens, across a column's rows, MLP.

    Pre-norm residual blocks. Input and output (B, R, T, E); the first
    `num_context` rows are the ones every row attends to (the training rows, and
    the thinking rows before them where the model has some).

    Args:
        model_size: E.
        num_heads: attention heads (each of size E / num_heads).
        mlp_ratio: MLP width as a multiple of E.
        norm: "layer" (LayerNorm) or "rms" (RMSNorm).
        residual_scale: each sublayer's output is multiplied by this before it is
            added to the residual stream (1.0: not at all, the released models').
    """

    def __init__(self, model_size: int, num_heads: int, mlp_ratio: int = 2, norm: str = "layer",
                 residual_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if norm not in NORMS:
            raise InvalidInputError(f"cell.norm={norm!r} must be one of {NORMS}")
        self.model_size, self.num_heads, self.mlp_ratio = model_size, num_heads, mlp_ratio
        self.norm, self.residual_scale = norm, float(residual_scale)
        head = model_size // num_heads
        self.feature_norm = make_norm(norm, "feature_norm")
        self.feature_attention = layers.MultiHeadAttention(num_heads, head,
                                                           name="feature_attention")
        self.row_norm = make_norm(norm, "row_norm")
        self.row_attention = layers.MultiHeadAttention(num_heads, head, name="row_attention")
        self.feedforward_norm = make_norm(norm, "feedforward_norm")
        self.feedforward_intermediate_dense = layers.Dense(
            mlp_ratio * model_size, activation="gelu", name="feedforward_intermediate_dense")
        self.feedforward_output_dense = layers.Dense(model_size, name="feedforward_output_dense")

    def build(self, x_shape):
        e = self.model_size
        self.feature_norm.build((None, None, e))
        self.feature_attention.build((None, None, e), (None, None, e))
        self.row_norm.build((None, None, e))
        self.row_attention.build((None, None, e), (None, None, e))
        self.feedforward_norm.build((None, None, None, e))
        self.feedforward_intermediate_dense.build((None, None, None, e))
        self.feedforward_output_dense.build((None, None, None, self.mlp_ratio * e))
        self.built = True

    def _scaled(self, branch):
        return branch if self.residual_scale == 1.0 else branch * self.residual_scale

    def call(self, x, num_context, first_output_row=0):
        """x (B, R, T, E) -> (B, R - first_output_row, T, E): the rows from
        `first_output_row` on (the model's last layer needs only the test rows; the
        others are still read as keys and values)."""
        b, r, t = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2]
        e = self.model_size
        # across the tokens of a row
        h = ops.reshape(x, (b * r, t, e))                                  # (B*R, T, E)
        g = self.feature_norm(h)
        h = h + self._scaled(attend(self.feature_attention, g, g))
        # across the rows of a column: every row reads the first num_context rows only
        h = ops.transpose(ops.reshape(h, (b, r, t, e)), (0, 2, 1, 3))       # (B, T, R, E)
        h = ops.reshape(h, (b * t, r, e))                                  # (B*T, R, E)
        g = self.row_norm(h)
        h = h[:, first_output_row:] + self._scaled(
            attend(self.row_attention, g[:, first_output_row:], g[:, :num_context]))
        h = ops.transpose(ops.reshape(h, (b, t, r - first_output_row, e)), (0, 2, 1, 3))
        g = self.feedforward_intermediate_dense(self.feedforward_norm(h))  # (B, R', T, m E)
        return h + self._scaled(self.feedforward_output_dense(g))

    def get_config(self):
        return {**super().get_config(), "model_size": self.model_size,
                "num_heads": self.num_heads, "mlp_ratio": self.mlp_ratio, "norm": self.norm,
                "residual_scale": self.residual_scale}


def attend(attention: layers.MultiHeadAttention, query, context):
    """`attention(query, context)` (no mask, no dropout; query (S, L, E), context
    (S, L', E) -> (S, L, E)) computed from the layer's own weights with the heads
    moved into the batch and plain batched matmuls: the same numbers as Keras' call
    to float32 rounding (`tests/models/test_cell.py`), 1.2 times as fast as its einsum
    path at a digits predict's shapes on this CPU (`benchmarks/cell_attention.py`). The
    layer stays the weights' home, so saved models and checkpoints are unchanged."""
    s, length, k = ops.shape(query)[0], ops.shape(query)[1], ops.shape(context)[1]
    kernel = attention.query_dense.kernel                                 # (E, heads, dh)
    e, heads, dh = kernel.shape
    dtype = query.dtype

    def heads_first(x, dense, rows):
        w = ops.reshape(ops.cast(dense.kernel, dtype), (e, heads * dh))
        y = ops.matmul(ops.reshape(x, (-1, e)), w) + ops.reshape(ops.cast(dense.bias, dtype),
                                                                 (heads * dh,))
        return ops.transpose(ops.reshape(y, (s, rows, heads, dh)), (0, 2, 1, 3))  # (S, h, L, dh)

    q = heads_first(query, attention.query_dense, length) * ops.cast(1.0 / np.sqrt(dh), dtype)
    keys = heads_first(context, attention.key_dense, k)
    values = heads_first(context, attention.value_dense, k)
    scores = ops.matmul(q, ops.transpose(keys, (0, 1, 3, 2)))             # (S, h, L, L')
    weights = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), dtype)
    out = ops.transpose(ops.matmul(weights, values), (0, 2, 1, 3))        # (S, L, h, dh)
    out = ops.matmul(ops.reshape(out, (-1, heads * dh)),
                     ops.reshape(ops.cast(attention.output_dense.kernel, dtype), (heads * dh, e)))
    out = out + ops.cast(attention.output_dense.bias, dtype)
    return ops.reshape(out, (s, length, e))
