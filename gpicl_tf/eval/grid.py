"""Grid search for baseline settings that widens a grid whose best value is at an edge.

A baseline tuned on a grid whose chosen value sits at the grid's edge has not
been tuned: the best setting may lie beyond it. `search` scores the full grid,
and while the best point lies on an edge of a widenable axis, adds the next
value beyond that edge (one geometric step) and scores the new points, logging
each widening, up to `max_widenings` times per axis side. A point's score is
its per-episode scores [E] (or one number); the choice is the best mean, and
its stability is the fraction of bootstrap resamples of the episodes in which
the same point wins.

Example:
    >>> result = search(lambda p: -(p["c"] - 30.0) ** 2, {"c": Axis((1.0, 3.0, 10.0))})
    >>> result.best["c"], result.widened[0]
    (33.0, 'c: best 10.0 at the upper edge of [1.0, 3.0, 10.0]; added 33.0')
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Callable

import numpy as np
from absl import logging

from gpicl_tf.errors import InvalidInputError


@dataclasses.dataclass(frozen=True)
class Axis:
    """Increasing positive values of one setting.

    Attributes:
        values: the initial grid, increasing (a single value: fixed, never widened).
        low, high: hard bounds; the grid never widens past them (e.g. steps >= 1).
        integer: round widened values to integers.
    """

    values: tuple
    low: float = 0.0
    high: float = float("inf")
    integer: bool = False

    def __post_init__(self):
        if not self.values or any(b <= a for a, b in zip(self.values, self.values[1:])):
            raise InvalidInputError(f"grid {self.values} must hold increasing values")
        if self.values[0] <= 0:
            raise InvalidInputError(
                f"grid {self.values} must be positive (it widens geometrically)")

    def beyond(self, values: tuple, upper: bool):
        """The next value past the lower or upper edge of `values`, or None at a bound."""
        if len(values) < 2:
            return None
        if upper:
            new = values[-1] * values[-1] / values[-2]
        else:
            new = values[0] * values[0] / values[1]
        new = float(f"{new:.2g}")  # two significant digits: 33.3.. -> 33
        if self.integer:
            new = int(round(new))
            if new in values:
                new = values[-1] + 1 if upper else values[0] - 1
        if not self.low <= new <= self.high or new <= 0:
            return None
        return new


@dataclasses.dataclass(frozen=True)
class Result:
    """What a search chose and why.

    Attributes:
        best: the chosen point {axis: value}.
        scores: {"a=1,b=2": mean score} of every point scored.
        widened: one message per widening of the grid.
        stability: fraction of bootstrap resamples of the episodes in which
            `best` still scores highest (1.0 = the choice never changes).
        episodes: how many episodes each point was scored on.
    """

    best: dict
    scores: dict
    widened: list
    stability: float
    episodes: int


def _label(names, point) -> str:
    return ",".join(f"{n}={v}" for n, v in zip(names, point))


def stability(per_episode: dict, best, resamples: int = 1000, seed: int = 0) -> float:
    """Fraction of bootstrap resamples of the episodes in which `best` has the
    highest mean score (ties count for `best`)."""
    points = list(per_episode)
    matrix = np.stack([np.broadcast_to(np.asarray(per_episode[p], np.float64),
                                       np.shape(per_episode[best])) for p in points])
    e = matrix.shape[1] if matrix.ndim == 2 else 1
    if matrix.ndim == 1 or e < 2:
        return 1.0
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, e, size=(resamples, e))
    means = matrix[:, idx].mean(-1)                       # [P, resamples]
    return float(np.mean(means[points.index(best)] >= means.max(0) - 1e-12))


def search(score: Callable[[dict], np.ndarray | float], axes: dict[str, Axis],
           max_widenings: int = 3) -> Result:
    """Maximises the mean of `score(point)` over the grid of `axes`, widening at edges."""
    names = list(axes)
    grids = {n: tuple(axes[n].values) for n in names}
    per_episode: dict[tuple, np.ndarray] = {}

    def score_all():
        for point in itertools.product(*(grids[n] for n in names)):
            if point not in per_episode:
                per_episode[point] = np.atleast_1d(np.asarray(score(dict(zip(names, point))),
                                                              np.float64))

    def best_point():
        return max(per_episode, key=lambda p: per_episode[p].mean())

    score_all()
    widened, log = {}, []
    while True:
        best = best_point()
        grew = False
        for n, value in zip(names, best):
            grid = grids[n]
            for upper, edge in ((False, grid[0]), (True, grid[-1])):
                if value != edge or widened.get((n, upper), 0) >= max_widenings:
                    continue
                new = axes[n].beyond(grid, upper)
                if new is None:
                    continue
                message = (f"{n}: best {value} at the {'upper' if upper else 'lower'} edge of "
                           f"{list(grid)}; added {new}")
                logging.info("baseline grid widened: %s", message)
                log.append(message)
                grids[n] = grid + (new,) if upper else (new,) + grid
                widened[(n, upper)] = widened.get((n, upper), 0) + 1
                grew = True
        if not grew:
            break
        score_all()
    best = best_point()
    return Result(best=dict(zip(names, best)),
                  scores={_label(names, p): round(float(v.mean()), 5)
                          for p, v in per_episode.items()},
                  widened=log, stability=round(stability(per_episode, best), 3),
                  episodes=int(per_episode[best].size))
