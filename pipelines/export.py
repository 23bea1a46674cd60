"""Exports a finished training run as the next SavedModel version for TF Serving.

    python -m pipelines.export --workdir runs/cpu/transformer --out saved_models --name gpicl

Writes saved_models/gpicl/VERSION/ (atomically) and saved_models/models.config.
About 10 s here.
"""

from absl import flags

from pipelines import common

flags.DEFINE_string("workdir", None, "finished training run", required=True)
flags.DEFINE_string("out", "saved_models", "TF Serving model base directory")
flags.DEFINE_string("name", "gpicl", "model name")
flags.DEFINE_integer("max_queries", 256, "most queries per request")
flags.DEFINE_integer("max_context", 0, "longest context per request (0: the meta-training "
                     "context; a Transformer accepts longer ones)")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    common.quiet_tensorflow()
    from gpicl_tf.export import saved_model

    print(saved_model.export_run(FLAGS.workdir, FLAGS.out, FLAGS.name, FLAGS.max_queries,
                                 FLAGS.max_context))


if __name__ == "__main__":
    common.run(main)
