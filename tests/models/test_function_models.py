import keras
import numpy as np
import pytest

from gpicl_tf.config import ModelConfig
from gpicl_tf.data.schema import INPUTS, QUERY, VALUES, EpisodeSchema
from gpicl_tf.models import build_model
from gpicl_tf.models.layers import FunctionTokens

SCHEMA = EpisodeSchema(12, 2, 0, task="regression", num_queries=4)
CONFIG = ModelConfig(layout="pfn", model_size=16, num_layers=2, num_heads=2, key_size=8)


def episode(seed=0, n=12, queries=(3, 7, 8, 11)):
    rng = np.random.default_rng(seed)
    query = np.zeros((1, n), np.float32)
    query[0, list(queries)] = 1
    values = rng.standard_normal((1, n)).astype(np.float32) * (1 - query)
    return {INPUTS: rng.uniform(-1, 1, (1, n, 2)).astype(np.float32), VALUES: values,
            QUERY: query}


def test_mask_points_see_earlier_context_and_themselves_only():
    ep = episode()
    tokens, mask = FunctionTokens()(ep[INPUTS], ep[VALUES], ep[QUERY])
    assert tokens.shape == (1, 12, 4)
    mask = np.asarray(mask)[0]
    query = ep[QUERY][0] == 1
    for i in range(12):
        for j in range(12):
            assert mask[i, j] == ((j <= i and not query[j]) or i == j), (i, j)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_model(CONFIG, SCHEMA)


def test_a_query_never_sees_hidden_values_later_points_or_other_queries(model):
    ep = episode()
    base = np.asarray(model(ep))[0]
    changed = {k: v.copy() for k, v in ep.items()}
    changed[VALUES][0, [3, 8, 11]] = 5.0        # values of other queries (never real)
    changed[VALUES][0, 9] = 5.0                 # a context point after query 7
    changed[INPUTS][0, 8] += 0.5                # another query's x
    out = np.asarray(model(changed))[0]
    np.testing.assert_allclose(out[7], base[7], atol=1e-5)
    earlier = {k: v.copy() for k, v in ep.items()}
    earlier[VALUES][0, 2] += 1.0                # a context point before query 7
    assert abs(np.asarray(model(earlier))[0, 7] - base[7]) > 1e-4


def test_a_query_given_its_true_value_predicts_the_same(model):
    # The tokens zero a query's value themselves: a caller that forgets to
    # cannot leak the answer into that query's own prediction.
    ep = episode()
    base = np.asarray(model(ep))[0]
    leaked = {k: v.copy() for k, v in ep.items()}
    leaked[VALUES][0, [3, 7, 8, 11]] = [2.0, -3.0, 4.0, 1.5]
    np.testing.assert_allclose(np.asarray(model(leaked))[0], base, atol=1e-5)
    tokens, _ = FunctionTokens()(leaked[INPUTS], leaked[VALUES], leaked[QUERY])
    assert np.all(np.asarray(tokens)[0, [3, 7, 8, 11], 2] == 0.0)


def test_queries_after_c_context_points_are_answered_from_those_c(model):
    ep = episode(queries=(6, 7, 8, 9, 10, 11))
    out = np.asarray(model(ep))[0]
    for q in range(6, 12):                      # each query alone after the same context
        alone = {k: np.concatenate([v[:, :6], v[:, q:q + 1]], 1) for k, v in ep.items()}
        np.testing.assert_allclose(np.asarray(model(alone))[0, -1], out[q], atol=1e-5)


def test_save_load_round_trip(model, tmp_path):
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    ep = episode(1)
    np.testing.assert_allclose(np.asarray(loaded(ep)), np.asarray(model(ep)), atol=1e-6)


@pytest.mark.parametrize("kw,match", [({"layout": "paper"}, "layout='paper'"),
                                      ({"arch": "lstm"}, "arch='lstm'")])
def test_bad_regression_model_configs_are_named(kw, match):
    import dataclasses

    with pytest.raises(ValueError, match=match):
        build_model(dataclasses.replace(CONFIG, **kw), SCHEMA)


def test_regression_schema_checks_queries():
    with pytest.raises(ValueError, match="num_queries=12"):
        EpisodeSchema(12, 1, 0, task="regression", num_queries=12)
    with pytest.raises(ValueError, match="task='ranking'"):
        EpisodeSchema(12, 1, 0, task="ranking")
