import dataclasses

import keras
import numpy as np
import pytest

from gpicl_tf.config import ModelConfig, get_preset
from gpicl_tf.data.schema import EpisodeSchema
from gpicl_tf.models import build_model, state_size

SCHEMA = EpisodeSchema(episode_length=8, input_size=6, num_classes=4)


def _config(arch, **kw):
    return dataclasses.replace(get_preset("smoke").model, arch=arch, model_size=8, num_heads=2,
                               key_size=4, num_layers=2, lstm_units=8, mlp_hidden=8, **kw)


def _tokens(batch=2, length=8, seed=0):
    return np.random.default_rng(seed).standard_normal(
        (batch, length, SCHEMA.token_size)).astype("float32")


@pytest.mark.parametrize("arch", ["transformer", "lstm", "mlp"])
def test_output_shapes_and_named_input(arch):
    model = build_model(_config(arch), SCHEMA)
    assert [i.name for i in model.inputs] == ["tokens"]
    for length in (1, 5, 8):
        out = model({"tokens": _tokens(length=length)})
        assert tuple(out.shape) == (2, length, SCHEMA.num_classes)
        assert str(out.dtype) in ("float32", "<dtype: 'float32'>")


@pytest.mark.parametrize("arch", ["transformer", "lstm", "mlp"])
def test_causality(arch):
    model = build_model(_config(arch), SCHEMA)
    tokens = _tokens()
    base = np.asarray(model({"tokens": tokens}))
    for j in range(7):
        changed = tokens.copy()
        changed[:, j + 1:] = _tokens(seed=j + 1)[:, j + 1:]
        out = np.asarray(model({"tokens": changed}))
        np.testing.assert_allclose(out[:, :j + 1], base[:, :j + 1], rtol=1e-5, atol=1e-5)
        assert not np.allclose(out[:, j + 1:], base[:, j + 1:])


def test_mlp_ignores_context_and_labels():
    model = build_model(_config("mlp"), SCHEMA)
    tokens = _tokens()
    changed = tokens.copy()
    changed[:, :, SCHEMA.input_size:] = 0.0  # previous labels
    changed[:, :4] = _tokens(seed=5)[:, :4]  # earlier examples
    np.testing.assert_allclose(np.asarray(model({"tokens": tokens}))[:, 4:],
                               np.asarray(model({"tokens": changed}))[:, 4:], rtol=1e-6)


@pytest.mark.parametrize("arch", ["transformer", "lstm", "mlp"])
def test_config_round_trip_and_save_load(arch, tmp_path):
    model = build_model(_config(arch, dropout=0.1 if arch == "transformer" else 0.0), SCHEMA)
    clone = keras.Model.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    tokens = _tokens()
    np.testing.assert_allclose(np.asarray(loaded({"tokens": tokens})),
                               np.asarray(model({"tokens": tokens})), rtol=1e-6, atol=1e-6)


def test_paper_size_matches_the_paper():
    cfg = get_preset("paper").model
    model = build_model(cfg, EpisodeSchema(100, 784, 10))
    block = model.get_layer("transformer_block_0")
    assert (cfg.model_size, cfg.num_layers, cfg.num_heads, cfg.key_size) == (256, 4, 8, 32)
    assert block.feedforward_intermediate_dense.units == 4 * 256
    assert state_size(cfg, 99) == 2 * 4 * 8 * 32 * 99


@pytest.mark.parametrize("kw,match", [
    ({"num_heads": 3}, "num_heads=3 does not divide model_size=8"),
    ({"arch": "gru"}, "arch='gru'"),
    ({"num_layers": 0}, "num_layers=0"),
    ({"dropout": 1.0}, "dropout=1.0"),
])
def test_bad_model_configs_are_named(kw, match):
    cfg = dataclasses.replace(_config("transformer"), **kw)
    with pytest.raises(ValueError, match=match):
        build_model(cfg, SCHEMA)


def test_lstm_state_is_fixed_size():
    cfg = ModelConfig(arch="lstm", lstm_units=32)
    assert state_size(cfg, 10) == state_size(cfg, 1000) == 64
