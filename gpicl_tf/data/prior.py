"""A synthetic prior over small classification tables (`data.source="prior"`).

A task is derived from (seed, task id) alone (numpy's generator seeded by that
pair and the word "prior"), so the same id is the same task in every process.
`prior.mixture` picks the generator: "classic" (the default, below; its tasks are
byte-identical to earlier versions') or "tabicl" (TabICL's 70% MLP-based / 30%
tree-based SCMs with categorical columns and class thresholds by value or rank:
`gpicl_tf.data.prior_scm`) or "both" (each task from TabICL's mixture with
probability `tabicl_share`, else from the classic one). With
`classes_on_both_sides`, a task's `sample(rng, n, train=t)` puts every class it
keeps in both the first t rows and the rest (`gpicl_tf.data.prior_task`). A classic task draws:

- a number of features d in [min_features, max_features], of which a fraction
  in [informative_min, 1] carries signal and the rest is noise;
- a number of classes k in [min_classes, max_classes] (P(k) ~ 1/(k-1)) with class proportions
  from a Dirichlet(class_concentration) (imbalance), and a label-noise rate in
  [0, label_noise_max] (a noisy label is replaced by a uniformly drawn class);
- a mechanism, one of `kinds`:
    mlp  informative features are correlated Gaussians z; a random MLP (depth 1
         to mlp_depth_max, mostly tanh / relu, some sin / identity) maps them to
         scores;
    scm  a random structural causal model: nodes computed in order from random
         earlier parents through a random nonlinearity plus noise; the features
         are some nodes and the label is read from others, so a feature can be a
         cause or an effect of the label (TabPFN's SCM prior, Hollmann et al.
         2023, arXiv:2207.01848);
    tree informative features are correlated Gaussians z; each score is a sum of
         random axis-aligned decision trees over z (piecewise constant, with
         interactions: the tree-based prior of TabICL);
  and a head: classes are thresholds of one score at the proportions' quantiles
  (ordinal labels) or the arg-max of k random linear read-outs (nominal);
- per feature, a random scale and shift, and with probabilities
  `discrete_fraction` / `heavy_tail_fraction` a discretisation into 2 to 10
  levels (a categorical or ordinal column) or a heavy-tailed transform
  (signed power or exponential); columns are shuffled. With probability
  `discrete_heavy_fraction` a task is binary/categorical-heavy instead (most
  features discretised, half of them binary); with probability
  `missing_fraction` it blanks cells (NaN) of half its columns at random.

Episodes draw N rows of their task i.i.d. and store them *prepared* the way
`GPICLClassifier` prepares a table (`prepare_table`): standardised per feature,
clipped, scaled so the task's random projection to the model's input size keeps
unit variance, and zero-padded to `max_features` columns. The reader then
applies the task's projection and label permutation, as for a real dataset.

Example:
    >>> task = sample_task(task_rng(0, 7), PriorConfig(), num_classes=10)
    >>> x, y = task.sample(np.random.default_rng(0), 100)   # x [100, d], y [100]
"""

from __future__ import annotations

import zlib

import numpy as np

from gpicl_tf.config import PriorConfig
from gpicl_tf.data import prior_scm
from gpicl_tf.data.prior_task import Task, draw_nuisance
from gpicl_tf.errors import InvalidInputError

SOURCE = "prior"
KINDS = ("mlp", "scm", "tree")
_REFERENCE_ROWS = 2048
_MLP_ACTIVATION_P = (0.35, 0.35, 0.1, 0.2)  # tanh, relu, sin, identity: mostly smooth
_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "sin": np.sin,
    "identity": lambda z: z,
}


def check_config(cfg: PriorConfig, num_classes: int, input_size: int) -> None:
    """Raises InvalidInputError naming the first setting the prior cannot use."""
    if not cfg.kinds or any(k not in KINDS for k in cfg.kinds):
        raise InvalidInputError(f"prior.kinds={cfg.kinds!r}: each must be one of {KINDS}")
    if not 1 <= cfg.min_features <= cfg.max_features:
        raise InvalidInputError(
            f"prior.min_features={cfg.min_features} must be in [1, prior.max_features="
            f"{cfg.max_features}]")
    if not 2 <= cfg.min_classes <= cfg.max_classes:
        raise InvalidInputError(
            f"prior.min_classes={cfg.min_classes} must be in [2, prior.max_classes="
            f"{cfg.max_classes}]")
    if cfg.max_classes > num_classes:
        raise InvalidInputError(
            f"prior.max_classes={cfg.max_classes} exceeds data.num_classes={num_classes}, "
            "the model's head")
    if not 0.0 < cfg.informative_min <= 1.0:
        raise InvalidInputError(f"prior.informative_min={cfg.informative_min} must be in (0, 1]")
    for name in ("label_noise_max", "discrete_fraction", "heavy_tail_fraction"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise InvalidInputError(f"prior.{name}={getattr(cfg, name)} must be in [0, 1]")
    if cfg.class_concentration <= 0 or cfg.clip <= 0:
        raise InvalidInputError(
            f"prior.class_concentration={cfg.class_concentration} and prior.clip={cfg.clip} "
            "must be positive")
    if input_size < 1:
        raise InvalidInputError(f"data.input_size={input_size} must be positive")


def task_rng(seed: int, task_id: int) -> np.random.Generator:
    """The generator of one task's parameters."""
    return np.random.default_rng([int(seed), zlib.crc32(SOURCE.encode()), int(task_id)])


def _mlp_latent(rng: np.random.Generator, m: int, cfg: PriorConfig):
    mix = rng.standard_normal((m, m)) / np.sqrt(m) + np.eye(m) * rng.uniform(0.5, 1.5)
    depth = int(rng.integers(1, cfg.mlp_depth_max + 1))
    layers, fan_in = [], m
    for _ in range(depth):
        act = _ACTIVATIONS[rng.choice(list(_ACTIVATIONS), p=_MLP_ACTIVATION_P)]
        w = rng.standard_normal((fan_in, cfg.mlp_width)) * rng.uniform(0.5, 1.5) / np.sqrt(fan_in)
        layers.append((w, rng.standard_normal(cfg.mlp_width) * 0.5, act))
        fan_in = cfg.mlp_width

    def latent(r, n):
        z = r.standard_normal((n, m)) @ mix
        h = z
        for w, b, act in layers:
            h = act(h @ w + b)
        return z, h

    return latent


def _scm_latent(rng: np.random.Generator, m: int, cfg: PriorConfig):
    nodes = m + int(rng.integers(2, cfg.scm_extra_nodes + 3))
    roots = int(rng.integers(1, max(2, nodes // 3) + 1))
    parents, weights, acts = [], [], []
    for j in range(nodes):
        if j < roots:
            parents.append(np.zeros(0, np.int64))
            weights.append(np.zeros(0))
            acts.append(None)
            continue
        chosen = np.flatnonzero(rng.random(j) < min(1.0, 3.0 / j))
        if not len(chosen):
            chosen = np.array([int(rng.integers(j))])
        parents.append(chosen)
        weights.append(rng.standard_normal(len(chosen)) / np.sqrt(len(chosen)))
        acts.append(_ACTIVATIONS[rng.choice(list(_ACTIVATIONS))])
    noise = rng.uniform(0.01, 0.3, nodes)
    order = rng.permutation(nodes)
    features, targets = np.sort(order[:m]), order[m:]

    def latent(r, n):
        v = np.zeros((n, nodes))
        for j in range(nodes):
            if acts[j] is None:
                v[:, j] = r.standard_normal(n)
            else:
                v[:, j] = acts[j](v[:, parents[j]] @ weights[j]) + noise[j] * r.standard_normal(n)
            std = v[:, j].std()
            if std > 0:  # keep every node at a comparable scale
                v[:, j] /= std
        return v[:, features], v[:, targets]

    return latent


def _tree_latent(rng: np.random.Generator, m: int, cfg: PriorConfig):
    """Correlated Gaussians z [n, m] and scores [n, s]: each score a sum of 1 to
    tree_count_max random trees of depth 1 to tree_depth_max over z."""
    mix = rng.standard_normal((m, m)) / np.sqrt(m) + np.eye(m) * rng.uniform(0.5, 1.5)
    std = np.sqrt((mix ** 2).sum(0))
    trees = []                       # per score: list of (depth, features, thresholds, leaves)
    for _ in range(int(rng.integers(2, 9))):
        score = []
        for _ in range(int(rng.integers(1, cfg.tree_count_max + 1))):
            depth = int(rng.integers(1, cfg.tree_depth_max + 1))
            inner = 2 ** depth - 1
            features = rng.integers(0, m, inner)
            thresholds = rng.standard_normal(inner) * 0.8 * std[features]
            score.append((depth, features, thresholds, rng.standard_normal(2 ** depth)))
        trees.append(score)

    def latent(r, n):
        z = r.standard_normal((n, m)) @ mix
        rows = np.arange(n)
        scores = np.zeros((n, len(trees)))
        for s, score in enumerate(trees):
            for depth, features, thresholds, leaves in score:
                node = np.zeros(n, np.int64)                 # heap index of each row's node
                for _ in range(depth):
                    right = z[rows, features[node]] > thresholds[node]
                    node = 2 * node + 1 + right
                scores[:, s] += leaves[node - (2 ** depth - 1)]
        return z, scores

    return latent


def _head(rng: np.random.Generator, latent, k: int, cfg: PriorConfig):
    """Classes from scores: thresholds of one read-out at the class proportions'
    quantiles (ordinal), or the arg-max of k read-outs (nominal)."""
    _, ref = latent(np.random.default_rng(rng.integers(2**32)), _REFERENCE_ROWS)
    s = ref.shape[1]
    proportions = rng.dirichlet(np.full(k, cfg.class_concentration))
    if rng.random() < 0.5:
        w = rng.standard_normal(s)
        score = ref @ w
        edges = np.quantile(score, np.cumsum(proportions)[:-1])
        return lambda scores: np.searchsorted(edges, scores @ w)
    w = rng.standard_normal((s, k))
    logits = ref @ w
    # biases that move the arg-max towards the drawn proportions (a few fixed-point steps)
    b = np.zeros(k)
    for _ in range(20):
        share = np.bincount(np.argmax(logits + b, 1), minlength=k) / len(ref)
        b += 0.5 * (np.log(proportions + 1e-3) - np.log(share + 1e-3)) * logits.std()
    return lambda scores: np.argmax(scores @ w + b, axis=1)


def _transform(rng: np.random.Generator, cfg: PriorConfig, discrete: float | None = None,
               binary: float = 0.0):
    """A feature's transform; `discrete` overrides cfg.discrete_fraction, and a
    discretised feature is binary with probability `binary`."""
    scale = float(np.exp(rng.uniform(np.log(0.01), np.log(100.0))))
    shift = float(rng.standard_normal() * 3 * scale)
    u = rng.random()
    discrete = cfg.discrete_fraction if discrete is None else discrete
    if u < discrete:
        levels = 2 if binary and rng.random() < binary else int(rng.integers(2, 11))
        edges = np.sort(rng.standard_normal(levels - 1))
        values = rng.permutation(levels) if rng.random() < 0.5 else np.arange(levels)
        return lambda c: values[np.searchsorted(edges, c)].astype(np.float64)
    if u < discrete + cfg.heavy_tail_fraction:
        if rng.random() < 0.5:
            power = rng.uniform(1.5, 3.0)
            return lambda c: np.sign(c) * np.abs(c) ** power * scale + shift
        return lambda c: np.exp(np.clip(c, -20, 20)) * scale + shift
    return lambda c: c * scale + shift


def _class_count(rng: np.random.Generator, low: int, high: int) -> int:
    """k in [low, high] with P(k) proportional to 1 / (k - 1): small tables mostly
    have few classes; every count still appears."""
    ks = np.arange(low, high + 1)
    p = 1.0 / (ks - 1)
    return int(rng.choice(ks, p=p / p.sum()))


def sample_task(rng: np.random.Generator, cfg: PriorConfig, num_classes: int) -> Task:
    """Draws one task (see the module's docstring; `prior_scm` for mixture="tabicl",
    and for a `tabicl_share` of the tasks with mixture="both")."""
    if cfg.mixture == "tabicl" or (cfg.mixture == "both" and rng.random() < cfg.tabicl_share):
        return prior_scm.sample_task(rng, cfg, num_classes)
    d = int(rng.integers(cfg.min_features, cfg.max_features + 1))
    m = max(1, int(round(d * rng.uniform(cfg.informative_min, 1.0))))
    k = _class_count(rng, cfg.min_classes, min(cfg.max_classes, num_classes))
    kind = str(rng.choice(cfg.kinds))
    latent = {"mlp": _mlp_latent, "scm": _scm_latent, "tree": _tree_latent}[kind](rng, m, cfg)
    head = _head(rng, latent, k, cfg)
    # the draws below the defaults never make keep the tasks of earlier versions
    discrete, binary = None, 0.0
    if cfg.discrete_heavy_fraction and rng.random() < cfg.discrete_heavy_fraction:
        discrete, binary = float(rng.uniform(0.5, 1.0)), 0.5
    transforms = [_transform(rng, cfg, discrete, binary) for _ in range(d)]
    columns, label_noise, missing_rate, missing_columns = draw_nuisance(rng, d, cfg)
    return Task(num_features=d, num_classes=k, kind=kind, _latent=latent, _head=head,
                _noise_features=d - m, _transforms=transforms, _columns=columns,
                _label_noise=label_noise, _missing_rate=missing_rate,
                _missing_columns=missing_columns, _both_sides=cfg.classes_on_both_sides)


def task(seed: int, task_id: int, cfg: PriorConfig, num_classes: int) -> Task:
    return sample_task(task_rng(seed, task_id), cfg, num_classes)


def column_units(x: np.ndarray) -> np.ndarray:
    """Per column of `x` [n, d], the power of two at or below its largest magnitude
    (NaN ignored; 0.5 for a column without a nonzero value): dividing by it is
    exact and brings the column's magnitudes into [0, 2)."""
    magnitude = np.abs(np.where(np.isnan(x), 0.0, x)).max(0) if len(x) else \
        np.zeros(x.shape[1])
    return np.ldexp(1.0, np.frexp(magnitude)[1] - 1)


def column_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of `x` [n, d], its mean and standard deviation (NaN ignored; a
    column without a value: 0 and 0), computed on the column divided by its
    `column_units`: exactly np.nanmean's and np.nanstd's values where theirs
    neither underflow nor overflow, and a column scaled by 1e-170 or 1e300 keeps
    its statistics (its variance would underflow to 0 or overflow). No warnings."""
    if not len(x):
        return np.zeros(x.shape[1]), np.zeros(x.shape[1])
    unit = column_units(x)
    scaled = x / unit                   # x's memory order kept: numpy's sums unchanged
    scaled[:, np.all(np.isnan(x), 0)] = 0.0    # no "Mean of empty slice" warning
    return np.nanmean(scaled, 0) * unit, np.nanstd(scaled, 0) * unit


def prepare_table(x_fit: np.ndarray, x: np.ndarray, clip: float) -> np.ndarray:
    """Rows `x` [n, d] standardised with the per-feature mean and standard
    deviation of `x_fit` (`column_stats`: constant features scale 1; NaNs ignored)
    and clipped to [-clip, clip]; a missing value (NaN) becomes 0, the mean."""
    with np.errstate(invalid="ignore", over="ignore"):
        mean, std = column_stats(x_fit)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    z = np.clip((x - mean) / std, -clip, clip)
    return np.where(np.isnan(z), 0.0, z)


def pad(z: np.ndarray, width: int) -> np.ndarray:
    """Prepared columns [n, d] zero-padded to [n, width] and scaled by sqrt(width / d):
    the reader's projection A ~ N(0, 1/width) then gives the variance a projection
    A ~ N(0, 1/d) of the d columns gives (what the estimator applies)."""
    n, d = z.shape
    if d > width:
        raise InvalidInputError(f"{d} features exceed the {width} stored columns")
    out = np.zeros((n, width), np.float32)
    out[:, :d] = z * np.sqrt(width / d)
    return out


def episode(task_: Task, rng: np.random.Generator, n: int, width: int,
            clip: float) -> tuple[np.ndarray, np.ndarray]:
    """One stored episode of `task_`: x float32 [n, width] prepared, y int64 [n]."""
    x, y = task_.sample(rng, n)
    return pad(prepare_table(x, x, clip), width), y
