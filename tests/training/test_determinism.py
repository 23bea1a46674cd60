"""train.deterministic=true: the same command gives bit-identical weights and reports."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest


def _main_job(workdir):
    done = subprocess.run([sys.executable, "-m", "pipelines.run", "--preset", "smoke",
                           "--workdir", workdir, "--set", "train.deterministic=true",
                           "--set", "eval.sequence_baselines=lstm", "--export_dir", ""],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(os.path.join(workdir, "report", "report.json")) as f:
        return json.load(f)


def _weights(workdir):
    return _weights_of(os.path.join(workdir, "transformer"))


@pytest.mark.slow
def test_deterministic_main_job_gives_identical_weights_and_report(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    ra, rb = _main_job(a), _main_job(b)
    for wa, wb in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert ra["datasets"].keys() == rb["datasets"].keys()
    for name in ra["datasets"]:
        assert ra["datasets"][name]["methods"] == rb["datasets"][name]["methods"], name
        assert ra["datasets"][name]["paired"] == rb["datasets"][name]["paired"], name
    assert ra["training"] == rb["training"]
    with open(os.path.join(a, "transformer", "history.csv")) as fa, \
            open(os.path.join(b, "transformer", "history.csv")) as fb:
        assert fa.read() == fb.read()


def _train(episodes, workdir):
    return [sys.executable, "-m", "pipelines.train", "--preset", "smoke", "--episodes", episodes,
            "--workdir", workdir, "--set", "train.steps=120", "--set", "train.steps_per_epoch=10",
            "--set", "train.deterministic=true"]


@pytest.mark.slow
@pytest.mark.parametrize("kill_seed", [0, 1])
def test_a_killed_deterministic_run_resumes_to_the_same_weights(smoke_episodes, tmp_path,
                                                                kill_seed):
    """SIGKILL at a random moment after the first backup; the same command again
    ends with weights bit-identical to an uninterrupted run (the resumed run skips
    the episodes its finished epochs consumed)."""
    import random
    import signal
    import time

    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    done = subprocess.run(_train(smoke_episodes, whole), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    proc = subprocess.Popen(_train(smoke_episodes, killed), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    backup = os.path.join(killed, "backup", "training_metadata.json")
    deadline = time.time() + 180
    while not os.path.exists(backup) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(random.Random(kill_seed).uniform(0.0, 1.5))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if os.path.exists(os.path.join(killed, "summary.json")):
        pytest.skip("the run finished before the kill")
    again = subprocess.run(_train(smoke_episodes, killed), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    with open(os.path.join(killed, "summary.json")) as f:
        assert json.load(f)["steps"] == 120
    for wa, wb in zip(_weights_of(whole), _weights_of(killed), strict=True):
        np.testing.assert_array_equal(wa, wb)


def _weights_of(workdir):
    import keras

    import gpicl_tf.models  # noqa: F401

    return keras.models.load_model(os.path.join(workdir, "model.keras"),
                                   compile=False).get_weights()
