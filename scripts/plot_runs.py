"""Plots the loss on unseen tasks of finished or running training runs, one curve each.

    python scripts/plot_runs.py --out docs/figures/NAME.png "LABEL=RUN_DIR" ["LABEL=RUN_DIR" ...]
        [--dashed LABEL [--dashed LABEL ...]] [--num_classes 10]

Each RUN_DIR is a `pipelines.train` workdir (its history.csv and config.json); the
figure is the plateau study's (`gpicl_tf.studies.plateau.loss_figure`).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gpicl_tf.errors import InvalidInputError  # noqa: E402


def parse_runs(items: list[str], dashed: set[str]) -> list[tuple[str, str, bool]]:
    """("LABEL=RUN_DIR", ...) -> [(label, run_dir, dashed)]; a malformed item, a
    directory without history.csv and config.json, or a dashed label that names no
    run is an error naming it."""
    curves = []
    for item in items:
        label, sep, run_dir = item.partition("=")
        if not sep or not label or not run_dir:
            raise InvalidInputError(f"{item!r} is not LABEL=RUN_DIR")
        for name in ("history.csv", "config.json"):
            if not os.path.exists(os.path.join(run_dir, name)):
                raise InvalidInputError(f"{run_dir!r} (for {label!r}) has no {name}: not a "
                                        "training run's workdir")
        curves.append((label, run_dir, label in dashed))
    unknown = dashed - {label for label, _, _ in curves}
    if unknown:
        raise InvalidInputError(f"--dashed names no run: {sorted(unknown)}")
    return curves


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--dashed", action="append", default=[],
                        help="a label drawn dashed (repeat for several)")
    parser.add_argument("--num_classes", type=int, default=10, help="chance is ln C")
    args = parser.parse_args(argv)
    try:
        curves = parse_runs(args.runs, set(args.dashed))
        from gpicl_tf.studies.plateau import loss_figure

        print(loss_figure(curves, args.out, args.num_classes))
    except InvalidInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
