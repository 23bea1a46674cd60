"""Runs a named study: a grid of meta-training runs, cached per cell.

    python -m pipelines.study NAME --preset GRID --workdir DIR [--episodes DIR] [--set ...]

NAME: transition, state_size, plateau_batch or plateau (gpicl_tf.studies).
GRID (--preset): smoke (seconds, the tests run it), cpu (the default grid: at
most 3 hours here, run it in the background) or paper (the paper's sizes, for
accelerators). Writes DIR/results.csv, results.md (each row with its own
pipelines.train command), results.json and the study's PNG figures (with --docs
DIR also DIR/NAME_PRESET.md and the figures; --report_only rewrites them from the
finished cells without training). A finished
cell is never trained again; the same command after a kill resumes at the
first unfinished cell (a cell killed mid-training resumes from its last epoch).
"""

from absl import flags

from gpicl_tf.errors import InvalidInputError
from pipelines import common

flags.DEFINE_string("workdir", None, "study directory", required=True)
flags.DEFINE_string("episodes", None, "where the cells' episode sets are written and "
                    "reused (default: WORKDIR/episodes)")
flags.DEFINE_string("docs", "", "also copy the table (NAME_PRESET.md) and the figures here")
flags.DEFINE_bool("report_only", False, "train nothing: rewrite the results of the finished "
                  "cells (and copy them to --docs)")
FLAGS = flags.FLAGS
flags.adopt_module_key_flags(common)   # --preset, --config, --set appear in --help


def main(argv):
    if len(argv) != 2:
        raise InvalidInputError(f"give one study name, got {argv[1:]}")
    common.quiet_tensorflow()
    from gpicl_tf.studies import get_study, runner

    study = get_study(argv[1])
    if FLAGS.config:
        raise InvalidInputError("--config: a study's grid starts from --preset (smoke, cpu, paper)")
    if FLAGS.preset not in runner.GRIDS:
        raise InvalidInputError(f"--preset={FLAGS.preset!r}: a study grid is one of {runner.GRIDS}")
    if not FLAGS.report_only:
        rows = runner.run_study(study, FLAGS.preset, FLAGS.workdir, episode_root=FLAGS.episodes,
                                user_sets=FLAGS.set)
        print(f"{len(rows)} cells in {FLAGS.workdir}/results.csv")
    if FLAGS.docs or FLAGS.report_only:
        for path in runner.publish(study, FLAGS.preset, FLAGS.workdir, FLAGS.docs or
                                   FLAGS.workdir, user_sets=FLAGS.set):
            print(f"wrote {path}")
    with open(f"{FLAGS.workdir}/results.md") as f:
        print(f.read())


if __name__ == "__main__":
    common.run(main)
