import numpy as np
import pytest

from gpicl_tf.eval import baselines
from gpicl_tf.eval.grid import Axis


def _separable(episodes=24, length=40, dim=8, classes=4, seed=0):
    """Each class a far-apart cluster: any honest learner is near 1.0 late."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((episodes, classes, dim)) * 6
    labels = rng.integers(0, classes, (episodes, length))
    x = np.take_along_axis(means, labels[..., None].repeat(dim, -1), 1)
    return (x + rng.standard_normal(x.shape)).astype("float32"), labels


@pytest.mark.parametrize("name", ["knn", "logistic_regression", "sgd", "svm"])
def test_baselines_solve_separable_tasks(name):
    x, y = _separable()
    positions = (1, 2, 20, 40)
    if name == "sgd":
        correct = baselines.sgd(x, y, positions, 4, baselines.SGDSettings(0.1, 50))
    elif name == "svm":
        correct = baselines.svm(x, y, positions, baselines.SVMSettings(10.0, 1.0))
    else:
        correct = getattr(baselines, name)(x, y, positions)
    assert correct.shape == (24, 4)
    assert set(np.unique(correct)) <= {0.0, 1.0}
    assert correct[:, 2:].mean() > 0.95
    assert correct[:, 0].mean() == pytest.approx((y[:, 0] == 0).mean())


def test_baselines_are_fitted_on_the_prefix_only():
    x, y = _separable(episodes=4, length=6)
    x[:, 5:] = x[:, :1]        # example 6 repeats example 1 ...
    y2 = y.copy()
    y2[:, 5] = (y[:, 0] + 1) % 4  # ... with another label: the nearest neighbour is wrong
    assert baselines.knn(x, y2, (6,)).sum() == 0
    # A baseline never sees the label it predicts: changing y_j leaves its prediction.
    for fn in (baselines.knn, baselines.logistic_regression,
               lambda x, y, p: baselines.svm(x, y, p, baselines.SVMSettings(10.0, 1.0))):
        a = fn(x, y, (3,))
        flipped = y.copy()
        flipped[:, 2] = (y[:, 2] + 1) % 4
        b = fn(x, flipped, (3,))
        assert ((a == 1) & (b == 1)).sum() == 0  # never right for both labels


def test_chance_is_one_over_the_episodes_classes():
    every = np.tile(np.arange(10), (2, 2))                       # all 10 classes shown
    assert baselines.chance(every, (1, 20), 10).tolist() == [[0.1, 0.1]] * 2
    two = np.array([[3, 7, 7, 3, 3], [0, 0, 0, 0, 0]])            # a 2-class and a 1-class task
    assert baselines.chance(two, (1, 5), 10).tolist() == [[0.5, 0.5], [1.0, 1.0]]
    with pytest.raises(ValueError, match="outside"):
        baselines.chance(np.array([[0, 10]]), (1,), 10)


def test_positions_are_checked():
    x, y = _separable(episodes=2, length=5)
    with pytest.raises(ValueError, match=r"positions \[0, 6\] are outside \[1, 5\]"):
        baselines.knn(x, y, (0, 3, 6))


def test_sgd_tuning_picks_the_best_grid_point():
    x, y = _separable(episodes=8)
    chosen, result = baselines.tune_sgd(x, y, 4, learning_rates=Axis((1e-5, 0.1), high=0.1),
                                        steps=Axis((1, 30), low=1, high=30, integer=True))
    assert (chosen.learning_rate, chosen.steps) == (0.1, 30)
    assert result.scores["lr=0.1,steps=30"] == max(result.scores.values())
    assert result.episodes == 8 and 0 < result.stability <= 1


def test_svm_tuning_picks_the_best_grid_point():
    x, y = _separable(episodes=8)
    # A huge gamma makes every kernel value ~0 away from the training points: no better
    # than guessing; the sensible scale wins.
    chosen, result = baselines.tune_svm(x, y, cs=Axis((10.0,)),
                                        gamma_scales=Axis((1.0, 1e4), low=1.0))
    assert chosen == baselines.SVMSettings(10.0, 1.0)
    scores = result.scores
    assert scores["C=10.0,gamma_scale=1.0"] > scores["C=10.0,gamma_scale=10000.0"] + 0.3


def test_logistic_regression_c_is_tuned_and_widened_at_the_edge():
    x, y = _separable(episodes=8)
    # Separable episodes: the weakest regularisation wins, so the grid must grow upwards.
    c, result = baselines.tune_logistic_regression(x, y, cs=Axis((1e-5, 1e-4)))
    assert c >= 1e-3 and result.scores[f"C={c}"] == 1.0
    assert result.widened and "upper edge" in result.widened[0]
    assert result.scores[f"C={c}"] == max(result.scores.values())
