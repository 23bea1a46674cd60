"""Meta-test evaluation of trained learners against baselines on the same episodes.

    python -m pipelines.evaluate --model runs/cpu/transformer --episodes tfrecords/cpu \
        --out runs/cpu/report [--baseline lstm=runs/cpu/lstm] \
        [--eval_set "fashion (unseen dataset)=DIR"]

Evaluates the unseen-task ("test") and seen-task ("seen") splits of --episodes
and every --eval_set directory's "test" split; writes report.json, report.md
and PNG plots to --out. About a minute here for the cpu preset's 256 episodes.
The episodes' task chooses the evaluation: for random-function episodes (e.g.
--preset functions_cpu), MSE by number of context points against k-NN, least
squares, ridge, polynomial and GP baselines.
"""

import os

from absl import app, flags

from gpicl_tf.errors import InvalidInputError
from pipelines import common

flags.DEFINE_string("model", None, "training workdir of the learner (holds model.keras)",
                    required=True)
flags.DEFINE_string("episodes", None, "episode directory the learner was trained on",
                    required=True)
flags.DEFINE_string("out", None, "report directory", required=True)
flags.DEFINE_multi_string("baseline", [], "NAME=WORKDIR of a sequence baseline (lstm, mlp)")
flags.DEFINE_multi_string("eval_set", [], "NAME=DIR of more meta-test episodes ('test' split)")
FLAGS = flags.FLAGS
flags.adopt_module_key_flags(common)   # --preset, --config, --set appear in --help


def _pairs(items, flag):
    out = {}
    for item in items:
        if "=" not in item:
            raise app.UsageError(f"--{flag} {item!r} is not NAME=PATH")
        name, path = item.split("=", 1)
        out[name] = path
    return out


def main(argv):
    del argv
    common.quiet_tensorflow()
    from gpicl_tf import tasks
    from gpicl_tf.data import pipeline
    from gpicl_tf.training.train import MODEL_FILE

    config = common.resolve_config()
    task = tasks.get(pipeline.open_episodes(FLAGS.episodes, verify="size").schema.task)
    if FLAGS.baseline and not task.sequence_baselines:
        raise InvalidInputError(
            f"--baseline {FLAGS.baseline}: {task.name} learners are compared with the "
            "task's own baselines")
    models = {"GPICL Transformer": os.path.join(FLAGS.model, MODEL_FILE)}
    models.update({k: os.path.join(v, MODEL_FILE) for k, v in
                   _pairs(FLAGS.baseline, "baseline").items()})
    sets = {task.held_out: (FLAGS.episodes, "test"), "seen tasks": (FLAGS.episodes, "seen")}
    sets.update({k: (v, "test") for k, v in _pairs(FLAGS.eval_set, "eval_set").items()})
    report = task.evaluate(models, sets, (FLAGS.episodes, "train"), config.eval)
    task.write_report(report, FLAGS.out)
    print(task.markdown(report))


if __name__ == "__main__":
    common.run(main)
