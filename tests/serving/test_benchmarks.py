"""The serving and estimator benchmarks run end to end (tiny settings, smoke model)."""

import os
import re
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_serving_benchmark_runs(model_base):
    done = subprocess.run([sys.executable, "benchmarks/serving.py",
                           os.path.join(model_base, "gpicl"), "--requests", "8"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 errors" in done.stdout and "fit+predict" in done.stdout
    # The figures agree with each other: p50 <= p99, and the sequential rate is
    # 1000 / mean latency, where half the requests take >= p50: rate <= 2000 / p50.
    m = re.search(r"p50 ([\d.]+) ms, p99 ([\d.]+) ms, ([\d.]+) requests/s", done.stdout)
    p50, p99, rate = map(float, m.groups())
    assert 0 < p50 <= p99 and 0 < rate <= 2000 / p50
    seconds = float(re.search(r"fit\+predict, 500 rows x 64 features: ([\d.]+) s",
                              done.stdout).group(1))
    assert seconds > 0


def _reference_scores(model_path, load, seed=0) -> tuple[int, float, float]:
    """(training rows, GPICL n_ensemble=1, logistic regression) accuracy on the split
    benchmarks/estimator_ensemble.py draws for repeat `seed`, computed here."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from gpicl_tf.sklearn import GPICLClassifier

    X, y = load(return_X_y=True)
    idx = np.random.default_rng(seed).permutation(len(y))
    train = min(99, len(y) // 2)
    tr, te = idx[:train], idx[train:train + 200]
    one = GPICLClassifier(model_path, n_ensemble=1, random_state=seed).fit(X[tr], y[tr])
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X[tr], y[tr])
    return train, one.score(X[te], y[te]), lr.score(X[te], y[te])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*exceed the model's context")
def test_estimator_benchmark_runs(model_base):
    """Each printed mean is what the estimator and logistic regression score on the
    benchmark's split (one repeat: the mean is that score), the gain their difference."""
    from sklearn.datasets import load_breast_cancer, load_wine

    from gpicl_tf.config import DataConfig
    from gpicl_tf.data import sources

    def unseen_digits(return_X_y=True):
        split = sources.load_split("digits", "test", DataConfig())
        return split.x, split.y

    version = os.path.join(model_base, "gpicl", "1")
    done = subprocess.run([sys.executable, "benchmarks/estimator_ensemble.py", version,
                           "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name, load in (("digits (test split)", unseen_digits), ("wine", load_wine),
                       ("breast_cancer", load_breast_cancer)):
        line = next(line for line in done.stdout.splitlines() if line.startswith(name))
        one, eight, lr = (float(re.search(rf"{k} ([\d.]+) \(", line).group(1)) for k in
                          ("n_ensemble=1", "n_ensemble=8", "logistic regression"))
        rows, want_one, want_lr = _reference_scores(version, load)
        assert line.startswith(f"{name} ({rows} training rows): "), line
        assert one == pytest.approx(want_one, abs=0.0006), (name, one, want_one)
        assert lr == pytest.approx(want_lr, abs=0.0006), (name, lr, want_lr)
        assert 0.0 <= eight <= 1.0
        gain = float(re.search(r"ensemble gain ([+-][\d.]+)", line).group(1))
        assert gain == pytest.approx(eight - one, abs=0.0011)   # the printed means' difference


@pytest.mark.slow
def test_serving_soak_benchmark_runs(trained_run):
    done = subprocess.run([sys.executable, "benchmarks/serving_soak.py", trained_run,
                           "--clients", "3", "--requests", "30"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 failed" in done.stdout and "every bad request a 4xx: True" in done.stdout
    assert "serving version 2 at the end" in done.stdout and "peak" in done.stdout
    assert "slow clients: 4 at a time" in done.stdout


@pytest.mark.slow
def test_tabular_benchmark_runs(model_base, tmp_path):
    command = [sys.executable, "benchmarks/tabular.py", os.path.join(model_base, "gpicl", "1"),
               "--rows", "20", "--splits", "2", "--datasets", "iris", "--n_ensemble", "2",
               "--preprocessing", "mix", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "iris" in done.stdout and "logistic regression (CV)" in done.stdout
    for name in ("tabular.md", "tabular.json", "tabular.png"):
        assert (tmp_path / name).exists(), name
    first = (tmp_path / "tabular.json").read_text()
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "iris, 20 rows (stored)" in again.stdout     # a killed run resumes from its cases
    assert (tmp_path / "tabular.json").read_text() == first
    changed = subprocess.run(command[:-2] + ["--out", str(tmp_path), "--splits", "3"],
                             capture_output=True, text=True, timeout=600)
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert "running it again" in changed.stdout and "(stored)" not in changed.stdout


def test_tabular_baselines_cross_validate_within_the_smallest_class():
    """digits at 50 training rows leaves a class 4 rows: 5-fold calibration failed."""
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("tabular", "benchmarks/tabular.py")
    tabular = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tabular)
    assert tabular.cv_folds(np.array([0] * 4 + [1] * 46)) == 4
    assert tabular.cv_folds(np.array([0, 1] * 250)) == 5
    assert tabular.cv_folds(np.array([0, 1] * 15)) == 3      # 30 rows: 30 // 10
    assert tabular.cv_folds(np.array([0, 1, 1, 1])) == 2


@pytest.mark.slow
def test_estimator_speed_benchmark_times_the_real_estimator(model_base):
    """The accuracy it prints beside its timings is the estimator's on the same
    splits, computed here (so the timed object is the real estimator)."""
    import importlib.util

    import numpy as np
    from sklearn.datasets import load_iris

    from gpicl_tf.sklearn import GPICLClassifier

    path = os.path.join(model_base, "gpicl", "1")
    done = subprocess.run([sys.executable, "benchmarks/estimator_speed.py", path, "--rows", "20",
                           "--test_rows", "30", "--repeats", "2", "--datasets", "iris",
                           "--n_ensemble", "2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    row = re.search(r"\| iris \| 4 \| 30 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| [\d.]+ \| ([\d.]+) \|",
                    done.stdout)
    assert row, done.stdout
    fit, predict, total, accuracy = map(float, row.groups())
    spec = importlib.util.spec_from_file_location("speed", "benchmarks/estimator_speed.py")
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    x, y = load_iris(return_X_y=True)
    want = []
    for r in range(2):
        train, test = speed.split(y, 20, 30, r)
        clf = GPICLClassifier(path, n_ensemble=2, random_state=r).fit(x[train], y[train])
        want.append(np.mean(clf.predict(x[test]) == y[test]))
    assert accuracy == pytest.approx(np.mean(want), abs=5e-4)
    assert fit > 0 and predict > 0 and total == pytest.approx(fit + predict, abs=2e-3)
    assert "target (issue 38): fit + predict at 100 rows under 1 s: not met" in done.stdout
    bad = subprocess.run([sys.executable, "benchmarks/estimator_speed.py", path, "--datasets",
                          "nope"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "unknown dataset(s) ['nope']" in bad.stderr


def test_the_out_of_fold_prior_undoes_a_prior_shift():
    """tabular_decisions' corrections on a known case: a model that under-predicts
    class 1 by half is corrected by the prior match and the out-of-fold weights."""
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("decisions", "benchmarks/tabular_decisions.py")
    decisions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(decisions)
    proba = np.array([[0.6, 0.4], [0.7, 0.3], [0.8, 0.2], [0.9, 0.1]])
    matched = decisions.prior_matched(proba, np.array([0.5, 0.5]))
    np.testing.assert_allclose(matched.sum(1), 1.0)
    np.testing.assert_allclose(matched.mean(0), [0.5, 0.5], atol=0.05)
    assert matched.argmax(1).tolist() == [1, 1, 0, 0]
    # out of fold the model shows the same shift on its training rows: weights 2/3, 2
    weights = decisions.out_of_fold_prior(proba, np.array([0.5, 0.5]))
    np.testing.assert_allclose(weights, [0.5 / 0.75, 0.5 / 0.25])
    assert (proba * weights).argmax(1).tolist() == [1, 1, 0, 0]
    assert "out-of-fold prior" in decisions.RULES
