import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from gpicl_tf import compat
from gpicl_tf.config import override
from gpicl_tf.data import augment, pipeline
from gpicl_tf.models import build_model
from gpicl_tf.training import callbacks, train


def _history(workdir):
    with open(os.path.join(workdir, "history.csv")) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_run_on_one_device_with_xla(smoke_config, smoke_episodes, tmp_path):
    workdir = str(tmp_path / "run")
    summary = train.run(smoke_config, workdir, smoke_episodes, verbose=0)
    assert summary["xla"] is True and summary["replicas"] == 1
    assert summary["steps"] == smoke_config.train.steps
    for name in ("config.json", "model.keras", "summary.json", "history.csv"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    saved = json.load(open(os.path.join(workdir, "config.json")))["config"]
    assert saved["model"] == smoke_config.to_dict()["model"]
    rows = _history(workdir)
    assert len(rows) == 2
    for key in ("loss", "acc_first10", "acc_last10", "improvement", "val_accuracy",
                "bias_fraction"):
        assert key in rows[0], key
    model = keras.models.load_model(os.path.join(workdir, "model.keras"))
    assert model.output_shape == (None, None, 10)
    # A finished run is not trained again; another config in its workdir is refused.
    assert train.run(smoke_config, workdir, smoke_episodes, verbose=0) == summary
    with pytest.raises(ValueError, match="train.batch_size=8.*has 4"):
        train.run(override(smoke_config, ["train.batch_size=4"]), workdir, smoke_episodes)


def _train_cli(episodes, workdir, *extra):
    return [sys.executable, "-m", "pipelines.train", "--preset", "smoke", "--episodes", episodes,
            "--workdir", workdir, *extra]


@pytest.mark.slow
def test_fit_under_mirrored_strategy_on_two_logical_cpus(smoke_episodes, tmp_path):
    workdir = str(tmp_path / "mirrored")
    done = subprocess.run(_train_cli(smoke_episodes, workdir, "--strategy", "mirrored",
                                     "--cpu_devices", "2"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    assert summary["strategy"] == "MirroredStrategy" and summary["replicas"] == 2
    assert summary["xla"] is False  # logged fallback: XLA fails there
    assert "XLA off" in done.stderr
    assert math.isfinite(summary["final"]["loss"])


@pytest.mark.slow
def test_killed_run_resumes_and_ends_at_the_same_step(smoke_episodes, tmp_path):
    workdir = str(tmp_path / "killed")
    args = _train_cli(smoke_episodes, workdir, "--set", "train.steps=300",
                      "--set", "train.steps_per_epoch=30")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline:
        if os.path.exists(os.path.join(workdir, "history.csv")) and len(_history(workdir)) >= 2:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the run did not finish two epochs within 180 s")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_after = len(_history(workdir))
    assert killed_after < 10 and not os.path.exists(os.path.join(workdir, "summary.json"))
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    assert summary["steps"] == 300
    epochs = [int(r["epoch"]) for r in _history(workdir)]
    assert epochs[-1] == 9
    assert epochs.count(0) == 1, epochs  # resumed: the first epoch was not run again


def test_validation_stream_is_not_autotuned_and_yields_the_same_batches(smoke_config,
                                                                        smoke_episodes):
    """Keras deletes the validation iterator at every evaluation; deleting an
    autotuned one waited for its optimisation thread (14-20 s at most epoch ends of
    the cpu preset). The stream runs without autotuning and its batches are those
    of the plain meta-validation stream."""
    eps = pipeline.open_episodes(smoke_episodes)
    tcfg = smoke_config.train
    _, make_val = train.dataset_makers(eps, tcfg, pipeline.make_bias_variable(0.0))
    ds = make_val()
    assert ds.options().autotune.enabled is False
    plain = pipeline.make_dataset(eps, "valid", tcfg.batch_size, shuffle=False,
                                  shard_by="records")
    steps = eps.num_episodes("valid") // tcfg.batch_size
    for (f, t), (pf, pt) in zip(ds.take(steps + 1), plain.take(steps + 1)):
        np.testing.assert_array_equal(f["inputs"].numpy(), pf["inputs"].numpy())
        np.testing.assert_array_equal(t.numpy(), pt.numpy())


def test_curriculum_callback_changes_the_batches(smoke_config, smoke_episodes):
    eps = pipeline.open_episodes(smoke_episodes)
    records = pipeline.read_records(eps, "train")
    x, y = eps.base("train")
    c = eps.schema.num_classes
    fixed = augment.task_permutation(eps.seed, augment.FIXED_TASK_ID, c).numpy()
    seen = []

    def tap(features, targets):
        def record(t):
            seen.append(t.numpy())
            return 0
        tf.py_function(record, [targets], tf.int32)  # runs as each batch is built
        return features, targets

    bias = pipeline.make_bias_variable(0.0)
    ds = pipeline.make_dataset(eps, "train", 8, shuffle=False, bias=bias, prefetch=1).map(tap)
    model = build_model(smoke_config.model, eps.schema)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    steps = 36
    cb = callbacks.CurriculumCallback(bias, "linear", 1.0, anneal_steps=8)
    model.fit(ds, epochs=1, steps_per_epoch=steps, callbacks=[cb], verbose=0)

    def biased_rows(batch_index, targets):
        rows = [(batch_index * 8 + b) % len(records) for b in range(8)]
        return sum(np.array_equal(targets[b], fixed[y[records[r]["indices"]]])
                   for b, r in enumerate(rows))

    counts = [biased_rows(i, t) for i, t in enumerate(seen[:steps])]
    # Batches are built ahead of the step that trains on them (prefetch, parallel
    # map), by a lag that depends on the machine's load: test the order of events.
    assert max(counts[:4]) == 8, counts          # the callback set 1.0 at step 0
    assert any(0 < c < 8 for c in counts), counts  # the anneal passed through the batches
    assert counts[-8:] == [0] * 8, counts        # annealed to 0 at step 8
    assert all(a >= b for a, b in zip(counts, counts[1:])), counts


@pytest.mark.parametrize("schedule,step,left,want", [
    ("constant", 500, False, 0.9), ("linear", 0, False, 0.9), ("linear", 50, False, 0.45),
    ("linear", 200, False, 0.0), ("plateau", 10, False, 0.9), ("plateau", 10, True, 0.0)])
def test_bias_schedules(schedule, step, left, want):
    assert callbacks.bias_at(schedule, 0.9, step, 100, left) == pytest.approx(want)


def test_bad_schedule_is_named():
    with pytest.raises(ValueError, match="'cosine'"):
        callbacks.CurriculumCallback(pipeline.make_bias_variable(), "cosine")
    with pytest.raises(ValueError, match="bias_fraction=1.5"):
        callbacks.CurriculumCallback(pipeline.make_bias_variable(), "constant", 1.5)


def _curriculum(smoke_config, smoke_episodes, **kwargs):
    bias = pipeline.make_bias_variable(0.0)
    cb = callbacks.CurriculumCallback(bias, "plateau", 0.8, num_classes=10, plateau_drop=0.1,
                                      **kwargs)
    cb.set_model(build_model(smoke_config.model, pipeline.open_episodes(smoke_episodes).schema))
    cb.model.compile("adam", "mse")
    cb.model.optimizer.build(cb.model.trainable_variables)
    return bias, cb


def test_plateau_schedule_switches_off_when_unseen_task_loss_falls(smoke_config,
                                                                   smoke_episodes):
    bias, cb = _curriculum(smoke_config, smoke_episodes)
    cb.on_train_batch_begin(0)
    assert float(bias.numpy()) == pytest.approx(0.8)
    cb.on_train_batch_end(0, {"loss": 0.5})    # the memorised fixed task: not a signal
    cb.on_epoch_end(0, {"loss": 0.5, "val_loss": 2.3})
    cb.on_train_batch_begin(1)
    assert float(bias.numpy()) == pytest.approx(0.8)
    cb.on_epoch_end(1, {"loss": 0.5, "val_loss": 1.9})  # < 0.9 * ln 10 = 2.07
    cb.on_train_batch_begin(2)
    assert float(bias.numpy()) == 0.0


def test_plateau_schedule_on_training_loss_and_after_resume(smoke_config, smoke_episodes):
    bias, cb = _curriculum(smoke_config, smoke_episodes, monitor="loss")
    cb.on_train_batch_begin(0)
    cb.on_train_batch_end(0, {"loss": 2.3})
    cb.on_train_batch_begin(1)
    assert float(bias.numpy()) == pytest.approx(0.8)
    cb.on_train_batch_end(1, {"loss": 1.9})
    cb.on_train_batch_begin(2)
    assert float(bias.numpy()) == 0.0
    bias, cb = _curriculum(smoke_config, smoke_episodes, left_plateau=True)
    cb.on_train_batch_begin(0)
    assert float(bias.numpy()) == 0.0
    threshold = callbacks.plateau_threshold(10, 0.1)
    rows = [{"val_loss": "2.30"}, {"val_loss": "2.00"}]
    assert callbacks.plateau_left_in(rows, "val_loss", threshold)
    assert not callbacks.plateau_left_in(rows[:1], "val_loss", threshold)
    assert not callbacks.plateau_left_in([{"loss": "1.0"}], "val_loss", threshold)
    with pytest.raises(ValueError, match="monitor='acc'"):
        callbacks.CurriculumCallback(bias, "plateau", 0.8, monitor="acc")


def test_a_resumed_run_reads_only_the_history_of_its_resume_state(smoke_config, tmp_path):
    """An epoch that wrote its history row but was killed before its resume state is
    run again: its row is cut from history.csv, so the plateau curriculum does not
    start the rerun as if the plateau had been left (that changed the weights of a
    killed smoke run); the file callbacks come before the resume state's."""
    workdir = str(tmp_path)
    path = os.path.join(workdir, "history.csv")
    with open(path, "w") as f:
        f.write("epoch,loss,val_loss\n0,2.3,2.30\n1,2.1,1.90\n2,1.8,1.70\n")
    threshold = callbacks.plateau_threshold(10, smoke_config.train.plateau_drop)
    kept = train.resumed_history(workdir, 1)
    assert [r["epoch"] for r in kept] == ["0"]
    assert not callbacks.plateau_left_in(kept, "val_loss", threshold)
    assert open(path).read() == "epoch,loss,val_loss\n0,2.3,2.30\n"
    assert train.resumed_history(workdir, 5) == kept and open(path).read().count("\n") == 2
    assert train.resume_epoch(workdir, "keras") == 0 == train.resume_epoch(workdir, "custom")
    bias = tf.Variable(0.0)
    for loop in ("keras", "custom"):
        names = [type(c).__name__ for c in
                 train.run_callbacks(smoke_config, str(tmp_path / loop), bias, "val_loss",
                                     True, loop, True)]
        assert names.index("CSVLogger") > names.index("CurriculumCallback")
        if loop == "keras":
            assert names[-1] == "AtomicBackupAndRestore"
        else:
            assert "AtomicBackupAndRestore" not in names


@pytest.mark.slow
def test_loss_falls_on_a_single_memorisable_task(smoke_config, smoke_episodes, tmp_path):
    cfg = override(smoke_config, [
        "train.bias_fraction=1.0", "train.bias_mode=task", "train.steps=200",
        "train.steps_per_epoch=100", "train.learning_rate=3e-3", "model.model_size=32",
        "model.num_heads=4", "train.bias_schedule=plateau"])
    summary = train.run(cfg, str(tmp_path / "single"), smoke_episodes, verbose=0)
    history = _history(str(tmp_path / "single"))
    first = float(history[0]["loss"])
    assert summary["final"]["loss"] < 0.5 * math.log(10), summary["final"]
    assert summary["final"]["loss"] < 0.6 * first
    # The memorised task's training loss is far below the plateau threshold, but the
    # plateau schedule watches unseen tasks: the bias stays on until they improve.
    threshold = callbacks.plateau_threshold(10, cfg.train.plateau_drop)
    left = False
    for row in history:
        assert float(row["bias_fraction"]) == (0.0 if left else 1.0), history
        left = left or float(row["val_loss"]) < threshold


@pytest.mark.slow
def test_a_workdir_refuses_another_config_and_accepts_older_config_files(smoke_config,
                                                                         smoke_episodes,
                                                                         tmp_path):
    workdir = str(tmp_path / "run")
    # the paper layout: the one that takes a position code, the key changed below
    cfg = override(smoke_config, ["model.layout=paper", "train.steps=2",
                                  "train.steps_per_epoch=2"])
    first = train.run(cfg, workdir, smoke_episodes, verbose=0)
    with pytest.raises(ValueError, match=f"train.learning_rate={smoke_config.train.learning_rate}"):
        train.run(override(cfg, ["train.learning_rate=0.01"]), workdir, smoke_episodes)
    path = os.path.join(workdir, train.CONFIG_FILE)
    saved = json.load(open(path))
    del saved["config"]["functions"]          # written before the section existed
    del saved["config"]["model"]["positions"]  # written before the key existed
    json.dump(saved, open(path, "w"))
    assert train.run(cfg, workdir, smoke_episodes, verbose=0) == first
    # a key the older file lacks counts as its default: changing it is refused
    with pytest.raises(ValueError, match="model.positions='none', this run has 'sinusoidal'"):
        train.run(override(cfg, ["model.positions=sinusoidal"]), workdir, smoke_episodes)


@pytest.mark.slow
def test_regression_run_records_the_functions_config_of_its_episodes(
        functions_config, function_episodes, tmp_path):
    workdir = str(tmp_path / "run")
    cfg = override(functions_config, ["train.steps=2", "train.steps_per_epoch=2",
                                      "functions.noise_std=0.5"])
    train.run(cfg, workdir, function_episodes, verbose=0)
    saved = json.load(open(os.path.join(workdir, train.CONFIG_FILE)))["config"]
    assert saved["functions"]["noise_std"] == functions_config.functions.noise_std


@pytest.mark.slow
def test_diverging_training_stops_with_a_clear_error(smoke_config, smoke_episodes, tmp_path):
    cfg = override(smoke_config, ["train.learning_rate=1e30", "train.clip_norm=0",
                                  "train.warmup_steps=0"])
    with pytest.raises(callbacks.NonFiniteError, match="epoch 1: .*(not finite|NaN or Inf)"):
        train.run(cfg, str(tmp_path / "nan"), smoke_episodes, verbose=0)
    assert not os.path.exists(tmp_path / "nan" / train.MODEL_FILE)
    assert not os.path.exists(tmp_path / "nan" / train.SUMMARY_FILE)


def test_data_override_that_disagrees_with_the_episodes_is_an_error(smoke_config,
                                                                     smoke_episodes):
    cfg = override(smoke_config, ["data.input_size=32"])
    with pytest.raises(ValueError, match=r"--set data.input_size=32 disagrees with the episodes"
                                         r".*written with data.input_size=16"):
        train.check_episode_overrides(cfg, smoke_episodes, ["data.input_size"])
    # agreeing overrides and overrides of other sections pass
    train.check_episode_overrides(override(smoke_config, ["data.input_size=16"]),
                                  smoke_episodes, ["data.input_size", "train.steps"])


def test_truncated_resume_state_falls_back_to_the_previous_epoch(smoke_config, smoke_episodes,
                                                                 tmp_path, caplog):
    workdir = str(tmp_path / "run")
    cfg = override(smoke_config, ["train.steps=20", "train.steps_per_epoch=10"])
    backup = os.path.join(workdir, "backup")
    callback = callbacks.AtomicBackupAndRestore(backup)
    model = build_model(cfg.model, pipeline.open_episodes(smoke_episodes).schema)
    model.compile(optimizer="adam", loss="mse")
    callback.set_model(model)
    for epoch in range(2):                        # two epochs saved: latest and .bkp
        callback.on_epoch_end(epoch)
    weights = os.path.join(backup, "latest.weights.h5")
    assert os.path.exists(weights + ".bkp")
    assert not [n for n in os.listdir(backup) if ".tmp" in n]
    with open(weights, "r+b") as f:               # a kill mid-write of the old code
        f.truncate(100)
    fresh = callbacks.AtomicBackupAndRestore(backup)
    fresh.set_model(model)
    fresh.on_train_begin()
    assert "latest.weights.h5" in caplog.text and "falling back" in caplog.text
    assert compat.initial_epoch(model) == 1
    assert not os.path.exists(weights + ".bkp")   # the previous state took its place
    with open(weights, "r+b") as f:               # now no good state is left: a named error
        f.truncate(100)
    with pytest.raises(RuntimeError, match="resume state .*latest.weights.h5.* is unreadable"):
        fresh.on_train_begin()


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    from gpicl_tf.data import storage

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    names = [f".shard.tfrecord.gz.tmp-{dead}", f".tmp-{dead}-model.keras",
             f".tmp-export-{dead}", f".tmp-{os.getpid()}-mine", "user.tmp-123"]
    for n in names:
        (tmp_path / n).write_text("x")
    assert sorted(storage.remove_stale_temporaries(str(tmp_path))) == sorted(names[:3])
    assert sorted(os.listdir(tmp_path)) == sorted(names[3:])


@pytest.mark.slow
@pytest.mark.parametrize("precision,loop", [("mixed_bfloat16", "keras"),
                                            ("mixed_float16", "custom")])
def test_mixed_precision_learns_with_float32_logits(smoke_config, smoke_episodes, tmp_path,
                                                    precision, loop):
    """A mixed-precision smoke run learns (fit, and the custom loop, which goes
    through Keras' loss scaling for float16); its logits stay float32."""
    cfg = override(smoke_config, [f"train.precision={precision}", f"train.loop={loop}",
                                  "model.layout=pfn", "train.steps=60",
                                  "train.learning_rate=3e-3"])
    summary = train.run(cfg, str(tmp_path / "run"), smoke_episodes, verbose=0)
    assert summary["precision"] == precision
    rows = _history(str(tmp_path / "run"))
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    model = keras.models.load_model(str(tmp_path / "run" / "model.keras"), compile=False)
    assert model.get_layer("token_embedding").dtype_policy.name == precision
    assert model.output.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"       # restored after the run


def test_precision_choices_are_checked(smoke_config):
    with pytest.raises(ValueError, match="train.precision='fp8' must be one of"):
        override(smoke_config, ["train.precision=fp8"])


def test_a_second_run_in_a_held_workdir_is_an_error_naming_the_holder(smoke_config,
                                                                       smoke_episodes, tmp_path,
                                                                       other_process):
    from gpicl_tf.data import storage

    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / storage.LOCK_FILE).write_text(str(other_process.pid))
    with pytest.raises(FileExistsError, match=f"in use by another training run "
                                              f"\\(pid {other_process.pid}\\)"):
        train.run(smoke_config, str(workdir), smoke_episodes, verbose=0)
    assert not os.path.exists(workdir / train.CONFIG_FILE)       # nothing touched
    other_process.kill()
    other_process.wait()
    with storage.directory_lock(str(workdir), "training run"):   # a dead holder's lock
        assert (workdir / storage.LOCK_FILE).read_text() == str(os.getpid())
    assert not os.path.exists(workdir / storage.LOCK_FILE)


@pytest.mark.slow
def test_a_run_that_never_finished_an_epoch_does_not_bind_its_workdir(smoke_config,
                                                                       smoke_episodes, tmp_path):
    workdir = str(tmp_path / "run")
    bad = override(smoke_config, ["train.learning_rate=1e30", "train.clip_norm=0",
                                  "train.warmup_steps=0"])
    with pytest.raises(callbacks.NonFiniteError):
        train.run(bad, workdir, smoke_episodes, verbose=0)
    good = override(smoke_config, ["train.steps=2", "train.steps_per_epoch=2"])
    assert train.run(good, workdir, smoke_episodes, verbose=0)["steps"] == 2
    with pytest.raises(ValueError, match=f"holds a run with train.learning_rate={smoke_config.train.learning_rate}"):
        train.run(override(good, ["train.learning_rate=0.01"]), workdir, smoke_episodes)
