"""tf.data service servers (`tf.data.experimental.service`): a dispatcher and
workers that run the episode pipeline's host-heavy part for trainers
(`pipeline.make_dataset(service=ADDRESS)`).

Example:
    >>> dispatcher = start_dispatcher(5050)                       # doctest: +SKIP
    >>> worker = start_worker("localhost:5050")                   # doctest: +SKIP
"""

from __future__ import annotations

import tensorflow as tf

from gpicl_tf.errors import InvalidInputError, UnavailableError


def _check_address(address: str) -> tuple[str, int]:
    plain = address.removeprefix("grpc://")
    host, _, port = plain.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise InvalidInputError(f"dispatcher address {address!r} must be host:port with a "
                                "port in [1, 65535]")
    return host, int(port)


def check_dispatcher(address: str, timeout_s: float = 30.0) -> None:
    """Checks that a tf.data service dispatcher answers at `address` (host:port,
    optionally grpc://) within `timeout_s`: tf.data itself would retry a dead or
    wrong address forever. Raises InvalidInputError for a malformed address,
    UnavailableError naming it when nothing answers."""
    import grpc

    host, port = _check_address(address)
    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise UnavailableError(f"no tf.data service dispatcher answers at {address!r} "
                               f"within {timeout_s:g} s (is pipelines.data_service running "
                               "there?)") from None
    finally:
        channel.close()


def start_dispatcher(port: int, work_dir: str = "") -> tf.data.experimental.service.DispatchServer:
    """A dispatcher on `port`; with `work_dir` it journals its state there and a
    restarted dispatcher picks up where it stopped."""
    if not 0 < port < 65536:
        raise InvalidInputError(f"dispatcher port {port} must be in [1, 65535]")
    config = tf.data.experimental.service.DispatcherConfig(
        port=port, work_dir=work_dir or None, fault_tolerant_mode=bool(work_dir))
    return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher: str, port: int = 0, host: str = "localhost",
                 timeout_s: float = 30.0) -> tf.data.experimental.service.WorkerServer:
    """A worker that registers with the dispatcher at `dispatcher` (host:port),
    which must answer within `timeout_s`; trainers reach it at `host` (this
    machine's name as the trainers see it)."""
    check_dispatcher(dispatcher, timeout_s)
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=dispatcher, port=port, worker_address=f"{host}:%port%")
    return tf.data.experimental.service.WorkerServer(config)
