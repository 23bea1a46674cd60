"""Generation speed of the table prior: the classic and TabICL mixtures' batches.

    nice -n 19 python benchmarks/prior_speed.py [--preset cell_cpu] [--batches 20]
        [--repeats 3] [--blas_threads 1] [--step_ms 1268]

For each mixture, draws the training batches 0..batches-1 of the preset
(`tables.table_batch`: its table sizes, rows, columns and tables per batch drawn
per step) `--repeats` times and prints the median tables/s, rows/s (tables x rows)
and ms per batch, then the batches per train step the generator makes at the
step time `--step_ms` (default: the cell_cpu float32 step measured in
docs/tabular.md with benchmarks/cell_step.py; not measured by this script). The
mixtures: "classic" is the preset's prior (broad_prior for cell_cpu), "tabicl" the
preset with prior=tabicl_prior() and tables.min_train_fraction=0.1 (TabICL's
training fraction 0.1-0.9). `--blas_threads N` limits numpy's BLAS to N threads
(threadpoolctl) while it runs: small matmuls on a busy 2-core machine spend more
time in OpenBLAS's thread hand-off than in the product. About 30 s here with
the defaults.
"""

import argparse
import contextlib
import dataclasses
import statistics
import time

from gpicl_tf.config.cell import get_cell_preset, tabicl_prior
from gpicl_tf.data import tables


def mixtures(preset: str) -> dict:
    """{"classic": the preset's run config, "tabicl": it with TabICL's prior}."""
    cfg = get_cell_preset(preset)
    tabicl = dataclasses.replace(
        cfg, prior=tabicl_prior(max_features=cfg.prior.max_features),
        tables=dataclasses.replace(cfg.tables, min_train_fraction=0.1, max_train_fraction=0.9))
    return {"classic": cfg, "tabicl": tabicl}


def measure(cfg, batches: int, repeats: int) -> dict:
    """Median over `repeats` passes of drawing batches 0..batches-1 of `cfg`:
    {"tables_s", "rows_s", "ms_batch", "tables", "rows"} (tables and rows per pass)."""
    times, n_tables, n_rows = [], 0, 0
    for _ in range(repeats):
        n_tables = n_rows = 0
        t0 = time.perf_counter()
        for step in range(batches):
            b = tables.table_batch(cfg, step)
            count, train, _ = b["context_x"].shape
            n_tables += count
            n_rows += count * (train + b["query_x"].shape[1])
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"tables_s": n_tables / med, "rows_s": n_rows / med, "ms_batch": 1e3 * med / batches,
            "tables": n_tables, "rows": n_rows}


def _blas_limit(threads: int):
    if threads <= 0:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="cell_cpu")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--blas_threads", type=int, default=0, help="0: numpy's default")
    p.add_argument("--step_ms", type=float, default=1268.0,
                   help="train step time to compare with (ms; cell_cpu float32, docs)")
    args = p.parse_args(argv)
    results = {}
    print(f"preset {args.preset}, batches 0..{args.batches - 1}, median of {args.repeats}, "
          f"BLAS threads: {args.blas_threads or 'default'}")
    print("| mixture | tables/s | rows/s | ms per batch | tables per pass | batches per step |")
    print("|---|---|---|---|---|---|")
    with _blas_limit(args.blas_threads):
        for name, cfg in mixtures(args.preset).items():
            r = results[name] = measure(cfg, args.batches, args.repeats)
            print(f"| {name} | {r['tables_s']:,.0f} | {r['rows_s']:,.0f} | {r['ms_batch']:.1f} "
                  f"| {r['tables']} | {args.step_ms / r['ms_batch']:.1f} |")
    print(f"(batches per step: at a train step of {args.step_ms:.0f} ms, not measured here)")
    return results


if __name__ == "__main__":
    main()
