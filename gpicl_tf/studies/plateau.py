"""The `plateau` study: how long each intervention keeps meta-training at chance.

Each variant is the preset without its curriculum bias plus the variant's
overrides, trained on the preset's episodes (or its own, when it changes the
data). "Left the plateau" is measured on unseen tasks, never on the (possibly
biased) training batches: the first epoch whose meta-validation loss falls
below 0.9 ln C. The cpu grid holds the nine variants of docs/plateau_cpu.md at
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


def grid(short: tuple[str, ...], short_steps: int, long: tuple[str, ...] = (),
         long_steps: int = 0):
    def cells() -> list[Cell]:
        return [Cell(f"{name} ({steps} steps)", {"variant": name},
                     (*VARIANTS[name], f"train.steps={steps}"))
                for names, steps in ((short, short_steps), (long, long_steps))
                for name in names]
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


def figures(rows: list[dict], out_dir: str) -> list[str]:
    import math
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gpicl_tf.eval.report import save_figure

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in rows:
        history = runner.history(r["run_dir"])
        spe = r["steps"] / max(len(history), 1)
        ax.plot([(h["epoch"] + 1) * spe for h in history], [h["val_loss"] for h in history],
                ls="--" if "model.layout=paper" in r["sets"] else "-", label=r["cell"])
    ax.axhline(math.log(10), color="gray", ls=":", label="ln 10 (chance)")
    ax.set_xlabel("meta-training step")
    ax.set_ylabel("loss on unseen tasks")
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    path = os.path.join(out_dir, "plateau_loss.png")
    save_figure(fig, path)
    return [path]


STUDY = Study(
    name="plateau",
    description=("Steps until the loss on unseen meta-validation tasks leaves the plateau "
                 "(first epoch below 0.9 ln C), per intervention; the preset without its "
                 "curriculum bias is the base."),
    grids={
        "smoke": grid(("pfn layout, no intervention", "paper layout, bias task 0.9"), 20),
        "cpu": grid(tuple(VARIANTS)[:9], 1000, LONG, 4000),
        "paper": grid(tuple(VARIANTS), 20_000),
    },
    base_sets=("train.bias_fraction=0.0",),
    measure=measure_cell,
    figures=figures,
    columns=("plateau_exit_step", "final_val_loss", "final_val_acc_last10",
             "final_val_improvement"),
    notes=notes,
)
