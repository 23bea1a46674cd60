import dataclasses

import keras
import numpy as np
import pytest

from gpicl_tf.config import ModelConfig, get_preset
from gpicl_tf.data.schema import EpisodeSchema
from gpicl_tf.models import build_model, state_size
from gpicl_tf.models.layers import EpisodeTokens, attention_mask

SCHEMA = EpisodeSchema(episode_length=8, input_size=6, num_classes=4)
VARIANTS = [("transformer", "paper"), ("transformer", "pfn"), ("lstm", "paper"),
            ("mlp", "paper"), ("maml", "paper"), ("vsml", "paper")]


def _config(arch, layout="paper", **kw):
    return dataclasses.replace(get_preset("smoke").model, arch=arch, layout=layout, model_size=8,
                               num_heads=2, key_size=4, num_layers=2, lstm_units=8,
                               mlp_hidden=8, **kw)


def _episode(batch=2, length=8, seed=0):
    rng = np.random.default_rng(seed)
    return {"inputs": rng.standard_normal((batch, length, SCHEMA.input_size)).astype("float32"),
            "labels": rng.integers(0, SCHEMA.num_classes, (batch, length)).astype("int32")}


@pytest.mark.parametrize("arch,layout", VARIANTS)
def test_output_shapes_and_named_inputs(arch, layout):
    model = build_model(_config(arch, layout), SCHEMA)
    assert sorted(i.name for i in model.inputs) == ["inputs", "labels"]
    for length in (1, 5, 8):
        out = np.asarray(model(_episode(length=length)))
        assert out.shape == (2, length, SCHEMA.num_classes) and out.dtype == np.float32


@pytest.mark.parametrize("arch,layout", VARIANTS)
def test_causality(arch, layout):
    """Output j depends on x_1..x_j and y_1..y_{j-1} only."""
    model = build_model(_config(arch, layout), SCHEMA)
    episode = _episode()
    base = np.asarray(model(episode))
    other = _episode(seed=9)
    for j in range(8):
        later = {k: v.copy() for k, v in episode.items()}
        later["inputs"][:, j + 1:] = other["inputs"][:, j + 1:]
        later["labels"][:, j:] = other["labels"][:, j:]  # y_j itself included
        out = np.asarray(model(later))
        np.testing.assert_allclose(out[:, :j + 1], base[:, :j + 1], rtol=1e-5, atol=1e-5)
        if j < 7:
            assert not np.allclose(out[:, j + 1:], base[:, j + 1:])


@pytest.mark.parametrize("layout", ["paper", "pfn"])
def test_transformer_uses_the_context(layout):
    model = build_model(_config("transformer", layout), SCHEMA)
    episode = _episode()
    changed = {k: v.copy() for k, v in episode.items()}
    changed["labels"][:, 0] = (changed["labels"][:, 0] + 1) % SCHEMA.num_classes
    assert not np.allclose(np.asarray(model(episode))[:, 1:], np.asarray(model(changed))[:, 1:])


def test_mlp_ignores_context_and_labels():
    model = build_model(_config("mlp"), SCHEMA)
    episode = _episode()
    changed = {"inputs": episode["inputs"].copy(), "labels": np.zeros_like(episode["labels"])}
    changed["inputs"][:, :4] = _episode(seed=5)["inputs"][:, :4]
    np.testing.assert_allclose(np.asarray(model(episode))[:, 4:],
                               np.asarray(model(changed))[:, 4:], rtol=1e-6)


def test_paper_tokens_carry_the_previous_label():
    inputs = np.ones((1, 3, 2), "float32")
    tokens, mask = EpisodeTokens("paper", 3)(inputs, np.array([[2, 0, 1]], "int32"))
    np.testing.assert_array_equal(np.asarray(tokens)[0, :, 2:], [[0, 0, 0], [0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(np.asarray(tokens)[0, :, :2], 1)
    np.testing.assert_array_equal(np.asarray(mask)[0], np.tril(np.ones((3, 3), bool)))


def test_pfn_tokens_and_mask():
    inputs = np.arange(6, dtype="float32").reshape(1, 3, 2)
    tokens, mask = EpisodeTokens("pfn", 3)(inputs, np.array([[2, 0, 1]], "int32"))
    tokens = np.asarray(tokens)[0]
    np.testing.assert_array_equal(tokens[:3, 2:], np.eye(3)[[2, 0, 1]])  # own labels
    np.testing.assert_array_equal(tokens[3:, 2:], 0)                     # queries: none
    np.testing.assert_array_equal(tokens[3:, :2], tokens[:3, :2])
    np.testing.assert_array_equal(np.asarray(mask)[0].astype(int), [
        [1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 0, 0], [1, 0, 0, 0, 1, 0], [1, 1, 0, 0, 0, 1]])
    np.testing.assert_array_equal(np.asarray(attention_mask(1, "pfn"))[0], [[1, 0], [0, 1]])


@pytest.mark.parametrize("arch,layout", VARIANTS)
def test_config_round_trip_and_save_load(arch, layout, tmp_path):
    dropout = 0.1 if arch == "transformer" else 0.0
    model = build_model(_config(arch, layout, dropout=dropout), SCHEMA)
    clone = keras.Model.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    episode = _episode()
    np.testing.assert_allclose(np.asarray(loaded(episode)), np.asarray(model(episode)),
                               rtol=1e-6, atol=1e-6)


def test_paper_size_matches_the_paper():
    """The model the paper preset builds has the paper's sizes (Kirsch et al. 2022,
    arXiv:2212.04458; docs/guide/training.md: N_M = 256,
    4 layers, 8 heads of key/query/value size 32, MLP 4 N_M; tokens [x_j, one_hot(y_{j-1})]),
    read off its weights, and its parameter count and accessible state follow from them."""
    d, layers_, heads, head, mlp, n_x, c = 256, 4, 8, 32, 4 * 256, 784, 10
    model = build_model(get_preset("paper").model, EpisodeSchema(100, n_x, c))
    blocks = [layer for layer in model.layers if layer.name.startswith("transformer_block_")]
    assert len(blocks) == layers_
    shapes = {w.path.split("/", 1)[1]: tuple(w.shape) for w in blocks[0].weights}
    for part in ("query", "key", "value"):
        assert shapes[f"self_attention/{part}/kernel"] == (d, heads, head), part
    assert shapes["self_attention/attention_output/kernel"] == (heads, head, d)
    assert shapes["feedforward_intermediate_dense/kernel"] == (d, mlp)
    assert shapes["feedforward_output_dense/kernel"] == (mlp, d)
    assert tuple(model.get_layer("token_embedding").kernel.shape) == (n_x + c, d)
    per_block = (3 * (d * heads * head + heads * head) + heads * head * d + d   # attention
                 + 2 * 2 * d + d * mlp + mlp + mlp * d + d)                    # norms, MLP
    assert model.count_params() == ((n_x + c) * d + d + layers_ * per_block + 2 * d
                                    + d * c + c)
    # the state: keys and values of every layer over 99 context tokens
    kv = sum(int(np.prod(w.shape[1:])) for b in blocks for w in b.weights
             if w.path.endswith(("key/kernel", "value/kernel")))
    assert state_size(get_preset("paper").model, 99) == kv * 99 == 2 * layers_ * heads * head * 99


@pytest.mark.parametrize("kw,match", [
    ({"num_heads": 3}, "num_heads=3 does not divide model_size=8"),
    ({"arch": "gru"}, "arch='gru'"),
    ({"layout": "bert"}, "layout='bert'"),
    ({"arch": "lstm", "layout": "pfn"}, "reads the paper layout only"),
    ({"positions": "sinusoidal", "layout": "pfn"}, "positions='sinusoidal'.*layout='pfn'"),
    ({"positions": "sinusoidal", "arch": "lstm"}, "positions='sinusoidal'.*arch='lstm'"),
    ({"positions": "learned"}, "positions='learned'"),
    ({"num_layers": 0}, "num_layers=0"),
    ({"dropout": 1.0}, "dropout=1.0"),
])
def test_bad_model_configs_are_named(kw, match):
    # ranges and choices fail when the config is made; relations when the model is built
    with pytest.raises(ValueError, match=match):
        build_model(dataclasses.replace(_config("transformer"), **kw), SCHEMA)


def test_lstm_state_is_fixed_size():
    cfg = ModelConfig(arch="lstm", lstm_units=32)
    assert state_size(cfg, 10) == state_size(cfg, 1000) == 64


def test_serving_mask_lets_every_query_see_the_whole_context():
    mask = np.asarray(attention_mask(2, "pfn", 3))[0].astype(int)
    np.testing.assert_array_equal(mask, [[1, 0, 0, 0, 0],     # context: causal
                                         [1, 1, 0, 0, 0],
                                         [1, 1, 1, 0, 0],     # queries: all context + itself
                                         [1, 1, 0, 1, 0],
                                         [1, 1, 0, 0, 1]])


def test_key_size_zero_derives_the_head_size_and_a_mismatch_is_named(caplog):
    from gpicl_tf.config import ModelConfig

    assert ModelConfig(model_size=64, num_heads=4, key_size=0).head_size == 16
    assert ModelConfig(model_size=64, num_heads=4, key_size=8).head_size == 8
    with pytest.raises(ValueError, match="key_size=0 derives .* num_heads=3 does not divide "
                                         "model_size=64"):
        ModelConfig(model_size=64, num_heads=3, key_size=0)
    schema = EpisodeSchema(12, 16, 10)
    derived = build_model(dataclasses.replace(_config("transformer", "pfn"), key_size=0), schema)
    explicit = build_model(_config("transformer", "pfn"), schema)   # 8 wide, 2 heads of 4
    assert derived.count_params() == explicit.count_params()
    with caplog.at_level("WARNING"):
        build_model(dataclasses.replace(_config("transformer", "pfn"), key_size=16), schema)
    assert "key_size=16 x num_heads=2 != model_size=8" in caplog.text


@pytest.mark.parametrize("arch,layout", VARIANTS)
def test_served_classes_are_those_of_the_context(arch, layout):
    """query_logits masks the classes no context label names (the placeholder label
    of a paper-layout query included): they get no probability."""
    from gpicl_tf.models.sequence_models import query_logits

    model = build_model(_config(arch, layout), SCHEMA)
    episode = _episode(length=6)
    context_y = np.array([[0, 2, 2, 0, 2, 0], [1, 3, 3, 1, 1, 3]], np.int32)
    logits = np.asarray(query_logits(model, episode["inputs"], context_y,
                                     episode["inputs"][:, :3]))
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    for b, absent in enumerate(([1, 3], [0, 2])):
        assert np.all(probabilities[b][:, absent] == 0), (arch, layout, probabilities[b])
        assert np.allclose(probabilities[b].sum(-1), 1.0)


def test_sinusoidal_positions_tell_equal_tokens_apart_and_keep_causality(tmp_path):
    """Positions change what the same weights answer, add no weights, keep the
    outputs causal, and the model saves and loads."""
    plain = build_model(_config("transformer"), SCHEMA)
    model = build_model(_config("transformer", positions="sinusoidal"), SCHEMA)
    assert "positions" in [layer.name for layer in model.layers]
    model.set_weights(plain.get_weights())
    a, b = np.asarray(plain(_episode())), np.asarray(model(_episode()))
    assert not np.allclose(a[:, 1:], b[:, 1:], atol=1e-3)
    episode, other = _episode(), _episode(seed=9)
    base = np.asarray(model(episode))
    later = {k: v.copy() for k, v in episode.items()}
    later["inputs"][:, 4:], later["labels"][:, 3:] = other["inputs"][:, 4:], other["labels"][:, 3:]
    np.testing.assert_allclose(np.asarray(model(later))[:, :4], base[:, :4], rtol=1e-5, atol=1e-5)
    path = str(tmp_path / "m.keras")
    model.save(path)
    np.testing.assert_allclose(np.asarray(keras.models.load_model(path)(episode)), base,
                               rtol=1e-6, atol=1e-6)


def test_the_pfn_serving_call_refuses_a_layer_it_would_not_replay():
    """query_logits replays a PFN Transformer's layers by hand; a model holding a
    layer it does not know (here positions, which the config forbids with the PFN
    layout) is refused with the layer's name instead of served without it."""
    import keras

    from gpicl_tf.models.layers import SinusoidalPositions
    from gpicl_tf.models.sequence_models import query_logits

    model = build_model(_config("transformer", "pfn"), SCHEMA)
    episode = _episode(length=6)
    query_logits(model, episode["inputs"], episode["labels"], episode["inputs"][:, :2])
    inputs = {k: keras.Input(shape=t.shape[1:], name=k, dtype=t.dtype)
              for k, t in zip(("inputs", "labels"), model.inputs)}
    tokens, mask = model.get_layer("episode_tokens")(inputs["inputs"], inputs["labels"])
    h = SinusoidalPositions(name="positions")(model.get_layer("token_embedding")(tokens))
    for layer in model.layers:
        if layer.name.startswith("transformer_block_"):
            h = layer(h, mask)
    h = model.get_layer("query_outputs")(model.get_layer("final_norm")(h))
    rewired = keras.Model(inputs, model.get_layer("logits")(h))
    with pytest.raises(ValueError, match=r"\['positions'\]"):
        query_logits(rewired, episode["inputs"], episode["labels"], episode["inputs"][:, :2])
