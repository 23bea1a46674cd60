"""Train-step time of the cell learner: precision and width, on the same batches.

    python benchmarks/cell_step.py [--preset cell_cpu] [--variants float32,mixed_bfloat16]
        [--widths 96] [--steps 12] [--repeats 3] [--set section.key=value ...]

For each (precision, width): builds the model and optimizer of the preset,
runs the train step on the same `--steps` prior batches (the preset's batch
shapes: rows, columns and tables vary from step to step) `--repeats` times
after one warm-up pass, and prints the median seconds per step, the median
cells (tables x rows x (columns + 1) tokens) per second and each variant's
speed relative to the first. Run it alone: the other core's load changes it.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from gpicl_tf.config import override  # noqa: E402
from gpicl_tf.config.cell import get_cell_preset  # noqa: E402
from gpicl_tf.data import tables  # noqa: E402
from gpicl_tf.training import cell_train  # noqa: E402


def measure(cfg, batches, repeats: int) -> tuple[float, float]:
    """(median seconds per step, median tokens per second) over `repeats` passes."""
    keras.mixed_precision.set_global_policy(cfg.train.precision)
    try:
        model = cell_train.build_model(cfg)
        optimizer = cell_train.build_optimizer(cfg)
        optimizer.build(model.trainable_variables)
        step, _ = cell_train.make_steps(model, optimizer)
        for b in batches:
            step(b)                                                  # warm-up: traces
        tokens = sum(b["context_x"].shape[0] * (b["context_x"].shape[1] + b["query_x"].shape[1])
                     * (b["context_x"].shape[2] + 1) for b in batches)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for b in batches:
                float(step(b)[0])
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        return med / len(batches), tokens / med
    finally:
        keras.mixed_precision.set_global_policy("float32")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="cell_cpu")
    p.add_argument("--variants", default="float32,mixed_bfloat16")
    p.add_argument("--widths", default="")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args(argv)
    base = override(get_cell_preset(args.preset), args.set)
    batches = [tables.table_batch(base, s) for s in range(args.steps)]
    widths = [int(w) for w in args.widths.split(",") if w] or [base.model.model_size]
    rows, first = [], None
    for width in widths:
        for precision in args.variants.split(","):
            cfg = override(base, [f"train.precision={precision}", f"model.model_size={width}"])
            sec, rate = measure(cfg, batches, args.repeats)
            first = first or sec
            rows.append((precision, width, sec, rate, first / sec))
            print(f"{precision:15s} width {width:4d}: {sec * 1e3:8.1f} ms/step  "
                  f"{rate / 1e3:8.1f} k tokens/s  speed x{first / sec:.2f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
