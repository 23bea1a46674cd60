"""Meta-training the cell learner: a run, its files, resume after a kill, averaging,
warm starts and the workdir's one config."""

import csv
import json
import os

import keras
import numpy as np
import pytest

from gpicl_tf.config.cell import cell_override, get_cell_preset
from gpicl_tf.data import tables
from gpicl_tf.errors import InvalidInputError, MissingFileError
from gpicl_tf.training import cell_train


def _cfg(*sets):
    return cell_override(get_cell_preset("cell_smoke"), list(sets))


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


def test_warm_start_loads_a_run_or_a_released_version(finished, tmp_path):
    workdir, _ = finished
    model = cell_train.load_warm_start(workdir)
    reference = keras.models.load_model(os.path.join(workdir, "model.keras"), compile=False)
    for u, v in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(MissingFileError, match="no model.keras"):
        cell_train.load_warm_start(str(tmp_path))
    # continuing from those weights: the first logged loss is the warm model's, far
    # below the loss of a fresh start on the same batch
    warm = cell_train.run(_cfg("train.steps=1"), str(tmp_path / "warm"), warm_start=workdir)
    assert np.isfinite(warm["validation_loss"])
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
