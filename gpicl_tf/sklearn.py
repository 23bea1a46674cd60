"""A scikit-learn classifier over an exported GPICL SavedModel.

`fit(X, y)` only stores the data; `predict_proba(X)` runs the SavedModel with
the stored data as context, learning the task in context.

Preparing a table the way the learned learner was meta-trained on tables
(`gpicl_tf.data.prior.prepare_table`): categorical columns one-hot encoded;
for each column with missing values (NaN) in the training rows an indicator
column; each feature standardised with the training rows' statistics (or, per
ensemble member, mapped through its training quantiles to a standard normal:
`preprocessing`), clipped, missing values set to the mean; then randomly
projected to the model's input size (any number of features works). Class
labels are mapped onto the model's classes; probabilities are averaged over an
ensemble of projections, label permutations and preprocessings. Training sets
longer than the model's context (`max_context_`) are subsampled per ensemble
member (`subsampled_` says so, and a warning names the sizes). More classes than
the model's class slots are predicted hierarchically (`hierarchical_`, with a
warning): groups of classes, then the classes of each group. With 30 or more
training rows, `predict_proba` is calibrated by one temperature fitted on
out-of-fold in-context predictions of the training rows (`temperature_`), and
with `prior_correction` the same predictions reweight the classes so that their
mean matches the training rows' class frequencies (`class_weights_`).

Example:
    >>> clf = GPICLClassifier("saved_models/gpicl/1", n_ensemble=8)  # doctest: +SKIP
    >>> cross_val_score(clf, X, y, cv=5)                             # doctest: +SKIP
"""

from __future__ import annotations

import json
import numbers
import os
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import type_of_target
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from gpicl_tf import released
from gpicl_tf.data import prior
from gpicl_tf.errors import InvalidInputError, MissingFileError
from gpicl_tf.sklearn_cell import CellFeed
from gpicl_tf.sklearn_row import RowFeed

PREPROCESSINGS = ("auto", "standard", "quantile", "power", "mix")
# What differs between the backbones (defaults, encoding, ensemble), one strategy
# each; n_ensemble=None and preprocessing="auto" take the strategy's defaults.
FEEDS = {feed.backbone: feed for feed in (RowFeed(), CellFeed())}
CALIBRATION_MIN_ROWS = 30
# the fewest columns feature selection offers a cell model (GPICLClassifier._select_features)
SELECTION_MIN_COLUMNS = 16

_LOADED: dict = {}
# The released models inside this package: the row Transformer of general_cpu, and the
# cell learner (versions 1 and 2 of cell_cpu, issue 28; version 3 of cell_recipe, issue 38).
GENERAL_MODEL_DIR = released.model_dir("general")
TABULAR_MODEL_DIR = released.model_dir("tabular")
# Where the estimator's model is looked for when no model_path is given: $GPICL_MODEL (a
# version directory or a model directory), else the newest complete version of the
# released model that scores best on benchmarks/tabular.py: the cell learner since its
# version 3 (0.836 mean accuracy at 100 rows on the 13 tables against the row model's
# 0.824 on the same splits; docs/tabular.md, "Version 3").
DEFAULT_MODEL_DIR = TABULAR_MODEL_DIR


def default_model_path() -> str:
    """The version directory of the default model (see DEFAULT_MODEL_DIR), or an
    error saying how to build one."""
    from gpicl_tf import io as files
    from gpicl_tf.export import saved_model

    where = os.environ.get("GPICL_MODEL") or DEFAULT_MODEL_DIR
    if os.path.exists(os.path.join(where, saved_model.CONFIG_FILE)):
        return where
    versions = sorted((int(v) for v in (os.listdir(where) if os.path.isdir(where) else [])
                       if files.is_version_name(v) and
                       os.path.exists(os.path.join(where, v, saved_model.CONFIG_FILE))),
                      reverse=True)
    if not versions:
        raise MissingFileError(
            f"no model_path given and no exported model at {where!r}; build a learner "
            "with `gpicl run --preset general_cpu --workdir runs/general_cpu "
            "--export_name general` (or `gpicl train-cell --preset cell_cpu --workdir "
            "runs/cell_cpu --export_dir saved_models`) and set GPICL_MODEL to its model "
            "or version directory")
    return os.path.join(where, str(versions[0]))


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
        model_path: an exported version, e.g. "saved_models/gpicl/3"; None:
            `default_model_path`: $GPICL_MODEL, else the newest version of the
            released model that scores best on the tabular benchmark (today the cell
            learner, gpicl_tf/released/tabular, version 3; the row model is
            gpicl_tf/released/general/1).
        n_ensemble: members averaged (a row model: random projection, label
            permutation, subsample, preprocessing each; a cell model: column
            order, class slots, preprocessing, subsamples: `gpicl_tf.sklearn_cell`);
            1 = one member; None: 8 for a row model, 4 for a cell model.
        random_state: seed of the ensemble's projections, permutations, subsamples.
        preprocessing: "standard" (standardise with the training rows' mean and
            standard deviation), "quantile" (each feature through its training
            quantiles to a standard normal), "power" (Yeo-Johnson fitted on the
            training rows), "mix" (members cycle: a row model through standard and
            quantile, a cell model through all three) or "auto" (standard for a
            row model, mix for a cell model).
        categorical_features: column indices of categorical columns (categories
            of the training rows): one-hot for a row model (unseen: all zeros), the
            category's index for a cell model (unseen: missing).
        clip: a row model's prepared values are clipped to [-clip, clip], a finite
            number > 0 (None: the model's meta-training setting, `prior.clip`, else
            6); a cell model clips inside itself, with its meta-training setting.
        max_features: prepared tables wider than this are reduced, per ensemble
            member, to their leading principal components on the context rows,
            scaled together to a mean variance of 1 (their ratios kept) and clipped,
            before the projection: the prior's tables have at most
            `prior.max_features` columns (measured: mlbench's DNA, 180 columns, 0.558
            -> 0.719 at 100 rows; standardising each component instead lost 18
            points on Ionosphere). "auto": that
            setting of the model's meta-training, where it had a prior, else no
            reduction; None: never; an int: that width. A cell model reads at most
            this many columns instead ("auto": its prior's widest tables; None: the
            model's maximum): see `feature_selection`.
        feature_selection: a cell model's table wider than `max_features_` is read
            through its columns most related to the label (`selected_features_`:
            max_features_, half or a quarter of it, whichever gives the lowest
            out-of-fold log loss on the training rows, `selection_losses_`; the
            columns ranked by ANOVA F on each context's own rows), so an
            uninformative column does not displace an informative one (measured:
            mlbench's DNA, 180 binary columns, benchmarks/tabular.py); False: a
            random subset of max_features_ columns per member. A row model
            ignores it (it reduces wide tables by principal components).
        calibrate: fit a temperature on the training rows (each of 3 folds predicted
            in context from the other two; the one temperature that minimises their
            log loss) and apply it in `predict_proba`; needs at least 30 rows, else
            the temperature stays 1. Argmax predictions do not change.
        prior_correction: reweight the classes by the training rows' class
            frequency over their mean out-of-fold probability (the same 3 folds as
            the calibration; at least 30 rows), undoing the prior the model shows
            on this table (`class_weights_`); this changes argmax predictions.
            Inductive: each row's answer stands alone. Off by default
            (`benchmarks/tabular_decisions.py`, rule "out-of-fold prior", measures it).
        progress: a progress bar (stdout) over the model calls of a predict: True,
            False, or "auto" (when it takes more than `PROGRESS_MIN_CALLS` calls).
    """

    def __init__(self, model_path: str | None = None, n_ensemble: int | None = None,
                 random_state: int = 0, preprocessing: str = "auto", categorical_features=(),
                 clip: float | None = None, max_features="auto", calibrate: bool = True,
                 progress="auto", prior_correction: bool = False,
                 feature_selection: bool = True):
        self.model_path = model_path
        self.n_ensemble = n_ensemble
        self.random_state = random_state
        self.preprocessing = preprocessing
        self.categorical_features = categorical_features
        self.clip = clip
        self.max_features = max_features
        self.calibrate = calibrate
        self.progress = progress
        self.prior_correction = prior_correction
        self.feature_selection = feature_selection

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def fit(self, X, y):
        try:   # float64 whatever X holds (float32's variance overflows from about 1e19)
            X, y = validate_data(self, X, y, dtype=np.float64,
                                 ensure_all_finite="allow-nan")
        except ValueError as e:
            if "could not convert" not in str(e):
                raise
            raise InvalidInputError(
                f"X holds values that are not numbers ({e}); encode text columns as numbers "
                "first (e.g. sklearn.preprocessing.OrdinalEncoder) and list them in "
                "categorical_features") from None
        # an int, None or a RandomState, as check_random_state takes: one int seed
        seed = self.random_state
        self.random_state_ = int(seed) if isinstance(seed, (int, np.integer)) and \
            not isinstance(seed, bool) else int(check_random_state(seed).randint(2 ** 31 - 1))
        target = type_of_target(y)
        if target not in ("binary", "multiclass"):
            raise InvalidInputError(
                f"Unknown label type: y is {target!r} (e.g. {y[:3].tolist()}); "
                "GPICLClassifier needs class labels (binary or multiclass)")
        self.model_path_ = self.model_path or default_model_path()
        _, meta = _load(self.model_path_)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise InvalidInputError(
                f"y holds 1 class ({self.classes_[0]}) in {len(y)} sample(s): "
                "GPICLClassifier needs at least two classes to learn from")
        self.class_slots_ = int(meta["schema"]["num_classes"])
        self.hierarchical_ = len(self.classes_) > self.class_slots_
        if self.hierarchical_:
            warnings.warn(f"y has {len(self.classes_)} classes, more than the "
                          f"{self.class_slots_} the model at {self.model_path_!r} predicts: "
                          "classes are predicted hierarchically (groups of classes, then "
                          "the classes of each group: `class_groups`), one more in-context "
                          "pass per group", UserWarning, stacklevel=2)
        self.backbone_ = meta.get("backbone", "row")
        feed = FEEDS[self.backbone_]
        if self.n_ensemble is not None and (
                isinstance(self.n_ensemble, bool) or
                not isinstance(self.n_ensemble, (int, np.integer)) or self.n_ensemble < 1):
            raise InvalidInputError(
                f"n_ensemble={self.n_ensemble!r} must be an integer >= 1 (or None)")
        self.n_ensemble_ = int(self.n_ensemble or feed.n_ensemble)
        if not (isinstance(self.progress, (bool, np.bool_)) or
                (isinstance(self.progress, str) and self.progress == "auto")):
            raise InvalidInputError(f"progress={self.progress!r} is not True, False or 'auto'")
        if self.preprocessing not in PREPROCESSINGS:
            raise InvalidInputError(
                f"preprocessing={self.preprocessing!r} is not one of {PREPROCESSINGS}")
        self.preprocessing_ = feed.preprocessing if self.preprocessing == "auto" \
            else self.preprocessing
        categorical = _column_indices(self.categorical_features, X.shape[1],
                                      getattr(self, "feature_names_in_", None))
        # per column, scaled by a power of two before the variance: no underflow at
        # 1e-170, no overflow at 1e300; a column with no value: constant 0 once prepared
        mean, std = prior.column_stats(X)
        self.categories_ = {int(j): np.unique(X[~np.isnan(X[:, j]), j]) for j in categorical}
        self.missing_columns_ = np.flatnonzero(np.isnan(X).any(0))
        self.max_context_ = int(meta["max_context"])
        self.subsampled_ = len(y) > self.max_context_
        if self.subsampled_:
            warnings.warn(f"{len(y)} training rows exceed the model's context of "
                          f"{self.max_context_}: each ensemble member sees a random "
                          f"{self.max_context_} of them", UserWarning, stacklevel=2)
        self.clip_ = self._clip(meta)
        self.max_features_ = self._max_features(meta, feed)
        self.train_x_ = self._encode(X)
        self.context_y_ = y_index
        self.mean_, self.scale_ = mean, np.where(std > 0, std, 1.0)
        for name in ("calibrate", "prior_correction", "feature_selection"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise InvalidInputError(f"{name}={getattr(self, name)!r} is not True or False")
        self.temperature_ = 1.0
        self.class_weights_ = np.ones(len(self.classes_))
        self.selected_features_, self.selection_losses_, oof = None, {}, None
        if self.backbone_ == "cell" and self.feature_selection and \
                self.max_features_ is not None and X.shape[1] > self.max_features_:
            oof = self._select_features()
        if (self.calibrate or self.prior_correction) and len(y) >= CALIBRATION_MIN_ROWS:
            oof = self._out_of_fold_proba() if oof is None else oof
            if self.prior_correction:
                freq = np.bincount(y_index, minlength=len(self.classes_)) / len(y_index)
                self.class_weights_ = freq / np.clip(oof.mean(0), 1e-12, None)
                oof = _reweighted(oof, self.class_weights_)
            if self.calibrate:
                self.temperature_ = self._fit_temperature(oof)
        return self

    def _clip(self, meta: dict) -> float:
        """`clip` checked (a finite number > 0), or the model's meta-training setting."""
        if self.clip is None:
            return float(meta["config"].get("prior", {}).get("clip", 6.0))
        if isinstance(self.clip, bool) or not isinstance(self.clip, numbers.Real) or \
                not np.isfinite(self.clip) or self.clip <= 0:
            raise InvalidInputError(
                f"clip={self.clip!r} must be a finite number > 0 (or None: the model's "
                "meta-training setting)")
        return float(self.clip)

    def _max_features(self, meta: dict, feed) -> int | None:
        if self.max_features is None:
            return feed.unbounded_max_features(meta)
        if isinstance(self.max_features, str):
            if self.max_features != "auto":
                raise InvalidInputError(
                    f"max_features={self.max_features!r} is not 'auto', None or an integer")
            return feed.auto_max_features(meta)
        if isinstance(self.max_features, bool) or not isinstance(
                self.max_features, (int, np.integer)) or self.max_features < 1:
            raise InvalidInputError(
                f"max_features={self.max_features!r} must be 'auto', None or an integer >= 1")
        return int(self.max_features)

    def _out_of_fold_proba(self) -> np.ndarray:
        """Out-of-fold in-context probabilities [n, classes] of the training rows
        (3 folds, each predicted from the rest)."""
        rng = np.random.default_rng([self.random_state_, 7])
        n = len(self.context_y_)
        fold = rng.permutation(n) % 3
        probs = np.zeros((n, len(self.classes_)))
        for f in range(3):
            held = fold == f
            probs[held] = self._class_proba(self.train_x_[~held], self.context_y_[~held],
                                            self.train_x_[held])
        return probs

    def _select_features(self) -> np.ndarray | None:
        """For a cell model's table wider than `max_features_`: sets
        `selected_features_`, the number of most label-related columns its
        members read (`sklearn_cell.top_columns`, chosen on each context's own
        rows), to the one of max_features_, 1/2 and 1/4 of it (at least
        SELECTION_MIN_COLUMNS) with the lowest out-of-fold log loss on the
        training rows (`selection_losses_`); returns that candidate's
        out-of-fold probabilities. Below CALIBRATION_MIN_ROWS rows, no folds:
        max_features_ columns by relevance."""
        widths = [w for w in (self.max_features_, self.max_features_ // 2,
                              self.max_features_ // 4) if w >= SELECTION_MIN_COLUMNS]
        widths = widths or [self.max_features_]
        if len(self.context_y_) < CALIBRATION_MIN_ROWS or len(widths) == 1:
            self.selected_features_ = widths[0]
            return None
        best = None
        n = len(self.context_y_)
        for w in widths:
            self.selected_features_ = w
            oof = self._out_of_fold_proba()
            loss = float(-np.mean(np.log(np.clip(oof[np.arange(n), self.context_y_],
                                                 1e-12, None))))
            self.selection_losses_[w] = loss
            if best is None or loss < best[0]:
                best = (loss, w, oof)
        self.selected_features_ = best[1]
        return best[2]

    def _fit_temperature(self, probs: np.ndarray) -> float:
        """The temperature minimising the log loss of the out-of-fold probabilities
        `probs` of the training rows."""
        from scipy.optimize import minimize_scalar

        n = len(self.context_y_)
        logp = np.log(np.clip(probs, 1e-12, 1.0))
        truth = self.context_y_

        def nll(log_t):
            z = logp / np.exp(log_t)
            z -= z.max(1, keepdims=True)
            return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(n), truth]))

        best = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
        return float(np.exp(best.x))

    def _encode(self, X: np.ndarray) -> np.ndarray:
        """X as the backbone reads it (`RowFeed.encode`, `CellFeed.encode`)."""
        return FEEDS[self.backbone_].encode(self, X)

    def predict_proba(self, X):
        check_is_fitted(self, "train_x_")
        X = validate_data(self, X, reset=False, dtype=np.float64,
                          ensure_all_finite="allow-nan")
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = (X - self.mean_) / self.scale_
        bad = np.isinf(scaled).any(1)
        if bad.any():
            raise InvalidInputError(
                f"row(s) {np.flatnonzero(bad)[:10].tolist()} of X overflow when standardised "
                "with the training data's scale; rescale X")
        probs = self._class_proba(self.train_x_, self.context_y_, self._encode(X))
        if np.any(self.class_weights_ != 1.0):
            probs = _reweighted(probs, self.class_weights_)
        if self.temperature_ != 1.0:
            probs = probs ** (1.0 / self.temperature_)
            probs /= probs.sum(1, keepdims=True)
        return probs

    def _class_proba(self, train_x: np.ndarray, train_y: np.ndarray,
                     queries: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
        """Probabilities [Q, len(classes)] of `classes` (indices into `classes_`, sorted;
        None: all), given the training rows (train_x, train_y) as context. Up to
        `class_slots_` classes: one ensemble over them. More: the classes split into
        `class_groups`, the ensemble predicts the group from all rows, then each group's
        classes from its own rows (recursively), P(c) = P(group) P(c | group), as
        TabICL's hierarchical classification does."""
        classes = np.arange(len(self.classes_)) if classes is None else classes
        local = np.searchsorted(classes, train_y)                 # 0 .. len(classes) - 1
        if len(classes) <= self.class_slots_:
            return self._ensemble_proba(train_x, local, queries, len(classes))
        groups = class_groups(len(classes), self.class_slots_)
        group_of = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)])
        top = self._ensemble_proba(train_x, group_of[local], queries, len(groups))
        out = np.zeros((len(queries), len(classes)))
        for i, members in enumerate(groups):
            rows = np.isin(local, members)
            if len(members) == 1:
                sub = np.ones((len(queries), 1))
            elif not rows.any():   # no context row of this group (a calibration fold)
                sub = np.full((len(queries), len(members)), 1.0 / len(members))
            else:
                sub = self._class_proba(train_x[rows], train_y[rows], queries,
                                        classes[members])
            out[:, members] = top[:, [i]] * sub
        return out

    def _ensemble_proba(self, train_x: np.ndarray, train_y: np.ndarray,
                        queries_raw: np.ndarray, k: int) -> np.ndarray:
        """Class probabilities [Q, k] of encoded query rows given encoded training
        rows (labels 0 .. k - 1, k <= class_slots_) as context, averaged over the
        ensemble."""
        fn, meta = _load(self.model_path_)
        feed = FEEDS[self.backbone_]
        chunks = -(-len(queries_raw) // int(meta["max_queries"]))
        bar = _progress_bar(self.progress, feed.calls(chunks, self.n_ensemble_))
        return feed.ensemble_proba(self, fn, meta, train_x, train_y, queries_raw, k, bar)

    def predict(self, X):
        check_is_fitted(self, "train_x_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


# "auto" progress: a bar once a predict takes more model calls than this
PROGRESS_MIN_CALLS = 16


def _reweighted(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rows of `probs` times per-class `weights`, renormalised."""
    out = probs * weights
    return out / np.clip(out.sum(1, keepdims=True), 1e-300, None)


def _progress_bar(progress, calls: int):
    """A callable to call once per model call: it advances a Keras progress bar
    over `calls` calls (progress True, or "auto" and calls > PROGRESS_MIN_CALLS),
    else does nothing."""
    if (isinstance(progress, str) and calls > PROGRESS_MIN_CALLS) or \
            (not isinstance(progress, str) and bool(progress)):
        import keras

        bar, done = keras.utils.Progbar(calls, unit_name="call"), [0]

        def tick():
            done[0] += 1
            bar.update(done[0])
        return tick
    return lambda: None


def class_groups(num_classes: int, slots: int) -> list[np.ndarray]:
    """Classes 0 .. num_classes - 1 (> slots) split into at most `slots` groups of
    consecutive classes, as even as can be; a group wider than `slots` is split
    again by `GPICLClassifier._class_proba`.

    >>> [g.tolist() for g in class_groups(12, 10)]
    [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
    >>> [len(g) for g in class_groups(101, 10)]
    [11, 10, 10, 10, 10, 10, 10, 10, 10, 10]
    """
    if slots < 2 or num_classes <= slots:
        raise InvalidInputError(f"class_groups needs num_classes={num_classes} > "
                                f"slots={slots} >= 2")
    return np.array_split(np.arange(num_classes), min(slots, -(-num_classes // slots)))


def _column_indices(spec, n_features: int, names) -> np.ndarray:
    """categorical_features as column indices, read as scikit-learn reads a column
    selection: a boolean mask of n_features, integer indices, or column names (of
    a DataFrame passed to fit). Raises InvalidInputError naming what is wrong."""
    items = list(np.asarray(spec, dtype=object).reshape(-1)) if spec is not None else []
    if not items:
        return np.zeros(0, int)
    if all(isinstance(v, (bool, np.bool_)) for v in items):
        if len(items) != n_features:
            raise InvalidInputError(
                f"categorical_features is a boolean mask of {len(items)} entries; X has "
                f"{n_features} columns")
        return np.flatnonzero(np.asarray(items, bool))
    if all(isinstance(v, str) for v in items):
        if names is None:
            raise InvalidInputError(
                f"categorical_features={items} names columns, but X has no column names "
                "(pass a DataFrame, or give column indices)")
        where = {str(n): i for i, n in enumerate(names)}
        unknown = [v for v in items if v not in where]
        if unknown:
            raise InvalidInputError(f"categorical_features names unknown column(s) {unknown}; "
                                    f"X has {list(names)[:20]}")
        return np.array([where[v] for v in items], int)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
               for v in items):
        raise InvalidInputError(
            f"categorical_features={items} must be column indices (integers), a boolean "
            "mask or column names")
    indices = np.array(items, int)
    if indices.min() < 0 or indices.max() >= n_features:
        raise InvalidInputError(
            f"categorical_features={items} names columns outside [0, {n_features})")
    return indices
