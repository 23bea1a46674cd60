"""tf.distribute strategies by name, and where XLA can be used with them.

    default       one device (XLA on)
    mirrored      all local GPUs, else `cpu_devices` logical CPUs (XLA off on CPUs:
                  "Trying to access resource ... replica_1 ... from device CPU:0")
    tpu           TPUStrategy on the TPU named by `tpu` ("" = the local one)
    multi_worker  fails fast: MultiWorkerMirroredStrategy is broken under Keras 3
                  (MULTI_WORKER_BROKEN; tests/training/test_multi_worker.py reproduces it)
"""

from __future__ import annotations

import tensorflow as tf
from absl import logging

STRATEGIES = ("default", "mirrored", "tpu", "multi_worker")
MULTI_WORKER_BROKEN = (
    "strategy='multi_worker' is not available: Keras 3.15 fit() under "
    "tf.distribute.MultiWorkerMirroredStrategy (TF 2.21) fails with \"ValueError: Attempt to "
    "convert a value ({'tokens': PerReplica:{...}}) with an unsupported type (<class 'dict'>) "
    "to a Tensor\" (two workers on 127.0.0.1, reproduced by tests/training/"
    "test_multi_worker.py; upstream keras-team/keras#20585, #20329 and "
    "tensorflow/tensorflow#72388). Use strategy='mirrored' (all GPUs of one host) or 'tpu'; "
    "for input pipelines that outgrow one host, the tf.data service.")


class UnsupportedStrategyError(RuntimeError):
    """A strategy that cannot work with this Keras/TensorFlow pair."""


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
            raise RuntimeError(f"cpu_devices={num_devices} cannot be set: TensorFlow already "
                               f"started with {have} CPU device(s)") from e


def make_strategy(name: str, cpu_devices: int = 0, tpu: str = "") -> tf.distribute.Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"strategy={name!r} is not one of {STRATEGIES}")
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
            raise RuntimeError(f"no TPU found at tpu={tpu!r}: {e}") from None
        return tf.distribute.TPUStrategy(resolver)
    raise UnsupportedStrategyError(MULTI_WORKER_BROKEN)


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
