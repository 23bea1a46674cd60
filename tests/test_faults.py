"""Fault injection with real processes: SIGKILL at random moments, then the same
command again (see the README's "Guarantees")."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from gpicl_tf.data import storage

pytestmark = pytest.mark.slow


def _kill_at_random(args, seed: int, low: float, high: float, cwd=None) -> bool:
    """Starts `args`, SIGKILLs it after a random delay in [low, high] s; returns
    whether it was killed (False: it finished first)."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    try:
        proc.wait(timeout=random.Random(seed).uniform(low, high))
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def _run(args):
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _make_episodes(out):
    return [sys.executable, "-m", "pipelines.make_episodes", "--preset", "smoke", "--out", out,
            "--set", "data.train_episodes=150000", "--set", "data.episodes_per_shard=10000",
            "--noprogress"]


@pytest.fixture(scope="module")
def reference_episodes(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("reference") / "eps")
    _run(_make_episodes(out))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_killed_episode_writer_leaves_nothing_complete_and_reruns_byte_identical(
        reference_episodes, tmp_path, seed):
    out = str(tmp_path / "out")
    proc = subprocess.Popen(_make_episodes(out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # Kill once a random number of the 15 train shards is complete (0: just started),
    # so the kill always lands mid-write, however fast this machine writes.
    shards = random.Random(seed).randint(0, 12)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        done = [n for n in os.listdir(out) if n.startswith("episodes-train")] \
            if os.path.exists(os.path.join(out, ".writing")) else None
        if done is not None and len(done) >= shards:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(out, "manifest.json"))
    with pytest.raises(FileNotFoundError, match="not a complete episode directory"):
        storage.read_manifest(out)
    _run(_make_episodes(out))                                      # the same command again
    reference = reference_episodes
    want, got = storage.read_manifest(reference), storage.read_manifest(out)
    assert got["splits"] == want["splits"] and got["base"] == want["base"]
    assert sorted(os.listdir(out)) == sorted(os.listdir(reference))  # no leftovers


def _export(workdir, base):
    return [sys.executable, "-m", "pipelines.export", "--workdir", workdir, "--out", base,
            "--name", "gpicl"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_killed_export_leaves_no_partial_version(trained_run, tmp_path, seed):
    base = str(tmp_path / "saved")
    killed = _kill_at_random(_export(trained_run, base), seed, 3.0, 9.0)
    model_dir = os.path.join(base, "gpicl")
    versions = [v for v in os.listdir(model_dir)] if os.path.isdir(model_dir) else []
    for v in versions:                      # whatever is visible as a version is complete
        if storage.is_version_name(v):
            assert os.path.exists(os.path.join(model_dir, v, "saved_model.pb"))
            assert os.path.exists(os.path.join(model_dir, v, "gpicl_config.json"))
    if killed and os.path.exists(os.path.join(base, "models.config")):
        text = open(os.path.join(base, "models.config")).read()
        assert ('name: "gpicl"' in text) == any(storage.is_version_name(v) for v in versions)
    _run(_export(trained_run, base))
    names = sorted(os.listdir(model_dir))
    assert names and all(storage.is_version_name(v) for v in names), names  # no temporaries
    assert 'name: "gpicl"' in open(os.path.join(base, "models.config")).read()


def _main_job(workdir):
    return [sys.executable, "-m", "pipelines.run", "--preset", "smoke", "--workdir", workdir,
            "--set", "train.deterministic=true", "--set", "eval.sequence_baselines=lstm",
            "--export_dir", ""]


def test_killed_main_job_resumes_to_the_same_report(tmp_path):
    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    _run(_main_job(whole))
    was_killed = _kill_at_random(_main_job(killed), 0, 15.0, 40.0)
    _run(_main_job(killed))
    with open(os.path.join(whole, "report", "report.json")) as f:
        want = json.load(f)
    with open(os.path.join(killed, "report", "report.json")) as f:
        got = json.load(f)
    for name in want["datasets"]:
        assert got["datasets"][name]["methods"] == want["datasets"][name]["methods"], name
    assert got["training"] == want["training"]
    assert was_killed or os.path.exists(os.path.join(killed, "report", "report.md"))


def test_full_disk_in_checkpointing_and_export_names_the_path_and_leaves_nothing(
        smoke_config, smoke_episodes, trained_run, tmp_path, monkeypatch):
    import keras

    from gpicl_tf.config import override
    from gpicl_tf.export import saved_model
    from gpicl_tf.training import train

    real_save = keras.Model.save_weights

    def full(self, filepath, *a, **k):
        if "backup" in str(filepath):
            raise OSError(28, "No space left on device", str(filepath))
        return real_save(self, filepath, *a, **k)

    monkeypatch.setattr(keras.Model, "save_weights", full)
    workdir = str(tmp_path / "run")
    with pytest.raises(OSError, match="No space left on device.*backup"):
        train.run(override(smoke_config, ["train.steps=10"]), workdir, smoke_episodes,
                  verbose=0)
    assert not os.path.exists(os.path.join(workdir, "backup", "latest.weights.h5"))
    assert not os.path.exists(os.path.join(workdir, train.SUMMARY_FILE))
    monkeypatch.undo()

    def full_export(path, *a, **k):  # the SavedModel is written, then the disk fills
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(saved_model, "write_warmup", full_export)
    base = str(tmp_path / "saved")
    with pytest.raises(OSError, match="No space left on device.*tmp-export"):
        saved_model.export_run(trained_run, base, "gpicl")
    assert os.listdir(os.path.join(base, "gpicl")) == []


def _tune(episodes, workdir):
    return [sys.executable, "-m", "pipelines.tune", "--preset", "smoke", "--episodes", episodes,
            "--workdir", workdir, "--max_trials", "3", "--set", "tune.steps=40"]


def test_killed_tuner_search_resumes_and_finishes_every_trial_once(smoke_episodes, tmp_path):
    from gpicl_tf.config import Config

    workdir = str(tmp_path / "tune")
    _kill_at_random(_tune(smoke_episodes, workdir), 0, 12.0, 25.0)
    assert not os.path.exists(os.path.join(workdir, "best_config.json")) or \
        os.path.exists(os.path.join(workdir, "results.csv"))
    _run(_tune(smoke_episodes, workdir))
    with open(os.path.join(workdir, "results.csv")) as f:
        rows = f.read().strip().splitlines()[1:]
    assert len(rows) == 3, rows
    assert len({r.split(",")[0] for r in rows}) == 3          # every trial once
    with open(os.path.join(workdir, "best_config.json")) as f:
        Config.from_json(f.read())
