"""Keras Tuner search over model size, layers, heads, learning rate, Adam epsilon,
batch size and curriculum bias fraction (ranges in the config's `tune` section).

    python -m pipelines.tune --preset cpu --tuner random|hyperband|bayesian \
        --episodes tfrecords/cpu --workdir runs/tune [--max_trials N]

Writes WORKDIR/results.csv and results.md (best first) and best_config.json,
which `python -m pipelines.train --config WORKDIR/best_config.json ...` accepts.
Started again in the same --workdir, a search skips finished trials.
Distributed: run this same command in a chief and in workers with
KERASTUNER_TUNER_ID=chief|tuner0|tuner1..., KERASTUNER_ORACLE_IP and
KERASTUNER_ORACLE_PORT set. `--preset smoke` takes about a minute here; `cpu`
about 4 minutes a trial.
"""

from absl import flags

from pipelines import common

flags.DEFINE_string("workdir", None, "search directory", required=True)
flags.DEFINE_string("episodes", None, "episode directory", required=True)
flags.DEFINE_enum("tuner", "random", ["random", "hyperband", "bayesian"], "search algorithm")
flags.DEFINE_integer("max_trials", None, "override tune.max_trials")
FLAGS = flags.FLAGS
flags.adopt_module_key_flags(common)   # --preset, --config, --set appear in --help


def main(argv):
    del argv
    common.quiet_tensorflow()
    from gpicl_tf.tuning import search

    rows = search.run_search(common.resolve_config(), FLAGS.workdir, FLAGS.episodes,
                             tuner=FLAGS.tuner, max_trials=FLAGS.max_trials, verbose=2)
    for row in rows:
        print(row)


if __name__ == "__main__":
    common.run(main)
