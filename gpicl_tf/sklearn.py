"""A scikit-learn classifier over an exported GPICL SavedModel.

`fit(X, y)` only stores the data; `predict_proba(X)` runs the SavedModel with
the stored data as context, learning the task in context. Features are
standardised, then randomly projected to the model's input size (any number
of features works); class labels are mapped onto the model's classes; the
probabilities are averaged over an ensemble of random projections and label
permutations. Contexts longer than the model's maximum are subsampled per
ensemble member.

Example:
    >>> clf = GPICLClassifier("saved_models/gpicl/1", n_ensemble=8)  # doctest: +SKIP
    >>> cross_val_score(clf, X, y, cv=5)                             # doctest: +SKIP
"""

from __future__ import annotations

import json
import os

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from gpicl_tf.errors import InvalidInputError, MissingFileError

_LOADED: dict = {}


def _load(path: str):
    """(serving function, metadata) of a SavedModel version, cached per path."""
    if path not in _LOADED:
        import tensorflow as tf

        from gpicl_tf.export import saved_model

        meta_path = os.path.join(path, saved_model.CONFIG_FILE)
        if not os.path.exists(meta_path):
            raise MissingFileError(
                f"{path!r} is not a gpicl_tf SavedModel version "
                f"({saved_model.CONFIG_FILE} missing)")
        with open(meta_path) as f:
            meta = json.load(f)
        _LOADED[path] = (tf.saved_model.load(path).signatures[saved_model.SIGNATURE], meta)
    return _LOADED[path]


class GPICLClassifier(ClassifierMixin, BaseEstimator):
    """In-context classifier over a SavedModel version directory.

    Args:
        model_path: an exported version, e.g. "saved_models/gpicl/3".
        n_ensemble: random projections/permutations averaged (1 = none).
        random_state: seed of the ensemble's projections, permutations, subsamples.
    """

    def __init__(self, model_path: str, n_ensemble: int = 8, random_state: int = 0):
        self.model_path = model_path
        self.n_ensemble = n_ensemble
        self.random_state = random_state

    def fit(self, X, y):
        X, y = validate_data(self, X, y)
        target = type_of_target(y)
        if target not in ("binary", "multiclass"):
            raise InvalidInputError(
                f"Unknown label type: y is {target!r} (e.g. {y[:3].tolist()}); "
                "GPICLClassifier needs class labels (binary or multiclass)")
        _, meta = _load(self.model_path)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise InvalidInputError(
                f"y holds 1 class ({self.classes_[0]}) in {len(y)} sample(s): "
                "GPICLClassifier needs at least two classes to learn from")
        num_classes = meta["schema"]["num_classes"]
        if len(self.classes_) > num_classes:
            raise InvalidInputError(
                f"y has {len(self.classes_)} classes; the model at "
                f"{self.model_path!r} predicts at most {num_classes}")
        if self.n_ensemble < 1:
            raise InvalidInputError(f"n_ensemble={self.n_ensemble} must be at least 1")
        with np.errstate(over="ignore", invalid="ignore"):
            mean, std = X.mean(0), X.std(0)
        overflow = np.flatnonzero(~(np.isfinite(mean) & np.isfinite(std)))
        if overflow.size:
            raise InvalidInputError(
                f"feature(s) {overflow[:10].tolist()} are too large to standardise "
                "in float64 (their mean or standard deviation overflows); rescale X")
        self.mean_ = mean
        self.scale_ = np.where(std > 0, std, 1.0)
        self.context_x_ = (X - self.mean_) / self.scale_
        self.context_y_ = y_index
        return self

    def _member(self, m: int, meta: dict):
        rng = np.random.default_rng([self.random_state, m])
        d, n_x = self.n_features_in_, meta["schema"]["input_size"]
        projection = rng.standard_normal((d, n_x)) / np.sqrt(d)
        permutation = rng.permutation(meta["schema"]["num_classes"])
        n = len(self.context_y_)
        keep = np.sort(rng.choice(n, meta["max_context"], replace=False)) \
            if n > meta["max_context"] else np.arange(n)
        return projection, permutation, keep

    def predict_proba(self, X):
        check_is_fitted(self, "context_x_")
        X = validate_data(self, X, reset=False)  # names a feature count unlike fit's
        fn, meta = _load(self.model_path)
        with np.errstate(over="ignore", invalid="ignore"):
            queries = (X - self.mean_) / self.scale_
        if not np.all(np.isfinite(queries)):
            rows = np.flatnonzero(~np.all(np.isfinite(queries), 1))
            raise InvalidInputError(
                f"row(s) {rows[:10].tolist()} of X overflow when standardised with "
                "the training data's scale; rescale X")
        k = len(self.classes_)
        total = np.zeros((len(X), k))
        step = meta["max_queries"]
        for m in range(self.n_ensemble):
            projection, permutation, keep = self._member(m, meta)
            context_x = (self.context_x_[keep] @ projection)[None].astype(np.float32)
            context_y = permutation[self.context_y_[keep]][None].astype(np.int64)
            for start in range(0, len(X), step):
                q = (queries[start:start + step] @ projection)[None].astype(np.float32)
                probs = fn(context_x=context_x, context_y=context_y,
                           query_x=q)["probabilities"].numpy()[0]     # [Q, C]
                mine = probs[:, permutation[:k]]                     # class i <- model class rho(i)
                total[start:start + step] += mine / mine.sum(1, keepdims=True)
        return total / self.n_ensemble

    def predict(self, X):
        check_is_fitted(self, "context_x_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
