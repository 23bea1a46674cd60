import os

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from gpicl_tf.sklearn import FEEDS, GPICLClassifier

ROW = FEEDS["row"]

# starts a server process or trains and exports a model: not in the fast loop
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def version(model_base):
    return os.path.join(model_base, "gpicl", "1")


def _data(n=40, d=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.array(["cat", "dog", "emu"][:classes])[rng.integers(0, classes, n)]
    return rng.standard_normal((n, d)) + (y == "dog")[:, None] * 2.0, y


def test_fit_predict_shapes_and_labels(version):
    X, y = _data()
    clf = GPICLClassifier(version, n_ensemble=3).fit(X, y)
    proba = clf.predict_proba(X[:7])
    assert proba.shape == (7, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    assert set(clf.predict(X[:7])) <= {"cat", "dog", "emu"}
    assert list(clf.classes_) == ["cat", "dog", "emu"]
    np.testing.assert_array_equal(proba, GPICLClassifier(version, n_ensemble=3).fit(X, y)
                                  .predict_proba(X[:7]))  # seeded


def test_long_context_is_subsampled(version):
    X, y = _data(n=30)  # the smoke model's maximum context is 11
    with pytest.warns(UserWarning, match="30 training rows exceed the model's context of 11"):
        clf = GPICLClassifier(version, n_ensemble=2).fit(X, y)
    assert clf.subsampled_ and clf.max_context_ == 11
    assert not GPICLClassifier(version).fit(X[:11], y[:11]).subsampled_
    assert clf.predict_proba(X[:4]).shape == (4, 3)
    _, _, keep = ROW.member(clf, 0, {"schema": {"input_size": 16, "num_classes": 10},
                                     "max_context": 11})
    assert len(keep) == 11 and len(set(keep)) == 11


def test_cross_val_score_and_pipeline(version):
    """cross_val_score's scores are the accuracies of the pipeline fitted and
    predicting by hand on the same folds (the seeded estimator repeats itself)."""
    from sklearn.model_selection import StratifiedKFold

    X, y = _data(n=30)
    scores = cross_val_score(make_pipeline(MinMaxScaler(), GPICLClassifier(version, 2)), X, y,
                             cv=3)
    want = [np.mean(make_pipeline(MinMaxScaler(), GPICLClassifier(version, 2))
                    .fit(X[fit], y[fit]).predict(X[test]) == y[test])
            for fit, test in StratifiedKFold(3).split(X, y)]
    np.testing.assert_allclose(scores, want)


def test_errors_name_the_problem(version, tmp_path):
    X, y = _data()
    with pytest.warns(UserWarning, match="11 classes, more than the 10 .* hierarchically"):
        assert GPICLClassifier(version).fit(np.zeros((11, 2)), np.arange(11)).hierarchical_
    clf = GPICLClassifier(version).fit(X, y)
    with pytest.raises(ValueError, match="X has 2 features, but GPICLClassifier is expecting 5"):
        clf.predict(np.zeros((3, 2)))
    with pytest.raises(FileNotFoundError, match="not a gpicl_tf SavedModel"):
        GPICLClassifier(str(tmp_path)).fit(X, y)
    with pytest.raises(ValueError, match="n_ensemble=0"):
        GPICLClassifier(version, n_ensemble=0).fit(X, y)


def test_continuous_targets_and_overflowing_features_are_refused(version):
    X, _ = _data()
    with pytest.raises(ValueError, match="Unknown label type: y is 'continuous'"):
        GPICLClassifier(version).fit(X, np.linspace(0.0, 1.0, len(X)))
    X, y = _data()
    clf = GPICLClassifier(version, n_ensemble=1).fit(X * 1e-150, y)   # a scale of ~1e-150
    with pytest.raises(ValueError, match=r"row\(s\) \[0\] of X overflow"):
        clf.predict(np.vstack([X[:1] * 1e160, X[1:3] * 1e-150]))


def _released(name: str) -> str:
    from gpicl_tf import sklearn as sk

    models = {"general": sk.GENERAL_MODEL_DIR, "tabular": sk.TABULAR_MODEL_DIR}
    return os.path.join(models[name], "1")


@pytest.mark.parametrize("name", ["general", "tabular"])
def test_more_classes_than_slots_are_predicted_through_class_groups(name):
    """15 well-separated classes on a model of 10 class slots: a warning; the
    probabilities are P(group) P(class | group) for the groups of `class_groups`,
    each factor the ensemble over its own context (the group's rows for the second);
    and the classes are learnt (chance 1/15)."""
    from gpicl_tf import sklearn as sk

    path = os.path.join(sk.GENERAL_MODEL_DIR if name == "general" else sk.TABULAR_MODEL_DIR,
                        "1" if name == "general" else "2")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((15, 4)) * 4.0
    y = np.tile(np.arange(15), 12)
    X = centres[y] + rng.standard_normal((len(y), 4)) * 0.5
    test_y = np.tile(np.arange(15), 4)
    test_x = centres[test_y] + rng.standard_normal((len(test_y), 4)) * 0.5
    labels = np.array([f"c{i:02d}" for i in range(15)])
    with pytest.warns(UserWarning, match="15 classes, more than the 10 .* hierarchically"):
        clf = GPICLClassifier(path, n_ensemble=2, calibrate=False).fit(X, labels[y])
    proba = clf.predict_proba(test_x)
    assert proba.shape == (60, 15)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    assert np.mean(clf.predict(test_x) == labels[test_y]) >= 0.8
    groups = sk.class_groups(15, 10)
    assert [g.tolist() for g in groups] == [list(range(8)), list(range(8, 15))]
    train_x, queries = clf.train_x_, clf._encode(test_x)
    top = clf._ensemble_proba(train_x, (y >= 8).astype(int), queries, 2)
    for i, g in enumerate(groups):
        rows = np.isin(y, g)
        sub = clf._ensemble_proba(train_x[rows], y[rows] - g[0], queries, len(g))
        np.testing.assert_allclose(proba[:, g], top[:, [i]] * sub, rtol=1e-6, atol=1e-9)


def test_a_progress_bar_counts_the_model_calls(capsys):
    """progress=True: a bar over the model calls (a cell model: one per chunk of
    queries, the members batched); False, or "auto" below PROGRESS_MIN_CALLS: none;
    the probabilities are the same with and without it."""
    from gpicl_tf import sklearn as sk

    path = os.path.join(sk.TABULAR_MODEL_DIR, "2")
    X, y = _data(n=30)
    quiet = GPICLClassifier(path, n_ensemble=2, progress=False).fit(X, y).predict_proba(X)
    auto = GPICLClassifier(path, n_ensemble=2).fit(X, y).predict_proba(X)
    assert capsys.readouterr().out == ""
    loud = GPICLClassifier(path, n_ensemble=2, progress=True).fit(X, y).predict_proba(X)
    out = capsys.readouterr().out
    assert "1/1" in out and "call" in out, out
    np.testing.assert_array_equal(quiet, loud)
    np.testing.assert_array_equal(quiet, auto)
    with pytest.raises(ValueError, match="progress='yes' is not True, False or 'auto'"):
        GPICLClassifier(path, progress="yes").fit(X, y)


def test_class_groups_split_evenly_and_name_bad_sizes():
    from gpicl_tf.sklearn import class_groups

    assert [len(g) for g in class_groups(11, 10)] == [6, 5]
    assert [len(g) for g in class_groups(100, 10)] == [10] * 10
    assert np.concatenate(class_groups(250, 10)).tolist() == list(range(250))
    assert max(len(g) for g in class_groups(250, 10)) == 25      # split again below
    with pytest.raises(ValueError, match="num_classes=10 > slots=10"):
        class_groups(10, 10)


def test_clip_must_be_a_finite_number_above_zero():
    """clip of 0, -3 or NaN gave chance-level output (issue 32 item 7); now fit says
    which value is wrong."""
    import re

    X, y = _data(n=11)
    path = _released("general")
    for clip in (0, -3, float("nan"), float("inf"), True, "6"):
        with pytest.raises(ValueError,
                           match=re.escape(f"clip={clip!r} must be a finite number > 0")):
            GPICLClassifier(path, clip=clip).fit(X, y)
    assert GPICLClassifier(path, n_ensemble=1, clip=np.float32(2.5)).fit(X, y).clip_ == 2.5


@pytest.mark.parametrize("name", ["general", "tabular"])
def test_statistics_are_float64_whatever_the_scale_or_dtype(name):
    """Features scaled by 1e-170 (their variance underflows to 0: they were read as
    constant), 1e25 (beyond float32's variance, for the cell model) or 1e300, and
    float16 or float32 input (refused as "too large to standardise in float64"),
    predict as the same values in float64 at scale 1 do (issue 32 item 7), on the
    row and the cell model. Standard preprocessing: a power transform is not
    scale-free."""
    X, y = _data(n=25)
    path = _released(name)

    def proba(x):
        return GPICLClassifier(path, n_ensemble=2, preprocessing="standard").fit(x, y) \
            .predict_proba(x)

    ref = proba(X)
    for scale in (1e-170, 1e25, 1e300):
        np.testing.assert_allclose(proba(X * scale), ref, atol=1e-5, err_msg=f"{scale}")
    for dtype, scale in ((np.float16, 1e3), (np.float32, 1e30)):
        low = (X * scale).astype(dtype)
        np.testing.assert_allclose(proba(low), proba(low.astype(np.float64)), atol=1e-6)


@pytest.mark.parametrize("name", ["general", "tabular"])
def test_a_column_without_values_warns_about_nothing(name):
    """An all-NaN column printed numpy's "Mean of empty slice" (issue 32 item 13);
    it is a constant column, silently, in every preprocessing."""
    import warnings

    from gpicl_tf import sklearn as sk

    X, y = _data(n=25)
    X[:, 2] = np.nan
    path = _released(name)
    sk._load(path)                                  # TensorFlow's own warnings aside
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proba = GPICLClassifier(path, n_ensemble=3, preprocessing="mix").fit(X, y) \
            .predict_proba(X[:4])
    assert np.all(np.isfinite(proba))


def test_scikit_learn_estimator_checks(version):
    """scikit-learn's whole `check_estimator` suite: every check passes but
    check_classifiers_train, which asks for 83% accuracy on easy blobs: more than
    the 10-step smoke model this fixture trains can learn, and
    check_methods_sample_order_invariance, which compares probabilities to 1e-9:
    the float32 model's outputs move by ~1e-7 with the queries' batch layout
    (order invariance to 1e-5 is tested below). Checks skipped for a missing
    optional package (e.g. pandas) are not failures."""
    import warnings

    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(GPICLClassifier(version, n_ensemble=2), on_fail=None)
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    assert failed <= {"check_classifiers_train", "check_methods_sample_order_invariance"}, failed
    assert sum(r["status"] == "passed" for r in results) >= 45
    X, y = _data(n=11)
    clf = GPICLClassifier(version, n_ensemble=2).fit(X, y)
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(clf.predict_proba(X[order]), clf.predict_proba(X)[order],
                               atol=1e-5)


def test_single_class_is_a_named_error(version):
    X, _ = _data()
    with pytest.raises(ValueError, match="y holds 1 class \\(cat\\)"):
        GPICLClassifier(version).fit(X, np.array(["cat"] * len(X)))


def test_missing_values_get_an_indicator_and_infinity_is_refused(version):
    X, y = _data(n=11)
    X[::3, 1] = np.nan
    clf = GPICLClassifier(version, n_ensemble=2).fit(X, y)
    assert list(clf.missing_columns_) == [1]
    assert clf.train_x_.shape == (11, 6)           # 5 features + 1 indicator
    proba = clf.predict_proba(np.vstack([X[:2], np.full((1, 5), np.nan)]))
    assert np.all(np.isfinite(proba)) and proba.shape == (3, 3)
    with pytest.raises(ValueError, match="contains infinity"):
        GPICLClassifier(version).fit(np.where(np.isnan(X), np.inf, X), y)
    with pytest.raises(ValueError, match="contains infinity"):  # NaN is missing, inf is not
        clf.predict(np.vstack([X[:1], np.full((1, 5), np.inf)]))


def test_categorical_columns_are_one_hot_and_preprocessings_differ(version):
    X, y = _data(n=11)
    X[:, 0] = np.arange(11) % 3
    clf = GPICLClassifier(version, n_ensemble=2, categorical_features=[0]).fit(X, y)
    assert clf.train_x_.shape == (11, 4 + 3)
    np.testing.assert_array_equal(clf.train_x_[:, 4:].sum(1), 1)
    unseen = X[:1].copy()
    unseen[0, 0] = 7.0                                  # a category fit never saw: all zeros
    assert clf._encode(unseen)[0, 4:].sum() == 0
    standard = GPICLClassifier(version, 2).fit(X, y).predict_proba(X[:3])
    quantile = GPICLClassifier(version, 2, preprocessing="quantile").fit(X, y).predict_proba(X[:3])
    assert not np.allclose(standard, quantile)
    with pytest.raises(ValueError, match="preprocessing='rank' is not one of"):
        GPICLClassifier(version, preprocessing="rank").fit(X, y)
    with pytest.raises(ValueError, match=r"categorical_features=\[9\] names columns outside"):
        GPICLClassifier(version, categorical_features=[9]).fit(X, y)


def test_calibration_fits_a_temperature_that_keeps_the_predictions(version):
    X, y = _data(n=40)
    with pytest.warns(UserWarning, match="exceed the model's context"):
        raw = GPICLClassifier(version, n_ensemble=2, calibrate=False).fit(X, y)
        cal = GPICLClassifier(version, n_ensemble=2).fit(X, y)
    assert raw.temperature_ == 1.0 and cal.temperature_ != 1.0
    assert 0.05 <= cal.temperature_ <= 20.0
    p_raw, p_cal = raw.predict_proba(X[:9]), cal.predict_proba(X[:9])
    np.testing.assert_allclose(p_cal.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(p_raw.argmax(1), p_cal.argmax(1))
    assert not np.allclose(p_raw, p_cal)
    few = GPICLClassifier(version, n_ensemble=2).fit(X[:11], y[:11])   # < 30 rows: none
    assert few.temperature_ == 1.0


def test_the_prior_correction_reweights_classes_by_their_out_of_fold_mean(version):
    """prior_correction: class weights = training class frequency / mean out-of-fold
    probability (the calibration's folds), applied before the temperature; off: none."""
    X, y = _data(n=36)
    with pytest.warns(UserWarning, match="exceed the model's context"):
        plain = GPICLClassifier(version, n_ensemble=2).fit(X, y)
        fixed = GPICLClassifier(version, n_ensemble=2, prior_correction=True).fit(X, y)
    np.testing.assert_array_equal(plain.class_weights_, np.ones(3))
    oof = fixed._out_of_fold_proba()
    freq = np.bincount(fixed.context_y_, minlength=3) / len(y)
    np.testing.assert_allclose(fixed.class_weights_, freq / oof.mean(0), rtol=1e-9)
    assert not np.allclose(fixed.class_weights_, 1.0)
    raw = GPICLClassifier(version, n_ensemble=2, calibrate=False).fit(X, y).predict_proba(X[:9])
    want = raw * fixed.class_weights_
    want /= want.sum(1, keepdims=True)
    want = want ** (1.0 / fixed.temperature_)
    want /= want.sum(1, keepdims=True)
    np.testing.assert_allclose(fixed.predict_proba(X[:9]), want, rtol=1e-6)
    np.testing.assert_array_equal(fixed.predict(X[:9]), fixed.classes_[want.argmax(1)])
    with pytest.raises(ValueError, match="prior_correction='yes' is not True or False"):
        GPICLClassifier(version, prior_correction="yes").fit(X, y)


def test_without_a_path_the_default_model_is_used(version, tmp_path, monkeypatch):
    from gpicl_tf import sklearn as sk

    X, y = _data(n=11)
    general = tmp_path / "general"
    general.mkdir()
    for v in ("1", "3", "10x"):                     # versions 1 and 3, and a stray folder
        os.symlink(version, general / v)
    monkeypatch.setenv("GPICL_MODEL", str(general))   # a model directory: its newest version
    clf = GPICLClassifier(n_ensemble=2).fit(X, y)
    assert clf.model_path_ == str(general / "3") and clf.model_path is None
    np.testing.assert_array_equal(clf.predict_proba(X), GPICLClassifier(
        version, n_ensemble=2).fit(X, y).predict_proba(X))
    monkeypatch.setenv("GPICL_MODEL", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="no model_path given and no exported model"):
        GPICLClassifier().fit(X, y)
    monkeypatch.delenv("GPICL_MODEL")
    monkeypatch.setattr(sk, "DEFAULT_MODEL_DIR", str(tmp_path / "no_general_model"))
    with pytest.raises(FileNotFoundError, match="--preset cell_cpu"):
        GPICLClassifier().fit(X, y)


def test_the_released_general_model_learns(monkeypatch):
    """gpicl_tf/released/general/1 (the row model) ships inside the package and learns
    a table it never saw in context."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    from gpicl_tf import sklearn as sk

    monkeypatch.delenv("GPICL_MODEL", raising=False)
    released = os.path.join(sk.GENERAL_MODEL_DIR, "1")
    assert os.path.exists(os.path.join(released, "gpicl_config.json")), released
    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, train_size=60, stratify=y,
                                                        random_state=0)
    clf = GPICLClassifier(released, n_ensemble=4).fit(X_train, y_train)
    assert clf.max_context_ >= 500
    assert (clf.predict(X_test) == y_test).mean() > 0.7   # chance: 1/3


def test_wide_tables_are_reduced_to_the_priors_width(version):
    """A table wider than `max_features` reaches the model as its leading principal
    components on the context rows, standardised and clipped like prepared columns."""
    X, y = _data(n=40, d=12)
    plain = GPICLClassifier(version, n_ensemble=2).fit(X, y)
    assert plain.max_features_ is None                # the smoke model had no prior
    np.testing.assert_array_equal(plain.predict_proba(X[:5]), GPICLClassifier(
        version, n_ensemble=2, max_features=None).fit(X, y).predict_proba(X[:5]))
    narrow = GPICLClassifier(version, n_ensemble=2, max_features=3).fit(X, y)
    assert ROW.width(narrow) == 3
    z, queries = ROW.prepare(narrow, 0, narrow.train_x_, narrow.train_x_)
    np.testing.assert_array_equal(z, queries)          # the context is prepared as queries are
    assert z.shape == (40, 3)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(z.var(0).mean(), 1.0, rtol=0.05)   # clipping aside
    assert np.all(np.diff(z.var(0)) < 0)                      # leading components first
    assert np.abs(np.corrcoef(z.T) - np.eye(3)).max() < 1e-6   # principal scores
    proba = narrow.predict_proba(X[:5])
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    assert not np.allclose(proba, plain.predict_proba(X[:5]))
    # fewer context rows than max_features: the missing directions are constant columns
    few = GPICLClassifier(version, n_ensemble=1, max_features=10, calibrate=False).fit(
        X[:6], y[:6])
    assert ROW.prepare(few, 0, few.train_x_, few.train_x_)[1].shape == (6, 10)
    assert few.predict_proba(X[6:9]).shape == (3, len(few.classes_))
    for bad in ("all", 0, 2.5, True):
        with pytest.raises(ValueError, match="max_features"):
            GPICLClassifier(version, max_features=bad).fit(X, y)


def test_the_released_general_model_reduces_to_its_priors_width():
    from gpicl_tf import sklearn as sk

    X, y = _data(n=40, d=50)
    clf = GPICLClassifier(os.path.join(sk.GENERAL_MODEL_DIR, "1"), n_ensemble=1).fit(X, y)
    assert clf.max_features_ == 32 and ROW.width(clf) == 32
    assert clf.predict_proba(X[:3]).shape == (3, 3)


def test_parameters_are_read_as_scikit_learn_reads_them(version):
    """random_state as check_random_state takes it, categorical_features as a mask,
    indices or a DataFrame's column names; anything else a clear error."""
    import pandas as pd

    X, y = _data(n=11)
    X[:, 1] = np.arange(11) % 3
    for seed in (None, np.random.RandomState(3)):
        proba = GPICLClassifier(version, n_ensemble=2, random_state=seed).fit(X, y) \
            .predict_proba(X[:3])
        np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    by_index = GPICLClassifier(version, 2, categorical_features=[1]).fit(X, y)
    by_mask = GPICLClassifier(version, 2, categorical_features=[False, True] + [False] * 3) \
        .fit(X, y)
    frame = pd.DataFrame(X, columns=list("abcde"))
    by_name = GPICLClassifier(version, 2, categorical_features=["b"]).fit(frame, y)
    for clf in (by_mask, by_name):
        assert list(clf.categories_) == [1]
        np.testing.assert_array_equal(clf.train_x_, by_index.train_x_)
    for spec, message in [([1.7], "must be column indices \\(integers\\), a boolean mask"),
                          ([True, False], "boolean mask of 2 entries; X has 5 columns"),
                          (["b"], "names columns, but X has no column names"),
                          ([7], "outside \\[0, 5\\)")]:
        with pytest.raises(ValueError, match=message):
            GPICLClassifier(version, categorical_features=spec).fit(X, y)
    with pytest.raises(ValueError, match="unknown column\\(s\\) \\['z'\\]"):
        GPICLClassifier(version, categorical_features=["z"]).fit(frame, y)
    with pytest.raises(ValueError, match="n_ensemble=2.5 must be an integer"):
        GPICLClassifier(version, n_ensemble=2.5).fit(X, y)
    text = frame.assign(b=np.array(["x", "y", "z"])[np.arange(11) % 3])
    with pytest.raises(ValueError, match="not numbers .*encode text columns as numbers"):
        GPICLClassifier(version, categorical_features=["b"]).fit(text, y)


def test_the_released_tabular_model_learns_and_is_the_default(monkeypatch):
    """gpicl_tf/released/tabular/1 to /4 (the cell learner) ship in the package, read
    a table without projection and learn wine in context (measured 0.974 with version 1
    on this split; logistic regression 0.99); the estimator's default is the newest of
    them, which scores higher than the row model on the tabular benchmark."""
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    from gpicl_tf import sklearn as sk

    monkeypatch.delenv("GPICL_MODEL", raising=False)
    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, train_size=100, stratify=y,
                                                        random_state=0)
    for version in ("1", "2", "3", "4"):
        clf = GPICLClassifier(os.path.join(sk.TABULAR_MODEL_DIR, version)).fit(X_train, y_train)
        assert clf.backbone_ == "cell" and clf.n_ensemble_ == 4
        assert (clf.predict(X_test) == y_test).mean() > 0.9      # chance: about 0.4
    default = GPICLClassifier(n_ensemble=1).fit(X_train, y_train)
    assert default.backbone_ == "cell" and default.model_path_.startswith(sk.TABULAR_MODEL_DIR)


@pytest.mark.slow
def test_a_cell_model_reads_a_wide_tables_informative_columns():
    """A table wider than the cell model's max_features (auto: its prior's 100): with
    feature selection its members read the columns most related to the label, at
    the width (100, 50 or 25) whose out-of-fold log loss is lowest; without it, a
    random 100 of the 140, which misses informative ones."""
    from gpicl_tf import sklearn as sk

    rng = np.random.default_rng(0)
    n, d = 400, 140
    X = rng.standard_normal((n, d))
    informative = rng.choice(d, 6, replace=False)
    y = (X[:, informative] @ rng.standard_normal(6) > 0).astype(int)
    version = os.path.join(sk.TABULAR_MODEL_DIR, "3")
    train, test = slice(0, 100), slice(100, None)
    chosen = GPICLClassifier(version, n_ensemble=2).fit(X[train], y[train])
    assert chosen.selected_features_ in (100, 50, 25)
    assert sorted(chosen.selection_losses_) == [25, 50, 100]
    assert chosen.selection_losses_[chosen.selected_features_] == min(
        chosen.selection_losses_.values())
    random = GPICLClassifier(version, n_ensemble=2, feature_selection=False).fit(
        X[train], y[train])
    assert random.selected_features_ is None
    accuracy = {name: (clf.predict(X[test]) == y[test]).mean()
                for name, clf in (("chosen", chosen), ("random", random))}
    assert accuracy["chosen"] > accuracy["random"] + 0.05, accuracy
    few = GPICLClassifier(version, n_ensemble=1, calibrate=False).fit(X[:20], y[:20])
    assert few.selected_features_ == 100 and few.selection_losses_ == {}
    with pytest.raises(ValueError, match="feature_selection='yes' is not True or False"):
        GPICLClassifier(version, feature_selection="yes").fit(X[train], y[train])
