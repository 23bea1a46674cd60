"""The `plateau` study: how long each intervention keeps meta-training at chance.

Each variant is the preset without its curriculum bias plus the variant's
overrides, trained on the preset's episodes (or its own, when it changes the
data). "Left the plateau" is measured on unseen tasks, never on the (possibly
biased) training batches: the first epoch whose meta-validation loss falls
below 0.9 ln C. The cpu grid holds the nine variants of docs/reports/plateau_cpu.md at
1,000 steps, then the paper layout's interventions at 4,000.
"""

from __future__ import annotations

from gpicl_tf.studies import runner
from gpicl_tf.studies.runner import Cell, Study

BIAS = ("train.bias_fraction=0.9", "train.bias_schedule=plateau")

# name -> overrides on top of the study's base config.
VARIANTS = {
    "paper layout, no intervention": ("model.layout=paper",),
    "paper layout, Adam eps 1e-16": ("model.layout=paper", "train.adam_epsilon=1e-16"),
    "paper layout, bias permutation 0.9": ("model.layout=paper", *BIAS,
                                           "train.bias_mode=permutation"),
    "paper layout, bias task 0.9": ("model.layout=paper", *BIAS, "train.bias_mode=task"),
    "pfn layout, no intervention": ("model.layout=pfn",),
    "pfn layout, bias task 0.9": ("model.layout=pfn", *BIAS, "train.bias_mode=task"),
    "pfn layout, bias permutation 0.9": ("model.layout=pfn", *BIAS,
                                         "train.bias_mode=permutation"),
    "pfn layout, Adam eps 1e-16": ("model.layout=pfn", "train.adam_epsilon=1e-16"),
    "pfn layout, batch 128": ("model.layout=pfn", "train.batch_size=128"),
    # The paper layout's interventions at a longer budget.
    "paper layout, warm-up 1000": ("model.layout=paper", "train.warmup_steps=1000"),
    "paper layout, learning rate 3e-4": ("model.layout=paper", "train.learning_rate=3e-4"),
    "paper layout, 25-example episodes": ("model.layout=paper", "data.episode_length=25"),
    "paper layout, batch 256": ("model.layout=paper", "train.batch_size=256"),
}
LONG = ("paper layout, no intervention", "paper layout, bias permutation 0.9",
        "paper layout, warm-up 1000", "paper layout, learning rate 3e-4",
        "paper layout, 25-example episodes", "paper layout, batch 256")


def recipe_sets() -> tuple[str, ...]:
    """The `cpu` preset's searched recipe (issue 33) as overrides of `cpu_adam`, the
    cpu grid's base: its model and training settings that differ, but the steps."""
    from gpicl_tf.config import get_preset

    new, old = get_preset("cpu").to_dict(), get_preset("cpu_adam").to_dict()
    return tuple(f"{section}.{key}={value}" for section in ("model", "train")
                 for key, value in new[section].items()
                 if value != old[section][key] and key != "steps")


# The paper layout under the searched recipe, with and without a code of each
# token's position (issue 29): 4,000 steps each in the cpu grid.
RECIPE = {
    "paper layout, searched recipe, bias permutation 0.9": (
        "model.layout=paper", *BIAS, "train.bias_mode=permutation"),
    "paper layout, searched recipe, positions, bias permutation 0.9": (
        "model.layout=paper", "model.positions=sinusoidal", *BIAS,
        "train.bias_mode=permutation"),
    "paper layout, searched recipe, positions": (
        "model.layout=paper", "model.positions=sinusoidal"),
}


def grid(short: tuple[str, ...], short_steps: int, long: tuple[str, ...] = (),
         long_steps: int = 0, recipe_steps: int = 0):
    def cells() -> list[Cell]:
        out = [Cell(f"{name} ({steps} steps)", {"variant": name},
                    (*VARIANTS[name], f"train.steps={steps}"))
               for names, steps in ((short, short_steps), (long, long_steps))
               for name in names]
        if recipe_steps:
            out += [Cell(f"{name} ({recipe_steps} steps)", {"variant": name},
                         (*sets, *recipe_sets(), f"train.steps={recipe_steps}"))
                    for name, sets in RECIPE.items()]
        return out
    return cells


def measure_cell(context, cfg, run_dir: str, episodes_dir: str) -> dict:
    last = runner.history(run_dir)[-1]
    return {"final_val_acc_last10": round(last["val_acc_last10"], 4),
            "final_val_improvement": round(last["val_improvement"], 4)}


def notes(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        if r["plateau_exit_step"]:
            minutes = r["wall_s"] / 60 * r["plateau_exit_step"] / r["steps"]
            lines.append(f"- {r['cell']}: left the plateau after {r['plateau_exit_step']} steps "
                         f"(about {minutes:.1f} minutes here).")
        else:
            lines.append(f"- {r['cell']}: still on the plateau after {r['steps']} steps "
                         f"({r['wall_s'] / 60:.1f} minutes).")
    return lines


def loss_figure(curves: list[tuple[str, str, bool]], path: str, num_classes: int = 10) -> str:
    """Plots the loss on unseen (meta-validation) tasks against the step for each
    (label, run directory, dashed) in `curves`, with chance (ln C) marked; each
    run's steps per epoch come from its config.json. Writes `path` (PNG)."""
    import json
    import math
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gpicl_tf.eval.report import save_figure

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, run_dir, dashed in curves:
        with open(os.path.join(run_dir, "config.json")) as f:
            spe = json.load(f)["config"]["train"]["steps_per_epoch"]
        history = runner.history(run_dir)
        ax.plot([(h["epoch"] + 1) * spe for h in history], [h["val_loss"] for h in history],
                ls="--" if dashed else "-", label=label)
    ax.axhline(math.log(num_classes), color="gray", ls=":", label=f"ln {num_classes} (chance)")
    ax.set_xlabel("meta-training step")
    ax.set_ylabel("loss on unseen tasks")
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    save_figure(fig, path)
    return path


def figures(rows: list[dict], out_dir: str) -> list[str]:
    import os

    return [loss_figure([(r["cell"], r["run_dir"], "model.layout=paper" in r["sets"])
                         for r in rows], os.path.join(out_dir, "plateau_loss.png"))]


STUDY = Study(
    name="plateau",
    description=("Steps until the loss on unseen meta-validation tasks leaves the plateau "
                 "(first epoch below 0.9 ln C), per intervention; the preset without its "
                 "curriculum bias is the base."),
    grids={
        # smoke is the pfn layout already: its cells are the two that change it
        "smoke": grid(("paper layout, no intervention", "pfn layout, bias task 0.9"), 20),
        "cpu": grid(tuple(VARIANTS)[:9], 1000, LONG, 4000, recipe_steps=4000),
        "paper": grid(tuple(VARIANTS), 20_000),
    },
    base_sets=("train.bias_fraction=0.0",),
    measure=measure_cell,
    figures=figures,
    columns=("plateau_exit_step", "final_val_loss", "final_val_acc_last10",
             "final_val_improvement"),
    notes=notes,
)
