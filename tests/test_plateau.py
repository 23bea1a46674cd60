import math

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
    assert "--workdir runs/p/v --set model.layout=pfn" in table


def test_variants_are_valid_overrides():
    from gpicl_tf.config import get_preset, override

    for sets in plateau.VARIANTS.values():
        override(get_preset("cpu"), sets)
