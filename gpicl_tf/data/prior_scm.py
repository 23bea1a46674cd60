"""TabICL's mixture of the table prior (`prior.mixture="tabicl"`; `prior.sample_task`).

A task draws d features in [min_features, max_features] and k classes (binary half
the time, else uniform in [min_classes, max_classes]), then a structural causal model:

- with probability 1 - tree_fraction an **MLP-based SCM**: causes (normal, uniform or
  a per-column mix of normal, uniform, categorical and Zipf) go through a linear
  layer and 1 to scm_layers_max - 1 blocks (activation, linear, Gaussian noise) of
  4 to scm_hidden_max units, with block-wise or random sparse weights; half the
  tasks are causal (features and target are random units of the blocks, the target
  the last unit or any; in a contiguous "clique" or not), the others map the causes
  (the features) to one output unit;
- with probability tree_fraction a **tree-based SCM**: the causes are the features
  and 1-2 layers of 3-9 nodes, then one output node, each node a sum of 1 to
  tree_count_max random decision trees of depth 2 to tree_depth_max over the
  previous layer (a split is a threshold at the value of a reference row that
  reaches the node, the leaves are random), plus Gaussian noise: piecewise constant
  in its parents.

The target (standardised, clipped to 4 standard deviations) becomes classes by k - 1
thresholds: with probability rank_fraction at quantiles of the target placed by a
Dirichlet(class_concentration) draw (by rank: concentration 1 gives TabICL's k - 1
random rows), else at sorted N(0, 1) values (by value: imbalanced), then permuted.
Each column is categorical with probability categorical_fraction: integer codes
0..L-1 (L = round(Gamma(1, 10)) in [2, categorical_max_levels]) from thresholds at
L - 1 distinct reference values, in random order 70% of the time. Columns are
shuffled; label noise and missing cells as in the classic mixture. A model whose
reference target has fewer than two classes holding 1% of the rows is drawn again.

Ranges follow TabICL's prior (soda-inria/tabicl, src/tabicl/prior: mix 0.7 / 0.3,
cat_prob 0.2, multiclass_type value or rank, tree depth <= 4 and <= 4 estimators,
noise std 1e-4 to 0.3); statistics that TabICL takes from each dataset's own rows
are taken here from _REFERENCE_ROWS rows of the task, so a task is one fixed
function however many episodes it gives.

Example:
    >>> from gpicl_tf.config import PriorConfig
    >>> cfg = PriorConfig(mixture="tabicl", classes_on_both_sides=True)
    >>> task = sample_task(np.random.default_rng(0), cfg, num_classes=10)
    >>> x, y = task.sample(np.random.default_rng(1), 64, train=16)  # x [64, d], y [64]
"""

from __future__ import annotations

import numpy as np

from gpicl_tf.config import PriorConfig
from gpicl_tf.data.prior_task import Task, draw_nuisance

KINDS = ("mlp_scm", "tree_scm")
_REFERENCE_ROWS = 256
_ATTEMPTS = 10
_MIN_SHARE = 0.01
_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "sigmoid": lambda z: 0.5 * (1.0 + np.tanh(0.5 * z)),
    "sin": np.sin,
    "abs": np.abs,
    "square": np.square,
    "softplus": lambda z: np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))),
    "step": lambda z: (z > 0).astype(z.dtype),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.1 * z),
    "identity": lambda z: z,
}


def _log_int(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer log-uniform in [low, high]."""
    return int(min(high, np.floor(np.exp(rng.uniform(np.log(low), np.log(high + 1))))))


class _Causes:
    """The root variables: r, n -> [n, m], normal (random means and scales half the
    time), uniform, or a mix per column of normal, uniform, categorical and Zipf."""

    def __init__(self, rng: np.random.Generator, m: int):
        self.mode = int(rng.integers(3))
        self.mean, self.std = np.zeros(m), np.ones(m)
        if self.mode == 0 and rng.random() < 0.5:
            self.mean, self.std = rng.standard_normal(m), np.abs(rng.standard_normal(m)) + 0.1
        self.type = rng.integers(4, size=m) if self.mode == 2 else np.zeros(m, np.int64)
        self.cumulative = np.cumsum(rng.dirichlet(np.ones(10), size=m), axis=1)
        self.levels = rng.integers(2, 11, size=m)
        self.zipf_a = rng.uniform(2.0, 4.0, size=m)

    def __call__(self, r: np.random.Generator, n: int) -> np.ndarray:
        m = len(self.mean)
        if self.mode == 1:
            return r.random((n, m))
        x = r.standard_normal((n, m)) * self.std + self.mean
        if self.mode == 2:
            for j in np.flatnonzero(self.type):
                if self.type[j] == 1:
                    x[:, j] = r.random(n)
                elif self.type[j] == 2:     # one of `levels` values, random probabilities
                    p = self.cumulative[j, :self.levels[j]] / self.cumulative[j, self.levels[j] - 1]
                    x[:, j] = np.searchsorted(p, r.random(n), side="right")
                else:
                    x[:, j] = np.minimum(r.zipf(self.zipf_a[j], n), 1000).astype(np.float64)
        return x


def _sparse_weights(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """[fan_in, fan_out]: N(0, 1) on random diagonal blocks (half the time) or with
    a random share of entries dropped, scaled to unit variance per output."""
    w = rng.standard_normal((fan_in, fan_out))
    if rng.random() < 0.5:
        blocks = int(rng.integers(1, int(np.ceil(np.sqrt(min(fan_in, fan_out)))) + 1))
        rows, cols = np.arange(fan_in) * blocks // fan_in, np.arange(fan_out) * blocks // fan_out
        keep = rows[:, None] == cols[None, :]
    else:
        keep = rng.random((fan_in, fan_out)) >= 0.9 * rng.beta(*rng.uniform(0.1, 5.0, 2))
    keep[rng.integers(fan_in, size=fan_out), np.arange(fan_out)] = True   # no dead output
    return (w * keep / np.sqrt(np.maximum(keep.sum(0), 1))).astype(np.float32)


def _noise(rng: np.random.Generator, width: int) -> np.ndarray:
    """Per-unit noise std: log-uniform in [1e-4, 0.3], per unit |N(0, that)| half the time."""
    std = float(np.exp(rng.uniform(np.log(1e-4), np.log(0.3))))
    return np.abs(rng.standard_normal(width)) * std if rng.random() < 0.5 else np.full(width, std)


def _f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float32)


class _MLPSCM:
    """An MLP-based SCM: r, n -> (features [n, d], target [n, 1]); built on reference
    rows, whose per-unit means and deviations standardise each layer. The layers
    compute in float32 (several times faster here than float64)."""

    def __init__(self, rng: np.random.Generator, d: int, cfg: PriorConfig):
        self.causal = bool(rng.random() < 0.5)
        blocks = int(rng.integers(1, cfg.scm_layers_max))
        hidden = _log_int(rng, 4, cfg.scm_hidden_max)
        m = _log_int(rng, 1, 12) if self.causal else d
        if self.causal:                 # enough units for the features and the target
            hidden = max(hidden, -(-(2 * d + 1) // blocks))
        widths = [hidden] * (blocks + 1) + ([] if self.causal else [1])
        self.causes = _Causes(rng, m)
        self.weights = [_sparse_weights(rng, a, b) for a, b in zip([m] + widths[:-1], widths)]
        self.biases = [_f32(rng.standard_normal(w) * 0.5) for w in widths]
        names = list(_ACTIVATIONS)
        self.acts = [_ACTIVATIONS[names[i]] for i in rng.integers(len(names), size=len(widths))]
        self.gains = _f32(np.exp(rng.uniform(np.log(0.3), np.log(3.0), len(widths))))
        self.noise = [_f32(_noise(rng, w)) for w in widths]
        self.stats: list[tuple[np.ndarray, np.ndarray]] = []
        ref = np.random.default_rng(rng.integers(2**32))
        causes, flat = self._units(ref, _REFERENCE_ROWS)
        self._choose(rng, d, flat)
        self.ref_x, self.ref_y = self(ref, 0, (causes, flat))

    def _units(self, r: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(causes [n, m], every block's units float32 [n, sum of widths after the first])."""
        c = self.causes(r, n)
        h, outs = _f32(c), []
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            a = (self.acts[i](self.gains[i] * h) if i else h) @ w + b
            if len(self.stats) <= i:
                mean, std = a.mean(0), a.std(0)
                self.stats.append((mean, np.where(std > 1e-6 * (1 + np.abs(mean)), std, 1.0)))
            h = (a - self.stats[i][0]) / self.stats[i][1]
            if i:
                h = h + self.noise[i] * r.standard_normal(h.shape, dtype=np.float32)
                outs.append(h)
        return c, np.concatenate(outs, axis=1)

    def _choose(self, rng: np.random.Generator, d: int, flat: np.ndarray) -> None:
        """The feature units and the target unit of a causal SCM (non-constant units
        first), from its reference units flat [n, W]."""
        width = flat.shape[1]
        if not self.causal:
            return
        if rng.random() < 0.5:          # in a clique: a contiguous block, not the last unit
            pool = int(rng.integers(0, width - d - 1)) + rng.permutation(d + 1)
        else:
            pool = rng.permutation(width - 1)
            pool = pool[np.argsort(flat[:, pool].std(0) <= 1e-6, kind="stable")][:d + 1]
        self.target = width - 1 if rng.random() < 0.5 else int(pool[0])
        self.features = pool[1:d + 1]

    def __call__(self, r: np.random.Generator, n: int, units=None):
        causes, flat = self._units(r, n) if units is None else units
        if not self.causal:
            return causes, flat[:, -1:].astype(np.float64)
        return flat[:, self.features].astype(np.float64), flat[:, [self.target]].astype(np.float64)


class Forest:
    """`units` nodes, each the sum of `trees` random decision trees of depth `depth`
    over P parents, built on reference parents [n, P] as a fitted tree splits: a
    node's split compares one parent with the midpoint of two random reference rows
    reaching the node (of one row and the next larger reference value where those
    two are equal or the node holds one row), so no reference value sits on a
    threshold; leaves ~ N(0, 1/trees). Calling it maps parents [n, P] -> [n, units]
    (piecewise constant in the parents)."""

    def __init__(self, rng: np.random.Generator, parents: np.ndarray, units: int,
                 trees: int, depth: int):
        n, p = parents.shape
        count, inner = units * trees, 2 ** depth - 1
        self.units, self.trees, self.depth = units, trees, depth
        self.features = rng.integers(0, p, (count, inner))
        up = _next_values(parents)
        rows = rng.integers(0, n, (count, inner))           # nodes no reference row reaches
        self.thresholds = (parents[rows, self.features] + up[rows, self.features]) / 2
        self.leaves = rng.standard_normal((count, 2 ** depth)) / np.sqrt(trees)
        tree = np.arange(count)[None, :]
        node = np.zeros((n, count), np.int64)                 # heap index, per row and tree
        for _ in range(depth):
            order = np.argsort(node + rng.random(node.shape), axis=0)   # random within a node
            grouped = np.take_along_axis(node, order, axis=0)
            first = np.ones_like(grouped, bool)
            first[1:] = grouped[1:] != grouped[:-1]
            pos, t = np.nonzero(first)
            at = grouped[pos, t]
            f = self.features[t, at]
            a = order[pos, t]
            has_b = (pos + 1 < n) & (grouped[np.minimum(pos + 1, n - 1), t] == at)
            b = np.where(has_b, order[np.minimum(pos + 1, n - 1), t], a)
            va, vb = parents[a, f], parents[b, f]
            self.thresholds[t, at] = np.where(va != vb, (va + vb) / 2, (va + up[a, f]) / 2)
            node = self._step(parents, tree, node)
        self.ref_out = self._leaves(tree, node, n)

    def _step(self, x: np.ndarray, tree: np.ndarray, node: np.ndarray) -> np.ndarray:
        value = np.take_along_axis(x, self.features[tree, node], axis=1)
        return 2 * node + 1 + (value > self.thresholds[tree, node])

    def _leaves(self, tree: np.ndarray, node: np.ndarray, n: int) -> np.ndarray:
        leaf = self.leaves[tree, node - (2 ** self.depth - 1)]
        return leaf.reshape(n, self.units, self.trees).sum(-1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        tree = np.arange(self.units * self.trees)[None, :]
        node = np.zeros((len(x), tree.shape[1]), np.int64)
        for _ in range(self.depth):
            node = self._step(x, tree, node)
        return self._leaves(tree, node, len(x))


def _next_values(x: np.ndarray) -> np.ndarray:
    """Per entry of x [n, P], the next larger value of its column (its value + 1
    for a column's largest)."""
    n = len(x)
    order = np.argsort(x, axis=0)
    s = np.take_along_axis(x, order, axis=0)
    last = np.ones_like(s, bool)                      # the last of a run of equal values
    last[:-1] = s[1:] != s[:-1]
    end = np.minimum.accumulate(np.where(last, np.arange(n)[:, None], n)[::-1], axis=0)[::-1]
    nxt = np.take_along_axis(s, np.minimum(end + 1, n - 1), axis=0)
    nxt = np.where(end + 1 < n, nxt, s + 1.0)
    up = np.empty_like(x)
    np.put_along_axis(up, order, nxt, axis=0)
    return up


class _TreeSCM:
    """A tree-based SCM: r, n -> (causes [n, d] as the features, target [n, 1]); the
    causes through 1-2 layers of 3-9 forest nodes and one output node, each with
    Gaussian noise. The forests are built on the reference rows' noise-free node
    values (a node's values cluster at its leaves' sums; the splits fall between
    clusters), so noise moves a row across a split only where it is near one."""

    def __init__(self, rng: np.random.Generator, d: int, cfg: PriorConfig):
        self.causes = _Causes(rng, d)
        widths = [int(rng.integers(3, 10))] * int(rng.integers(1, 3)) + [1]
        ref = np.random.default_rng(rng.integers(2**32))
        h = self.ref_x = self.causes(ref, _REFERENCE_ROWS)
        self.layers = []
        for width in widths:         # splits between the noise-free values of the parents
            depth = min(2 + int(rng.exponential(2.0)), cfg.tree_depth_max)
            trees = min(1 + int(rng.exponential(2.0)), cfg.tree_count_max)
            forest, noise = Forest(rng, h, width, trees, depth), _noise(rng, width)
            self.layers.append((forest, noise))
            h = forest.ref_out
        self.ref_y = h               # noise-free: the class edges fall between its values

    def __call__(self, r: np.random.Generator, n: int):
        x = h = self.causes(r, n)
        for forest, noise in self.layers:
            out = forest(h)
            h = out + noise * r.standard_normal(out.shape)
        return x, h


def _class_head(rng: np.random.Generator, ref_y: np.ndarray, k: int, cfg: PriorConfig):
    """scores [n, 1] -> classes [n] by k - 1 thresholds on the standardised target
    (by rank or by value, see the module), or None when the reference rows give
    fewer than two classes holding _MIN_SHARE of them."""
    y = ref_y[:, 0]
    mean, std = float(y.mean()), float(y.std())
    if not np.isfinite(std) or std <= 1e-12 * max(1.0, abs(mean)):
        return None
    z = np.clip((y - mean) / std, -4.0, 4.0)
    if rng.random() < cfg.rank_fraction:
        proportions = rng.dirichlet(np.full(k, cfg.class_concentration))
        edges = np.quantile(z, np.cumsum(proportions)[:-1])
    else:
        edges = np.sort(rng.standard_normal(k - 1))
    # each edge to the midpoint of the reference values around it: a target with few
    # distinct values (a tree SCM's) never has a value on an edge that noise would split
    values = np.unique(z)
    i = np.searchsorted(values, edges, side="right")
    inside = (i > 0) & (i < len(values))
    j = np.clip(i, 1, len(values) - 1)
    edges = np.where(inside, (values[j - 1] + values[j]) / 2, edges)
    shares = np.bincount(np.searchsorted(edges, z), minlength=k) / len(z)
    if (shares >= _MIN_SHARE).sum() < 2:
        return None
    order = rng.permutation(k)
    return lambda s: order[np.searchsorted(edges, np.clip((s[:, 0] - mean) / std, -4.0, 4.0))]


def _categorical(rng: np.random.Generator, ref_x: np.ndarray, cfg: PriorConfig):
    """(x [n, d] -> x with some columns integer codes, levels int [d]; 0: numeric)."""
    d = ref_x.shape[1]
    levels, coders = np.zeros(d, np.int64), []
    for j in np.flatnonzero(rng.random(d) < cfg.categorical_fraction):
        distinct = np.unique(ref_x[:, j])
        count = int(np.clip(round(rng.gamma(1.0, 10.0)), 2, cfg.categorical_max_levels))
        count = min(count, len(distinct))
        if count < 2:
            continue
        # thresholds at distinct values below the largest: every code holds a value
        edges = np.sort(rng.choice(distinct[:-1], count - 1, replace=False))
        codes = rng.permutation(count) if rng.random() < 0.7 else np.arange(count)
        coders.append((j, edges, codes.astype(np.float64)))
        levels[j] = count

    def transform(x: np.ndarray) -> np.ndarray:
        if coders:
            x = x.copy()
        for j, edges, codes in coders:
            x[:, j] = codes[np.searchsorted(edges, x[:, j])]
        return x

    return transform, levels


def _class_count(rng: np.random.Generator, low: int, high: int) -> int:
    """Binary half the time (when low is 2), else uniform in [low, high]."""
    if low == 2 and rng.random() < 0.5:
        return 2
    return int(rng.integers(low, high + 1))


def sample_task(rng: np.random.Generator, cfg: PriorConfig, num_classes: int) -> Task:
    """Draws one task of TabICL's mixture (see the module's docstring)."""
    d = int(rng.integers(cfg.min_features, cfg.max_features + 1))
    k = _class_count(rng, cfg.min_classes, min(cfg.max_classes, num_classes))
    kind = KINDS[int(rng.random() < cfg.tree_fraction)]
    for _ in range(_ATTEMPTS):
        scm = (_TreeSCM if kind == "tree_scm" else _MLPSCM)(rng, d, cfg)
        head = _class_head(rng, scm.ref_y, k, cfg)
        if head is not None:
            break
    else:                                   # a constant target each time: median split
        median = float(np.median(scm.ref_y))
        head = lambda s: (s[:, 0] > median).astype(np.int64)  # noqa: E731
    transform, levels = _categorical(rng, scm.ref_x, cfg)
    columns, label_noise, missing_rate, missing_columns = draw_nuisance(rng, d, cfg)
    return Task(num_features=d, num_classes=k, kind=kind, _latent=scm, _head=head,
                _noise_features=0, _transforms=transform, _columns=columns,
                _label_noise=label_noise, _missing_rate=missing_rate,
                _missing_columns=missing_columns, _both_sides=cfg.classes_on_both_sides,
                levels=levels[columns])
