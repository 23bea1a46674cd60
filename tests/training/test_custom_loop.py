"""The custom training loop (train.loop=custom): equal to fit on one device, and
multi-worker meta-training with real processes on 127.0.0.1."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gpicl_tf.config import override
from gpicl_tf.training import distribute, loop, train
from tests.conftest import free_ports


def _history(workdir):
    with open(os.path.join(workdir, "history.csv")) as f:
        return list(csv.DictReader(f))


def test_metric_logs_match_the_keras_metrics():
    import keras

    from gpicl_tf.training import objectives
    from gpicl_tf.training.metrics import sequence_metrics

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, (4, 12)).astype("int32")
    logits = rng.standard_normal((4, 12, 3)).astype("float32")
    task = objectives.CLASSIFICATION
    sums = task.batch_sums(y, logits, window=5).numpy()
    got = task.metric_logs(sums, window=5)
    for metric in sequence_metrics(5):
        metric.update_state(y, logits)
        assert np.isclose(got[metric.name], float(metric.result())), metric.name
    losses = task.example_losses(y, logits).numpy()
    want = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
    assert np.isclose(losses.mean(), float(want), rtol=1e-6)


def test_parse_tf_config_names_what_is_wrong():
    ok = '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}'
    cluster = distribute.parse_tf_config(ok)
    assert cluster.index == 1 and not cluster.is_chief and cluster.peers == ("a:1",)
    for text, match in [
            (None, "needs TF_CONFIG"), ("{", "is not JSON"),
            ('{"cluster": {"worker": ["a:1"], "ps": ["c:3"]}, "task": {}}', "cluster="),
            ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}',
             "host:port"),
            ('{"cluster": {"worker": ["a:1", "b:99999"]}, "task": {"type": "worker", '
             '"index": 0}}', r"each port in \[1, 65535\]"),
            ('{"cluster": {"worker": [":5000"]}, "task": {"type": "worker", "index": 0}}',
             "host:port"),
            ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}',
             "repeats"),
            ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
             "task="),
            ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
             r"task.index=1 must be an integer in \[0, 1\)")]:
        with pytest.raises(ValueError, match=match):
            distribute.parse_tf_config(text)


@pytest.mark.slow
def test_custom_loop_equals_fit_on_one_device(smoke_config, smoke_episodes, tmp_path):
    """Same seed, same batches: the same loss curve and the same weights (to float
    tolerance); the same files in the workdir."""
    runs = {}
    for name in ("keras", "custom"):
        workdir = str(tmp_path / name)
        cfg = override(smoke_config, [f"train.loop={name}", "model.layout=pfn"])
        runs[name] = (train.run(cfg, workdir, smoke_episodes, verbose=0), _history(workdir))
    (fit_summary, fit_rows), (loop_summary, loop_rows) = runs["keras"], runs["custom"]
    assert loop_summary["loop"] == "custom" and loop_summary["steps"] == fit_summary["steps"]
    assert len(fit_rows) == len(loop_rows) == 2
    for a, b in zip(fit_rows, loop_rows):
        for key in a:
            assert np.isclose(float(a[key]), float(b[key]), rtol=1e-4, atol=1e-5), key
    assert {"history.csv", "model.keras", "summary.json", "config.json", "checkpoints",
            "tensorboard", "loop_checkpoints"} <= set(os.listdir(tmp_path / "custom"))


@pytest.mark.slow
def test_custom_loop_resumes_from_its_checkpoint(smoke_config, smoke_episodes, tmp_path,
                                                 monkeypatch):
    """Killed at the end of epoch 2 (before its checkpoint): started again, it
    resumes from epoch 1's checkpoint and ends where an uninterrupted run ends."""
    from gpicl_tf.training import callbacks

    cfg = override(smoke_config, ["train.loop=custom", "model.layout=pfn", "train.steps=30"])
    whole = train.run(cfg, str(tmp_path / "whole"), smoke_episodes, verbose=0)
    workdir = str(tmp_path / "resumed")
    guard = callbacks.FiniteGuard.on_epoch_end

    def killed_at_epoch_2(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt
        return guard(self, epoch, logs)

    monkeypatch.setattr(callbacks.FiniteGuard, "on_epoch_end", killed_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg, workdir, smoke_episodes, verbose=0)
    assert loop.checkpoint_epoch(os.path.join(workdir, "loop_checkpoints")) == 1
    monkeypatch.setattr(callbacks.FiniteGuard, "on_epoch_end", guard)
    resumed = train.run(cfg, workdir, smoke_episodes, verbose=0)
    assert resumed["steps"] == 30
    assert np.isclose(resumed["final"]["loss"], whole["final"]["loss"], rtol=1e-5)
    assert np.isclose(resumed["final"]["val_loss"], whole["final"]["val_loss"], rtol=1e-5)


def _start_workers(workdir, episodes, extra=(), count=2, ports=None, indices=None):
    ports = ports or free_ports(count)
    workers = [f"127.0.0.1:{p}" for p in ports]
    procs = []
    for index in (indices if indices is not None else range(count)):
        env = {**os.environ, "GPICL_TCMALLOC": "0", "TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        cmd = [sys.executable, "-m", "pipelines.train", "--preset", "smoke", "--episodes",
               episodes, "--workdir", workdir, "--strategy", "multi_worker",
               "--set", "model.layout=pfn", "--collective_timeout_s", "30", *extra]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env))
    return procs, ports


def _finish(procs, timeout=300):
    out = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"a worker did not finish within {timeout} s")
        out.append((p.returncode, stdout, stderr))
    return out


def _summary(stdout):
    return json.loads(stdout[stdout.index("{"):])


@pytest.mark.slow
def test_two_workers_meta_train_under_multi_worker_mirrored(smoke_episodes, tmp_path):
    workdir = str(tmp_path / "run")
    results = _finish(_start_workers(workdir, smoke_episodes)[0])
    for rc, _, err in results:
        assert rc == 0, err[-3000:]
    chief, worker = (_summary(out) for _, out, _ in results)
    assert chief["strategy"] == "MultiWorkerMirroredStrategy" and chief["workers"] == 2
    assert chief["replicas"] == 2 and chief["loop"] == "custom" and chief["steps"] == 20
    assert chief["weights_sha256"] == worker["weights_sha256"]      # identical weights
    rows = _history(workdir)
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])         # it learns
    assert {"history.csv", "model.keras", "summary.json", "loop_checkpoints",
            "tensorboard"} <= set(os.listdir(workdir))
    assert "(2 replicas, global batch 8, 4 per replica), custom loop" in results[0][2]


@pytest.mark.slow
def test_a_killed_worker_fails_the_job_and_both_restarted_resume(smoke_episodes, tmp_path):
    workdir = str(tmp_path / "run")
    extra = ["--set", "train.steps=200"]
    procs, ports = _start_workers(workdir, smoke_episodes, extra)
    ckpts = os.path.join(workdir, "loop_checkpoints")
    deadline = time.time() + 240
    while time.time() < deadline and not (
            os.path.isdir(ckpts) and any(f.startswith("ckpt-2") for f in os.listdir(ckpts))):
        if any(p.poll() is not None for p in procs):   # a worker died before the kill
            pytest.fail(_finish(procs)[0][2][-3000:])
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGKILL)                  # worker 1 dies mid-run
    t0 = time.time()
    rc, _, err = _finish(procs[:1], timeout=120)[0]
    procs[1].wait()
    assert rc != 0 and time.time() - t0 < 120, err         # the chief fails, no hang
    done_epochs = loop.checkpoint_epoch(ckpts)
    assert 2 <= done_epochs < 20
    results = _finish(_start_workers(workdir, smoke_episodes, extra)[0])
    for rc, _, err in results:
        assert rc == 0, err
    chief = _summary(results[0][1])
    assert chief["steps"] == 200 and loop.checkpoint_epoch(ckpts) == 20
    assert "resumed from" in results[0][2] and "resumed from" in results[1][2]


@pytest.mark.slow
def test_a_silent_peer_is_a_timeout_naming_it(smoke_episodes, tmp_path):
    procs, ports = _start_workers(str(tmp_path / "run"), smoke_episodes,
                                  ["--connect_timeout_s", "5"], indices=[0])
    ((rc, _, err),) = _finish(procs, timeout=120)
    assert rc == 2 and "could not join the cluster" in err      # it was 137: SIGKILLed
    (line,) = [x for x in err.splitlines() if "could not join the cluster" in x]
    assert line.startswith("error: ") and line.endswith(f"['127.0.0.1:{ports[1]}']")


@pytest.mark.slow
def test_replicas_must_divide_the_batch(smoke_episodes, tmp_path):
    cmd = [sys.executable, "-m", "pipelines.train", "--preset", "smoke", "--episodes",
           smoke_episodes, "--workdir", str(tmp_path / "run"), "--strategy", "mirrored",
           "--cpu_devices", "3"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "GPICL_TCMALLOC": "0"})
    assert done.returncode == 2 and "train.batch_size=8 is not divisible by the 3 replicas" \
        in done.stderr


@pytest.mark.slow
def test_episodes_built_on_the_device_train_as_host_built_ones(smoke_config, smoke_episodes,
                                                               tmp_path):
    runs = {}
    for where in ("host", "device"):
        cfg = override(smoke_config, ["train.loop=custom", "model.layout=pfn",
                                      f"train.episodes_on_device={where == 'device'}"])
        runs[where] = train.run(cfg, str(tmp_path / where), smoke_episodes, verbose=0)
    for key, value in runs["host"]["final"].items():
        assert np.isclose(runs["device"]["final"][key], value, rtol=1e-4, atol=1e-5), key


def test_episodes_on_device_needs_the_custom_loop(smoke_config, smoke_episodes, tmp_path):
    with pytest.raises(ValueError, match="train.episodes_on_device=True needs train.loop=custom"):
        train.run(override(smoke_config, ["train.episodes_on_device=true"]),
                  str(tmp_path / "run"), smoke_episodes, verbose=0)


@pytest.mark.slow
def test_the_smoke_main_job_gives_the_same_table_with_either_loop(smoke_config, tmp_path):
    from gpicl_tf import main_job
    from gpicl_tf.eval import report as report_lib

    tables = {}
    for name in ("keras", "custom"):
        cfg = override(smoke_config, [f"train.loop={name}", "eval.sequence_baselines=lstm"])
        report = main_job.run_all(cfg, str(tmp_path / name), verbose=0)
        assert report["training"]["GPICL Transformer"]["steps"] == smoke_config.train.steps
        tables[name] = report_lib.markdown_table(report).replace(str(tmp_path / name), "W")
    assert tables["custom"] == tables["keras"]
