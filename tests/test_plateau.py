import math
import os

from gpicl_tf import plateau


def test_plateau_exit_uses_unseen_task_loss():
    history = [{"epoch": 0, "val_loss": 2.31, "loss": 1.0},   # biased training loss is low
               {"epoch": 1, "val_loss": 2.25, "loss": 0.9},
               {"epoch": 2, "val_loss": 2.00, "loss": 0.8}]
    assert plateau.plateau_exit(history, 50, 10) == 150       # 2.00 < 0.9 ln 10 = 2.07
    assert plateau.plateau_exit(history[:2], 50, 10) is None


def test_markdown_rows_carry_their_command():
    rows = [{"variant": "v", "overrides": ["model.layout=pfn"], "steps": 100,
             "plateau_exit_step": None, "minutes": 3.0, "minutes_to_exit": None,
             "final_val_loss": math.log(10), "final_val_acc_last10": 0.1,
             "final_val_improvement": 0.0, "history": "runs/p/v"}]
    table = plateau.markdown(rows, "python -m pipelines.train --preset cpu")
    assert "not within 100" in table and "> 3.0" in table
    assert ("--workdir runs/p/v --set train.bias_fraction=0.0 --set model.layout=pfn "
            "--set train.steps=100") in table


def test_variants_are_valid_overrides():
    from gpicl_tf.config import get_preset, override

    for sets in plateau.VARIANTS.values():
        override(get_preset("cpu"), sets)


def test_study_keeps_rows_measured_before(tmp_path, monkeypatch):
    from gpicl_tf.config import get_preset, override

    trained = []

    def fake_run(cfg, run_dir, episodes_dir, verbose=0):
        assert cfg.train.bias_fraction == 0.0           # the study's base: no bias
        trained.append(run_dir)
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "history.csv"), "w") as f:
            f.write("epoch,val_loss,val_acc_last10,val_improvement\n"
                    f"0,2.3,0.1,0.0\n1,{1.5 if 'pfn' in run_dir else 2.3},0.5,0.3\n")
        return {"steps": cfg.train.steps}

    monkeypatch.setattr(plateau.train, "run", fake_run)
    base = override(get_preset("smoke"), ["train.bias_fraction=0.5"])
    names = ["pfn layout, no intervention", "paper layout, no intervention"]
    first = plateau.study(base, str(tmp_path), "eps", {names[0]: plateau.VARIANTS[names[0]]}, 20)
    assert len(trained) == 1 and first[0]["plateau_exit_step"] == 2 * base.train.steps_per_epoch
    rows = plateau.study(base, str(tmp_path), "eps",
                         {n: plateau.VARIANTS[n] for n in names}, 20)
    assert len(trained) == 2                                   # the pfn row was not re-trained
    assert [r["variant"] for r in rows] == [names[1], names[0]]   # VARIANTS order
    assert rows[1] == first[0]
    rows = plateau.study(base, str(tmp_path), "eps", {names[0]: plateau.VARIANTS[names[0]]}, 40)
    assert len(trained) == 3                                   # another step count: trained
    assert [(r["variant"], r["steps"]) for r in rows] == [(names[1], 20), (names[0], 20),
                                                          (names[0], 40)]
    assert trained[-1] != trained[0] and rows[2]["history"] == trained[-1]  # its own directory
