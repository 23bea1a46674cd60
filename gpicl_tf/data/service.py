"""tf.data service servers (`tf.data.experimental.service`): a dispatcher and
workers that run the episode pipeline's host-heavy part for trainers
(`pipeline.make_dataset(service=ADDRESS)`).

Example:
    >>> dispatcher = start_dispatcher(5050)                       # doctest: +SKIP
    >>> worker = start_worker("localhost:5050")                   # doctest: +SKIP
"""

from __future__ import annotations

import tensorflow as tf

from gpicl_tf.errors import InvalidInputError


def _check_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidInputError(f"dispatcher address {address!r} must be host:port")
    return host, int(port)


def start_dispatcher(port: int, work_dir: str = "") -> tf.data.experimental.service.DispatchServer:
    """A dispatcher on `port`; with `work_dir` it journals its state there and a
    restarted dispatcher picks up where it stopped."""
    if not 0 < port < 65536:
        raise InvalidInputError(f"dispatcher port {port} must be in [1, 65535]")
    config = tf.data.experimental.service.DispatcherConfig(
        port=port, work_dir=work_dir or None, fault_tolerant_mode=bool(work_dir))
    return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher: str, port: int = 0,
                 host: str = "localhost") -> tf.data.experimental.service.WorkerServer:
    """A worker that registers with the dispatcher at `dispatcher` (host:port);
    trainers reach it at `host` (this machine's name as the trainers see it)."""
    _check_address(dispatcher)
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=dispatcher, port=port, worker_address=f"{host}:%port%")
    return tf.data.experimental.service.WorkerServer(config)
