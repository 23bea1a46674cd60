import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gpicl_tf.config import override
from gpicl_tf.data import pipeline
from gpicl_tf.eval import regression, regression_report as report_lib
from gpicl_tf.training import train


def test_episodes_split_into_context_then_queries(function_episodes, functions_config):
    eps = pipeline.open_episodes(function_episodes)
    split = regression.load_episodes(eps, "test", 5)
    m = functions_config.functions.num_queries
    n = functions_config.data.episode_length
    assert split.cx.shape == (5, n - m, 1) and split.qx.shape == (5, m, 1)
    rec = pipeline.read_records(eps, "test")[0]
    q = rec["query"] == 1
    np.testing.assert_allclose(split.cy[0], rec["y"][~q])     # stored order kept
    np.testing.assert_allclose(split.qy[0], rec["y"][q])
    np.testing.assert_allclose(split.qclean[0], rec["clean"][q])


def test_baselines_on_known_functions():
    rng = np.random.default_rng(0)
    cx, qx = rng.uniform(-1, 1, (20, 2)), rng.uniform(-1, 1, (5, 2))
    f = lambda x: x @ np.array([0.5, -2.0]) + 0.3  # noqa: E731
    np.testing.assert_allclose(regression.predict_least_squares(cx, f(cx), qx), f(qx), atol=1e-9)
    np.testing.assert_allclose(regression.predict_ridge(cx, f(cx), qx, 1e-9), f(qx), atol=1e-6)
    np.testing.assert_allclose(regression.predict_polynomial(cx, f(cx), qx, 3), f(qx), atol=1e-6)
    np.testing.assert_allclose(regression.predict_mean(cx, f(cx), qx), f(cx).mean())
    np.testing.assert_allclose(regression.predict_knn(cx, f(cx), cx[:3], 1), f(cx[:3]))
    gp = regression.predict_gp(cx, f(cx), qx, (1.0, 1.0, 1e-6))
    assert np.max(np.abs(gp - f(qx))) < 0.1
    # one context point: every baseline still answers
    for predict, settings in regression.BASELINES.values():
        assert predict(cx[:1], f(cx[:1]), qx, settings[0]).shape == (5,)


def test_tuning_picks_the_setting_with_the_lowest_training_error(function_episodes):
    eps = regression.load_episodes(pipeline.open_episodes(function_episodes), "train", 8)
    chosen = regression.tune_baselines(eps, (2, 10))
    for c in (2, 10):
        k = chosen["k-NN (tuned k)"][c]
        scores = {s: regression.baseline_errors(regression.predict_knn, s, eps, c).mean()
                  for s in regression.BASELINES["k-NN (tuned k)"][1]}
        assert scores[k] == min(scores.values())


@pytest.fixture(scope="module")
def function_model(tmp_path_factory, function_episodes, functions_config):
    workdir = str(tmp_path_factory.mktemp("fn_run"))
    cfg = override(functions_config, ["train.steps=20"])
    summary = train.run(cfg, workdir, function_episodes, verbose=0)
    assert np.isfinite(summary["final"]["val_mse"])
    return os.path.join(workdir, train.MODEL_FILE)


@pytest.mark.slow
def test_learner_sees_exactly_c_points_and_report_has_every_count(function_model,
                                                                  function_episodes,
                                                                  functions_config, tmp_path):
    sets = {"mlp (held-out tasks)": (function_episodes, "test")}
    rep = regression.evaluate_functions(function_model, sets, (function_episodes, "train"),
                                        functions_config.eval)
    assert rep["counts"] == [1, 2, 5, 10, 16]
    entry = rep["datasets"]["mlp (held-out tasks)"]
    assert set(entry["methods"]) == {regression.LEARNER, *regression.BASELINES}
    for v in entry["methods"].values():
        assert len(v["mse"]) == 5 and all(np.isfinite(v["mse"]))
    assert len(entry["curves"]) == 3 and len(entry["curves"][0]["context_x"]) == 10
    paths = report_lib.write_report(rep, str(tmp_path))
    text = open(paths["md"]).read()
    assert "| GPICL Transformer |" in text and "MSE by number of context points" in text
    assert "paired over the same episodes" in text
    assert os.path.exists(tmp_path / "tasks_mlp_held_out_tasks.png")
    paired = entry["paired"][regression.LEARNER]
    assert set(paired) == set(regression.BASELINES)
    for name, p in paired.items():  # mean of differences = difference of means
        learner, base = entry["methods"][regression.LEARNER], entry["methods"][name]
        np.testing.assert_allclose(p["diff"], np.subtract(learner["mse"], base["mse"]),
                                   atol=1e-9)
        assert all(lo <= d <= hi for lo, d, hi in zip(p["ci_low"], p["diff"], p["ci_high"]))


def test_bootstrap_interval_is_asymmetric_for_heavy_tailed_errors():
    rng = np.random.default_rng(0)
    errors = rng.standard_normal((400, 1)) ** 2 * rng.lognormal(0, 1.5, (400, 1))
    low, high = regression.bootstrap_ci(errors)
    mean = errors.mean()
    assert low[0] < mean < high[0]
    assert high[0] - mean > 1.2 * (mean - low[0])      # the long tail widens the top
    assert regression.bootstrap_ci(errors)[0][0] == low[0]  # fixed seed: reproducible


def test_regression_training_rejects_a_curriculum_bias(function_episodes, functions_config,
                                                       tmp_path):
    cfg = override(functions_config, ["train.bias_fraction=0.5"])
    with pytest.raises(ValueError, match="bias_fraction=0.5"):
        train.run(cfg, str(tmp_path), function_episodes)


def test_targets_are_checked_on_the_report():
    def entry(family, learner, others):
        methods = {regression.LEARNER: {"counts": [20], "mse": [learner], "ci95": [0.0]}}
        methods.update({m: {"counts": [20], "mse": [v], "ci95": [0.0]} for m, v in others.items()})
        return {"family": family, "methods": methods}
    rep = {"counts": [20], "datasets": {
        "linear (unseen family)": entry("linear", 0.014, {"least squares": 0.010}),
        "sine (unseen family)": entry("sine", 0.05, {"k-NN (tuned k)": 0.04}),
        "mlp (held-out tasks)": entry("mlp", 0.02, {"GP (RBF, tuned)": 0.03})}}
    lines = "\n".join(report_lib.targets(rep))
    assert "1.40x (target <= 1.5x): met" in lines
    assert "sine (unseen family): learner 0.0500 vs k-NN 0.0400 (target: below): NOT met" in lines
    assert "best baseline GP (RBF, tuned) 0.0300 (target: below every baseline): met" in lines


@pytest.mark.slow
def test_functions_main_job_end_to_end(tmp_path):
    workdir = str(tmp_path / "run")
    done = subprocess.run([sys.executable, "-m", "pipelines.run", "--preset", "functions_smoke",
                           "--workdir", workdir, "--export_dir", str(tmp_path / "saved")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.load(open(os.path.join(workdir, "report", "report.json")))
    assert set(report["datasets"]) == {"mlp (held-out tasks)", "mlp (seen tasks)",
                                       "sine (unseen family)", "linear (unseen family)"}
    assert "| GPICL Transformer |" in done.stdout
    assert os.path.exists(os.path.join(workdir, "report", "mse_sine_unseen_family.png"))
    assert not os.path.exists(tmp_path / "saved")  # regression models are not exported


@pytest.mark.slow
def test_evaluate_pipeline_dispatches_on_the_episode_schema(function_model, function_episodes,
                                                             tmp_path):
    out = str(tmp_path / "report")
    done = subprocess.run([sys.executable, "-m", "pipelines.evaluate", "--preset",
                           "functions_smoke", "--model", os.path.dirname(function_model),
                           "--episodes", function_episodes, "--out", out],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "held-out tasks: MSE by number of context points" in done.stdout
    assert json.load(open(os.path.join(out, "report.json")))["task"] == "regression"
    bad = subprocess.run([sys.executable, "-m", "pipelines.evaluate", "--preset",
                          "functions_smoke", "--model", os.path.dirname(function_model),
                          "--episodes", function_episodes, "--out", out,
                          "--baseline", f"lstm={tmp_path}"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--baseline" in bad.stderr


def test_search_and_export_refuse_regression_clearly(function_model, function_episodes,
                                                     functions_config, tmp_path):
    import keras

    from gpicl_tf.export import saved_model
    from gpicl_tf.tuning import search

    with pytest.raises(ValueError, match="holds regression episodes; the search scores accuracy"):
        search.GPICLHyperModel(functions_config, function_episodes)
    model = keras.models.load_model(function_model, compile=False)
    with pytest.raises(ValueError, match="'functions:mlp': regression learners are not exported"):
        saved_model.export_model(model, functions_config.to_dict(), str(tmp_path), "f")
    assert not os.listdir(tmp_path)
