import json
import os
import subprocess
import sys

import keras_tuner
import pytest

from gpicl_tf import compat
from gpicl_tf.config import Config, override
from gpicl_tf.errors import InvalidInputError
from gpicl_tf.tuning import search
from tests.conftest import free_ports


def test_search_space_is_checked_when_the_config_loads(smoke_config):
    with pytest.raises(ValueError, match="num_heads choice 3 does not divide.*choice 8"):
        override(smoke_config, ["tune.num_heads=2,3"])
    with pytest.raises(ValueError, match="tune.batch_sizes='8,x' is not a list of int"):
        override(smoke_config, ["tune.batch_sizes=8,x"])
    with pytest.raises(ValueError, match="learning_rate_min=0.1"):
        override(smoke_config, ["tune.learning_rate_min=0.1", "tune.learning_rate_max=0.01"])
    with pytest.raises(ValueError, match="tune.bias_fractions=.* each in \\[0.0, 1.0\\]"):
        override(smoke_config, ["tune.bias_fractions=0.5,1.5"])
    space = search.search_space(override(smoke_config, ["tune.batch_sizes=[4, 8]"]))
    assert space["batch_size"] == [4, 8] and space["model_size"] == [8, 16]


@pytest.mark.slow
def test_search_scores_meta_validation_sorts_and_resumes(smoke_config, smoke_episodes,
                                                         tmp_path, monkeypatch):
    calls = []
    real_fit = search.GPICLHyperModel.fit

    def counting_fit(self, hp, model, *args, **kwargs):
        calls.append(dict(hp.values))
        return real_fit(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(search.GPICLHyperModel, "fit", counting_fit)
    workdir = str(tmp_path / "tune")
    rows = search.run_search(smoke_config, workdir, smoke_episodes, max_trials=2, verbose=0)
    assert len(rows) == 2 and len(calls) == 2
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    # The score is the trial's meta-validation metric, not a training quantity.
    tuner = search.make_tuner("random", search.GPICLHyperModel(smoke_config, smoke_episodes),
                              workdir, 2)
    for trial in tuner.oracle.trials.values():
        assert trial.score == trial.metrics.get_best_value("val_acc_last10")
    assert tuner.oracle.objective.name == "val_acc_last10"
    # Outputs: CSV and Markdown best first, a config that train accepts.
    table = open(os.path.join(workdir, "results.md")).read().splitlines()
    assert table[4].startswith(f"| {rows[0]['trial']} |")
    best = Config.from_json(open(os.path.join(workdir, "best_config.json")).read())
    assert best.model.model_size == rows[0]["model_size"]
    assert best.train.learning_rate == pytest.approx(rows[0]["learning_rate"])
    # Resume: a third trial is added, the first two are not run again.
    rows = search.run_search(smoke_config, workdir, smoke_episodes, max_trials=3, verbose=0)
    assert len(rows) == 3 and len(calls) == 3


def test_dead_worker_trial_is_failed_after_the_timeout(smoke_config, smoke_episodes, tmp_path):
    tuner = search.make_tuner("random", search.GPICLHyperModel(smoke_config, smoke_episodes),
                              str(tmp_path), 2)
    oracle = tuner.oracle
    trial = oracle.create_trial("tuner0")
    started = {}
    assert search.fail_stalled_trials(oracle, 60, started, now=0.0) == []
    assert search.fail_stalled_trials(oracle, 60, started, now=61.0) == [trial.trial_id]
    assert oracle.trials[trial.trial_id].status == "FAILED"
    assert "tuner0" not in compat.ongoing_trials(oracle)
    assert "tuner0" not in compat.tuner_ids(oracle)
    assert "within 60 s" in oracle.trials[trial.trial_id].message


@pytest.mark.slow
def test_distributed_chief_and_two_workers_run_every_trial_once(smoke_episodes, tmp_path):
    workdir = str(tmp_path / "dist")
    port = str(free_ports(1)[0])
    cmd = [sys.executable, "-m", "pipelines.tune", "--preset", "smoke", "--episodes",
           smoke_episodes, "--workdir", workdir, "--max_trials", "4"]
    procs = {}
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = dict(os.environ, KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
                   KERASTUNER_ORACLE_PORT=port)
        procs[tuner_id] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True)
    outputs = {}
    for tuner_id, proc in procs.items():
        try:
            outputs[tuner_id] = proc.communicate(timeout=420)[0]
        except subprocess.TimeoutExpired:
            for p in procs.values():
                p.kill()
            pytest.fail(f"{tuner_id} did not finish within 420 s")
        assert proc.returncode == 0, outputs[tuner_id][-3000:]
    trial_dirs = [d for d in os.listdir(os.path.join(workdir, "search")) if d.startswith("trial_")]
    assert len(trial_dirs) == 4
    statuses = [json.load(open(os.path.join(workdir, "search", d, "trial.json")))["status"]
                for d in trial_dirs]
    assert statuses == ["COMPLETED"] * 4, statuses
    # Each trial's fit logs "curriculum: step 0" once: four fits in all, all in the
    # workers, none in the chief, so each completed trial ran exactly once.
    starts = {tid: out.count("curriculum: step 0 ") for tid, out in outputs.items()}
    assert starts["chief"] == 0 and starts["tuner0"] + starts["tuner1"] == 4, starts
    assert os.path.exists(os.path.join(workdir, "results.md"))


@pytest.mark.parametrize("trials", [0, -3])
def test_max_trials_is_checked_like_the_config_key(smoke_config, smoke_episodes, tmp_path,
                                                   trials):
    with pytest.raises(ValueError, match=f"tune.max_trials={trials}"):
        search.run_search(smoke_config, str(tmp_path / "tune"), smoke_episodes,
                          max_trials=trials)
    assert not os.path.exists(tmp_path / "tune")


def test_time_budgeted_trials_stop_on_the_clock_and_report_their_steps(smoke_config,
                                                                       smoke_episodes, tmp_path):
    """tune.trial_seconds: each trial trains until its seconds are spent (not its
    10,000 steps); the steps it reached are in the results and the best config."""
    cfg = override(smoke_config, ["tune.trial_seconds=2", "tune.steps=10000",
                                  "tune.optimizers=adam,muon", "tune.ema_momentums=0.0,0.9",
                                  "tune.weight_decays=0.0,0.01"])
    workdir = str(tmp_path / "tune")
    rows = search.run_search(cfg, workdir, smoke_episodes, max_trials=2, verbose=0)
    assert len(rows) == 2
    for row in rows:
        # the clock starts after the first step, so a trial takes at least two; fewer
        # than its 10,000 steps means the clock stopped it (a loaded machine may stop it
        # at the end of its first epoch, when validation is counted)
        assert 2 <= row["steps"] < 10000
        assert row["optimizer"] in ("adam", "muon") and row["ema_momentum"] in (0.0, 0.9)
    best = Config.from_json(open(os.path.join(workdir, "best_config.json")).read())
    assert best.train.steps == rows[0]["steps"]
    assert best.train.optimizer == rows[0]["optimizer"]
    assert best.train.ema_momentum == rows[0]["ema_momentum"]
    with pytest.raises(ValueError, match="tune.optimizers=.*sgd"):
        override(smoke_config, ["tune.optimizers=adam,sgd"])


def test_hyperband_with_a_time_budget_is_refused_naming_both(smoke_config, smoke_episodes,
                                                             tmp_path):
    """Hyperband's resource is epochs; a timed trial's is seconds: refused, not mixed."""
    cfg = override(smoke_config, ["tune.trial_seconds=5"])
    with pytest.raises(InvalidInputError, match="hyperband.*trial_seconds=5"):
        search.make_tuner("hyperband", search.GPICLHyperModel(cfg, smoke_episodes),
                          str(tmp_path), 2)
