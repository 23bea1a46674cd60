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

The options of the 2026 small-compute recipe (feature grouping, thinking rows,
RMSNorm, a residual scale decaying per layer, radial-basis scalar features, a
decoder reading the mean of a row's cell tokens; `CellTransformer`'s Args, the
parts in `gpicl_tf.models.cell_layers`) are all off by default.

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
from gpicl_tf.models.cell_layers import (CellBlock, cell_features, check_cell_options,
                                         group_features, make_norm)
from gpicl_tf.models.layers import MASKED_LOGIT, mask_absent_classes

__all__ = ["MASKED_LOGIT", "CellBlock", "CellTransformer", "check_cell_sizes",
           "parameter_count"]


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
        seed: seed of the fixed column-identity table (and of the thinking rows).

    The options of the 2026 small-compute recipe (issue 38), each off by default
    (a model built without them, or loaded from a config that lacks them, is the
    released one, `tests/models/test_cell.py`):

        feature_groups: column shifts, e.g. (1, 3, 7, 15): each cell token embeds
            its column's cell with those of the columns that many places further
            along (cyclically) through the one shared `cell_embedding`
            (modded-nanoTabPFN's feature grouping); () = one cell a token.
        thinking_rows: M learned rows placed before the training rows, which
            every row reads besides the training rows (test rows still read no
            test row); 0 = none.
        norm: "layer" (LayerNorm) or "rms" (RMSNorm), in every block and the head.
        residual_decay: layer i's sublayer outputs are scaled by
            residual_decay ** i before the residual sum; 1.0 = no scaling.
        scalar_embedding: "linear" (value, missing flag) or "rbf" (value,
            `rbf_centers` radial-basis features of it, flag: LimiX's embedding).
        rbf_centers: the radial-basis features of "rbf".
        decoder: "label": the head reads each test row's label token; "mean": the
            mean of its C cell tokens.
    """

    def __init__(self, num_classes: int = 10, model_size: int = 96, num_layers: int = 3,
                 num_heads: int = 4, mlp_ratio: int = 2, max_features: int = 128,
                 id_size: int = 16, clip: float = 6.0, seed: int = 0,
                 feature_groups=(), thinking_rows: int = 0, norm: str = "layer",
                 residual_decay: float = 1.0, scalar_embedding: str = "linear",
                 rbf_centers: int = 16, decoder: str = "label", **kwargs):
        super().__init__(**kwargs)
        check_cell_sizes(model_size, num_heads, num_layers, num_classes, max_features, id_size)
        check_cell_options(feature_groups, thinking_rows, norm, residual_decay,
                           scalar_embedding, rbf_centers, decoder)
        self.num_classes, self.model_size, self.num_layers = num_classes, model_size, num_layers
        self.num_heads, self.mlp_ratio, self.max_features = num_heads, mlp_ratio, max_features
        self.id_size, self.clip, self.seed = id_size, float(clip), seed
        self.feature_groups, self.thinking_rows = tuple(feature_groups), thinking_rows
        self.norm, self.residual_decay = norm, float(residual_decay)
        self.scalar_embedding, self.rbf_centers, self.decoder = (scalar_embedding, rbf_centers,
                                                                 decoder)
        self.cell_embedding = layers.Dense(model_size, name="cell_embedding")
        self.column_embedding = layers.Dense(model_size, use_bias=False, name="column_embedding")
        self.label_embedding = layers.Embedding(num_classes, model_size, name="label_embedding")
        self.blocks = [CellBlock(model_size, num_heads, mlp_ratio, norm=norm,
                                 residual_scale=self.residual_decay ** i, name=f"cell_block_{i}")
                       for i in range(num_layers)]
        self.output_norm = make_norm(norm, "output_norm")
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
        if self.thinking_rows:
            self.thinking = self.add_weight(
                name="thinking_rows", shape=(self.thinking_rows, e),
                initializer=keras.initializers.RandomNormal(stddev=0.02, seed=self.seed + 1))
        self.cell_embedding.build((None, None, None, self.cell_feature_size))
        self.column_embedding.build((None, None, self.id_size))
        self.label_embedding.build((None, None))
        for block in self.blocks:
            block.build((None, None, None, e))
        self.output_norm.build((None, None, e))
        self.head_dense.build((None, None, e))
        self.head_output.build((None, None, 2 * e))
        self.built = True

    @property
    def cell_feature_size(self) -> int:
        """F, the numbers each cell token is embedded from."""
        per_cell = 2 if self.scalar_embedding == "linear" else self.rbf_centers + 2
        return per_cell * (1 + len(self.feature_groups))

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

    def thinking_tokens(self, ids):
        """(B, M, T, E): the thinking rows, each its learned vector in every token
        plus, in its cell tokens, the column identities `ids` (B, 1, C, E)."""
        b, c = ops.shape(ids)[0], ops.shape(ids)[2]
        m, e = self.thinking_rows, self.model_size
        rows = ops.broadcast_to(ops.cast(self.thinking, ids.dtype)[None, :, None, :],
                                (b, m, c + 1, e))                          # (B, M, T, E)
        ids = ops.concatenate([ops.broadcast_to(ids, (b, m, c, e)),
                               ops.zeros((b, m, 1, e), ids.dtype)], axis=2)
        return rows + ids

    def call(self, inputs, training=False):
        context_x, context_y, query_x = inputs["context_x"], inputs["context_y"], inputs["query_x"]
        b, n, c = ops.shape(context_x)[0], ops.shape(context_x)[1], ops.shape(context_x)[2]
        q = ops.shape(query_x)[1]
        e, m = self.model_size, self.thinking_rows
        z, flags = self.standardise(context_x, query_x)                    # (B, R, C)
        features = group_features(cell_features(z, flags, self.scalar_embedding,
                                                self.rbf_centers, self.clip),
                                  self.feature_groups)                     # (B, R, C, F)
        cells = self.cell_embedding(features)                              # (B, R, C, E)
        ids = self.column_embedding(self.column_identities(inputs, b, c))    # (B, 1, C, E)
        ids = ops.cast(ids, cells.dtype)
        cells = cells + ids
        labels = self.label_embedding(ops.cast(context_y, "int32"))       # (B, N, E)
        unknown = ops.broadcast_to(ops.cast(self.unknown_label, labels.dtype), (b, q, e))
        label_tokens = ops.concatenate([labels, unknown], axis=1)[:, :, None, :]  # (B, R, 1, E)
        h = ops.concatenate([cells, ops.cast(label_tokens, cells.dtype)], axis=2)  # (B, R, T, E)
        if m:
            h = ops.concatenate([self.thinking_tokens(ids), h], axis=1)      # (B, M + R, T, E)
        for i, block in enumerate(self.blocks):
            # every row reads thinking + training rows; the last layer returns test rows only
            last = i == len(self.blocks) - 1
            h = block(h, num_context=m + n, first_output_row=m + n if last else 0)
        if self.decoder == "mean":
            out = ops.mean(h[:, :, :-1, :], axis=2)                        # (B, Q, E)
        else:
            out = h[:, :, -1, :]                                           # (B, Q, E)
        out = self.output_norm(out)
        logits = ops.cast(self.head_output(self.head_dense(out)), "float32")  # (B, Q, K)
        return mask_absent_classes(logits, context_y)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "model_size": self.model_size, "num_layers": self.num_layers,
                "num_heads": self.num_heads, "mlp_ratio": self.mlp_ratio,
                "max_features": self.max_features, "id_size": self.id_size,
                "clip": self.clip, "seed": self.seed,
                "feature_groups": list(self.feature_groups), "thinking_rows": self.thinking_rows,
                "norm": self.norm, "residual_decay": self.residual_decay,
                "scalar_embedding": self.scalar_embedding, "rbf_centers": self.rbf_centers,
                "decoder": self.decoder}


def parameter_count(model: CellTransformer) -> int:
    return int(sum(int(ops.size(w)) for w in model.trainable_weights))
