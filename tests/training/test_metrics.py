"""The paper's metrics on hand-computed numbers."""

import numpy as np
import pytest

from gpicl_tf.eval import evaluate
from gpicl_tf.training import metrics


def _logits(predicted, classes=3):
    """One-hot logits (B, T, C) that predict `predicted` (B, T)."""
    return np.eye(classes, dtype=np.float32)[np.asarray(predicted)] * 5.0


def test_per_position_accuracy_and_improvement_by_hand():
    targets = np.array([[0, 1, 2, 0], [1, 0, 1, 1]])
    predicted = np.array([[1, 1, 2, 0], [0, 0, 1, 1]])   # right: [F T T T], [F T T T]
    logits = _logits(predicted)
    everything = metrics.PositionAccuracy()
    first, last = metrics.PositionAccuracy(0, 2), metrics.PositionAccuracy(-2, None)
    improvement = metrics.WithinSequenceImprovement(window=2)
    for m in (everything, first, last, improvement):
        m.update_state(targets, logits)
    assert float(everything.result()) == pytest.approx(6 / 8)
    assert float(first.result()) == pytest.approx(2 / 4)     # positions 1-2: 2 of 4 right
    assert float(last.result()) == pytest.approx(4 / 4)      # positions 3-4: all right
    assert float(improvement.result()) == pytest.approx(2 / 4)


def test_evaluation_summary_matches_the_metrics():
    correct = np.array([[0, 1, 1, 1], [0, 0, 1, 1]], float)
    out = evaluate.learner_summary(correct)
    assert out["mean"] == [0.0, 0.5, 1.0, 1.0]
    assert out["last"] == 1.0
    # window 10 > length 4: first10 and last10 both cover all 4 positions
    assert out["first10"] == out["last10"] == pytest.approx(5 / 8)
    assert out["improvement"] == 0.0


def test_query_mse_scores_queries_only():
    y_true = np.array([[[1.0, 0.0], [2.0, 1.0], [3.0, 1.0]],
                       [[0.0, 1.0], [5.0, 0.0], [0.0, 0.0]]], np.float32)   # (y, query)
    y_pred = np.array([[9.0, 2.5, 1.0], [-2.0, 0.0, 7.0]], np.float32)
    per_episode = np.asarray(metrics.query_mse(y_true, y_pred))
    # episode 1: queries at 2.0 (pred 2.5) and 3.0 (pred 1.0): (0.25 + 4) / 2
    # episode 2: one query at 0.0 (pred -2.0): 4
    np.testing.assert_allclose(per_episode, [2.125, 4.0])
    m = metrics.QueryMSE()
    m.update_state(y_true, y_pred)
    assert float(m.result()) == pytest.approx((0.25 + 4 + 4) / 3)


def test_episode_loss_is_over_the_episodes_own_classes():
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 6, 5)).astype(np.float32)
    every = np.array([[0, 1, 2, 3, 4, 0], [4, 3, 2, 1, 0, 1]])
    loss = metrics.EpisodeCrossEntropy()
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert float(loss(every, logits)) == float(plain(every, logits))   # bit for bit
    few = np.array([[0, 2, 2, 0, 2, 0], [1, 1, 3, 3, 3, 1]])          # 2 classes each
    by_hand = []
    for b, classes in enumerate(([0, 2], [1, 3])):
        sub = logits[b][:, classes]
        target = np.array([classes.index(c) for c in few[b]])
        logp = sub - np.log(np.exp(sub).sum(-1, keepdims=True))
        by_hand += list(-logp[np.arange(6), target])
    assert float(loss(few, logits)) == pytest.approx(np.mean(by_hand), rel=1e-5)
    x = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss(few, x)
    grad = tape.gradient(value, x).numpy()
    assert np.all(grad[0][:, [1, 3, 4]] == 0) and np.all(grad[1][:, [0, 2, 4]] == 0)
    assert np.any(grad[0][:, [0, 2]] != 0)


def test_accuracy_never_counts_an_absent_class():
    targets = np.array([[0, 1, 0, 1]])
    logits = np.zeros((1, 4, 3), np.float32)
    logits[0, :, 2] = 9.0                   # class 2, absent from the episode, is largest
    logits[0, :, 0] = [1.0, 1.0, 1.0, 0.0]  # then class 0, except at the last position
    logits[0, 3, 1] = 1.0
    acc = metrics.PositionAccuracy()
    acc.update_state(targets, logits)
    assert float(acc.result()) == pytest.approx(3 / 4)   # [T F T T]
