"""Meta-training the cell learner: a run, its files, resume after a kill, averaging,
warm starts and the workdir's one config."""

import csv
import json
import os

import keras
import numpy as np
import pytest

from gpicl_tf.config import override
from gpicl_tf.config.cell import get_cell_preset
from gpicl_tf.data import tables
from gpicl_tf.errors import InvalidInputError, MissingFileError
from gpicl_tf.training import cell_train


def _cfg(*sets):
    return override(get_cell_preset("cell_smoke"), list(sets))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("cell_run"))
    summary = cell_train.run(_cfg("train.average_last=2", "train.keep_every=2"), workdir)
    return workdir, summary


def test_a_run_writes_its_files(finished):
    workdir, summary = finished
    for name in ("config.json", "log.csv", "validation.csv", "model.keras", "summary.json"):
        assert os.path.exists(os.path.join(workdir, name)), name
    with open(os.path.join(workdir, "log.csv")) as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]
    with open(os.path.join(workdir, "validation.csv")) as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [2, 4]
    assert summary["averaged"] == ["step-2.weights.h5", "step-4.weights.h5"]
    assert np.isfinite(summary["validation_loss"]) and 0 <= summary["validation_accuracy"] <= 1


def test_a_run_leaves_no_temporaries_and_holds_its_workdir(finished, tmp_path,
                                                            other_process):
    """Weights and model.keras are written under temporaries renamed into place (none
    left behind); a second run in a held workdir is an error naming the holder's pid,
    and touches nothing; a dead process's temporaries are removed at the next run."""
    from gpicl_tf import io as files

    workdir, _ = finished
    for directory in (workdir, os.path.join(workdir, "weights")):
        assert not [n for n in os.listdir(directory) if ".tmp-" in n], directory
    assert not os.path.exists(os.path.join(workdir, files.LOCK_FILE))     # released
    held = tmp_path / "held"
    held.mkdir()
    (held / files.LOCK_FILE).write_text(str(other_process.pid))
    with pytest.raises(FileExistsError, match=f"in use by another cell training run "
                                              f"\\(pid {other_process.pid}\\)"):
        cell_train.run(_cfg(), str(held))
    assert os.listdir(held) == [files.LOCK_FILE]                          # nothing touched
    stale = held / "weights" / ".tmp-999999999-step-2.weights.h5"
    stale.parent.mkdir()
    stale.write_bytes(b"half")
    os.remove(held / files.LOCK_FILE)
    cell_train.run(_cfg("train.steps=2", "train.checkpoint_every=2"), str(held))
    assert not stale.exists() and (held / "model.keras").exists()


def test_the_released_weights_are_the_mean_of_the_last_checkpoints(finished):
    workdir, _ = finished
    model = keras.models.load_model(os.path.join(workdir, "model.keras"), compile=False)
    other = cell_train.build_model(_cfg())
    parts = []
    for step in (2, 4):
        other.load_weights(os.path.join(workdir, "weights", f"step-{step}.weights.h5"))
        parts.append(other.get_weights())
    for w, a, b in zip(model.get_weights(), *parts):
        np.testing.assert_allclose(w, (np.float64(a) + b) / 2, rtol=1e-6, atol=1e-7)


def test_a_killed_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    straight = str(tmp_path / "straight")
    cell_train.run(_cfg(), straight)
    killed = str(tmp_path / "killed")
    real = tables.table_batch

    def dies_at_3(cfg, step):
        if step == 3:
            raise RuntimeError("killed at step 3")
        return real(cfg, step)

    monkeypatch.setattr(tables, "table_batch", dies_at_3)
    with pytest.raises(RuntimeError, match="killed at step 3"):
        cell_train.run(_cfg(), killed)
    monkeypatch.setattr(tables, "table_batch", real)
    assert not os.path.exists(os.path.join(killed, "summary.json"))
    cell_train.run(_cfg(), killed)                            # resumes at step 2
    with open(os.path.join(killed, "log.csv")) as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]
    a = keras.models.load_model(os.path.join(straight, "model.keras"), compile=False)
    b = keras.models.load_model(os.path.join(killed, "model.keras"), compile=False)
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5)


def test_a_workdir_holds_one_config(finished):
    workdir, _ = finished
    with pytest.raises(InvalidInputError, match="train.learning_rate=0.001, not 0.5"):
        cell_train.run(_cfg("train.average_last=2", "train.keep_every=2",
                            "train.learning_rate=0.5"), workdir)


def _first_logged_loss(workdir) -> float:
    with open(os.path.join(workdir, "log.csv")) as f:
        return float(next(csv.DictReader(f))["loss"])


def test_warm_start_loads_a_run_or_a_released_version(finished, tmp_path):
    from gpicl_tf import released

    workdir, _ = finished
    model = cell_train.load_warm_start(workdir)
    reference = keras.models.load_model(os.path.join(workdir, "model.keras"), compile=False)
    for u, v in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(MissingFileError, match="no model.keras"):
        cell_train.load_warm_start(str(tmp_path))
    # continuing a run: the first logged loss (batch 0, before the update) is the finished
    # model's own loss on that batch, which differs from a fresh start's
    warm = str(tmp_path / "warm")
    cell_train.run(_cfg("train.steps=1"), warm, warm_start=workdir)
    batch = tables.table_batch(_cfg(), 0)
    want, _ = cell_train.weighted_loss(reference(batch, training=True), batch["query_y"],
                                       batch["query_weight"])
    assert _first_logged_loss(warm) == pytest.approx(float(want), rel=1e-5)
    # from a released version (its architecture, the smoke preset's small tables, a
    # first batch of many of them): 1,600 steps of meta-training start far below a
    # fresh model on the same first batch
    version = os.path.join(released.model_dir("tabular"), "2")
    arch = [f"model.{k}={v}" for k, v in {"model_size": 96, "num_layers": 3, "num_heads": 4,
                                            "max_features": 128, "id_size": 16}.items()]
    arch += ["tables.cells_per_step=16000", "tables.max_batch=32"]
    cold, from_release = str(tmp_path / "cold"), str(tmp_path / "released")
    cell_train.run(_cfg("train.steps=1", *arch), cold)
    cell_train.run(_cfg("train.steps=1", *arch), from_release, warm_start=version)
    assert _first_logged_loss(from_release) < _first_logged_loss(cold) - 0.2, \
        (_first_logged_loss(from_release), _first_logged_loss(cold))
    bigger = _cfg("model.model_size=32")
    with pytest.raises(InvalidInputError, match="another architecture"):
        cell_train.run(bigger, str(tmp_path / "bad"), warm_start=workdir)


def test_mixed_bfloat16_trains_and_keeps_float32_logits(tmp_path):
    summary = cell_train.run(_cfg("train.precision=mixed_bfloat16", "train.steps=2"),
                             str(tmp_path))
    assert np.isfinite(summary["validation_loss"])
    assert keras.mixed_precision.global_policy().name == "float32"    # restored
    model = keras.models.load_model(os.path.join(tmp_path, "model.keras"), compile=False)
    out = model(tables.table_batch(_cfg(), 0))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


def test_muon_optimizer_runs(tmp_path):
    summary = cell_train.run(_cfg("train.optimizer=muon", "train.steps=2"), str(tmp_path))
    assert np.isfinite(summary["validation_loss"])
    with open(os.path.join(tmp_path, "config.json")) as f:
        assert json.load(f)["config"]["train"]["optimizer"] == "muon"


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _train_cell(*flags, timeout=300):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "pipelines.train_cell", *flags],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                          env={**os.environ, "GPICL_TCMALLOC": "0", "PYTHONPATH": ROOT})


def test_train_cell_says_its_preset_default_and_resolves_to_it():
    import subprocess
    import sys

    from gpicl_tf.config.cell import CELL_PRESETS

    helped = _train_cell("--help")
    # absl wraps the help at its width: compare with the whitespace joined
    assert f"--preset: cell preset: one of {sorted(CELL_PRESETS)}" in " ".join(
        helped.stdout.split())
    assert "(default: 'cell_cpu')" in helped.stdout.split("--preset:")[1].split("--")[0]
    code = ("from absl import flags\nfrom pipelines import common, train_cell\n"
            "flags.FLAGS(['train_cell', '--workdir', 'unused'])\n"
            "print(common.resolve_cell_config().to_json())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == get_cell_preset("cell_cpu").to_dict()


def test_train_cell_trains_the_config_file_it_is_given(tmp_path):
    from pipelines import common

    cfg = _cfg("train.steps=2", "train.checkpoint_every=2", "train.learning_rate=0.002")
    path = tmp_path / "cell.json"
    path.write_text(cfg.to_json())
    workdir = str(tmp_path / "run")
    done = _train_cell("--config", str(path), "--workdir", workdir, "--set", "train.seed=3")
    assert done.returncode == 0, done.stderr[-2000:]
    with open(os.path.join(workdir, "config.json")) as f:
        stored = json.load(f)["config"]
    assert stored == override(cfg, ["train.seed=3"]).to_dict()
    with open(os.path.join(workdir, "log.csv")) as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2]
    # a run's own config.json is a config file too
    assert common.read_cell_config(os.path.join(workdir, "config.json")).to_dict() == stored


def test_train_cell_names_a_bad_config_or_preset(tmp_path):
    from gpicl_tf.config import get_preset

    row = tmp_path / "row.json"
    row.write_text(get_preset("smoke").to_json())
    broken = tmp_path / "broken.json"
    broken.write_text('{"train": {"steps": 2,}}')
    good = tmp_path / "good.json"
    good.write_text(_cfg().to_json())
    work = ["--workdir", str(tmp_path / "never")]
    for flags, message in [
            (["--config", str(row)], f"--config={str(row)!r}: unknown config section(s) "
                                     "['data', 'eval', 'functions', 'tune']"),
            (["--config", str(broken)], f"--config={str(broken)!r} is not JSON"),
            (["--config", str(tmp_path / "nope.json")], "nope.json': no such file"),
            (["--config", str(good), "--preset", "cell_smoke"], "both given"),
            (["--preset", "cpu"], "unknown cell preset 'cpu'; known: ['cell_cpu', "
                                  "'cell_long', 'cell_mixed', 'cell_recipe', "
                                  "'cell_smoke']")]:
        done = _train_cell(*flags, *work)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (flags, done.stderr)
        assert "error: " in done.stderr and message in done.stderr, (flags, done.stderr)
    assert not os.path.exists(tmp_path / "never")


# ---- the 2026 small-compute recipe's switches (issue 38) ----------------------------

RECIPE = ["model.feature_groups=1,3,7,15", "model.thinking_rows=3", "model.norm=rms",
          "model.residual_decay=0.95", "model.scalar_embedding=rbf", "model.rbf_centers=6",
          "model.decoder=mean", "train.optimizer=muon", "train.muon_attention=true",
          "train.average_every=1", "train.average_last=3"]


def test_the_recipe_options_round_trip_and_old_configs_read_as_before():
    from gpicl_tf.config.cell import CellRunConfig

    cfg = _cfg(*RECIPE)
    assert cfg.model.feature_groups == (1, 3, 7, 15) and cfg.train.muon_attention is True
    assert CellRunConfig.from_dict(json.loads(cfg.to_json())) == cfg
    old = json.loads(get_cell_preset("cell_cpu").to_json())       # a config of before
    for key in ("feature_groups", "thinking_rows", "norm", "residual_decay",
                "scalar_embedding", "rbf_centers", "decoder"):
        del old["model"][key]
    for key in ("muon_attention", "average_every", "max_seconds"):
        del old["train"][key]
    assert CellRunConfig.from_dict(old) == get_cell_preset("cell_cpu")
    model = cell_train.build_model(CellRunConfig.from_dict(old))
    assert (model.feature_groups, model.thinking_rows, model.norm, model.residual_decay,
            model.scalar_embedding, model.decoder) == ((), 0, "layer", 1.0, "linear", "label")


@pytest.mark.parametrize("setting, match", [
    ("model.norm=batch", "model.norm='batch' must be one of"),
    ("model.scalar_embedding=spline", "model.scalar_embedding='spline' must be one of"),
    ("model.decoder=cls", "model.decoder='cls' must be one of"),
    ("model.residual_decay=0", r"model.residual_decay=0.0 must be in \(0, 1\]"),
    ("model.residual_decay=1.5", "model.residual_decay=1.5 must be in"),
    ("model.feature_groups=0,1", r"model.feature_groups=\(0, 1\) must be distinct"),
    ("model.feature_groups=3,3", r"model.feature_groups=\(3, 3\) must be distinct"),
    ("model.feature_groups=a", "model.feature_groups='a' is not a list of int"),
    ("model.thinking_rows=-1", "model.thinking_rows=-1 must be >= 0"),
    ("model.rbf_centers=1", "model.rbf_centers=1 must be >= 2"),
    ("train.muon_attention=maybe", "train.muon_attention='maybe' is not a boolean"),
    ("train.muon_attention=true", "train.muon_attention=True needs train.optimizer='muon'"),
    ("train.average_every=3", "train.average_every=3 does not divide train.checkpoint_every=2"),
    ("train.max_seconds=-1", "train.max_seconds=-1.0 must be >= 0.0"),
])
def test_bad_recipe_settings_are_named(setting, match):
    with pytest.raises(InvalidInputError, match=match):
        _cfg(setting)


def test_every_recipe_switch_trains_saves_and_reloads(tmp_path):
    cfg = _cfg(*RECIPE)
    summary = cell_train.run(cfg, str(tmp_path))
    with open(os.path.join(tmp_path, "log.csv")) as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 4 and np.all(np.isfinite(losses))
    # average_every=1: the mean of the weights of steps 2, 3 and 4
    assert summary["averaged"] == ["step-2.weights.h5", "step-3.weights.h5",
                                   "step-4.weights.h5"]
    model = keras.models.load_model(os.path.join(tmp_path, "model.keras"), compile=False)
    assert (model.thinking_rows, model.norm, model.decoder) == (3, "rms", "mean")
    twin = cell_train.build_model(cfg)
    parts = []
    for step in (2, 3, 4):
        twin.load_weights(os.path.join(tmp_path, "weights", f"step-{step}.weights.h5"))
        parts.append(twin.get_weights())
    for w, *ws in zip(model.get_weights(), *parts):
        np.testing.assert_allclose(w, np.mean(np.float64(ws), axis=0), rtol=1e-6, atol=1e-7)
    twin.set_weights(model.get_weights())
    batch = tables.table_batch(cfg, 0)
    np.testing.assert_array_equal(np.asarray(twin(batch)), np.asarray(model(batch)))
    again = keras.models.load_model(os.path.join(tmp_path, "model.keras"), compile=False)
    np.testing.assert_array_equal(np.asarray(again(batch)), np.asarray(model(batch)))
    fresh = cell_train.build_model(cfg)
    assert not np.allclose(np.asarray(fresh.thinking), np.asarray(model.thinking))  # trained


def test_muon_attention_takes_muons_step_on_the_attention_matrices():
    """Keras' Muon leaves the 3-D attention kernels to AdamW; with muon_attention
    each takes Muon's step: Newton-Schulz of its (E, H*D) or (H*D, E) matrix."""
    cfg = _cfg("train.optimizer=muon", "train.muon_attention=true", "train.weight_decay=0",
               "train.clip_norm=0", "train.warmup_steps=0")
    model = cell_train.build_model(cfg)
    optimizer = cell_train.build_optimizer(cfg)
    keras_muon = cell_train.build_optimizer(_cfg("train.optimizer=muon"))
    variables = model.trainable_variables
    optimizer.build(variables)
    keras_muon.build(variables)
    kernels = [v for v in variables if len(v.shape) == 3]
    assert kernels and all(keras_muon._should_use_adamw(v) for v in kernels)
    assert not any(optimizer._should_use_adamw(v) for v in kernels)
    assert optimizer._should_use_adamw(model.cell_embedding.kernel)     # the rest: AdamW
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(v.shape).astype(np.float32) for v in variables]
    before = [np.asarray(v).copy() for v in variables]
    lr = float(optimizer.learning_rate)                          # of the first step
    optimizer.apply_gradients(zip(grads, variables))
    for v, g, w in zip(variables, grads, before):
        if len(v.shape) != 3:
            continue
        e_first = not v.path.endswith("attention_output/kernel")
        shape = (v.shape[0], -1) if e_first else (v.shape[0] * v.shape[1], -1)
        momentum = g * (1.0 + optimizer.momentum)              # nesterov, first step
        step = np.asarray(optimizer.zeropower_via_newtonschulz5(
            keras.ops.convert_to_tensor(momentum.reshape(shape)), optimizer.ns_steps))
        step = step * lr * np.sqrt(max(step.shape)) * optimizer.rms_rate
        np.testing.assert_allclose(w - np.asarray(v), step.reshape(v.shape), rtol=1e-4,
                                   atol=1e-7)


def test_max_seconds_stops_with_a_final_save_and_the_run_resumes(tmp_path):
    workdir = str(tmp_path / "run")
    summary = cell_train.run(_cfg("train.max_seconds=1e-6", "train.average_last=2"), workdir)
    assert summary["steps"] == 1 and summary["stopped_at_max_seconds"] == 1e-6
    assert summary["averaged"] == ["step-1.weights.h5"]
    for name in ("log.csv", "validation.csv"):
        with open(os.path.join(workdir, name)) as f:
            assert [int(r["step"]) for r in csv.DictReader(f)] == [1], name
    stopped = keras.models.load_model(os.path.join(workdir, "model.keras"), compile=False)
    one = cell_train.build_model(_cfg())
    one.load_weights(os.path.join(workdir, "weights", "step-1.weights.h5"))
    for u, v in zip(stopped.get_weights(), one.get_weights()):
        np.testing.assert_array_equal(u, v)
    # the same run without the budget goes on from step 1 (the budget is no part of
    # the workdir's config) and ends where a straight run ends
    summary = cell_train.run(_cfg("train.average_last=2"), workdir)
    assert summary["steps"] == 4 and "stopped_at_max_seconds" not in summary
    with open(os.path.join(workdir, "log.csv")) as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]
    straight = str(tmp_path / "straight")
    cell_train.run(_cfg("train.average_last=2"), straight)
    a = keras.models.load_model(os.path.join(straight, "model.keras"), compile=False)
    b = keras.models.load_model(os.path.join(workdir, "model.keras"), compile=False)
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5)


def test_a_workdir_of_before_the_recipe_options_resumes(tmp_path):
    workdir = str(tmp_path)
    cell_train.run(_cfg("train.steps=2"), workdir)
    path = os.path.join(workdir, "config.json")
    with open(path) as f:
        stored = json.load(f)
    del stored["config"]["model"]["norm"], stored["config"]["train"]["average_every"]
    with open(path, "w") as f:
        json.dump(stored, f)
    assert cell_train.run(_cfg(), workdir)["steps"] == 4           # defaults: the same run
    with pytest.raises(InvalidInputError, match="model.norm='layer', not 'rms'"):
        cell_train.run(_cfg("model.norm=rms"), workdir)


def test_the_recipe_preset_is_cell_cpu_with_the_recipe():
    cpu, recipe = get_cell_preset("cell_cpu"), get_cell_preset("cell_recipe")
    assert (recipe.tables, recipe.prior) == (cpu.tables, cpu.prior)
    assert recipe.model.model_size == cpu.model.model_size and recipe.train.steps == cpu.train.steps
    assert recipe.model.feature_groups == (1, 3, 7, 15) and recipe.model.thinking_rows == 16
    assert (recipe.model.norm, recipe.model.residual_decay, recipe.model.decoder) == (
        "rms", 0.95, "mean")
    assert (recipe.train.optimizer, recipe.train.muon_attention, recipe.train.average_last,
            recipe.train.weight_decay) == ("muon", True, 10, 0.01)
    model = cell_train.build_model(recipe)
    assert model.thinking.shape == (16, 96) and model.cell_embedding.kernel.shape == (10, 96)
