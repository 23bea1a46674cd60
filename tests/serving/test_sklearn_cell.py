"""How the estimator prepares a table for a cell model (no model needed)."""

import numpy as np
import pytest

from gpicl_tf import sklearn_cell
from gpicl_tf.data import prior


def test_categorical_columns_become_category_indices_and_unseen_ones_missing():
    X = np.array([[3.0, 0.5], [7.0, 1.5], [3.0, np.nan], [9.0, 2.0]])
    out = sklearn_cell.encode(X, {0: np.array([3.0, 7.0])})
    np.testing.assert_array_equal(out[:, 0], [0.0, 1.0, 0.0, np.nan])   # 9 never seen
    np.testing.assert_array_equal(out[:, 1], X[:, 1])                    # numeric untouched


def test_members_cycle_through_the_preprocessings():
    assert [sklearn_cell.member_preprocessing("mix", m) for m in range(4)] == [
        "standard", "quantile", "power", "standard"]
    assert sklearn_cell.member_preprocessing("quantile", 5) == "quantile"


def test_power_transform_makes_a_skewed_column_symmetric_and_keeps_missing_values():
    rng = np.random.default_rng(0)
    col = np.exp(rng.standard_normal(300))[:, None]          # log-normal: skewed
    col[::10] = np.nan
    out = sklearn_cell.power_transform(col, col)
    ok = ~np.isnan(col[:, 0])
    assert np.array_equal(np.isnan(out[:, 0]), ~ok)

    def skew(v):
        return float(np.mean(((v - v.mean()) / v.std()) ** 3))

    assert skew(col[ok, 0]) > 2 and abs(skew(out[ok, 0])) < 0.3
    constant = np.ones((5, 1))
    np.testing.assert_array_equal(sklearn_cell.power_transform(constant, constant), constant)


def test_the_power_transform_is_scikit_learns():
    """Each column fitted once, without scipy's per-call dispatch (49x faster at 100
    rows x 30 columns): the same lambdas, scales and values as PowerTransformer."""
    import warnings

    from sklearn.preprocessing import PowerTransformer

    rng = np.random.default_rng(1)
    n = 80
    fit_x = np.stack([rng.lognormal(0, 2, n), -rng.lognormal(0, 1, n),
                      rng.standard_normal(n) * 1e3, rng.exponential(1, n) - 0.5,
                      rng.integers(0, 3, n).astype(float)], axis=1)
    x = np.concatenate([fit_x[:7], rng.standard_normal((5, 5)) * fit_x.std(0)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = PowerTransformer().fit(fit_x).transform(x)
    fit_out, out = sklearn_cell.power_transforms(fit_x, fit_x, x)
    np.testing.assert_allclose(out, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fit_out, PowerTransformer().fit_transform(fit_x), rtol=1e-9,
                               atol=1e-12)
    lmbda = sklearn_cell.yeo_johnson_lambda(fit_x[:, 0])
    assert lmbda == pytest.approx(PowerTransformer().fit(fit_x[:, :1]).lambdas_[0], abs=1e-9)
    assert sklearn_cell.yeo_johnson_lambda(np.zeros(4)) == 1.0
    # a column scikit-learn deems constant (spread 1e-6 at 1e8): lambda 1, scale 1, as it does
    near = (1e8 + rng.standard_normal(n) * 1e-6)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = PowerTransformer().fit(near).transform(near)
    np.testing.assert_allclose(sklearn_cell.power_transform(near, near), want, rtol=1e-9,
                               atol=1e-6)


@pytest.mark.parametrize("kind", ["standard", "quantile", "power"])
def test_a_member_uses_only_context_statistics_and_permutes_columns(kind):
    rng = np.random.default_rng(1)
    fit_x, x = rng.standard_normal((20, 6)), rng.standard_normal((5, 6))
    member = {"standard": 0, "quantile": 1, "power": 2}[kind]
    a, b = sklearn_cell.prepare_member(member, np.random.default_rng(7), "mix", fit_x, x, 6)
    columns = np.random.default_rng(7).permutation(6)
    if kind == "standard":
        np.testing.assert_array_equal(a, fit_x[:, columns])
        np.testing.assert_array_equal(b, x[:, columns])
    # the rows' preparation does not depend on the other rows (only on the context)
    _, alone = sklearn_cell.prepare_member(member, np.random.default_rng(7), "mix", fit_x,
                                           x[:1], 6)
    np.testing.assert_allclose(alone, b[:1])


def test_wide_tables_give_each_member_a_column_subset():
    rng = np.random.default_rng(2)
    fit_x = rng.standard_normal((10, 30))
    a, b = sklearn_cell.prepare_member(0, np.random.default_rng(3), "standard", fit_x,
                                       fit_x[:2], 8)
    assert a.shape == (10, 8) and b.shape == (2, 8)
    chosen = [int(np.flatnonzero((fit_x == a[:, [j]]).all(0))[0]) for j in range(8)]
    assert len(set(chosen)) == 8


def test_relevance_is_the_anova_f_statistic_and_names_the_informative_columns():
    from sklearn.feature_selection import f_classif

    rng = np.random.default_rng(4)
    y = np.arange(60) % 3
    x = rng.standard_normal((60, 8))
    x[:, 5] += 2.0 * y                                       # informative
    x[:, 2] += 1.5 * (y == 1)                                # less informative
    np.testing.assert_allclose(sklearn_cell.relevance(x, y), f_classif(x, y)[0], rtol=1e-10)
    assert sklearn_cell.top_columns(x, y, 2).tolist() == [2, 5]
    special = np.stack([np.full(60, 3.0), y * 1.0, np.where(y == 0, np.nan, y + 0.1 * x[:, 0])], 1)
    f = sklearn_cell.relevance(special, y)
    # constant: 0; separated exactly: inf; a missing value counts as the column's mean
    assert f[0] == 0.0 and f[1] == np.inf and np.isfinite(f[2]) and f[2] > 0
    assert np.all(sklearn_cell.relevance(x[:, :3], np.zeros(60)) == 0)   # one class


def test_a_member_given_columns_reads_just_those_in_its_own_order():
    rng = np.random.default_rng(5)
    fit_x = rng.standard_normal((10, 30))
    a, _ = sklearn_cell.prepare_member(0, np.random.default_rng(3), "standard", fit_x,
                                       fit_x[:2], 8, columns=np.array([4, 9, 17]))
    chosen = [int(np.flatnonzero((fit_x == a[:, [j]]).all(0))[0]) for j in range(3)]
    assert sorted(chosen) == [4, 9, 17]


def test_ensemble_members_read_the_contexts_top_columns_when_selecting():
    rng = np.random.default_rng(6)
    y = np.arange(40) % 2
    x = rng.standard_normal((40, 50))
    informative = [3, 20, 41]
    x[:, informative] += 3.0 * y[:, None]
    seen = []

    class Answer:                                            # as a served model's tensor
        def __init__(self, value):
            self.value = value

        def numpy(self):
            return self.value

    def fn(context_x, context_y, query_x):
        seen.append(context_x)
        b, q = query_x.shape[:2]
        return {"probabilities": Answer(np.full((b, q, 10), 0.1))}

    def source(column):                       # the column of x it is (scaled, float32)
        r = [abs(np.corrcoef(column, x[:, c])[0, 1]) for c in range(x.shape[1])]
        return int(np.argmax(r))

    meta = {"schema": {"num_classes": 10}, "max_context": 1024, "max_queries": 1024}
    args = (fn, meta, 2, 0, "standard", x, y, x[:4], 2, 20)
    sklearn_cell.ensemble_proba(*args, select=3)
    for member in seen[0]:                                   # [N, 3] per member
        assert sorted(source(member[:, j]) for j in range(3)) == informative
    sklearn_cell.ensemble_proba(*args)                      # no selection: 20 random columns
    assert seen[1].shape == (2, 40, 20)


def test_a_power_transform_never_sends_a_value_past_float32():
    """mlbench's Glass: a column whose fitted lambda sent a far test value past
    float32's range (an Inf the served model refused)."""
    fit = np.r_[np.full(40, 0.0), np.full(5, 0.1), [0.2]][:, None]
    far = np.array([[0.0], [50.0], [1e4]])
    out = sklearn_cell.power_transform(fit, far)
    assert np.all(np.isfinite(out.astype(np.float32)))
    assert np.all(np.abs(sklearn_cell._float32(np.array([1e300, -1e300, np.nan]))[:2]) <= 1e30)


def test_columns_reach_the_model_inside_float32s_range():
    """Each column divided by a power of two from the context (exact, and the model
    standardises with the context's statistics): a column of 1e-170 is not zeros
    in float32, one of 1e25 has a variance float32 can hold."""
    rng = np.random.default_rng(3)
    fit_x, x = rng.standard_normal((12, 3)), rng.standard_normal((4, 3))
    scale = np.array([1e-170, 1.0, 1e25])
    context, rows = sklearn_cell.to_model(fit_x * scale, x * scale)
    assert context.dtype == rows.dtype == np.float32
    assert np.all((np.abs(context).max(0) >= 1) & (np.abs(context).max(0) < 2))
    assert np.isfinite(np.var(context, 0)).all()

    def z(a, b):
        return (b - a.mean(0)) / a.std(0)

    np.testing.assert_allclose(z(context, rows), z(fit_x, x), rtol=1e-4)
    plain, _ = sklearn_cell.to_model(fit_x, x)      # a power of two: an exact division
    unit = prior.column_units(fit_x)
    assert np.all(np.frexp(unit)[0] == 0.5)
    np.testing.assert_array_equal(plain * unit.astype(np.float32), fit_x.astype(np.float32))
