import json
import re
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gpicl_tf.config import get_preset, override
from gpicl_tf.studies import STUDIES, get_study, plateau_batch, runner, transition


def _changed(config, base) -> set[str]:
    """The `section.key`s whose values differ between two configs."""
    new, old = config.to_dict(), base.to_dict()
    return {f"{section}.{key}" for section in new for key in new[section]
            if new[section][key] != old[section][key]}


# Cells that train the same config: the paper preset already warms up for 1,000
# steps and takes batches of 128, so those two plateau variants repeat the
# no-intervention runs on the paper grid.
SAME_RUN = {("plateau", "paper"): {
    ("paper layout, no intervention (20000 steps)", "paper layout, warm-up 1000 (20000 steps)"),
    ("pfn layout, batch 128 (20000 steps)", "pfn layout, no intervention (20000 steps)")}}


def test_every_grid_of_every_study_is_a_valid_config():
    """Each cell's config is the base with the cell's own settings applied (no
    other change) and the cells of a grid are different runs (but SAME_RUN's)."""
    for study in STUDIES.values():
        for grid in runner.GRIDS:
            base = runner.base_config(study, grid)
            cells = runner.cells_of(study, grid)
            assert cells, (study.name, grid)
            by_config: dict[str, list[str]] = {}
            for cell in cells:
                config = override(base, cell.sets)
                keys = {s.split("=", 1)[0] for s in cell.sets}
                assert _changed(config, base) <= keys, (study.name, grid, cell.name)
                assert _changed(config, base), (study.name, grid, cell.name)
                key = json.dumps(config.to_dict(), sort_keys=True)
                by_config.setdefault(key, []).append(cell.name)
            same = {tuple(sorted(names)) for names in by_config.values() if len(names) > 1}
            assert same == SAME_RUN.get((study.name, grid), set()), (study.name, grid)


def test_unknown_study_is_named():
    with pytest.raises(ValueError, match="unknown study 'nope'"):
        get_study("nope")


def test_transition_grid_spans_tasks_and_sizes():
    cells = transition.STUDY.grids["cpu"]()
    assert {c.params["tasks"] for c in cells} == {*(f"2^{k}" for k in range(0, 17, 2)), "fresh"}
    assert {c.params["model_size"] for c in cells} == {16, 32, 64}
    episodes = {s for c in cells for s in c.sets if s.startswith("data.train_episodes=")}
    assert len(episodes) == 1                     # the same episodes in every cell


def test_transition_notes_find_the_phases():
    def row(tasks, seen, unseen):
        return {"tasks": tasks, "model_size": 32, "seen_acc": seen, "seen_ci95": 0.02,
                "unseen_acc": unseen, "unseen_ci95": 0.02}

    rows = [row("2^0", 0.9, 0.1), row("2^4", 0.5, 0.11), row("2^8", 0.6, 0.4),
            row("fresh", 0.6, 0.61)]
    (line,) = transition.notes(rows)
    assert "above chance (95% interval) from 2^8" in line
    assert "at 2^0, 2^4, 2^8." in line


def test_power_law_fit_recovers_the_exponent():
    rows = [{"layout": "pfn", "batch": b, "plateau_exit_step": 4000 * b ** -0.5,
             "steps": 2000} for b in (16, 64, 256)]
    rows.append({"layout": "pfn", "batch": 8, "plateau_exit_step": None, "steps": 2000})
    a, b, n = plateau_batch.power_law(rows, "pfn")
    assert np.isclose(b, -0.5) and np.isclose(a, 4000) and n == 3
    assert plateau_batch.power_law(rows, "paper") is None
    (line,) = plateau_batch.notes(rows)
    assert "batch^-0.50" in line and "did not leave within the budget at batch 8" in line


def test_state_size_grid_crosses_parameters_and_state():
    from gpicl_tf.data.schema import EpisodeSchema
    from gpicl_tf.models import build_model, state_size

    study, base = STUDIES["state_size"], get_preset("cpu_adam")
    schema = EpisodeSchema(base.data.episode_length, base.data.input_size, base.data.num_classes)
    sizes = {}
    for cell in study.grids["cpu"]():
        cfg = override(base, cell.sets).model
        sizes[cell.name] = (build_model(cfg, schema).count_params(),
                            state_size(cfg, base.data.episode_length, base.data.input_size,
                                       base.data.num_classes))
    lstm = sizes["lstm 512"]
    for name, (params, state) in sizes.items():
        if name.startswith("transformer"):
            assert params < lstm[0] and state > lstm[1], (name, params, state, lstm)
    # VSML: the fewest parameters, a state above the largest LSTM's from 2 units up.
    # (input and recurrent kernels, gate biases, message kernel and bias of 8 units,
    # read-out scale and offset; h and c of every sub-LSTM and the carried error)
    assert sizes["vsml 2"] == (2 * 4 * 2 + 2 * 4 * 2 + 4 * 2 + 2 * 8 + 8 + 2,
                               2 * 64 * 10 * 2 + 10)
    assert max(sizes["vsml 8"][0], sizes["vsml 2"][0]) < min(p for p, _ in sizes.values()
                                                           if p > 1000)
    assert sizes["vsml 8"][1] > lstm[1]


def test_plateau_stop_ends_training_below_the_threshold():
    from gpicl_tf.training.callbacks import PlateauStop

    class Model:
        stop_training = False

    stop = PlateauStop(threshold=2.0)
    stop.set_model(Model())
    stop.on_epoch_end(0, {"val_loss": 2.2})
    assert not stop.model.stop_training
    stop.on_epoch_end(1, {"val_loss": 1.9})
    assert stop.model.stop_training


SPLITS = {"train": "train", "seen": "seen", "unseen": "test"}   # a row's set -> its split


def _check_rows_against_the_saved_runs(study, rows, episode_root):
    """Each row's accuracy figures equal a recomputation from the cell's saved model
    on the episodes the cell trained on (or the study's unseen dataset), and its
    training figures the run's own files."""
    import keras

    from gpicl_tf.data import pipeline
    from gpicl_tf.eval import evaluate
    from gpicl_tf.studies import measure
    from gpicl_tf.training import callbacks, train

    base = runner.base_config(study, "smoke")
    dataset = measure.unseen_dataset(base, episode_root)
    for row in rows:
        cfg = runner.grid_config("smoke", row["sets"])
        model = keras.models.load_model(os.path.join(row["run_dir"], train.MODEL_FILE),
                                        compile=False)
        history = runner.history(row["run_dir"])
        assert row["parameters"] == model.count_params()
        assert len(history) * cfg.train.steps_per_epoch == row["steps"]
        if cfg.train.stop_at_plateau_exit and row["steps"] < cfg.train.steps:
            # stopped after the first epoch below the plateau threshold, and not before
            threshold = callbacks.plateau_threshold(cfg.data.num_classes, cfg.train.plateau_drop)
            assert history[-1]["val_loss"] < threshold
            assert all(h["val_loss"] >= threshold for h in history[:-1])
        else:
            assert row["steps"] == cfg.train.steps
        assert row["final_val_loss"] == round(history[-1]["val_loss"], 4)
        if "final_val_acc_last10" in row:
            assert row["final_val_acc_last10"] == round(history[-1]["val_acc_last10"], 4)
        sets = {k: (runner.cell_episodes(cfg, episode_root), split)
                for k, split in SPLITS.items()}
        if dataset:
            sets["dataset"] = (dataset[1], "test")
        for key, (directory, split) in sets.items():
            if row.get(f"{key}_acc") is None:
                continue
            inputs, labels = evaluate.episode_arrays(pipeline.open_episodes(directory), split,
                                                     cfg.eval.episodes)
            logits = model.predict({"inputs": inputs, "labels": labels}, batch_size=64,
                                   verbose=0)
            correct = logits.argmax(-1) == labels                                  # [E, N]
            assert row[f"{key}_acc"] == pytest.approx(correct[:, -10:].mean(), abs=6e-5), \
                (row["cell"], key)
            assert row[f"{key}_improvement"] == pytest.approx(
                correct[:, -10:].mean() - correct[:, :10].mean(), abs=6e-5), (row["cell"], key)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STUDIES))
def test_smoke_grid_runs_end_to_end(name, tmp_path):
    rows = runner.run_study(get_study(name), "smoke", str(tmp_path / name),
                            episode_root=str(tmp_path / "episodes"), verbose=0,
                            log=lambda s: None)
    assert len(rows) == len(get_study(name).grids["smoke"]())
    for key in get_study(name).columns:
        assert all(key in r for r in rows), key
    files = os.listdir(tmp_path / name)
    assert {"results.csv", "results.md", "results.json"} <= set(files)
    assert any(f.endswith(".png") for f in files)
    assert json.load(open(tmp_path / name / "results.json")) == rows
    _check_rows_against_the_saved_runs(get_study(name), rows, str(tmp_path / "episodes"))
    if name == "transition":
        assert all(r["train_acc"] is not None for r in rows)
        assert [r["distinct_tasks"] for r in rows] == [1, 160, 1, 160]
    if name == "plateau_batch":
        assert all(r["steps"] <= 20 for r in rows)


@pytest.mark.slow
def test_a_killed_study_process_resumes(tmp_path):
    """Killed (SIGKILL) after its first cell: the same command finishes the grid
    and keeps the first cell's row as it was."""
    workdir = str(tmp_path / "study")
    cmd = [sys.executable, "-m", "pipelines.study", "transition", "--preset", "smoke",
           "--workdir", workdir, "--set", "eval.episodes=8"]
    env = {**os.environ, "GPICL_TCMALLOC": "0"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    results = os.path.join(workdir, runner.RESULTS)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(results) and len(json.load(open(results))) >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = json.load(open(results))
    assert 1 <= len(first) < 4
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.load(open(results))
    assert len(rows) == 4 and rows[0] == first[0]
    assert "finished before, kept" in done.stdout


def test_results_csv_keeps_its_column_order_across_a_resume(tmp_path):
    """A resumed study reads its finished rows back from results.json: the csv
    written then has the columns in the order an uninterrupted run writes."""
    from types import SimpleNamespace

    study = SimpleNamespace(name="s", description="", columns=["zeta", "alpha"], notes=None,
                            figures=lambda rows, workdir: [])
    row = {"cell": "c0", "axes": ["tasks"], "tasks": 4, "steps": 10, "wall_s": 1.0,
           "zeta": 0.5, "alpha": 0.25, "sets": [], "command": "x", "run_dir": "d"}
    runner.write_results(study, [row], str(tmp_path))
    before = (tmp_path / "results.csv").read_text()
    runner.write_results(study, runner.read_rows(str(tmp_path)), str(tmp_path))   # resumed
    assert (tmp_path / "results.csv").read_text() == before
    assert before.splitlines()[0] == "cell,axes,tasks,steps,wall_s,zeta,alpha,command,run_dir"


def test_the_recipe_cells_are_the_runs_their_docs_name():
    """The plateau study's recipe cells train what `pipelines.train --preset cpu
    --set model.layout=paper ...` trains (docs/results/plateau.md's commands)."""
    study = STUDIES["plateau"]
    cells = {c.name: c for c in runner.cells_of(study, "cpu")}
    standalone = {
        "paper layout, searched recipe, positions, bias permutation 0.9 (4000 steps)":
            ["model.layout=paper", "model.positions=sinusoidal", "train.steps=4000"],
        "paper layout, searched recipe, positions (4000 steps)":
            ["model.layout=paper", "model.positions=sinusoidal", "train.bias_fraction=0.0",
             "train.steps=4000"],
        "paper layout, searched recipe, bias permutation 0.9 (4000 steps)":
            ["model.layout=paper", "train.steps=4000"]}
    for name, sets in standalone.items():
        cell = runner.grid_config("cpu", runner.cell_sets(study, (), cells[name]))
        alone = override(get_preset("cpu"), sets)
        for section in ("data", "model", "train"):
            assert getattr(cell, section) == getattr(alone, section), (name, section)


def test_plot_runs_draws_each_run_and_names_bad_input(tmp_path):
    runs = []
    for name, losses in (("a", [2.3, 2.2]), ("b", [2.31, 2.4])):
        run = tmp_path / name
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"config": {"train": {"steps_per_epoch": 50}}}))
        (run / "history.csv").write_text("epoch,val_loss\n" + "".join(
            f"{i},{v}\n" for i, v in enumerate(losses)))
        runs.append(f"{name}={run}")
    out = tmp_path / "f.png"
    done = subprocess.run([sys.executable, "scripts/plot_runs.py", "--out", str(out),
                           "--dashed", "b", *runs], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for bad, match in (([f"c={tmp_path}"], "has no history.csv"), (["nolabel"], "LABEL=RUN_DIR"),
                       ([*runs, "--dashed", "z"], r"--dashed names no run: \['z'\]")):
        done = subprocess.run([sys.executable, "scripts/plot_runs.py", "--out", str(out), *bad],
                              capture_output=True, text=True)
        assert done.returncode == 2 and re.search(match, done.stderr), (bad, done.stderr)
