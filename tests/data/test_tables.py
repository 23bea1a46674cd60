"""Prior tables for the cell learner, and the prior's broader mechanisms."""

import dataclasses
import hashlib

import numpy as np
import pytest

from gpicl_tf.config import PriorConfig
from gpicl_tf.config import override
from gpicl_tf.config.cell import get_cell_preset
from gpicl_tf.data import prior, tables


@pytest.fixture
def cfg():
    return get_cell_preset("cell_smoke")


def test_a_batch_is_a_pure_function_of_seed_and_step(cfg):
    a, b = tables.table_batch(cfg, 3), tables.table_batch(cfg, 3)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    other = tables.table_batch(cfg, 4)
    assert any(a[k].shape != other[k].shape or not np.array_equal(a[k], other[k],
                                                                   equal_nan=True) for k in a)
    reseeded = tables.table_batch(override(cfg, ["train.seed=1"]), 3)
    assert not np.array_equal(reseeded["context_y"], a["context_y"]) or \
        reseeded["context_x"].shape != a["context_x"].shape


def test_shapes_follow_the_table_config(cfg):
    t, p = cfg.tables, cfg.prior
    for step in range(20):
        b = tables.table_batch(cfg, step)
        n_tables, n, c = b["context_x"].shape
        q = b["query_x"].shape[1]
        assert t.min_rows <= n + q <= t.max_rows and n >= 2 and q >= 1
        assert p.min_features <= c <= p.max_features
        assert t.min_batch <= n_tables <= t.max_batch
        assert b["query_x"].shape == (n_tables, q, c)
        assert b["context_y"].shape == (n_tables, n) and b["query_y"].shape == (n_tables, q)
        assert b["context_y"].min() >= 0 and b["context_y"].max() < cfg.model.num_classes


def test_test_rows_of_classes_absent_from_the_context_weigh_nothing(cfg):
    for step in range(10):
        b = tables.table_batch(cfg, step)
        for i in range(len(b["context_y"])):
            known = set(b["context_y"][i].tolist())
            expected = [float(v in known) for v in b["query_y"][i].tolist()]
            assert b["query_weight"][i].tolist() == expected


def test_validation_set_is_fixed_and_apart_from_training(cfg):
    a, b = tables.validation_batches(cfg), tables.validation_batches(cfg)
    assert sum(len(v["context_y"]) for v in a) == cfg.tables.validation_tables
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u["context_x"], v["context_x"])


def test_prefetcher_yields_the_steps_in_order_and_ends():
    cfg = get_cell_preset("cell_smoke")
    feeder = tables.Prefetcher(cfg, 2, 5)
    steps = [s for s, _ in feeder]
    assert steps == [2, 3, 4]
    assert list(tables.Prefetcher(cfg, 5, 5)) == []


def test_default_prior_tasks_are_those_of_earlier_versions():
    """The broader prior's knobs are off by default: the same tasks, byte for byte, as
    before they existed (digest computed with the prior of commit 7781a51)."""
    h = hashlib.sha256()
    for i in range(12):
        t = prior.task(0, i, PriorConfig(), 10)
        x, y = prior.episode(t, np.random.default_rng(i), 50, 32, 6.0)
        h.update(x.tobytes())
        h.update(y.tobytes())
    assert h.hexdigest() == "28fc12377c42e3f4b134067ab339be00d0e3a3edea0b95333339a3de26b302d2"


def test_tree_tasks_are_piecewise_constant_in_their_scores():
    cfg = PriorConfig(kinds=("tree",), min_features=4, max_features=4, informative_min=1.0,
                      discrete_fraction=0.0, heavy_tail_fraction=0.0, label_noise_max=0.0)
    task = prior.task(0, 1, cfg, 10)
    assert task.kind == "tree"
    _, scores = task._latent(np.random.default_rng(0), 500)
    # a sum of at most tree_count_max trees of depth <= tree_depth_max per score
    assert len(np.unique(scores[:, 0])) <= 2 ** cfg.tree_depth_max * cfg.tree_count_max
    x, y = task.sample(np.random.default_rng(1), 300)
    assert x.shape == (300, 4) and len(np.unique(y)) >= 2


def test_missing_values_blank_about_half_the_columns():
    cfg = PriorConfig(min_features=20, max_features=20, missing_fraction=1.0,
                      missing_rate_max=0.5)
    task = prior.task(0, 3, cfg, 10)
    x, _ = task.sample(np.random.default_rng(0), 400)
    holed = np.isnan(x).any(0)
    assert 0 < holed.sum() < 20
    np.testing.assert_array_equal(holed, task._missing_columns)
    assert np.isnan(x).mean() <= 0.5


def test_categorical_heavy_tables_are_mostly_discrete():
    cfg = PriorConfig(min_features=30, max_features=30, discrete_heavy_fraction=1.0)
    x, _ = prior.task(0, 5, cfg, 10).sample(np.random.default_rng(0), 300)
    levels = np.array([len(np.unique(x[:, j])) for j in range(30)])
    assert (levels <= 10).mean() >= 0.4
    assert (levels == 2).sum() >= 3


@pytest.mark.parametrize("key, value, match", [
    ("prior.kinds", "mlp,forest", "prior.kinds"),
    ("prior.missing_fraction", "1.5", "prior.missing_fraction=1.5"),
    ("tables.min_rows", "300", "tables.min_rows=300 exceeds tables.max_rows=24"),
    ("prior.max_features", "64", "prior.max_features=64 exceeds model.max_features=16"),
    ("model.num_heads", "3", "model.num_heads=3 does not divide model.model_size=16"),
    ("train.optimizer", "sgd", "train.optimizer='sgd'"),
])
def test_bad_settings_are_named(cfg, key, value, match):
    with pytest.raises(ValueError, match=match):
        override(cfg, [f"{key}={value}"])


def test_unknown_keys_are_named(cfg):
    with pytest.raises(KeyError, match="nope"):
        override(cfg, ["train.nope=1"])
    assert dataclasses.replace(cfg.train, steps=9).steps == 9
