"""The one step every test-time ensemble shares: a member's answers mapped back.

Every ensemble here (`evaluate.ensemble_probabilities` over views of episodes, the
estimator's row and cell members over tables) relabels the classes of each member
by a permutation `perm` of the model's class slots (class c becomes slot perm[c]),
so a member's probabilities over slots are read back at perm[:k] for classes
0 .. k - 1 and, where k is below the slots, renormalised over them.

    >>> import numpy as np
    >>> classes_of_member(np.array([[0.1, 0.6, 0.3]]), np.array([2, 0, 1]), 2).round(3)
    array([[0.75, 0.25]])
"""

from __future__ import annotations

import numpy as np


def classes_of_member(probs: np.ndarray, perm: np.ndarray, k: int,
                      renormalize: bool = True) -> np.ndarray:
    """Probabilities [..., k] of classes 0 .. k - 1 from a member's [..., slots]
    whose class c was slot perm[c]; renormalised over the k (a sum below 1e-30
    divides by 1e-30) unless `renormalize` is False (k = slots: the sum is one)."""
    mine = probs[..., perm[:k]]
    if not renormalize:
        return mine
    return mine / np.maximum(mine.sum(-1, keepdims=True), 1e-30)
