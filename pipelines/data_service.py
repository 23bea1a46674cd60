"""A tf.data service dispatcher or worker, for `pipelines.train --data_service`.

    python -m pipelines.data_service --dispatcher_port 5050 [--work_dir DIR]
    python -m pipelines.data_service --worker --dispatcher HOST:5050 [--worker_port 5051] \
        [--worker_host THIS_HOST]

The dispatcher hands out work; each worker runs the episode pipeline's host-heavy
part (reading records, gathering base examples, projecting them per task) for
every trainer that connects (`pipelines.train --data_service HOST:5050`). The
episode directory must be readable at the same path on the workers. Runs until
killed.
"""

from absl import flags

from gpicl_tf.errors import InvalidInputError
from pipelines import common

flags.DEFINE_integer("dispatcher_port", 0, "start a dispatcher on this port")
flags.DEFINE_string("work_dir", "", "dispatcher: journal directory (fault-tolerant restart)")
flags.DEFINE_bool("worker", False, "start a worker")
flags.DEFINE_string("dispatcher", "", "worker: the dispatcher's host:port")
flags.DEFINE_integer("worker_port", 0, "worker: port (0 = any free one)")
flags.DEFINE_string("worker_host", "localhost", "worker: this machine's name as trainers "
                    "reach it")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    common.quiet_tensorflow()
    if FLAGS.worker == bool(FLAGS.dispatcher_port):
        raise InvalidInputError(
            "give either --dispatcher_port P (a dispatcher) or --worker "
            "--dispatcher HOST:P (a worker)")
    from gpicl_tf.data import service

    if FLAGS.worker:
        server = service.start_worker(FLAGS.dispatcher, FLAGS.worker_port, FLAGS.worker_host)
    else:
        server = service.start_dispatcher(FLAGS.dispatcher_port, FLAGS.work_dir)
    print("dispatcher at " + server.target if not FLAGS.worker else
          f"worker of {FLAGS.dispatcher}", flush=True)
    server.join()


if __name__ == "__main__":
    common.run(main)
