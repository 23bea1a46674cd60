"""Meta-trains a sequence learner on an episode directory.

    python -m pipelines.train --preset cpu --episodes tfrecords/cpu --workdir runs/cpu \
        [--strategy default|mirrored|tpu|multi_worker] [--cpu_devices N]

Started again with the same arguments, a killed run resumes from its last
finished epoch. `smoke` takes about 15 s here.
"""

from absl import app, flags

from pipelines import common

flags.DEFINE_string("episodes", None, "episode directory (pipelines.make_episodes)",
                    required=True)
flags.DEFINE_string("workdir", None, "run directory", required=True)
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "tpu", "multi_worker"],
                  "tf.distribute strategy")
flags.DEFINE_integer("cpu_devices", 0, "split the CPU into N logical devices (mirrored)")
flags.DEFINE_string("tpu", "", "TPU name or address for --strategy tpu")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    common.quiet_tensorflow()
    import json

    from gpicl_tf.training import distribute, train

    distribute.split_cpu(FLAGS.cpu_devices)  # before TensorFlow starts its runtime
    config = common.resolve_config()
    train.check_episode_overrides(config, FLAGS.episodes, common.overridden_keys())
    summary = train.run(config, FLAGS.workdir, FLAGS.episodes,
                        strategy=FLAGS.strategy, cpu_devices=FLAGS.cpu_devices, tpu=FLAGS.tpu,
                        verbose=1)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    common.run(main)
