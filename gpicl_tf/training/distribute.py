"""tf.distribute strategies by name, and where XLA can be used with them.

    default       one device (XLA on)
    mirrored      all local GPUs, else `cpu_devices` logical CPUs (XLA off on CPUs:
                  "Trying to access resource ... replica_1 ... from device CPU:0")
    tpu           TPUStrategy on the TPU named by `tpu` ("" = the local one)
    multi_worker  MultiWorkerMirroredStrategy over the workers of TF_CONFIG, trained by
                  the custom loop (`training.loop`): Keras 3.15's fit() is broken under
                  it (keras-team/keras#20585; tests/training/test_multi_worker.py
                  reproduces that upstream failure)
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import tensorflow as tf
from absl import logging

from gpicl_tf.errors import InvalidInputError, UnavailableError
from gpicl_tf.training import join_watchdog

STRATEGIES = ("default", "mirrored", "tpu", "multi_worker")

@dataclasses.dataclass(frozen=True)
class Cluster:
    """This process's place in a TF_CONFIG cluster."""

    workers: tuple[str, ...]
    task_type: str
    index: int

    @property
    def is_chief(self) -> bool:
        """Worker 0 is the chief: it owns the workdir."""
        return self.index == 0

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(w for i, w in enumerate(self.workers) if i != self.index)


def parse_tf_config(text: str | None) -> Cluster:
    """Checks TF_CONFIG ({"cluster": {"worker": [host:port, ...]}, "task": {"type":
    "worker", "index": i}}) and raises ValueError naming what is wrong."""
    if not text:
        raise InvalidInputError(
            "strategy='multi_worker' needs TF_CONFIG, e.g. "
            '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
            '"task": {"type": "worker", "index": 0}}')
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"TF_CONFIG={text!r} is not JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise InvalidInputError(f"TF_CONFIG={text!r} is not a JSON object")
    cluster, task = cfg.get("cluster"), cfg.get("task")
    if not isinstance(cluster, dict) or set(cluster) - {"worker"}:
        raise InvalidInputError(
            f"TF_CONFIG cluster={cluster!r} must be {{\"worker\": [...]}} "
            "(the chief is worker 0; no parameter servers)")
    workers = cluster.get("worker")
    if not isinstance(workers, list) or not workers or not all(
            isinstance(w, str) and w.rpartition(":")[0] and w.rpartition(":")[2].isascii()
            and w.rpartition(":")[2].isdigit() and 0 < int(w.rpartition(":")[2]) < 65536
            for w in workers):
        raise InvalidInputError(
            f"TF_CONFIG cluster.worker={workers!r} must be a non-empty list of "
            "'host:port' strings, each port in [1, 65535]")
    if len(set(workers)) != len(workers):
        raise InvalidInputError(f"TF_CONFIG cluster.worker={workers!r} repeats an address")
    if not isinstance(task, dict) or task.get("type") != "worker":
        raise InvalidInputError(
            f"TF_CONFIG task={task!r} must be {{\"type\": \"worker\", "
            "\"index\": i}")
    index = task.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(workers):
        raise InvalidInputError(
            f"TF_CONFIG task.index={index!r} must be an integer in "
            f"[0, {len(workers)})")
    return Cluster(tuple(workers), "worker", index)


_MULTI_WORKER: list = []  # the process's one MultiWorkerMirroredStrategy


def _multi_worker(connect_timeout_s: float, collective_timeout_s: float):
    """MultiWorkerMirroredStrategy; a worker that has not joined within
    `connect_timeout_s` is ended, exit status 2, with a one-line error naming the
    peers that do not answer (`join_watchdog`; TensorFlow itself would wait).
    Created once per process, before any other TensorFlow op ("collective ops
    must be configured at program startup"): `pipelines.train` creates it first."""
    if _MULTI_WORKER:
        return _MULTI_WORKER[0]
    cluster = parse_tf_config(os.environ.get("TF_CONFIG"))

    # TensorFlow blocks in the constructor holding the GIL: the watchdog is a process.
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "gpicl_tf.training.join_watchdog", str(os.getpid()),
         str(connect_timeout_s), str(cluster.index), json.dumps(list(cluster.workers))],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(
            [os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
             os.environ.get("PYTHONPATH", "")])})
    with join_watchdog.exit_on_sigint():   # until the watchdog is gone
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy(
                communication_options=tf.distribute.experimental.CommunicationOptions(
                    timeout_seconds=collective_timeout_s))
        finally:
            watchdog.kill()
            watchdog.wait()
    _MULTI_WORKER.append(strategy)
    logging.info("worker %d of %d joined %s (chief: %s)", cluster.index, len(cluster.workers),
                 list(cluster.workers), cluster.is_chief)
    return strategy


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """The public name of a strategy (MultiWorkerMirroredStrategy's class is
    CollectiveAllReduceStrategy)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    return type(strategy).__name__


def cluster_of(strategy: tf.distribute.Strategy) -> Cluster | None:
    """The TF_CONFIG cluster of a multi-worker strategy; None for one host."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return parse_tf_config(os.environ.get("TF_CONFIG"))
    return None


def split_cpu(num_devices: int) -> None:
    """Splits the host CPU into `num_devices` logical devices (before TF starts)."""
    if num_devices <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices)
    except RuntimeError as e:  # the runtime already started: accept a matching split
        have = len(tf.config.list_logical_devices("CPU"))
        if have != num_devices:
            raise UnavailableError(
                f"cpu_devices={num_devices} cannot be set: TensorFlow already "
                f"started with {have} CPU device(s)") from e


def make_strategy(name: str, cpu_devices: int = 0, tpu: str = "", *,
                  connect_timeout_s: float = 120.0,
                  collective_timeout_s: float = 120.0) -> tf.distribute.Strategy:
    """The strategy named `name`. multi_worker: a worker that cannot join its
    cluster within `connect_timeout_s` exits (status 2) with an error naming the
    silent peers; a collective that waits `collective_timeout_s` for a dead peer fails."""
    if name not in STRATEGIES:
        raise InvalidInputError(f"strategy={name!r} is not one of {STRATEGIES}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy()
        split_cpu(cpu_devices)
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        if len(cpus) < 2:
            logging.warning("mirrored strategy over a single CPU device; pass cpu_devices=N")
        return tf.distribute.MirroredStrategy(cpus)
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.NotFoundError, tf.errors.UnavailableError) as e:
            raise UnavailableError(f"no TPU found at tpu={tpu!r}: {e}") from None
        return tf.distribute.TPUStrategy(resolver)
    return _multi_worker(connect_timeout_s, collective_timeout_s)


def use_xla(strategy: tf.distribute.Strategy, requested: bool) -> bool:
    """XLA where it works: not with several replicas on CPU devices."""
    if not requested:
        return False
    several = strategy.num_replicas_in_sync > 1 or isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy)
    accelerated = bool(tf.config.list_logical_devices("GPU")) or isinstance(
        strategy, tf.distribute.TPUStrategy)
    if several and not accelerated:
        logging.info("XLA off: %s with %d replicas on CPU devices fails under XLA (resource "
                     "of replica_1 accessed from CPU:0); running without jit_compile",
                     type(strategy).__name__, strategy.num_replicas_in_sync)
        return False
    return True
