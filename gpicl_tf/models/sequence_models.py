"""The GPICL Transformer, the LSTM learner, the no-context MLP, MAML and VSML.

All of them take the schema's named inputs `inputs` (B, N, N_x) and `labels`
(B, N) and return logits (B, N, C): the prediction for y_j from x_1..x_j and
y_1..y_{j-1} (the MLP: from x_j alone). The Transformer builds its tokens in
the paper's layout or the PFN layout (`ModelConfig.layout`). Build any of them
with `build_model(model_config, schema)`.

Example:
    >>> from gpicl_tf.config import get_preset
    >>> from gpicl_tf.data.schema import EpisodeSchema
    >>> model = build_model(get_preset("smoke").model, EpisodeSchema(12, 16, 10))
    >>> model.output_shape
    (None, None, 10)
"""

from __future__ import annotations

import keras
from absl import logging
from keras import layers

from gpicl_tf.config import ModelConfig
from gpicl_tf.config import kinds as kind_registry
from gpicl_tf.data.schema import INPUTS, LABELS, QUERY, VALUES, EpisodeSchema
from gpicl_tf.errors import InvalidInputError
from gpicl_tf.models.layers import (EpisodeTokens, FunctionTokens, QueryOutputs,
                                    SinusoidalPositions, TransformerBlock, mask_absent_classes)
from gpicl_tf.models.meta_learners import VSML, MAMLClassifier, maml_state_size, vsml_state_size


def _episode_inputs(schema: EpisodeSchema) -> dict:
    return {INPUTS: keras.Input(shape=(None, schema.input_size), name=INPUTS, dtype="float32"),
            LABELS: keras.Input(shape=(None,), name=LABELS, dtype="int32")}


def _logits(h, schema: EpisodeSchema):
    # float32 logits even under a mixed-precision policy.
    return layers.Dense(schema.num_classes, dtype="float32", name="logits")(h)


def build_transformer(config: ModelConfig, schema: EpisodeSchema) -> keras.Model:
    """Transformer whose causal mask orders the sequence, with a fixed code of
    each position added where `config.positions` asks; any context length works."""
    episode = _episode_inputs(schema)
    tokens, mask = EpisodeTokens(config.layout, schema.num_classes, name="episode_tokens")(
        episode[INPUTS], episode[LABELS])                                    # (B, T, N_x + C)
    h = layers.Dense(config.model_size, name="token_embedding")(tokens)     # (B, T, N_M)
    if config.positions == "sinusoidal":
        h = SinusoidalPositions(name="positions")(h)
    for i in range(config.num_layers):
        h = TransformerBlock(config.model_size, config.num_heads, config.head_size,
                             config.mlp_ratio, config.dropout,
                             name=f"transformer_block_{i}")(h, mask)
    h = layers.LayerNormalization(epsilon=1e-5, name="final_norm")(h)
    h = QueryOutputs(config.layout, name="query_outputs")(h)                # (B, N, N_M)
    return keras.Model(episode, _logits(h, schema), name="gpicl_transformer")


def build_function_transformer(config: ModelConfig, schema: EpisodeSchema) -> keras.Model:
    """The same Transformer on function-regression episodes, with a regression
    head: inputs (B, N, d), values (B, N), query (B, N) -> predictions (B, N)
    (meaningful at the query positions; see `FunctionTokens`)."""
    episode = {INPUTS: keras.Input(shape=(None, schema.input_size), name=INPUTS, dtype="float32"),
               VALUES: keras.Input(shape=(None,), name=VALUES, dtype="float32"),
               QUERY: keras.Input(shape=(None,), name=QUERY, dtype="float32")}
    tokens, mask = FunctionTokens(name="function_tokens")(
        episode[INPUTS], episode[VALUES], episode[QUERY])                    # (B, N, d + 2)
    # A non-linear token embedding lets the first attention layer compare inputs
    # by distance (a linear one only offers x_q . x_k): 600 steps on MLP functions
    # reached meta-validation MSE 0.0667 with it, 0.0792 without (same step time).
    tokens = layers.Dense(config.model_size, activation="gelu", name="token_features")(tokens)
    h = layers.Dense(config.model_size, name="token_embedding")(tokens)
    for i in range(config.num_layers):
        h = TransformerBlock(config.model_size, config.num_heads, config.head_size,
                             config.mlp_ratio, config.dropout,
                             name=f"transformer_block_{i}")(h, mask)
    h = layers.LayerNormalization(epsilon=1e-5, name="final_norm")(h)
    y = layers.Dense(1, dtype="float32", name="prediction")(h)              # (B, N, 1)
    y = layers.Reshape((-1,), name="predictions")(y)                       # (B, N)
    return keras.Model(episode, y, name="gpicl_function_transformer")


def build_lstm(config: ModelConfig, schema: EpisodeSchema) -> keras.Model:
    """The LSTM learner (paper layout): its whole state is (h, c), 2 * lstm_units."""
    episode = _episode_inputs(schema)
    tokens, _ = EpisodeTokens("paper", schema.num_classes, name="episode_tokens")(
        episode[INPUTS], episode[LABELS])
    h = layers.LSTM(config.lstm_units, return_sequences=True, name="lstm")(tokens)
    return keras.Model(episode, _logits(h, schema), name="gpicl_lstm")


def build_mlp(config: ModelConfig, schema: EpisodeSchema) -> keras.Model:
    """Sees x_j only (no context, no labels): can only memorise tasks."""
    episode = _episode_inputs(schema)
    h = episode[INPUTS]
    for i in range(config.num_layers):
        h = layers.Dense(config.mlp_hidden, activation="relu", name=f"hidden_{i}")(h)
    return keras.Model(episode, _logits(h, schema), name="gpicl_mlp")


def build_maml(config: ModelConfig, schema: EpisodeSchema) -> keras.Model:
    """MAML (`MAMLClassifier`): a classifier adapted on each prefix by gradient steps."""
    episode = _episode_inputs(schema)
    logits = MAMLClassifier(schema.num_classes, config.maml_hidden, config.maml_steps,
                            config.maml_inner_lr, config.maml_first_order, dtype="float32",
                            name="maml")(episode[INPUTS], episode[LABELS])
    return keras.Model(episode, logits, name="gpicl_maml")


def build_vsml(config: ModelConfig, schema: EpisodeSchema) -> keras.Model:
    """VSML (`VSMLCell`): a dense layer whose weights are sub-LSTMs sharing
    parameters, with the authors' messages, gates and initial state."""
    episode = _episode_inputs(schema)
    logits = VSML(schema.input_size, schema.num_classes, config.vsml_state, dtype="float32",
                  name="vsml")(episode[INPUTS], episode[LABELS])
    return keras.Model(episode, logits, name="gpicl_vsml")


# Learners whose train step XLA's CPU backend makes slower (VSML's 200 small ticks
# an episode: 8.7 s against 4.9 s a step of 32 episodes of 100 examples, 64 inputs,
# 10 classes, measured 2026-11-27 beside another run): trained without it.
XLA_SLOWER = frozenset({"vsml"})

# Training settings ("KEY=VALUE" of the train section) a learner's run takes in
# place of the Transformer's, before `eval.baseline_train`: VSML's from the
# authors' backprop meta-training (louiskirsch/vsml-neurips2021,
# configs/backprop.yaml: Adam at 1e-3, gradients clipped at a global norm of 25;
# the loss is already the mean over every prediction). Their 128 episodes a step
# are left to the preset, so that every learner of a table sees the same batches.
TRAIN_SETTINGS = {"vsml": ("optimizer=adam", "learning_rate=0.001", "clip_norm=25.0")}


def check_classification_model(config: ModelConfig) -> None:
    """Every arch learns classification episodes; nothing more to check."""


def check_function_model(config: ModelConfig) -> None:
    """Function regression is learned by the PFN-layout Transformer only."""
    if config.arch != "transformer":
        raise InvalidInputError(
            f"arch={config.arch!r}: function regression episodes are learned by "
            "the transformer only")
    if config.layout != "pfn":
        raise InvalidInputError(
            f"layout={config.layout!r}: function regression uses the PFN-style "
            "layout (context tokens carry their values, queries attend to the "
            "context); set model.layout=pfn")




def check_model_config(config: ModelConfig, schema: EpisodeSchema) -> None:
    """Raises ValueError naming the value when `config` cannot learn `schema`'s
    episodes (ranges and choices are checked when the config loads)."""
    kind_registry.part(schema.task, "model_check")(config)
    if kind_registry.learner(schema.task, config.arch) is None:
        raise InvalidInputError(f"arch={config.arch!r} does not learn {schema.task} episodes; "
                                f"those that do: {kind_registry.learners(schema.task)}")
    if config.arch in ("lstm", "maml", "vsml") and config.layout != "paper":
        raise InvalidInputError(f"layout={config.layout!r}: the {config.arch.upper()} reads the "
                                "paper layout only")
    if config.arch == "transformer" and config.model_size % config.num_heads:
        raise InvalidInputError(
            f"num_heads={config.num_heads} does not divide "
            f"model_size={config.model_size}")


def build_model(config: ModelConfig, schema: EpisodeSchema) -> keras.Model:
    check_model_config(config, schema)
    if config.arch == "transformer" and config.head_size * config.num_heads != config.model_size:
        logging.warning("model.key_size=%d x num_heads=%d != model_size=%d: attention works in "
                        "%d dimensions inside a %d-wide model (key_size=0 derives %d)",
                        config.key_size, config.num_heads, config.model_size,
                        config.head_size * config.num_heads, config.model_size,
                        config.model_size // config.num_heads)
    return kind_registry.learner(schema.task, config.arch)(config, schema)


# The layers of a PFN-layout Transformer built by `build_transformer` that its
# one-pass serving call (`query_logits`) replays; any other layer (positions,
# a layer added later) would be skipped silently, so a model holding one is refused.
_PFN_SERVED = frozenset({"token_embedding", "final_norm", "query_outputs", "logits"})


def _transformer_parts(model: keras.Model):
    """(tokens, embedding, blocks, final norm, logits) of a Transformer built by
    `build_transformer`, or None for another model. Raises InvalidInputError
    naming the layer when a PFN-layout Transformer holds a layer that the
    one-pass serving call would not replay."""
    by_type = [layer for layer in model.layers if isinstance(layer, TransformerBlock)]
    tokens = [layer for layer in model.layers if isinstance(layer, EpisodeTokens)]
    if not by_type or len(tokens) != 1:
        return None
    if tokens[0].layout == "pfn":
        unknown = [layer.name for layer in model.layers
                   if not isinstance(layer, (keras.layers.InputLayer, EpisodeTokens,
                                             TransformerBlock))
                   and layer.name not in _PFN_SERVED]
        if unknown:
            raise InvalidInputError(
                f"the PFN-layout Transformer {model.name!r} holds layers {unknown} that its "
                "one-pass serving call does not replay; serve it through a model built by "
                "build_transformer")
    names = {layer.name: layer for layer in model.layers}
    return (tokens[0], names["token_embedding"], by_type, names["final_norm"], names["logits"])


def query_logits(model: keras.Model, context_x, context_y, query_x):
    """Logits (B, Q, C) of each query given the labelled context: how every
    learner is served; classes absent from the context are masked.

    A PFN-layout Transformer answers all Q queries in one pass over N + Q
    tokens (`EpisodeTokens.serving_tokens`): each query's output equals the
    model's prediction for it appended as example N + 1 (tests/export). Any
    other learner runs each query as the last example of its own sequence.
    """
    parts = _transformer_parts(model)
    if parts is not None and parts[0].layout == "pfn":
        tokens_layer, embedding, blocks, norm, logits = parts
        tokens, mask = tokens_layer.serving_tokens(context_x, context_y, query_x)
        h = embedding(tokens)
        for block in blocks:
            h = block(h, mask, training=False)
        out = logits(norm(h)[:, keras.ops.shape(context_x)[1]:])
    else:
        shape = keras.ops.shape(query_x)
        b, q, d = shape[0], shape[1], shape[2]
        ctx_x = keras.ops.repeat(context_x, q, axis=0)                         # (B*Q, N, d)
        ctx_y = keras.ops.repeat(keras.ops.cast(context_y, "int32"), q, axis=0)  # (B*Q, N)
        inputs = keras.ops.concatenate([ctx_x, keras.ops.reshape(query_x, (b * q, 1, d))], 1)
        labels = keras.ops.concatenate([ctx_y, keras.ops.zeros((b * q, 1), "int32")], axis=1)
        out = model({INPUTS: inputs, LABELS: labels}, training=False)[:, -1]  # (B*Q, C)
        out = keras.ops.reshape(out, (b, q, model.output_shape[-1]))
    # The classes of the context only (a paper-layout query's placeholder label 0 is none).
    return mask_absent_classes(out, context_y)


def state_size(config: ModelConfig, context_length: int, input_size: int = 0,
               num_classes: int = 0) -> int:
    """Accessible state when predicting the next token (the bottleneck of
    Kirsch et al. 2022, arXiv:2212.04458).

    Transformer: keys and values of every layer and head over the context
    (the PFN layout keeps the context's, the paper layout the same count);
    LSTM: its hidden and cell state; MAML: the adapted classifier's parameters;
    VSML: every sub-LSTM's hidden and cell state (both need the episode's
    `input_size` and `num_classes`); MLP: none.
    """
    if config.arch in ("maml", "vsml") and not (input_size and num_classes):
        raise InvalidInputError(f"state_size of arch={config.arch!r} needs the episode's "
                                f"input_size and num_classes (got {input_size}, {num_classes})")
    if config.arch == "maml":
        return maml_state_size(input_size, num_classes, config.maml_hidden)
    if config.arch == "vsml":
        return vsml_state_size(input_size, num_classes, config.vsml_state)
    if config.arch == "transformer":
        return 2 * config.num_layers * config.num_heads * config.head_size * context_length
    if config.arch == "lstm":
        return 2 * config.lstm_units
    return 0
