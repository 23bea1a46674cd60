"""Meta-trains a sequence learner on an episode directory.

    python -m pipelines.train --preset cpu --episodes tfrecords/cpu --workdir runs/cpu \
        [--strategy default|mirrored|tpu|multi_worker] [--cpu_devices N]

multi_worker: run the same command on every worker with TF_CONFIG set
({"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker",
"index": i}}); worker 0 is the chief and writes --workdir (a path every worker
can read: they resume from the chief's checkpoints).

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
flags.DEFINE_string("data_service", "", "read training batches through the tf.data service "
                    "dispatcher at this address (pipelines.data_service)")
flags.DEFINE_float("connect_timeout_s", 120.0, "multi_worker: seconds to wait for every "
                   "worker to join before exiting with an error naming the silent ones; "
                   "--data_service: seconds to wait for the dispatcher to answer")
flags.DEFINE_float("collective_timeout_s", 120.0, "multi_worker: seconds a cross-worker "
                   "reduction waits for a peer before failing")
FLAGS = flags.FLAGS
flags.adopt_module_key_flags(common)   # --preset, --config, --set appear in --help


def main(argv):
    del argv
    common.quiet_tensorflow()
    import json

    from gpicl_tf.training import distribute, train

    config = common.resolve_config()  # bad input fails before a worker joins its cluster
    distribute.split_cpu(FLAGS.cpu_devices)  # before TensorFlow starts its runtime
    if FLAGS.strategy == "multi_worker":  # collectives must be set up before any op runs
        distribute.make_strategy("multi_worker", connect_timeout_s=FLAGS.connect_timeout_s,
                                 collective_timeout_s=FLAGS.collective_timeout_s)
    train.check_episode_overrides(config, FLAGS.episodes, common.overridden_keys())
    summary = train.run(config, FLAGS.workdir, FLAGS.episodes,
                        strategy=FLAGS.strategy, cpu_devices=FLAGS.cpu_devices, tpu=FLAGS.tpu,
                        data_service=FLAGS.data_service, verbose=1,
                        data_service_timeout_s=FLAGS.connect_timeout_s)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    common.run(main)
