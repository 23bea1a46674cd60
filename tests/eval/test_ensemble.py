"""Test-time ensembles over views of an episode (evaluate.ensemble_probabilities)."""

import numpy as np
import pytest

from gpicl_tf.config import override
from gpicl_tf.eval import baselines, evaluate, report as report_lib
from gpicl_tf.data.schema import EpisodeSchema
from gpicl_tf.models import build_model

C = 4


class _FirstLabel:
    """Answers the first context label at every position, whatever the inputs:
    its views' answers, mapped back, must all be the episode's own first label."""

    name = "first_label"

    def predict(self, episode, batch_size=None, verbose=0):
        labels = episode["labels"]
        return np.eye(C)[np.broadcast_to(labels[:, :1], labels.shape)] * 5.0


class _ClassMeans:
    """Nearest class mean of the examples before each position (uniform before any):
    relabelling and rotating an episode change nothing it answers."""

    name = "class_means"

    def predict(self, episode, batch_size=None, verbose=0):
        x, y = episode["inputs"].astype(np.float64), episode["labels"]
        e, n, _ = x.shape
        out = np.zeros((e, n, C))
        for i in range(e):
            for j in range(1, n):
                for c in range(C):
                    seen = x[i, :j][y[i, :j] == c]
                    out[i, j, c] = -np.sum((x[i, j] - seen.mean(0)) ** 2) if len(seen) else -1e9
        return out


def _episodes(seed=0, e=6, n=9, d=5):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((e, n, d)).astype(np.float32), rng.integers(0, C, (e, n))


def test_views_are_mapped_back_to_the_episodes_own_classes():
    x, y = _episodes()
    p = evaluate.ensemble_probabilities(_FirstLabel(), x, y, C, members=5)
    assert p.shape == (6, 9, C)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    np.testing.assert_array_equal(p.argmax(-1), np.broadcast_to(y[:, :1], y.shape))
    assert p.max(-1).min() > 0.9


def test_an_equivariant_learner_answers_every_view_alike():
    x, y = _episodes(1)
    one = evaluate.ensemble_probabilities(_ClassMeans(), x, y, C, members=1)
    many = evaluate.ensemble_probabilities(_ClassMeans(), x, y, C, members=6)
    np.testing.assert_allclose(many, one, atol=1e-6)   # rotated inputs are float32


def test_members_one_is_the_plain_pass_and_bad_counts_are_named(smoke_config):
    x, y = _episodes(2)
    p = evaluate.ensemble_probabilities(_ClassMeans(), x, y, C)
    correct = evaluate.learner_correct(_ClassMeans(), x, y)
    np.testing.assert_array_equal((p.argmax(-1) == y).astype(float), correct)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match=f"members={bad!r}"):
            evaluate.ensemble_probabilities(_ClassMeans(), x, y, C, members=bad)
    with pytest.raises(ValueError, match="eval.ensemble=0"):
        override(smoke_config, ["eval.ensemble=0"])


def test_ensemble_rows_are_added_for_transformers_only(smoke_config):
    schema = EpisodeSchema(12, 16, 10)
    transformer = build_model(smoke_config.model, schema)
    lstm = build_model(override(smoke_config, ["model.arch=lstm", "model.layout=paper"]).model,
                       schema)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 12, 16)).astype(np.float32)
    y = rng.integers(0, 10, (8, 12))
    tuned = evaluate.TunedBaselines(1.0, baselines.SGDSettings(0.1, 5),
                                    baselines.SVMSettings(1.0, 1.0))
    methods, paired = evaluate.evaluate_set({"T": transformer, "L": lstm}, x, y, 10, (1, 12),
                                            tuned, ensemble=3)
    assert "T (ensemble of 3 views)" in methods and "L (ensemble of 3 views)" not in methods
    assert set(paired) == {"T", "L", "T (ensemble of 3 views)"}
    lines = report_lib.paired_table({"datasets": {"d": {"paired": paired}}})
    heads = [line for line in lines if "minus each baseline" in line]
    assert heads[0].startswith("T minus") and heads[1].startswith("T (ensemble of 3 views) minus")
