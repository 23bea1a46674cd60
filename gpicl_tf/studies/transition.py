"""The `transition` study: from memorisation to general learning as the number of
meta-training tasks grows (Kirsch et al. 2022, arXiv:2212.04458; measured here:
docs/results/transition.md), for several model sizes.

Every cell meta-trains on the same number of episodes (steps x batch): only the
number of distinct tasks 2^k among them (k = log2_num_tasks; "fresh" = a task of
its own per episode) and the model size change. Per cell, accuracy over the last
10 positions on
- `train`: the meta-training episodes themselves (seen tasks, seen examples:
  instance memorisation),
- `seen`: tasks meta-training used, on the test split's examples,
- `unseen`: tasks never used, test split (general learning),
- `dataset`: an unseen dataset (FashionMNIST when available, else the random source),
and the within-sequence improvement on unseen tasks.

No curriculum bias here (it would put most of each batch on one label
permutation and blur which tasks were seen).
"""

from __future__ import annotations

import math
import os

from gpicl_tf.data import pipeline
from gpicl_tf.studies import measure
from gpicl_tf.studies.runner import Cell, Study

FRESH = 31  # log2_num_tasks of "a fresh task per episode": more ids than episodes


def size_sets(size: int) -> tuple[str, ...]:
    """A Transformer of width `size`: one head per 16 units, head size size / heads."""
    heads = max(1, size // 16)
    return (f"model.model_size={size}", f"model.num_heads={heads}",
            f"model.key_size={size // heads}")


def tasks_label(k: int) -> str:
    return "fresh" if k == FRESH else f"2^{k}"


def grid(log2_tasks, sizes, steps: int, batch: int, episodes: int | None = None):
    """Cells over (task count x model size), each trained `steps` steps on
    `episodes` (default steps x batch) meta-training episodes. The largest size
    comes first, all its task counts, then the next: a study stopped early
    already has the line plot's size complete."""
    def cells() -> list[Cell]:
        n = episodes or steps * batch
        return [Cell(f"tasks {tasks_label(k)} size {s}",
                     {"tasks": tasks_label(k), "model_size": s},
                     (f"data.log2_num_tasks={k}", f"data.train_episodes={n}",
                      f"train.steps={steps}", f"train.batch_size={batch}", *size_sets(s)))
                for s in sorted(sizes, reverse=True) for k in log2_tasks]
    return cells


def prepare(base, episode_root: str) -> dict:
    return {"dataset": measure.unseen_dataset(base, episode_root)}


def measure_cell(context: dict, cfg, run_dir: str, episodes_dir: str) -> dict:
    eps = pipeline.open_episodes(episodes_dir)
    sets = {"train": (eps, "train"), "seen": (eps, "seen"), "unseen": (eps, "test")}
    dataset = context["dataset"]
    if dataset is not None:
        sets["dataset"] = (pipeline.open_episodes(dataset[1]), "test")
    out = {"distinct_tasks": eps.manifest["splits"]["train"].get("distinct_tasks"),
           "unseen_dataset": dataset[0] if dataset else None}
    out.update(measure.accuracy_figures(measure.load_model(run_dir), sets, cfg.eval.episodes))
    return out


def _order(rows):
    tasks = sorted({r["tasks"] for r in rows}, key=lambda t: math.inf if t == "fresh"
                   else int(t[2:]))
    return tasks, sorted({r["model_size"] for r in rows})


def figures(rows: list[dict], out_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from gpicl_tf.eval.report import save_figure

    tasks, sizes = _order(rows)
    by = {(r["tasks"], r["model_size"]): r for r in rows}
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, title in zip(axes, ("seen_acc", "unseen_acc"),
                              ("seen tasks (test split)", "unseen tasks (test split)")):
        grid_ = np.array([[by[(t, s)][key] if (t, s) in by and by[(t, s)][key] is not None
                           else np.nan for t in tasks] for s in sizes])
        im = ax.imshow(grid_, origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis")
        for i in range(len(sizes)):
            for j in range(len(tasks)):
                if not np.isnan(grid_[i, j]):
                    ax.text(j, i, f"{grid_[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if grid_[i, j] < 0.6 else "black")
        ax.set_xticks(range(len(tasks)), tasks, fontsize=7, rotation=45)
        ax.set_yticks(range(len(sizes)), sizes)
        ax.set_xlabel("meta-training tasks")
        ax.set_ylabel("model size")
        ax.set_title(f"accuracy, last 10 positions: {title}", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8)
    path = os.path.join(out_dir, "transition_heatmaps.png")
    save_figure(fig, path)
    paths.append(path)

    largest = sizes[-1]
    fig, ax = plt.subplots(figsize=(7, 4))
    x = range(len(tasks))
    for key, label, style in (("train", "meta-training episodes (instance memorisation)", ":"),
                              ("seen", "seen tasks, test split", "-"),
                              ("unseen", "unseen tasks, test split", "-"),
                              ("dataset", "unseen dataset", "--")):
        ys = [by.get((t, largest), {}).get(f"{key}_acc") for t in tasks]
        if any(y is not None for y in ys):
            ax.plot(x, [np.nan if y is None else y for y in ys], style, marker="o", label=label)
    num_classes = 10
    ax.axhline(1 / num_classes, color="gray", ls=":", label="chance")
    ax.set_xticks(list(x), tasks)
    ax.set_xlabel("meta-training tasks")
    ax.set_ylabel("accuracy, last 10 positions")
    ax.set_title(f"model size {largest}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    path = os.path.join(out_dir, "transition_tasks.png")
    save_figure(fig, path)
    paths.append(path)
    return paths


def above(r: dict, key: str, level: float) -> bool:
    """The 95% interval of r[key] lies above `level`."""
    return r.get(key) is not None and r[key] - (r.get(key.replace("_acc", "_ci95")) or 0) > level


def notes(rows: list[dict], chance: float = 0.1) -> list[str]:
    """Where the phases are, per model size, in words."""
    tasks, sizes = _order(rows)
    by = {(r["tasks"], r["model_size"]): r for r in rows}
    lines = []
    for s in sizes:
        cells = [by[(t, s)] for t in tasks if (t, s) in by]
        general = next((r["tasks"] for r in cells if above(r, "unseen_acc", chance)), None)
        memorise = [r["tasks"] for r in cells if r.get("seen_acc") is not None and
                    r["seen_acc"] - r["seen_ci95"] > r["unseen_acc"] + r["unseen_ci95"]]
        lines.append(
            f"- size {s}: unseen-task accuracy above chance (95% interval) from "
            f"{general or 'no task count in the grid'}"
            f"; seen-task accuracy above unseen (intervals apart) at "
            f"{', '.join(memorise) if memorise else 'no task count'}.")
    return lines


STUDY = Study(
    name="transition",
    description=("Accuracy over the last 10 positions against the number of distinct "
                 "meta-training tasks and the model size (same steps and episodes in every "
                 "cell). train = the meta-training episodes themselves; seen = meta-trained "
                 "tasks on test-split examples; unseen = new tasks; dataset = an unseen "
                 "dataset."),
    grids={
        "smoke": grid((0, FRESH), (8, 16), steps=20, batch=8),
        "cpu": grid((0, 2, 4, 6, 8, 10, 12, 14, 16, FRESH), (16, 32, 64), steps=1500,
                    batch=64),
        # For accelerators, not run here: the paper's sizes and task counts up to 2^24;
        # episodes capped at 2^24 (a fresh-task cell then sees each task 4 times).
        "paper": grid((0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, FRESH),
                      (64, 128, 256, 512), steps=500_000, batch=128, episodes=2**24),
    },
    base_sets=("train.bias_fraction=0.0",),
    prepare=prepare,
    measure=measure_cell,
    figures=figures,
    columns=("distinct_tasks", "parameters", "plateau_exit_step", "final_val_loss",
             "train_acc", "seen_acc", "unseen_acc", "unseen_ci95", "dataset_acc",
             "unseen_improvement"),
    notes=notes,
)
