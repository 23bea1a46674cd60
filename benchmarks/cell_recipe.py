"""Short meta-training runs of the cell learner that differ in one recipe choice.

    python benchmarks/cell_recipe.py --out runs/cell_recipe [--preset cell_cpu]
        [--steps 150] [--max_seconds S] [--export] [--set section.key=value ...]
        --variant NAME='section.key=value;section.key=value' ...

Each variant trains from the same seed on the same batches for `--steps` steps
(its own workdir OUT/NAME, so a killed comparison resumes: the same command
goes on where it stopped) and is scored by its validation loss and accuracy on
the preset's fixed prior tables, at each checkpoint and after averaging; wall
seconds are measured per run. With `--max_seconds`, every variant also stops at
that wall-clock budget (`train.max_seconds`): equal wall time, so a slower
change sees fewer prior tables (the table reports steps and tables seen).
`--set` applies to every variant, before the variant's own overrides.
With `--export`, each finished variant is exported to OUT/export/NAME/1, ready
for `benchmarks/tabular.py NAME=OUT/export/NAME/1 ...` (the benchmark tables).
Prints a markdown table and writes it to OUT/recipe.md. Run alone.
"""

import argparse
import csv
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from gpicl_tf.config import override  # noqa: E402
from gpicl_tf.config.cell import get_cell_preset  # noqa: E402
from gpicl_tf.training import cell_train  # noqa: E402


def run_variant(base, name: str, sets: list[str], out: str, steps: int,
                max_seconds: float = 0.0, export: bool = False) -> dict:
    cfg = override(base, [f"train.steps={steps}", f"train.warmup_steps={max(steps // 5, 1)}",
                               f"train.checkpoint_every={max(steps // 3, 1)}",
                               f"train.max_seconds={max_seconds}"] + sets)
    workdir = os.path.join(out, name)
    t0 = time.time()
    summary_path = os.path.join(workdir, cell_train.SUMMARY_FILE)
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
    else:
        summary = cell_train.run(cfg, workdir)
    with open(os.path.join(workdir, "validation.csv")) as f:
        curve = [(int(r["step"]), float(r["loss"]), float(r["accuracy"]), float(r["seconds"]))
                 for r in csv.DictReader(f)]
    with open(os.path.join(workdir, "log.csv")) as f:
        tables = sum(_tables_per_session(list(csv.DictReader(f))))
    if export:
        version = os.path.join(out, "export", name, "1")
        if not os.path.exists(version):
            from gpicl_tf.export import saved_model
            saved_model.export_run(workdir, os.path.join(out, "export"), name)
    return {"name": name, "sets": sets, "curve": curve, "summary": summary, "tables": tables,
            "seconds": curve[-1][3] if curve else time.time() - t0}


def _tables_per_session(rows: list[dict]) -> list[int]:
    """Prior tables seen per training session of a log.csv (its `tables` column
    counts from each session's start: a resumed run starts again from zero)."""
    sessions, last = [], None
    for r in rows:
        seen = int(r["tables"])
        if last is None or seen < last:
            sessions.append(0)
        sessions[-1], last = seen, seen
    return sessions


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="cell_cpu")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--max_seconds", type=float, default=0.0,
                   help="wall-clock budget of each variant (0 = only --steps)")
    p.add_argument("--set", action="append", default=[], dest="sets",
                   help="section.key=value applied to every variant (repeatable)")
    p.add_argument("--export", action="store_true",
                   help="export each variant to OUT/export/NAME/1")
    p.add_argument("--variant", action="append", required=True,
                   help="NAME='section.key=value;...' (empty for the preset itself)")
    args = p.parse_args(argv)
    base = get_cell_preset(args.preset)
    results = []
    for item in args.variant:
        name, _, sets = item.partition("=")
        results.append(run_variant(base, name, args.sets + [s for s in sets.split(";") if s],
                                   args.out,
                                   args.steps, args.max_seconds, args.export))
        r = results[-1]
        print(f"{name}: validation loss {r['summary']['validation_loss']:.4f} accuracy "
              f"{r['summary']['validation_accuracy']:.4f} in {r['seconds']:.0f} s", flush=True)
    lines = [f"`python benchmarks/cell_recipe.py --out {args.out} --preset {args.preset} "
             f"--steps {args.steps} "
             + (f"--max_seconds {args.max_seconds:g} " if args.max_seconds else "")
             + ("--export " if args.export else "")
             + "".join(f"--set {s} " for s in args.sets) + " ".join(f"--variant '{v}'" for v in args.variant) + "`",
             "", "| variant | overrides | validation loss by step | final loss | final accuracy "
             "| steps | prior tables | seconds |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        curve = ", ".join(f"{s}: {l:.3f}" for s, l, _, _ in r["curve"])
        lines.append(f"| {r['name']} | {'; '.join(r['sets'][len(args.sets):]) or '(preset)'} | {curve} | "
                     f"{r['summary']['validation_loss']:.4f} | "
                     f"{r['summary']['validation_accuracy']:.4f} | {r['summary']['steps']} | "
                     f"{r['tables']:,} | {r['seconds']:.0f} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "recipe.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
