"""The cell backbone: a tabular in-context learner that reads a table cell by cell.

Axes, named once: B = tables in a batch, N = training (context) rows, Q = test
(query) rows, R = N + Q rows, C = feature columns, T = C + 1 tokens per row (the
cells and the row's label token), E = model width.

Each cell is one token: its value, standardised with the training rows' mean and
standard deviation of its column (missing values, NaN, become 0 and set a
missing flag), embedded linearly, plus a per-column identity vector so that
columns with equal statistics stay apart: random per table while training (the
batch's `column_ids`, drawn with the tables), a fixed random table otherwise. Each row gets a label token: the embedding of its
class for a training row, a learned "unknown" vector for a test row. Every layer
attends across the T tokens of a row, then across the rows of each column
(every row attends to the training rows only, so test rows never see each
other), then applies an MLP per token. Class logits are read off each test
row's label token; classes absent from the training rows are masked.

Written with `keras.layers` / `keras.ops` only, so it trains under Keras' JAX
backend too (`tests/models/test_cell.py` runs it there) and its weights load
into the TensorFlow model for export.

Example:
    >>> model = CellTransformer(num_classes=3, model_size=16, num_layers=1, num_heads=2)
    >>> out = model({"context_x": keras.ops.zeros((2, 8, 4)),
    ...              "context_y": keras.ops.zeros((2, 8), "int32"),
    ...              "query_x": keras.ops.zeros((2, 5, 4))})
    >>> tuple(out.shape)
    (2, 5, 3)
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from gpicl_tf.errors import InvalidInputError

MASKED_LOGIT = -1e9


def check_cell_sizes(model_size: int, num_heads: int, num_layers: int, num_classes: int,
                     max_features: int, id_size: int) -> None:
    """Raises InvalidInputError naming the first size the cell backbone cannot use."""
    for name, value in (("model_size", model_size), ("num_heads", num_heads),
                        ("num_layers", num_layers), ("max_features", max_features),
                        ("id_size", id_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"cell.{name}={value!r} must be an integer >= 1")
    if model_size % num_heads:
        raise InvalidInputError(
            f"cell.num_heads={num_heads} does not divide cell.model_size={model_size}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise InvalidInputError(f"cell.num_classes={num_classes!r} must be an integer >= 2")


@keras.saving.register_keras_serializable(package="gpicl_tf")
class CellBlock(layers.Layer):
    """One cell layer: attention across a row's tokens, across a column's rows, MLP.

    Pre-LayerNorm residual blocks. Input and output (B, R, T, E); the first
    `num_context` rows are the training rows, which every row attends to.

    Args:
        model_size: E.
        num_heads: attention heads (each of size E / num_heads).
        mlp_ratio: MLP width as a multiple of E.
    """

    def __init__(self, model_size: int, num_heads: int, mlp_ratio: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.model_size, self.num_heads, self.mlp_ratio = model_size, num_heads, mlp_ratio
        head = model_size // num_heads
        self.feature_norm = layers.LayerNormalization(epsilon=1e-5, name="feature_norm")
        self.feature_attention = layers.MultiHeadAttention(num_heads, head,
                                                           name="feature_attention")
        self.row_norm = layers.LayerNormalization(epsilon=1e-5, name="row_norm")
        self.row_attention = layers.MultiHeadAttention(num_heads, head, name="row_attention")
        self.feedforward_norm = layers.LayerNormalization(epsilon=1e-5, name="feedforward_norm")
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

    def call(self, x, num_context):
        b, r, t = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2]
        e = self.model_size
        # across the tokens of a row
        h = ops.reshape(x, (b * r, t, e))                                  # (B*R, T, E)
        g = self.feature_norm(h)
        h = h + self.feature_attention(g, g)
        # across the rows of a column: every row reads the training rows only
        h = ops.transpose(ops.reshape(h, (b, r, t, e)), (0, 2, 1, 3))       # (B, T, R, E)
        h = ops.reshape(h, (b * t, r, e))                                  # (B*T, R, E)
        g = self.row_norm(h)
        h = h + self.row_attention(g, g[:, :num_context])                  # keys (B*T, N, E)
        h = ops.transpose(ops.reshape(h, (b, t, r, e)), (0, 2, 1, 3))       # (B, R, T, E)
        g = self.feedforward_intermediate_dense(self.feedforward_norm(h))  # (B, R, T, m E)
        return h + self.feedforward_output_dense(g)

    def get_config(self):
        return {**super().get_config(), "model_size": self.model_size,
                "num_heads": self.num_heads, "mlp_ratio": self.mlp_ratio}


@keras.saving.register_keras_serializable(package="gpicl_tf")
class CellTransformer(keras.Model):
    """Cell-attention in-context classifier over tables (see the module docstring).

    Call with a dict {"context_x": (B, N, C) float, NaN = missing; "context_y":
    (B, N) int in [0, num_classes); "query_x": (B, Q, C) float; optionally
    "column_ids": (B, C, id_size) float, the columns' identity vectors (training
    draws them per table; without them, the fixed table's first C rows)} ->
    logits (B, Q, num_classes) float32, classes absent from context_y at
    MASKED_LOGIT. C may be anything from 1 to `max_features`, N and Q from 1.

    Args:
        num_classes: the head's classes (a table has at most this many).
        model_size: E, the width of every token.
        num_layers: cell layers.
        num_heads: heads of both attentions.
        mlp_ratio: MLP width / E.
        max_features: most columns a table may have (the size of the serving
            path's fixed column-identity table).
        id_size: size of the random column-identity vectors.
        clip: standardised values are clipped to [-clip, clip].
        seed: seed of the fixed column-identity table.
    """

    def __init__(self, num_classes: int = 10, model_size: int = 96, num_layers: int = 3,
                 num_heads: int = 4, mlp_ratio: int = 2, max_features: int = 128,
                 id_size: int = 16, clip: float = 6.0, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        check_cell_sizes(model_size, num_heads, num_layers, num_classes, max_features, id_size)
        self.num_classes, self.model_size, self.num_layers = num_classes, model_size, num_layers
        self.num_heads, self.mlp_ratio, self.max_features = num_heads, mlp_ratio, max_features
        self.id_size, self.clip, self.seed = id_size, float(clip), seed
        self.cell_embedding = layers.Dense(model_size, name="cell_embedding")
        self.column_embedding = layers.Dense(model_size, use_bias=False, name="column_embedding")
        self.label_embedding = layers.Embedding(num_classes, model_size, name="label_embedding")
        self.blocks = [CellBlock(model_size, num_heads, mlp_ratio, name=f"cell_block_{i}")
                       for i in range(num_layers)]
        self.output_norm = layers.LayerNormalization(epsilon=1e-5, name="output_norm")
        self.head_dense = layers.Dense(2 * model_size, activation="gelu", name="head_dense")
        self.head_output = layers.Dense(num_classes, dtype="float32", name="head_output")

    def build(self, input_shape=None):
        e = self.model_size
        # N(0, 1), as the identities drawn with the tables in meta-training
        self.column_ids = self.add_weight(
            name="column_ids", shape=(self.max_features, self.id_size), trainable=False,
            initializer=keras.initializers.RandomNormal(stddev=1.0, seed=self.seed))
        self.unknown_label = self.add_weight(name="unknown_label", shape=(e,),
                                             initializer=keras.initializers.RandomNormal(
                                                 stddev=0.02, seed=self.seed))
        self.cell_embedding.build((None, None, None, 2))
        self.column_embedding.build((None, None, self.id_size))
        self.label_embedding.build((None, None))
        for block in self.blocks:
            block.build((None, None, None, e))
        self.output_norm.build((None, None, e))
        self.head_dense.build((None, None, e))
        self.head_output.build((None, None, 2 * e))
        self.built = True

    def redraw_column_ids(self) -> None:
        """Draws the fixed column-identity table afresh from N(0, 1) (seeded by
        `seed`). Models built before 2026-11-27 16:45 drew it from N(0, 0.05), a
        scale meta-training never showed them (their tables' identities are
        N(0, 1)); export repairs their weights with this
        (`pipelines.train_cell --redraw_column_ids`)."""
        table = np.random.default_rng([self.seed, 17]).standard_normal(
            (self.max_features, self.id_size))
        self.column_ids.assign(table.astype("float32"))

    def standardise(self, context_x, query_x):
        """(cells (B, R, C) standardised with the training rows' statistics and
        clipped, missing flags (B, R, C)), both float32; missing cells are 0."""
        x = ops.concatenate([ops.cast(context_x, "float32"), ops.cast(query_x, "float32")], 1)
        n = ops.shape(context_x)[1]
        missing = ops.isnan(x)                                             # (B, R, C)
        x = ops.where(missing, 0.0, x)
        present = 1.0 - ops.cast(missing[:, :n], "float32")                # (B, N, C)
        count = ops.maximum(ops.sum(present, axis=1, keepdims=True), 1.0)  # (B, 1, C)
        mean = ops.sum(x[:, :n] * present, axis=1, keepdims=True) / count
        var = ops.sum(ops.square(x[:, :n] - mean) * present, axis=1, keepdims=True) / count
        std = ops.sqrt(var)
        std = ops.where(std > 1e-6 * (ops.abs(mean) + 1e-12), std, 1.0)
        z = ops.clip((x - mean) / std, -self.clip, self.clip)
        flags = ops.cast(missing, "float32")
        return ops.where(missing, 0.0, z), flags

    def column_identities(self, inputs, batch, columns):
        """(B, 1, C, id_size): the given `column_ids`, else the fixed table's first C rows."""
        if inputs.get("column_ids") is not None:
            return ops.cast(inputs["column_ids"], "float32")[:, None]
        ids = ops.cast(self.column_ids[:columns], "float32")
        return ops.broadcast_to(ops.reshape(ids, (1, 1, columns, self.id_size)),
                                (batch, 1, columns, self.id_size))

    def call(self, inputs, training=False):
        context_x, context_y, query_x = inputs["context_x"], inputs["context_y"], inputs["query_x"]
        b, n, c = ops.shape(context_x)[0], ops.shape(context_x)[1], ops.shape(context_x)[2]
        q = ops.shape(query_x)[1]
        e = self.model_size
        z, flags = self.standardise(context_x, query_x)                    # (B, R, C)
        cells = self.cell_embedding(ops.stack([z, flags], axis=-1))         # (B, R, C, E)
        ids = self.column_embedding(self.column_identities(inputs, b, c))    # (B, 1, C, E)
        cells = cells + ops.cast(ids, cells.dtype)
        labels = self.label_embedding(ops.cast(context_y, "int32"))       # (B, N, E)
        unknown = ops.broadcast_to(ops.cast(self.unknown_label, labels.dtype), (b, q, e))
        label_tokens = ops.concatenate([labels, unknown], axis=1)[:, :, None, :]  # (B, R, 1, E)
        h = ops.concatenate([cells, ops.cast(label_tokens, cells.dtype)], axis=2)  # (B, R, T, E)
        for block in self.blocks:
            h = block(h, num_context=n)
        out = self.output_norm(h[:, n:, -1, :])                            # (B, Q, E)
        logits = ops.cast(self.head_output(self.head_dense(out)), "float32")  # (B, Q, K)
        present = ops.max(ops.one_hot(ops.cast(context_y, "int32"), self.num_classes),
                          axis=1)                                          # (B, K)
        return ops.where(present[:, None, :] > 0, logits, MASKED_LOGIT)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "model_size": self.model_size, "num_layers": self.num_layers,
                "num_heads": self.num_heads, "mlp_ratio": self.mlp_ratio,
                "max_features": self.max_features, "id_size": self.id_size,
                "clip": self.clip, "seed": self.seed}


def parameter_count(model: CellTransformer) -> int:
    return int(sum(int(ops.size(w)) for w in model.trainable_weights))
