"""Baselines that consume the same episodes as the learner.

Each baseline, at position j (1-indexed), is fitted on examples 1..j-1 of an
episode and predicts y_j; it returns correctness float [E, len(positions)].
At position 1 there is no example: every baseline predicts class 0, which is
right with probability 1/C under random label permutations.

Example:
    >>> correct = knn(inputs, labels, positions=(1, 10, 100))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import tensorflow as tf

from gpicl_tf.errors import InvalidInputError
from gpicl_tf.eval.grid import Axis, Result, search

def check_positions(positions, length: int) -> tuple[int, ...]:
    positions = tuple(int(p) for p in positions)
    bad = [p for p in positions if not 1 <= p <= length]
    if bad:
        raise InvalidInputError(f"positions {bad} are outside [1, {length}] (the episode length)")
    return positions


def chance(labels: np.ndarray, positions, num_classes: int) -> np.ndarray:
    """Expected accuracy of guessing uniformly among the episode's classes (those its
    labels name): 1/k at every position, k <= C = `num_classes`. On sets whose
    episodes show every class this is 1/C; on a mixture with the prior's 2-10 class
    tasks it is the honest floor (1/C would understate it: 0.23 against 0.10 on the
    general_cpu mixture's meta-test episodes)."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise InvalidInputError(f"labels outside [0, {num_classes}): "
                                f"{labels.min()}..{labels.max()}")
    k = np.array([len(np.unique(row)) for row in labels], np.float64)
    return np.repeat((1.0 / k)[:, None], len(positions), axis=1)


def knn(inputs: np.ndarray, labels: np.ndarray, positions, k: int = 1) -> np.ndarray:
    """k-nearest neighbours (Euclidean, majority vote, nearest breaks ties)."""
    e, n, _ = inputs.shape
    positions = check_positions(positions, n)
    sq = np.sum(inputs**2, -1)
    dist = sq[:, :, None] + sq[:, None, :] - 2 * np.einsum("end,emd->enm", inputs, inputs)
    out = np.zeros((e, len(positions)))
    for pi, j in enumerate(positions):
        if j == 1:
            out[:, pi] = labels[:, 0] == 0
            continue
        d = dist[:, j - 1, :j - 1]                                   # [E, j-1]
        kk = min(k, j - 1)
        nearest = np.argsort(d, axis=1, kind="stable")[:, :kk]       # [E, kk]
        votes = np.take_along_axis(labels[:, :j - 1], nearest, 1)
        pred = np.array([np.bincount(v).argmax() if kk > 1 else v[0] for v in votes])
        out[:, pi] = pred == labels[:, j - 1]
    return out


def _per_episode(inputs: np.ndarray, labels: np.ndarray, positions, fit_predict) -> np.ndarray:
    """Correctness [E, P] of a classifier fitted per episode on examples 1..j-1.

    `fit_predict(x, y, query)` returns the predicted class of `query` [1, d]; it is
    called only when the context holds at least two classes (one class: predict it).
    """
    e, n, _ = inputs.shape
    positions = check_positions(positions, n)
    out = np.zeros((e, len(positions)))
    for pi, j in enumerate(positions):
        for ei in range(e):
            y = labels[ei, :j - 1]
            if j == 1:
                pred = 0
            elif len(np.unique(y)) == 1:
                pred = y[0]
            else:
                pred = fit_predict(inputs[ei, :j - 1], y, inputs[ei, j - 1:j])
            out[ei, pi] = pred == labels[ei, j - 1]
    return out


def logistic_regression(inputs: np.ndarray, labels: np.ndarray, positions,
                        c: float = 1.0) -> np.ndarray:
    """scikit-learn LogisticRegression (L2, C=c) fitted per episode and position."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    def fit_predict(x, y, query):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return LogisticRegression(C=c, max_iter=500).fit(x, y).predict(query)[0]

    return _per_episode(inputs, labels, positions, fit_predict)


@dataclasses.dataclass(frozen=True)
class SVMSettings:
    """RBF kernel SVM: regularisation C and gamma = gamma_scale / (d * var(context x))
    (gamma_scale 1 is scikit-learn's "scale")."""

    c: float
    gamma_scale: float


def svm(inputs: np.ndarray, labels: np.ndarray, positions, settings: SVMSettings) -> np.ndarray:
    """scikit-learn SVC with an RBF kernel (one-vs-one) fitted per episode and position."""
    from sklearn.svm import SVC

    def fit_predict(x, y, query):
        gamma = settings.gamma_scale / (x.shape[1] * max(float(x.var()), 1e-12))
        return SVC(C=settings.c, gamma=gamma).fit(x, y).predict(query)[0]

    return _per_episode(inputs, labels, positions, fit_predict)


def _tuning_position(inputs: np.ndarray) -> tuple[int]:
    """Baselines are tuned where the headline is read: the last position."""
    return (inputs.shape[1],)


def tune_svm(inputs: np.ndarray, labels: np.ndarray,
             cs: Axis = Axis((1.0, 3.0, 10.0, 30.0)),
             gamma_scales: Axis = Axis((0.3, 1.0, 3.0))) -> tuple[SVMSettings, Result]:
    """Picks the SVM's C and gamma on meta-TRAINING episodes: best accuracy at the
    last position, the grid widened where the best value is at its edge."""
    pos = _tuning_position(inputs)
    result = search(lambda p: svm(inputs, labels, pos, SVMSettings(p["C"], p["gamma_scale"]))[:, 0],
                    {"C": cs, "gamma_scale": gamma_scales})
    return SVMSettings(result.best["C"], result.best["gamma_scale"]), result


def tune_logistic_regression(inputs: np.ndarray, labels: np.ndarray,
                             cs: Axis = Axis((0.01, 0.1, 1.0, 10.0, 100.0))
                             ) -> tuple[float, Result]:
    """Picks logistic regression's C on meta-TRAINING episodes, as the SVM's."""
    pos = _tuning_position(inputs)
    result = search(lambda p: logistic_regression(inputs, labels, pos, c=p["C"])[:, 0],
                    {"C": cs})
    return float(result.best["C"]), result


@dataclasses.dataclass(frozen=True)
class SGDSettings:
    learning_rate: float
    steps: int


def sgd(inputs: np.ndarray, labels: np.ndarray, positions, num_classes: int,
        settings: SGDSettings) -> np.ndarray:
    """The paper's SGD baseline: a linear softmax classifier trained from zero
    by full-batch Adam on the context, all episodes at once."""
    e, n, d = inputs.shape
    positions = check_positions(positions, n)
    x = tf.constant(inputs, tf.float32)
    y = tf.one_hot(labels, num_classes)
    out = np.zeros((e, len(positions)))
    for pi, j in enumerate(positions):
        if j == 1:
            out[:, pi] = labels[:, 0] == 0
            continue
        w = _fit_linear(x[:, :j - 1], y[:, :j - 1], settings)
        logits = tf.einsum("ed,edc->ec", x[:, j - 1], w[:, :-1]) + w[:, -1]
        out[:, pi] = tf.argmax(logits, -1).numpy() == labels[:, j - 1]
    return out


def _fit_linear(x, y, settings: SGDSettings):
    """Weights [E, d + 1, C] (last row: bias) after `steps` Adam steps."""
    return _adam_linear(x, y, tf.constant(settings.learning_rate, tf.float32),
                        tf.constant(settings.steps))


@tf.function(reduce_retracing=True)
def _adam_linear(x, y, learning_rate, steps):
    e, d = tf.shape(x)[0], tf.shape(x)[2]
    xb = tf.concat([x, tf.ones_like(x[..., :1])], -1)                 # [E, j-1, d+1]
    w = tf.zeros([e, d + 1, tf.shape(y)[-1]])
    m, v = tf.zeros_like(w), tf.zeros_like(w)
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t in tf.range(1, steps + 1):
        with tf.GradientTape() as tape:
            tape.watch(w)
            logits = tf.einsum("end,edc->enc", xb, w)
            # each episode's own mean loss: the episodes train independently
            loss = tf.reduce_sum(tf.reduce_mean(
                tf.nn.softmax_cross_entropy_with_logits(y, logits), axis=1))
        g = tape.gradient(loss, w)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        tf_t = tf.cast(t, tf.float32)
        w = w - learning_rate * tf.sqrt(1 - b2**tf_t) / (1 - b1**tf_t) * m / (tf.sqrt(v) + eps)
    return w


def tune_sgd(inputs: np.ndarray, labels: np.ndarray, num_classes: int,
             learning_rates: Axis = Axis((0.01, 0.03, 0.1, 0.3)),
             steps: Axis = Axis((10, 30, 100), low=1, high=3000, integer=True)
             ) -> tuple[SGDSettings, Result]:
    """Picks the SGD baseline's settings on meta-TRAINING episodes (never the
    test episodes): best accuracy at the last position, the grid widened where
    the best value is at its edge."""
    pos = _tuning_position(inputs)
    result = search(lambda p: sgd(inputs, labels, pos, num_classes,
                                  SGDSettings(p["lr"], int(p["steps"])))[:, 0],
                    {"lr": learning_rates, "steps": steps})
    return SGDSettings(result.best["lr"], int(result.best["steps"])), result
