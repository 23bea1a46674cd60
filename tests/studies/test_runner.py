import csv
import json
import os

import pytest

from gpicl_tf.studies import runner
from gpicl_tf.studies.runner import Cell, Study


def _cells():
    return [Cell(f"size {s}", {"model_size": s}, (f"model.model_size={s}",)) for s in (8, 16, 32)]


def _study(measured):
    def measure(context, cfg, run_dir, episodes_dir):
        measured.append(run_dir)
        return {"score": cfg.model.model_size / 100, "context": context}

    return Study(name="fake", description="a fake study", grids={"smoke": _cells},
                 measure=measure, figures=lambda rows, out: [], columns=("score",),
                 base_sets=("train.steps=7",), prepare=lambda base, root: base.train.steps)


@pytest.fixture
def fake_training(monkeypatch):
    """train.run replaced by one that writes a history; episodes by a directory."""
    trained = []

    def fake_run(cfg, run_dir, episodes_dir, verbose=0):
        if trained and trained[-1] == "fail next":
            trained.pop()
            raise KeyboardInterrupt  # a kill in the middle of a cell
        trained.append(run_dir)
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "history.csv"), "w") as f:
            f.write("epoch,val_loss\n0,2.5\n1,1.9\n")
        return {"steps": cfg.train.steps, "parameters": 10 * cfg.model.model_size}

    monkeypatch.setattr(runner.train, "run", fake_run)
    monkeypatch.setattr(runner, "cell_episodes", lambda cfg, root: os.path.join(root, "eps"))
    return trained


def test_rows_files_and_commands(tmp_path, fake_training):
    measured, lines = [], []
    rows = runner.run_study(_study(measured), "smoke", str(tmp_path), log=lines.append)
    assert [r["cell"] for r in rows] == ["size 8", "size 16", "size 32"]
    assert rows[1]["score"] == 0.16 and rows[1]["parameters"] == 160
    assert rows[0]["context"] == 7                    # prepare() saw the base config
    assert rows[0]["steps"] == 7 and rows[0]["episodes_consumed"] == 7 * 8  # smoke batch 8
    assert rows[0]["plateau_exit_step"] == 2 * 10     # epoch 2 below 0.9 ln 10; 10 steps/epoch
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["cell"] for r in table] == ["size 8", "size 16", "size 32"]
    assert table[2]["score"] == "0.32"
    md = (tmp_path / "results.md").read_text()
    assert ("python -m pipelines.train --preset smoke --episodes " in md and
            "--set train.steps=7 --set model.model_size=16`" in md)
    assert "cell 3 of 3 (size 32) done" in lines[-1] and "estimate left 0s" in lines[-1]


def test_finished_cells_are_kept_and_a_killed_study_resumes(tmp_path, fake_training):
    measured = []
    fake_training.append("fail next")                 # the first cell is killed
    with pytest.raises(KeyboardInterrupt):
        runner.run_study(_study(measured), "smoke", str(tmp_path), log=lambda s: None)
    assert not os.path.exists(tmp_path / "results.json")
    runner.run_study(_study(measured), "smoke", str(tmp_path), log=lambda s: None)
    first = json.loads((tmp_path / "results.json").read_text())
    assert len(fake_training) == 3
    lines = []
    again = runner.run_study(_study(measured), "smoke", str(tmp_path), log=lines.append)
    assert len(fake_training) == 3 and again == first  # nothing trained again
    assert all("finished before, kept" in line for line in lines)


def test_a_study_resumes_at_its_first_unfinished_cell(tmp_path, fake_training):
    study = _study([])
    runner.run_study(study, "smoke", str(tmp_path), log=lambda s: None)
    rows = json.loads((tmp_path / "results.json").read_text())
    runner.write_results(study, rows[:1], str(tmp_path))  # as if killed after cell 1
    del fake_training[:]
    runner.run_study(study, "smoke", str(tmp_path), log=lambda s: None)
    assert [os.path.basename(d) for d in fake_training] == ["size_16", "size_32"]


def test_a_changed_cell_is_refused(tmp_path, fake_training):
    runner.run_study(_study([]), "smoke", str(tmp_path), log=lambda s: None)
    rows = json.loads((tmp_path / "results.json").read_text())
    rows[0]["sets"] = ["train.steps=99"]
    (tmp_path / "results.json").write_text(json.dumps(rows))
    with pytest.raises(ValueError, match="has cell 'size 8' with overrides"):
        runner.run_study(_study([]), "smoke", str(tmp_path), log=lambda s: None)


def test_bad_grid_and_axis_overrides_are_named(tmp_path):
    with pytest.raises(ValueError, match="no grid 'huge'"):
        runner.base_config(_study([]), "huge")
    with pytest.raises(ValueError, match="model.model_size is an axis"):
        runner.cells_of(_study([]), "smoke", ["model.model_size=4"])
    runner.cells_of(_study([]), "smoke", ["model.num_layers=2"])


def test_plateau_exit_uses_unseen_task_loss():
    history = [{"epoch": 0, "val_loss": 2.31, "loss": 1.0},   # biased training loss is low
               {"epoch": 1, "val_loss": 2.25, "loss": 0.9},
               {"epoch": 2, "val_loss": 2.00, "loss": 0.8}]
    assert runner.plateau_exit(history, 50, 10) == 150        # 2.00 < 0.9 ln 10 = 2.07
    assert runner.plateau_exit(history[:2], 50, 10) is None


def test_episode_key_follows_the_data_settings():
    from gpicl_tf.config import get_preset, override

    base = get_preset("smoke")
    assert runner.episode_key(base) == runner.episode_key(override(base, ["train.steps=3"]))
    other = override(base, ["data.log2_num_tasks=6"])
    assert runner.episode_key(other) != runner.episode_key(base)
    assert runner.episode_key(other).startswith("digits-k6-")


def test_publish_copies_the_finished_cells_without_training(tmp_path, fake_training):
    work, docs = tmp_path / "work", tmp_path / "docs"
    study = Study(name="fake", description="a fake study", grids={"smoke": _cells},
                  measure=lambda *a: {"score": 1.0}, columns=("score",),
                  figures=lambda rows, out: [_figure(out, len(rows))])
    with pytest.raises(FileNotFoundError, match="holds no finished cell"):
        runner.publish(study, "smoke", str(work), str(docs))
    runner.run_study(study, "smoke", str(work), log=lambda line: None)
    trained = list(fake_training)
    paths = runner.publish(study, "smoke", str(work), str(docs))
    assert fake_training == trained                    # publishing trains nothing
    assert sorted(os.path.basename(p) for p in paths) == ["fake_smoke.md", "figure.txt"]
    assert (docs / "fake_smoke.md").read_text() == (work / "results.md").read_text()
    assert (docs / "figure.txt").read_text() == "3 rows"


def _figure(out_dir, n):
    path = os.path.join(out_dir, "figure.txt")
    with open(path, "w") as f:
        f.write(f"{n} rows")
    return path


def test_a_second_study_in_a_held_workdir_is_an_error_naming_the_holder(tmp_path,
                                                                         fake_training):
    import subprocess
    import sys

    from gpicl_tf.data import storage

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (tmp_path / storage.LOCK_FILE).write_text(str(other.pid))
        with pytest.raises(FileExistsError, match=f"in use by another study \\(pid {other.pid}\\)"):
            runner.run_study(_study([]), "smoke", str(tmp_path), log=lambda s: None)
        assert not fake_training
    finally:
        other.kill()
        other.wait()
    assert len(runner.run_study(_study([]), "smoke", str(tmp_path), log=lambda s: None)) == 3
    assert not (tmp_path / storage.LOCK_FILE).exists()


def test_the_cpu_grid_keeps_the_recipe_its_results_were_measured_with():
    """The cpu preset moved to the recipe search's winner; the studies' cpu grid
    starts from the first recipe (cpu_adam), so their documented commands still
    reproduce the documented tables."""
    from gpicl_tf.config import get_preset
    from gpicl_tf.studies import STUDIES

    base = runner.base_config(STUDIES["state_size"], "cpu")
    first = get_preset("cpu_adam")
    assert base.model.model_size == first.model.model_size == 64
    assert base.train.optimizer == "adam" and get_preset("cpu").train.optimizer == "muon"
    assert runner.train_command("cpu", ["train.steps=5"], "E", "R") == \
        "python -m pipelines.train --preset cpu_adam --episodes E --workdir R --set train.steps=5"
