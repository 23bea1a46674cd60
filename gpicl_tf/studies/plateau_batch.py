"""The `plateau_batch` study: how long meta-training stays on the loss plateau
against the meta-batch size, for both token layouts (Kirsch et al. 2022, arXiv:2212.04458:
the plateau shortens with the batch size, a power law; measured here:
docs/results/plateau_batch.md).

Each cell trains until its unseen-task (meta-validation) loss first falls below
0.9 ln C, or for its step budget, whichever comes first
(`train.stop_at_plateau_exit`). Per layout, the steps to leave the plateau are
fitted as steps = a * batch^b over the cells that left it (least squares in log-log).
No curriculum bias: the plateau itself is what is measured.
"""

from __future__ import annotations

import math
import os

import numpy as np

from gpicl_tf.data import pipeline
from gpicl_tf.studies import measure
from gpicl_tf.studies.runner import Cell, Study


def grid(layouts, batches, steps: int, steps_per_epoch: int, warmup: int):
    """Cells over (layout x batch size), all on the preset's episodes (repeated
    when a cell consumes more)."""
    def cells() -> list[Cell]:
        return [Cell(f"{layout} batch {b}", {"layout": layout, "batch": b},
                     (f"model.layout={layout}", f"train.batch_size={b}", f"train.steps={steps}",
                      f"train.steps_per_epoch={steps_per_epoch}",
                      f"train.warmup_steps={warmup}"))
                for layout in layouts for b in batches]
    return cells


def measure_cell(context, cfg, run_dir: str, episodes_dir: str) -> dict:
    eps = pipeline.open_episodes(episodes_dir)
    return measure.accuracy_figures(measure.load_model(run_dir), {"unseen": (eps, "test")},
                                    cfg.eval.episodes)


def power_law(rows: list[dict], layout: str) -> tuple[float, float, int] | None:
    """(a, b, cells) of steps = a * batch^b over the layout's cells that left the
    plateau; None with fewer than two such cells."""
    pts = [(r["batch"], r["plateau_exit_step"]) for r in rows
           if r["layout"] == layout and r.get("plateau_exit_step")]
    if len({b for b, _ in pts}) < 2:
        return None
    x, y = np.log([b for b, _ in pts]), np.log([s for _, s in pts])
    b, log_a = np.polyfit(x, y, 1)
    return float(math.exp(log_a)), float(b), len(pts)


def notes(rows: list[dict]) -> list[str]:
    lines = []
    for layout in sorted({r["layout"] for r in rows}):
        fit = power_law(rows, layout)
        stuck = [str(r["batch"]) for r in rows if r["layout"] == layout
                 and not r.get("plateau_exit_step")]
        text = (f"steps to leave = {fit[0]:.0f} x batch^{fit[1]:.2f} (fitted on {fit[2]} cells)"
                if fit else "too few cells left the plateau to fit a power law")
        if stuck:
            text += f"; did not leave within the budget at batch {', '.join(stuck)}"
        lines.append(f"- {layout} layout: {text}.")
    return lines


def figures(rows: list[dict], out_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gpicl_tf.eval.report import save_figure

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, layout in enumerate(sorted({r["layout"] for r in rows})):
        color = f"C{i}"
        mine = [r for r in rows if r["layout"] == layout]
        left = [r for r in mine if r.get("plateau_exit_step")]
        stuck = [r for r in mine if not r.get("plateau_exit_step")]
        if left:
            ax.plot([r["batch"] for r in left], [r["plateau_exit_step"] for r in left], "o",
                    color=color, label=f"{layout}: steps to leave the plateau")
        if stuck:
            ax.plot([r["batch"] for r in stuck], [r["steps"] for r in stuck], "^",
                    color=color, mfc="none", label=f"{layout}: still on it at the budget")
        fit = power_law(rows, layout)
        if fit:
            xs = np.geomspace(min(r["batch"] for r in left), max(r["batch"] for r in left), 20)
            ax.plot(xs, fit[0] * xs ** fit[1], "-", color=color, alpha=0.6,
                    label=f"{layout}: fit batch^{fit[1]:.2f}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("meta-batch size")
    ax.set_ylabel("meta-training steps")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    path = os.path.join(out_dir, "plateau_batch.png")
    save_figure(fig, path)
    return [path]


STUDY = Study(
    name="plateau_batch",
    description=("Steps until the loss on unseen meta-validation tasks leaves the plateau "
                 "(first epoch below 0.9 ln C), against the meta-batch size, per token "
                 "layout; training stops there. episodes = steps x batch."),
    grids={
        "smoke": grid(("pfn",), (4, 8), steps=20, steps_per_epoch=5, warmup=2),
        "cpu": grid(("pfn", "paper"), (16, 32, 64, 128, 256), steps=2000, steps_per_epoch=50,
                    warmup=100),
        "paper": grid(("pfn", "paper"), (16, 32, 64, 128, 256, 512), steps=100_000,
                      steps_per_epoch=500, warmup=1000),
    },
    base_sets=("train.bias_fraction=0.0", "train.stop_at_plateau_exit=true"),
    measure=measure_cell,
    figures=figures,
    columns=("plateau_exit_step", "episodes_consumed", "final_val_loss", "unseen_acc",
             "unseen_improvement"),
    notes=notes,
)
