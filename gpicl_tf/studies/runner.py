"""The study runner: a named grid of meta-training runs, cached per cell.

    rows = run_study(STUDIES["transition"], "smoke", "runs/transition")

Every cell is the grid preset's config with the study's and the cell's
`--set` overrides, trained by `training.train.run` on episodes written for
that cell's data settings, then measured by the study. Layout of the workdir:

    results.json      every finished cell's row (what the tables are made from)
    results.csv       the same rows, one per finished cell
    results.md        the table, each row with its own `pipelines.train` command
    *.png             the study's figures
    cells/<slug>/     each cell's training run (resumes from its last epoch after a kill)
    episodes/<key>/   one episode set per distinct data config (or under --episodes)

A cell with a row in results.json whose overrides are unchanged is never
trained again: a killed study started again with the same command resumes at
its first unfinished cell.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import time
from typing import Callable

from gpicl_tf import tasks
from gpicl_tf.config import Config, get_preset, override
from gpicl_tf import io as files
from gpicl_tf.data import episodes as episodes_lib
from gpicl_tf.errors import InvalidInputError, MissingFileError
from gpicl_tf.eval.report import slug
from gpicl_tf.training import callbacks as callbacks_lib, train

RESULTS = "results.json"
GRIDS = ("smoke", "cpu", "paper")
# The preset each grid starts from: the cpu grid keeps the recipe its documented
# results were measured with (the cpu preset's first recipe, before the recipe search).
GRID_PRESETS = {"smoke": "smoke", "cpu": "cpu_adam", "paper": "paper"}


@dataclasses.dataclass(frozen=True)
class Cell:
    """One training run of a grid.

    name: unique within the study (its directory is cells/<slug(name)>).
    params: the grid coordinates, shown as the table's first columns.
    sets: `section.key=value` overrides on the study's base config.
    """

    name: str
    params: dict
    sets: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Study:
    """A named study.

    grids: grid preset ("smoke", "cpu", "paper") -> its cells; the grid's base
        config is the config preset of the same name.
    base_sets: overrides every cell of the study starts from.
    prepare: (base config, episode root) -> context passed to `measure`
        (e.g. the episodes of an unseen dataset), or None.
    measure: (context, cell config, run dir, episode dir) -> the cell's own figures.
    figures: (rows, out dir) -> paths of the PNGs written.
    columns: the measured figures shown in results.md, in order.
    notes: (rows) -> markdown lines under the table (fits, findings).
    """

    name: str
    description: str
    grids: dict[str, Callable[[], list[Cell]]]
    measure: Callable
    figures: Callable
    columns: tuple[str, ...]
    base_sets: tuple[str, ...] = ()
    prepare: Callable | None = None
    notes: Callable | None = None


def base_config(study: Study, grid: str, user_sets: list[str] | tuple[str, ...] = ()) -> Config:
    """The grid preset's config with the study's base overrides, then the user's."""
    if grid not in study.grids:
        raise InvalidInputError(
            f"study {study.name!r} has no grid {grid!r}; "
            f"known: {sorted(study.grids)}")
    return grid_config(grid, cell_sets(study, user_sets))


def cell_sets(study: Study, user_sets: list[str] | tuple[str, ...] = (),
              cell: Cell | None = None) -> list[str]:
    """A cell's overrides, in the order they apply: the study's, the user's, the cell's."""
    return [*study.base_sets, *user_sets, *(cell.sets if cell else ())]


def grid_config(grid: str, sets: list[str]) -> Config:
    """The grid's preset with `sets` applied (checked once, as a whole)."""
    return override(get_preset(GRID_PRESETS[grid]), sets)


def cells_of(study: Study, grid: str, user_sets: list[str] | tuple[str, ...] = ()) -> list[Cell]:
    """The grid's cells; a user override of a grid axis is an error naming it."""
    cells = study.grids[grid]()
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"study {study.name!r} grid {grid!r} repeats a cell name: {names}")
    axes = {s.split("=", 1)[0] for c in cells for s in c.sets}
    for item in user_sets:
        key = item.split("=", 1)[0].strip()
        if key in axes:
            raise InvalidInputError(
                f"--set {item!r}: {key} is an axis of the {study.name} study's "
                f"{grid} grid (the cells set it)")
    return cells


def episode_key(cfg: Config) -> str:
    """A directory name for the episodes of `cfg`'s data settings (and the other
    sections its source's episodes depend on: function or prior settings)."""
    data = dataclasses.asdict(cfg.data)
    if not data["mixture"]:
        del data["mixture"]  # added later: keys of sets written before stay the same
    written = {"data": data}
    for section in tasks.for_source(cfg.data.source).settings(cfg.data):
        written[section] = dataclasses.asdict(getattr(cfg, section))
    digest = hashlib.sha256(json.dumps(written, sort_keys=True).encode()).hexdigest()[:10]
    return f"{slug(cfg.data.source)}-k{cfg.data.log2_num_tasks}-{digest}"


def cell_episodes(cfg: Config, episode_root: str) -> str:
    """The cell's episode directory, written on first use and reused after."""
    out = os.path.join(episode_root, episode_key(cfg))
    return episodes_lib.ensure_episodes(cfg.data, out, cfg.functions, cfg.prior)


def read_rows(workdir: str) -> list[dict]:
    path = os.path.join(workdir, RESULTS)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)


def history(run_dir: str) -> list[dict]:
    """history.csv of a training run as numbers."""
    with open(os.path.join(run_dir, "history.csv")) as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def plateau_exit(rows: list[dict], steps_per_epoch: int, num_classes: int,
                 drop: float = 0.1) -> int | None:
    """Steps until the unseen-task loss first falls below (1 - drop) * ln(C)."""
    threshold = callbacks_lib.plateau_threshold(max(num_classes, 2), drop)
    for row in rows:
        if row.get("val_loss", math.inf) < threshold:
            return int(row["epoch"] + 1) * steps_per_epoch
    return None


def training_figures(cfg: Config, run_dir: str, summary: dict) -> dict:
    """What every study records of a cell's training run."""
    rows = history(run_dir)
    last = rows[-1] if rows else {}
    exit_step = plateau_exit(rows, cfg.train.steps_per_epoch, cfg.data.num_classes,
                             cfg.train.plateau_drop)
    out = {"steps": summary["steps"], "batch_size": cfg.train.batch_size,
           "episodes_consumed": summary["steps"] * cfg.train.batch_size,
           "parameters": summary["parameters"],
           "plateau_exit_step": exit_step,
           "final_val_loss": round(last["val_loss"], 4) if "val_loss" in last else None}
    return out


def train_command(grid: str, cfg_sets: list[str], episodes_dir: str, run_dir: str) -> str:
    return (f"python -m pipelines.train --preset {GRID_PRESETS[grid]} --episodes {episodes_dir} "
            f"--workdir {run_dir}" + "".join(f" --set {s}" for s in cfg_sets))


def run_study(study: Study, grid: str, workdir: str, **kwargs) -> list[dict]:
    """Trains and measures every unfinished cell of `study`'s `grid`; writes the
    results files and figures after each cell. Returns the rows, in grid order.
    The workdir is held meanwhile: a second study in it is an error naming this
    one's pid."""
    with files.directory_lock(workdir, "study"):
        return _run_study(study, grid, workdir, **kwargs)


def _run_study(study: Study, grid: str, workdir: str, *, episode_root: str | None = None,
               user_sets: list[str] | tuple[str, ...] = (), verbose=2,
               log: Callable[[str], None] = print) -> list[dict]:
    base = base_config(study, grid, user_sets)
    cells = cells_of(study, grid, user_sets)
    episode_root = episode_root or os.path.join(workdir, "episodes")
    os.makedirs(workdir, exist_ok=True)
    files.remove_stale_temporaries(workdir)
    done = {r["cell"]: r for r in read_rows(workdir)}
    context = study.prepare(base, episode_root) if study.prepare else None
    t_start, trained_seconds, trained = time.perf_counter(), 0.0, 0
    for k, cell in enumerate(cells, 1):
        sets = cell_sets(study, user_sets, cell)
        row = done.get(cell.name)
        if row is not None and row["sets"] == sets:
            log(f"[{study.name}] cell {k} of {len(cells)} ({cell.name}): finished before, kept")
            continue
        cfg = grid_config(grid, sets)
        episodes_dir = cell_episodes(cfg, episode_root)
        run_dir = os.path.join(workdir, "cells", slug(cell.name))
        if row is not None:  # the cell's overrides changed: its old run is not this cell
            raise InvalidInputError(
                f"{os.path.join(workdir, RESULTS)} has cell {cell.name!r} with "
                f"overrides {row['sets']}, this study asks for {sets}; "
                "use another --workdir")
        t0 = time.perf_counter()
        summary = train.run(cfg, run_dir, episodes_dir, verbose=verbose)
        wall = time.perf_counter() - t0
        row = {"cell": cell.name, "axes": list(cell.params), **cell.params, **training_figures(cfg, run_dir, summary),
               "wall_s": round(wall, 1),
               **study.measure(context, cfg, run_dir, episodes_dir),
               "sets": sets, "command": train_command(grid, sets, episodes_dir, run_dir),
               "run_dir": run_dir}
        done[cell.name] = row
        write_results(study, [done[c.name] for c in cells if c.name in done], workdir)
        trained_seconds += time.perf_counter() - t0
        trained += 1
        left = sum(1 for c in cells[k:] if c.name not in done)
        log(f"[{study.name}] cell {k} of {len(cells)} ({cell.name}) done in "
            f"{time.perf_counter() - t0:.0f}s; elapsed {time.perf_counter() - t_start:.0f}s; "
            f"estimate left {trained_seconds / trained * left:.0f}s ({left} cells)")
    rows = [done[c.name] for c in cells if c.name in done]
    write_results(study, rows, workdir)
    return rows


def to_csv(rows: list[dict]) -> str:
    columns = []
    for r in rows:
        columns += [k for k in r if k not in columns and k != "sets"]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return out.getvalue()


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def to_markdown(study: Study, rows: list[dict]) -> str:
    lines = [f"# Study {study.name}", "", study.description, ""]
    if not rows:
        return "\n".join([*lines, "No finished cell yet."]) + "\n"
    columns = [*rows[0]["axes"], "steps", "wall_s", *study.columns]
    lines += ["| " + " | ".join(columns) + " | command |",
              "|" + "---|" * (len(columns) + 1)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in columns) +
                     f" | `{r['command']}` |")
    if study.notes:
        lines += ["", *study.notes(rows)]
    return "\n".join(lines) + "\n"


def write_results(study: Study, rows: list[dict], workdir: str) -> list[str]:
    """results.json, results.csv, results.md and the figures, each replaced
    atomically; returns the figures' paths. results.json keeps each row's key
    order, so a resumed study's results.csv has the columns of an uninterrupted one."""
    with files.atomic_path(os.path.join(workdir, RESULTS)) as tmp:
        with open(tmp, "w") as f:
            json.dump(rows, f, indent=2)
            f.write("\n")
    for name, text in (("results.csv", to_csv(rows)),
                       ("results.md", to_markdown(study, rows))):
        with files.atomic_path(os.path.join(workdir, name)) as tmp:
            with open(tmp, "w") as f:
                f.write(text)
    return study.figures(rows, workdir) if rows else []


def publish(study: Study, grid: str, workdir: str, docs_dir: str,
            user_sets: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Rewrites the results of the cells `workdir` has finished (in grid order,
    without training anything) and copies the table to DOCS/NAME_GRID.md and the
    figures into DOCS/; returns the copied paths."""
    import shutil

    done = {r["cell"]: r for r in read_rows(workdir)}
    if not done:
        raise MissingFileError(f"{os.path.join(workdir, RESULTS)} holds no finished cell")
    rows = [done[c.name] for c in cells_of(study, grid, user_sets) if c.name in done]
    figures = write_results(study, rows, workdir)
    os.makedirs(docs_dir, exist_ok=True)
    out = []
    for src, name in [(os.path.join(workdir, "results.md"), f"{study.name}_{grid}.md"),
                      *[(f, os.path.basename(f)) for f in figures]]:
        dst = os.path.join(docs_dir, name)
        with files.atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        out.append(dst)
    return out
