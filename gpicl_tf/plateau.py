"""The plateau study: how long each intervention keeps meta-training at chance.

Each variant is the base config with `--set` overrides, trained by the same
`training.run` on the same episodes. "Left the plateau" is measured on unseen
tasks, never on the (possibly biased) training batches: the first epoch whose
validation loss falls below (1 - drop) * ln(C).

Example:
    >>> rows = study(get_preset("cpu"), "runs/plateau", "tfrecords/cpu",
    ...              {"no intervention": []}, steps=2000)  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import csv
import json
import math
import os
import time

from absl import logging

from gpicl_tf.config import Config, override
from gpicl_tf.data import storage
from gpicl_tf.eval.report import slug
from gpicl_tf.training import train

# The study's base: the preset without its curriculum bias (the cpu presets now
# default to the permutation bias this study selected); every variant adds to it.
BASE = ("train.bias_fraction=0.0",)

# name -> overrides on top of the study's base config.
VARIANTS = {
    "paper layout, no intervention": ["model.layout=paper"],
    "paper layout, Adam eps 1e-16": ["model.layout=paper", "train.adam_epsilon=1e-16"],
    "paper layout, bias permutation 0.9": [
        "model.layout=paper", "train.bias_fraction=0.9", "train.bias_mode=permutation",
        "train.bias_schedule=plateau"],
    "paper layout, bias task 0.9": [
        "model.layout=paper", "train.bias_fraction=0.9", "train.bias_mode=task",
        "train.bias_schedule=plateau"],
    "pfn layout, no intervention": ["model.layout=pfn"],
    "pfn layout, bias task 0.9": [
        "model.layout=pfn", "train.bias_fraction=0.9", "train.bias_mode=task",
        "train.bias_schedule=plateau"],
    "pfn layout, bias permutation 0.9": [
        "model.layout=pfn", "train.bias_fraction=0.9", "train.bias_mode=permutation",
        "train.bias_schedule=plateau"],
    "pfn layout, Adam eps 1e-16": ["model.layout=pfn", "train.adam_epsilon=1e-16"],
    "pfn layout, batch 128": ["model.layout=pfn", "train.batch_size=128"],
}


def _history(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "history.csv")) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def plateau_exit(history: list[dict], steps_per_epoch: int, num_classes: int,
                 drop: float = 0.1) -> int | None:
    """Steps until the unseen-task loss first falls below (1 - drop) * ln(C)."""
    threshold = (1 - drop) * math.log(num_classes)
    for row in history:
        if row.get("val_loss", math.inf) < threshold:
            return int(row["epoch"] + 1) * steps_per_epoch
    return None


def _earlier_rows(workdir: str) -> dict[tuple[str, int], dict]:
    """Rows of plateau.json measured before whose run is still there, by (variant, steps)."""
    path = os.path.join(workdir, "plateau.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        rows = json.load(f)
    return {(r["variant"], r["steps"]): r for r in rows
            if os.path.exists(os.path.join(r["history"], "history.csv"))}


def _run_dir(workdir: str, name: str, steps: int, table: dict) -> str:
    """The variant's own directory; a second step count of it gets its own."""
    run_dir = os.path.join(workdir, slug(name))
    taken = {r["history"] for key, r in table.items() if key != (name, steps)}
    return os.path.join(workdir, slug(f"{name} {steps} steps")) if run_dir in taken else run_dir


def study(base: Config, workdir: str, episodes_dir: str, variants: dict[str, list[str]],
          steps: int) -> list[dict]:
    """Trains every variant for `steps` steps; returns the table's rows.

    A variant already measured in `workdir` with the same overrides and step count
    keeps its row (and its wall time) instead of being trained again; rows measured
    there before (other variants, other step counts) stay in the table, in
    VARIANTS order, then by steps.
    """
    table = _earlier_rows(workdir)
    for name, sets in variants.items():
        row = table.get((name, steps))
        if row and row["overrides"] == list(sets):
            logging.info("plateau study %s, %d steps: measured before, kept", name, steps)
            continue
        cfg = override(base, [*BASE, *sets, f"train.steps={steps}"])
        run_dir = _run_dir(workdir, name, steps, table)
        t0 = time.perf_counter()
        summary = train.run(cfg, run_dir, episodes_dir, verbose=2)
        minutes = (time.perf_counter() - t0) / 60
        history = _history(run_dir)
        exit_step = plateau_exit(history, cfg.train.steps_per_epoch, cfg.data.num_classes)
        last = history[-1]
        table[(name, steps)] = {
            "variant": name, "overrides": list(sets), "steps": summary["steps"],
            "plateau_exit_step": exit_step,
            "minutes": round(minutes, 1),
            "minutes_to_exit": round(minutes * exit_step / summary["steps"], 1)
            if exit_step else None,
            "final_val_loss": round(last["val_loss"], 4),
            "final_val_acc_last10": round(last["val_acc_last10"], 4),
            "final_val_improvement": round(last["val_improvement"], 4),
            "history": run_dir}
        logging.info("plateau study %s: %s", name, table[(name, steps)])
        storage.write_json(os.path.join(workdir, "plateau.json"), _ordered(table))
    return _ordered(table)


def _ordered(table: dict) -> list[dict]:
    order = {name: i for i, name in enumerate(VARIANTS)}
    return sorted(table.values(),
                  key=lambda r: (order.get(r["variant"], len(order)), r["steps"]))


def markdown(rows: list[dict], base_command: str) -> str:
    lines = ["| Variant | Steps to leave plateau | Minutes to leave | Final val loss | "
             "Final val acc (last 10) | Final improvement | Command |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        exit_step = r["plateau_exit_step"] or f"not within {r['steps']}"
        minutes = r["minutes_to_exit"] if r["minutes_to_exit"] is not None else \
            f"> {r['minutes']}"
        command = (f"{base_command} --workdir {r['history']}" +
                   "".join(f" --set {s}" for s in
                           [*BASE, *r["overrides"], f"train.steps={r['steps']}"]))
        lines.append(f"| {r['variant']} | {exit_step} | {minutes} | {r['final_val_loss']} | "
                     f"{r['final_val_acc_last10']} | {r['final_val_improvement']:+} | "
                     f"`{command}` |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    counts = collections.Counter(r["variant"] for r in rows)
    for r in rows:
        history = _history(r["history"])
        spe = r["steps"] / max(len(history), 1)
        label = r["variant"] + (f" ({r['steps']} steps)" if counts[r["variant"]] > 1 else "")
        ax.plot([(h["epoch"] + 1) * spe for h in history], [h["val_loss"] for h in history],
                ls="--" if "model.layout=paper" in r["overrides"] else "-", label=label)
    ax.axhline(math.log(10), color="gray", ls=":", label="ln 10 (chance)")
    ax.set_xlabel("meta-training step")
    ax.set_ylabel("loss on unseen tasks")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
