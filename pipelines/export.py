"""Exports a finished training run (row or cell learner) as the next SavedModel
version for TF Serving.

    python -m pipelines.export --workdir runs/cpu/transformer --export_dir saved_models \
        --export_name gpicl

Writes saved_models/gpicl/VERSION/ (atomically) and saved_models/models.config.
About 10 s here. The export flags are named as in `run` and `train-cell`; the
former --out and --name still work, with a warning.
"""

from absl import flags, logging

from pipelines import common

flags.DEFINE_string("workdir", None, "finished training run", required=True)
flags.DEFINE_string("export_dir", "saved_models", "TF Serving model base directory")
flags.DEFINE_string("export_name", "gpicl", "model name of the export")
flags.DEFINE_string("out", None, "deprecated: --export_dir")
flags.DEFINE_string("name", None, "deprecated: --export_name")
flags.DEFINE_integer("max_queries", 0, "most queries per request (0: the backbone's "
                     "default, a row model 256, a cell model 1,024)")
flags.DEFINE_integer("max_context", 0, "longest context per request (0: the backbone's "
                     "default: a row model's meta-training context, where a Transformer "
                     "accepts longer ones; 1,024 rows for a cell model)")
flags.DEFINE_integer("step", 0, "a cell run: export the weights it kept at this step "
                     "(train.keep_every) instead of the finished model")
FLAGS = flags.FLAGS

DEPRECATED = {"out": "export_dir", "name": "export_name"}   # old flag -> its new name


def export_flags() -> tuple[str, str]:
    """(export_dir, export_name), each from its flag or its deprecated alias (logged
    with a warning); an alias and its new flag both given is an error naming both."""
    from gpicl_tf.errors import InvalidInputError

    values = {}
    for old, new in DEPRECATED.items():
        values[new] = FLAGS[new].value
        if FLAGS[old].present:
            if FLAGS[new].present:
                raise InvalidInputError(f"--{old}={FLAGS[old].value!r} and --{new}="
                                        f"{FLAGS[new].value!r} both given: --{old} is the "
                                        f"deprecated name of --{new}; give --{new}")
            logging.warning("--%s is deprecated: use --%s (the name `run` and `train-cell` "
                            "use)", old, new)
            values[new] = FLAGS[old].value
    return values["export_dir"], values["export_name"]


def main(argv):
    del argv
    common.quiet_tensorflow()
    export_dir, export_name = export_flags()
    from gpicl_tf.export import saved_model

    print(saved_model.export_run(FLAGS.workdir, export_dir, export_name,
                                 max_context=FLAGS.max_context, max_queries=FLAGS.max_queries,
                                 step=FLAGS.step))


if __name__ == "__main__":
    common.run(main)
