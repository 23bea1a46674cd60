"""Meta-trains the cell learner (the tabular learner) on prior tables; optionally exports it.

    python -m pipelines.train_cell --preset cell_cpu --workdir runs/cell_cpu \
        [--set section.key=value ...] [--warm_start saved_models/tabular/1] \
        [--export_dir saved_models --export_name tabular]

--preset names a cell preset: cell_smoke (seconds), cell_cpu (the default: the
released model's recipe; its docstring in gpicl_tf/config/cell.py gives the time
here). --config reads a CellRunConfig JSON instead (`CellRunConfig.to_json`, or
a cell run's WORKDIR/config.json). Started again with
the same arguments, a killed run resumes from its last checkpoint (every
`train.checkpoint_every` steps); a finished one is only exported again.
--warm_start continues meta-training from a finished run's or a released
version's weights (same architecture).
"""

import json
import os

from absl import flags

from gpicl_tf.config.cell import CELL_PRESETS
from pipelines import common

flags.DEFINE_string("workdir", None, "run directory", required=True)
flags.DEFINE_string("warm_start", None, "start from these weights: a finished cell run's "
                    "workdir or a released version directory")
flags.DEFINE_string("export_dir", "", "export the finished model under this TF Serving base "
                    "directory ('' = no export)")
flags.DEFINE_string("export_name", "tabular", "model name of the export")
flags.DEFINE_integer("max_context", 1024, "longest context a served request may carry")
flags.DEFINE_integer("export_step", 0, "export the weights kept at this step (train.keep_every) "
                     "instead of the finished model")
flags.DEFINE_bool("redraw_column_ids", False, "export with the fixed column-identity table "
                  "drawn afresh from N(0, 1): repairs runs started before 2026-11-27 16:45, "
                  "whose table was N(0, 0.05) (CellTransformer.redraw_column_ids)")
FLAGS = flags.FLAGS
flags.adopt_module_key_flags(common)   # --preset, --config, --set appear in --help
# --preset and --config (defined in pipelines.common for the row learner) name a cell
# preset and a CellRunConfig file here: their default and help say so.
DEFAULT_PRESET = "cell_cpu"
FLAGS.set_default("preset", DEFAULT_PRESET)
FLAGS["preset"].help = f"cell preset: one of {sorted(CELL_PRESETS)}"
FLAGS["config"].help = ("a CellRunConfig JSON file (CellRunConfig.to_json, or a cell run's "
                        "config.json), used instead of --preset")


def main(argv):
    del argv
    common.quiet_tensorflow()
    cfg = common.resolve_cell_config()
    from gpicl_tf.training import cell_train

    summary_path = os.path.join(FLAGS.workdir, cell_train.SUMMARY_FILE)
    if FLAGS.export_step:
        from gpicl_tf.export import saved_model

        print(saved_model.export_run(FLAGS.workdir, FLAGS.export_dir, FLAGS.export_name,
                                     max_context=FLAGS.max_context, step=FLAGS.export_step,
                                     redraw_column_ids=FLAGS.redraw_column_ids))
        return
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
    else:
        summary = cell_train.run(cfg, FLAGS.workdir, warm_start=FLAGS.warm_start)
    print(json.dumps(summary, indent=2))
    if FLAGS.export_dir:
        from gpicl_tf.export import saved_model

        print(saved_model.export_run(FLAGS.workdir, FLAGS.export_dir, FLAGS.export_name,
                                     max_context=FLAGS.max_context,
                                     redraw_column_ids=FLAGS.redraw_column_ids))


if __name__ == "__main__":
    common.run(main)
