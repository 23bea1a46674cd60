"""One task of the table prior (`gpicl_tf.data.prior`): its rows, missing cells, and
episodes that hold every class on both their training and their test side.

A `Task` is built by a mechanism (`prior.sample_task`, `prior_scm.sample_task`) from
its parts: a latent draw (features and scores), a head (scores -> classes), per-column
transforms, a column order, label noise and missing cells. `sample(rng, n)` draws n
i.i.d. rows; `sample(rng, n, train=t)` of a task built with `classes_on_both_sides`
arranges them so that each class it keeps occurs in the first t rows and in the rest
(`both_sides_order`).

Example:
    >>> order = both_sides_order(np.random.default_rng(0), np.array([0, 0, 1, 1, 2]), 4, 2)
    >>> sorted(np.array([0, 0, 1, 1, 2])[order[:2]].tolist())   # rows 0-1: training side
    [0, 1]
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gpicl_tf.errors import InvalidInputError

_MORE_ROWS_ROUNDS = 6      # the pool of rows doubles at most this many times


@dataclasses.dataclass
class Task:
    """One sampled classification task: `sample(rng, n)` -> (x float64 [n, d], y int64 [n]).

    `levels` (int [d], or None for the classic mechanisms): per returned column, its
    number of categories (0: numeric).
    """

    num_features: int
    num_classes: int
    kind: str
    _latent: object          # rng, n -> (informative features [n, m], scores [n, s])
    _head: object            # scores [n, s] -> classes int64 [n]
    _noise_features: int
    _transforms: object      # per column a function of a [n] column, or one of x [n, d]
    _columns: np.ndarray     # column order
    _label_noise: float
    _missing_rate: float = 0.0
    _missing_columns: np.ndarray | None = None   # bool [d]: columns that lose cells
    _both_sides: bool = False
    levels: np.ndarray | None = None

    def sample(self, rng: np.random.Generator, n: int,
               train: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """n rows x [n, d] (NaN: missing) and classes y [n]. With `train` (a task
        built with classes_on_both_sides), every class kept occurs in rows [0, train)
        and in rows [train, n); without it, or for other tasks, rows are i.i.d."""
        x, y = self._rows(rng, n)
        if train is not None and self._both_sides:
            if not 1 <= train < n:
                raise InvalidInputError(f"train={train} training rows must be in [1, {n - 1}] "
                                        f"for an episode of {n} rows")
            x, y = self._both_sides_rows(rng, x, y, n, train)
        if self._missing_rate > 0:
            blank = (rng.random(x.shape) < self._missing_rate) & self._missing_columns[None]
            x = np.where(blank, np.nan, x)
        return x, y.astype(np.int64)

    def _rows(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        informative, scores = self._latent(rng, n)
        noise = rng.standard_normal((n, self._noise_features))
        x = np.concatenate([informative, noise], axis=1)
        if callable(self._transforms):
            x = self._transforms(x)
        else:
            x = np.stack([t(x[:, j]) for j, t in enumerate(self._transforms)], axis=1)
        y = self._head(scores)
        flip = rng.random(n) < self._label_noise
        y = np.where(flip, rng.integers(0, self.num_classes, n), y)
        return x[:, self._columns], y

    def _both_sides_rows(self, rng, x, y, n, train):
        """n rows drawn from a pool that grows (doubling) until `both_sides_order`
        finds an arrangement; none after _MORE_ROWS_ROUNDS: the first n i.i.d. rows."""
        for _ in range(_MORE_ROWS_ROUNDS + 1):
            order = both_sides_order(rng, y, n, train)
            if order is not None:
                return x[order], y[order]
            more_x, more_y = self._rows(rng, len(y))
            x, y = np.concatenate([x, more_x]), np.concatenate([y, more_y])
        return x[:n], y[:n]


def both_sides_order(rng: np.random.Generator, y: np.ndarray, rows: int,
                     train: int) -> np.ndarray | None:
    """Indices of `rows` rows of the pool y [P] whose first `train` hold one row or
    more of each kept class, as do the other rows; None if the pool is too small.

    The kept classes are those with two rows or more in the pool, the most frequent
    first (ties at random), at most min(train, rows - train) of them and (None
    otherwise) at least two where that allows two; rows of other classes are
    dropped. Each side's other rows are drawn at random from the kept classes'
    remaining rows, and each side is shuffled.
    """
    classes, counts = np.unique(y, return_counts=True)
    by_count = np.lexsort((rng.random(len(classes)), -counts))
    most = min(train, rows - train)
    kept = classes[by_count][counts[by_count] >= 2][:most]
    eligible = np.flatnonzero(np.isin(y, kept))
    if len(eligible) < rows or len(kept) < min(2, most):
        return None
    pool = rng.permutation(eligible)
    by_class = np.argsort(y[pool], kind="stable")          # positions in pool, class-major
    grouped = y[pool][by_class]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    used = np.zeros(len(pool), bool)
    used[by_class[starts]] = used[by_class[starts + 1]] = True
    rest, k = pool[~used], len(kept)
    fit = np.concatenate([pool[by_class[starts]], rest[:train - k]])
    test = np.concatenate([pool[by_class[starts + 1]], rest[train - k:rows - 2 * k]])
    return np.concatenate([rng.permutation(fit), rng.permutation(test)])


def draw_nuisance(rng: np.random.Generator, d: int, cfg):
    """The draws every kind of task makes after its latent and head, in this order:
    the column order, the label-noise rate and, with probability
    cfg.missing_fraction, a missing rate and the columns it hits:
    (columns, label_noise, missing_rate, missing_columns or None)."""
    columns = rng.permutation(d)
    label_noise = float(rng.uniform(0.0, cfg.label_noise_max))
    missing_rate, missing_columns = 0.0, None
    if cfg.missing_fraction and rng.random() < cfg.missing_fraction:
        missing_rate = float(rng.uniform(0.0, cfg.missing_rate_max))
        missing_columns = rng.random(d) < 0.5
    return columns, label_noise, missing_rate, missing_columns
