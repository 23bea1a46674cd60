"""A local model server with TF Serving's REST API (for machines without TF Serving).

    python -m pipelines.serve --model_base_path saved_models/gpicl --port 8501 [--grpc_port 8500]

Serves the newest version and picks up a newer one (polled every
--poll_seconds) without dropping requests. Stop it with Ctrl-C.
"""

import os

from absl import app, flags

flags.DEFINE_string("model_base_path", "saved_models/gpicl", "TF Serving model base path")
flags.DEFINE_string("model_name", None, "model name (default: the base path's last part)")
flags.DEFINE_string("host", "127.0.0.1", "address to listen on")
flags.DEFINE_integer("port", 8501, "REST port")
flags.DEFINE_integer("grpc_port", 0, "also serve TF Serving's gRPC API on this port (0: off)")
flags.DEFINE_float("poll_seconds", 2.0, "how often to look for a new version")
flags.DEFINE_integer("max_batch", 64, "most episodes one :predict request may hold")
flags.DEFINE_integer("max_body_bytes", 0, "request size limit (0: derived from the model's "
                     "maximum context, queries, features and --max_batch)")
flags.DEFINE_integer("max_in_flight", 4, "predictions parsed or run at once")
flags.DEFINE_integer("max_queued", 16, "requests waiting beyond those; more get 503")
flags.DEFINE_float("body_timeout_s", 30.0, "seconds to receive a request body (beyond: 408); "
                   "a prediction slot is taken only once the body is read")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from gpicl_tf.serving import server

    name = FLAGS.model_name or os.path.basename(os.path.normpath(FLAGS.model_base_path))
    server.serve(FLAGS.model_base_path, name, FLAGS.host, FLAGS.port, FLAGS.poll_seconds,
                 FLAGS.grpc_port,
                 server.Limits(FLAGS.max_batch, FLAGS.max_body_bytes, FLAGS.max_in_flight,
                               FLAGS.max_queued, body_timeout_s=FLAGS.body_timeout_s))


if __name__ == "__main__":
    from gpicl_tf import runtime

    runtime.use_tcmalloc()
    app.run(main)
