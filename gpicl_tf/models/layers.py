"""Reusable layers of the sequence learners (keras.layers / keras.ops only)."""

from __future__ import annotations

import keras
from keras import layers, ops

from gpicl_tf.config import LAYOUTS
from gpicl_tf.errors import InvalidInputError


@keras.saving.register_keras_serializable(package="gpicl_tf")
class TransformerBlock(layers.Layer):
    """Pre-LayerNorm Transformer block.

    x + MHA(LN(x)) under `attention_mask` (B or 1, T, T), then x + MLP(LN(x)).

    Args:
        model_size: width N_M of the residual stream.
        num_heads: attention heads.
        key_size: size of each head's keys, queries and values.
        mlp_ratio: MLP width as a multiple of model_size (paper: 4).
        dropout: dropout rate after attention and MLP (0 = none).

    Example:
        >>> block = TransformerBlock(16, num_heads=2, key_size=8)
        >>> tuple(block(keras.ops.zeros((2, 5, 16)), attention_mask(5, "paper")).shape)
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

    def build(self, x_shape, attention_mask_shape=None):
        self.attention_norm.build(x_shape)
        self.attention.build(x_shape, x_shape)
        self.feedforward_norm.build(x_shape)
        self.feedforward_intermediate_dense.build(x_shape)
        self.feedforward_output_dense.build(
            tuple(x_shape[:-1]) + (self.mlp_ratio * self.model_size,))
        self.built = True

    def call(self, x, attention_mask, training=None):
        h = self.attention_norm(x)                                   # (B, T, N_M)
        h = self.attention(h, h, attention_mask=attention_mask, training=training)
        x = x + self.attention_dropout(h, training=training)
        h = self.feedforward_norm(x)
        h = self.feedforward_intermediate_dense(h)                   # (B, T, 4 N_M)
        h = self.feedforward_output_dense(h)                         # (B, T, N_M)
        return x + self.feedforward_dropout(h, training=training)

    def compute_output_shape(self, x_shape, attention_mask_shape=None):
        return x_shape

    def get_config(self):
        return {**super().get_config(), "model_size": self.model_size,
                "num_heads": self.num_heads, "key_size": self.key_size,
                "mlp_ratio": self.mlp_ratio, "dropout": self.dropout}




def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise InvalidInputError(f"layout={layout!r} is not one of {LAYOUTS}")


def attention_mask(num_examples, layout: str, num_queries=None):
    """Which token may attend to which: bool (1, T, T).

    paper: T = N tokens, causal.
    pfn:   T = 2N tokens, N context tokens (causal among themselves) then N
           queries; query j sees context tokens < j and itself, never a label
           of example j or later, and no other query.
    pfn with `num_queries` Q (the serving pass): T = N + Q tokens, the N context
           tokens as above, then Q queries that each see the whole context and
           themselves.
    """
    _check_layout(layout)
    n = num_examples
    if layout == "paper":
        i = ops.arange(n)[:, None]
        j = ops.arange(n)[None, :]
        return ops.expand_dims(j <= i, 0)
    q = n if num_queries is None else num_queries
    i = ops.arange(n + q)[:, None]
    j = ops.arange(n + q)[None, :]
    context_row, context_col = i < n, j < n
    context = ops.logical_and(ops.logical_and(context_row, context_col), j <= i)
    query_row = ops.logical_not(context_row)
    visible = j < i - n if num_queries is None else context_col
    sees_context = ops.logical_and(ops.logical_and(query_row, context_col), visible)
    itself = ops.logical_and(query_row, ops.equal(i, j))
    return ops.expand_dims(ops.logical_or(ops.logical_or(context, sees_context), itself), 0)


@keras.saving.register_keras_serializable(package="gpicl_tf")
class EpisodeTokens(layers.Layer):
    """Builds the token sequence and its attention mask from an episode.

    paper: token j = concat(x_j, one_hot(y_{j-1})), the first with zero labels.
    pfn:   context tokens concat(x_i, one_hot(y_i)), then query tokens
           concat(x_j, 0) (PFNs, Muller et al. 2022, arXiv:2112.10510; TabPFN,
           Hollmann et al. 2023, arXiv:2207.01848).

    Call with (inputs (B, N, N_x), labels (B, N) int); returns
    (tokens (B, T, N_x + C), mask (1, T, T)).
    """

    def __init__(self, layout: str, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        _check_layout(layout)
        self.layout, self.num_classes = layout, num_classes

    def call(self, inputs, labels):
        onehot = ops.one_hot(ops.cast(labels, "int32"), self.num_classes,
                             dtype=inputs.dtype)                      # (B, N, C)
        n = ops.shape(inputs)[1]
        if self.layout == "paper":
            previous = ops.pad(onehot[:, :-1], [[0, 0], [1, 0], [0, 0]])
            return ops.concatenate([inputs, previous], axis=-1), attention_mask(n, "paper")
        context = ops.concatenate([inputs, onehot], axis=-1)          # (B, N, N_x + C)
        queries = ops.concatenate([inputs, ops.zeros_like(onehot)], axis=-1)
        tokens = ops.concatenate([context, queries], axis=1)          # (B, 2N, N_x + C)
        return tokens, attention_mask(n, "pfn")

    def serving_tokens(self, context_x, context_y, query_x):
        """The serving pass's tokens (B, N + Q, N_x + C) and mask (1, N + Q, N + Q):
        N context tokens [x_i, one_hot(y_i)], then Q query tokens [x_q, 0], each
        seeing the whole context (PFN layout only)."""
        if self.layout != "pfn":
            raise InvalidInputError(f"serving_tokens needs the pfn layout, not {self.layout!r}")
        onehot = ops.one_hot(ops.cast(context_y, "int32"), self.num_classes,
                             dtype=context_x.dtype)
        context = ops.concatenate([context_x, onehot], axis=-1)
        qshape = ops.shape(query_x)
        queries = ops.concatenate(
            [query_x, ops.zeros((qshape[0], qshape[1], self.num_classes), context_x.dtype)], -1)
        tokens = ops.concatenate([context, queries], axis=1)
        return tokens, attention_mask(ops.shape(context_x)[1], "pfn", qshape[1])

    def compute_output_spec(self, inputs, labels):
        length = inputs.shape[1] if self.layout == "paper" or inputs.shape[1] is None \
            else 2 * inputs.shape[1]
        tokens = keras.KerasTensor((inputs.shape[0], length, inputs.shape[2] + self.num_classes),
                                   dtype=inputs.dtype)
        return tokens, keras.KerasTensor((1, length, length), dtype="bool")

    def get_config(self):
        return {**super().get_config(), "layout": self.layout, "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="gpicl_tf")
class SinusoidalPositions(layers.Layer):
    """Adds a fixed code of each token's position to its embedding (B, T, D):
    sin(t w_i) in the first D/2 features and cos(t w_i) in the next, with
    w_i = 10000^(-2i/D) (Vaswani et al. 2017); an odd D's last feature gets none.
    No weights, so any length works.

    Example:
        >>> h = SinusoidalPositions()(keras.ops.zeros((1, 3, 4)))
        >>> [round(float(v), 3) for v in h[0, 1]]
        [0.841, 0.01, 0.54, 1.0]
    """

    def call(self, h):
        t = ops.cast(ops.arange(ops.shape(h)[1]), "float32")[:, None]       # (T, 1)
        half = h.shape[-1] // 2
        w = ops.power(10000.0, -2.0 * ops.arange(half, dtype="float32") / h.shape[-1])
        angles = t * w[None, :]                                              # (T, D/2)
        code = ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)
        if h.shape[-1] % 2:
            code = ops.pad(code, [[0, 0], [0, 1]])
        return h + ops.cast(code, h.dtype)[None]

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="gpicl_tf")
class QueryOutputs(layers.Layer):
    """The hidden states that predict y_1..y_N: all tokens (paper), the queries (pfn)."""

    def __init__(self, layout: str, **kwargs):
        super().__init__(**kwargs)
        _check_layout(layout)
        self.layout = layout

    def call(self, hidden):
        if self.layout == "paper":
            return hidden
        return hidden[:, ops.shape(hidden)[1] // 2:]

    def compute_output_shape(self, input_shape):
        if self.layout == "paper" or input_shape[1] is None:
            return input_shape
        return (input_shape[0], input_shape[1] // 2, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "layout": self.layout}


@keras.saving.register_keras_serializable(package="gpicl_tf")
class FunctionTokens(layers.Layer):
    """Tokens and attention mask of a function-regression episode.

    Token j = concat(x_j, value_j, query_j); a query's value is zeroed here, so
    a caller that passes the true value of a query cannot leak it. Point i
    attends to the context points (query flag 0) at positions <= i and to
    itself: no point ever sees a query's value, queries never see each other,
    and a query at position j predicts from the context points before it, so
    one episode trains every context size, and a query placed after c context
    points is answered from exactly those c.

    Call with (inputs (B, N, d), values (B, N), query (B, N)); returns
    (tokens (B, N, d + 2), mask (B, N, N) bool).
    """

    def call(self, inputs, values, query):
        query = ops.cast(query, inputs.dtype)
        values = ops.cast(values, inputs.dtype) * (1.0 - query)        # queries hide their y
        tokens = ops.concatenate([inputs, values[..., None], query[..., None]], axis=-1)
        n = ops.shape(inputs)[1]
        i = ops.arange(n)[:, None]
        j = ops.arange(n)[None, :]
        is_context = ops.equal(query, 0.0)[:, None, :]                 # (B, 1, N): key j
        earlier_context = ops.logical_and(ops.expand_dims(j <= i, 0), is_context)
        return tokens, ops.logical_or(earlier_context, ops.expand_dims(ops.equal(i, j), 0))

    def compute_output_spec(self, inputs, values, query):
        b, n, d = inputs.shape
        return (keras.KerasTensor((b, n, d + 2), dtype=inputs.dtype),
                keras.KerasTensor((b, n, n), dtype="bool"))


MASKED_LOGIT = -1e9   # a logit no softmax gives mass to, and argmax never picks


def present_classes(labels, num_classes: int):
    """Which classes some label of each episode names: bool (B, C) from (B, N);
    labels outside [0, C) name none."""
    onehot = ops.one_hot(ops.cast(labels, "int32"), num_classes)          # (B, N, C)
    return ops.any(onehot > 0, axis=1)


def mask_absent_classes(logits, labels):
    """Logits (B, N, C) with the classes no label of their episode (`labels`, (B, M))
    names set to MASKED_LOGIT; present classes' logits pass unchanged (bit for bit).

    Episodes with fewer classes than the head (the prior's 2-10 class tasks) are
    trained and scored over their own classes: the loss and the training metrics
    mask with the episode's targets (`tasks.classification`), serving with the
    context's labels (`sequence_models.query_logits`). The model itself stays
    causal: its output j never depends on a later label, even through the set of
    classes."""
    present = present_classes(labels, logits.shape[-1])
    return ops.where(ops.expand_dims(present, 1), logits,
                     ops.full_like(logits, MASKED_LOGIT))


def sequence_accuracy_parts(targets, logits):
    """Per-position correctness float32 (B, T) of argmax(logits) against targets,
    over the classes of each episode (`mask_absent_classes`)."""
    logits = mask_absent_classes(logits, targets)
    predicted = ops.argmax(logits, axis=-1)
    return ops.cast(ops.equal(ops.cast(targets, predicted.dtype), predicted), "float32")
