"""Watches a worker joining its multi-worker cluster, from a separate process.

    python -m gpicl_tf.training.join_watchdog PARENT_PID TIMEOUT_S INDEX WORKERS_JSON \
        [GRACE_S]

TensorFlow blocks inside MultiWorkerMirroredStrategy's constructor, holding the
GIL, until every worker has joined; no thread of the worker itself can then act.
This process (no TensorFlow import) sleeps TIMEOUT_S seconds; if it has not been
killed by then (the worker kills it once joined), it prints which peers do not
answer, one line, and ends the worker with exit status 2, as a pipeline ends on
bad input: it sends SIGINT, which the worker, inside `exit_on_sigint`, answers
by exiting at once with status 2 (a Python signal handler would wait for the
GIL, forever). A worker still there GRACE_S seconds later (default 5) is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
import threading
import time

EXIT_STATUS = 2  # a pipeline's exit status for an error the user has to fix
GRACE_S = 5.0


def reachable(address: str, timeout: float = 1.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def exit_on_sigint():
    """While inside, SIGINT ends this process at once with exit status 2: libc's
    `_exit` is SIGINT's C-level handler, called with the signal's number, 2, and
    it runs while TensorFlow holds the GIL. Python's handler is restored after.
    Where that cannot be set up (not POSIX, not the main thread), nothing changes
    and the watchdog's SIGKILL after its grace period ends the worker instead."""
    if os.name != "posix" or signal.SIGINT != EXIT_STATUS or \
            threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    libc = ctypes.CDLL(None)
    libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.signal.restype = ctypes.c_void_p
    libc.signal(signal.SIGINT, ctypes.cast(libc._exit, ctypes.c_void_p))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


def end(parent: int, grace_s: float) -> None:
    """Ends the worker `parent` (this process's parent): SIGINT, then SIGKILL if it
    is still this process's parent `grace_s` seconds later. Once it has exited,
    this process has another parent, so no other process that reuses its pid is
    ever signalled."""
    deadline = time.monotonic() + grace_s
    with contextlib.suppress(ProcessLookupError):
        os.kill(parent, signal.SIGINT)
        while os.getppid() == parent:
            if time.monotonic() > deadline:
                os.kill(parent, signal.SIGKILL)
                return
            time.sleep(0.05)


def main(argv: list[str]) -> None:
    parent, timeout, index, workers = int(argv[1]), float(argv[2]), int(argv[3]), \
        json.loads(argv[4])
    grace_s = float(argv[5]) if len(argv) > 5 else GRACE_S
    time.sleep(timeout)
    peers = [w for i, w in enumerate(workers) if i != index]
    missing = [p for p in peers if not reachable(p)] or \
        "none (they answer but did not join: does every worker run the same command?)"
    print(f"error: worker {index} could not join the cluster {workers} within {timeout:.0f} s;"
          f" not answering: {missing}", file=sys.stderr, flush=True)
    end(parent, grace_s)


if __name__ == "__main__":
    main(sys.argv)
