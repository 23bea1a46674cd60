"""Watches a worker joining its multi-worker cluster, from a separate process.

    python -m gpicl_tf.training.join_watchdog PARENT_PID TIMEOUT_S INDEX WORKERS_JSON

TensorFlow blocks inside MultiWorkerMirroredStrategy's constructor, holding the
GIL, until every worker has joined; no thread of the worker itself can then act.
This process (no TensorFlow import) sleeps TIMEOUT_S seconds; if it has not been
killed by then (the worker kills it once joined), it prints which peers do not
answer and ends the worker.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time


def reachable(address: str, timeout: float = 1.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def main(argv: list[str]) -> None:
    parent, timeout, index, workers = int(argv[1]), float(argv[2]), int(argv[3]), \
        json.loads(argv[4])
    time.sleep(timeout)
    peers = [w for i, w in enumerate(workers) if i != index]
    missing = [p for p in peers if not reachable(p)] or \
        "none (they answer but did not join: does every worker run the same command?)"
    print(f"error: worker {index} could not join the cluster {workers} within {timeout:.0f} s;"
          f" not answering: {missing}", file=sys.stderr, flush=True)
    try:
        os.kill(parent, signal.SIGKILL)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    main(sys.argv)
