"""A multi-worker worker whose peer never joins ends with exit status 2 and a
one-line error naming the peer (`training.join_watchdog`), even while it is
blocked in C holding the GIL, as TensorFlow's MultiWorkerMirroredStrategy holds
it while joining. Plain Python processes, no TensorFlow: a few seconds."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A stand-in worker: starts the watchdog as distribute._multi_worker does, then
# blocks in libc's sleep through ctypes.PyDLL, which keeps the GIL (no Python
# signal handler can run). argv: WORKERS_JSON IGNORE_SIGINT
WORKER = """
import ctypes, os, signal, subprocess, sys
from gpicl_tf.training import join_watchdog

def join():
    subprocess.Popen([sys.executable, "-m", "gpicl_tf.training.join_watchdog",
                      str(os.getpid()), "1", "0", sys.argv[1], "0.5"])
    ctypes.PyDLL(None).sleep(60)

if sys.argv[2] == "1":                   # a worker that cannot honour SIGINT
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    join()
with join_watchdog.exit_on_sigint():
    join()
"""


def _worker(ignore_sigint: bool) -> tuple[int, str, str]:
    workers = json.dumps([f"127.0.0.1:{p}" for p in free_ports(2)])
    done = subprocess.run([sys.executable, "-c", WORKER, workers, str(int(ignore_sigint))],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": ROOT})
    return done.returncode, done.stderr, json.loads(workers)[1]


def test_a_worker_whose_peer_never_joins_exits_2_naming_it():
    """It was SIGKILLed: status 137 from a shell (issue 32 item 11)."""
    rc, err, peer = _worker(ignore_sigint=False)
    assert rc == 2, err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: worker 0 could not join the cluster")
    assert line.endswith(f"not answering: ['{peer}']")


def test_a_worker_that_ignores_sigint_is_killed_after_the_grace_period():
    rc, err, peer = _worker(ignore_sigint=True)
    assert rc == -9 and f"not answering: ['{peer}']" in err


# SIGINT's handler is set to a known one first: a suite started from a background job
# inherits SIGINT ignored, and Python then installs no handler of its own.
RESTORED = """
import os, signal, sys, time
from gpicl_tf.training import join_watchdog

def handler(signum, frame):
    print("handled", signum, flush=True)
    sys.exit(0)

known = handler if sys.argv[1] == "custom" else signal.default_int_handler
signal.signal(signal.SIGINT, known)
with join_watchdog.exit_on_sigint():
    pass
assert signal.getsignal(signal.SIGINT) is known, signal.getsignal(signal.SIGINT)
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
except KeyboardInterrupt:
    print("KeyboardInterrupt")
"""


@pytest.mark.parametrize("known,out", [("custom", "handled 2\n"),
                                       ("default", "KeyboardInterrupt\n")])
def test_sigints_python_handler_is_restored_after_joining(known, out):
    done = subprocess.run([sys.executable, "-c", RESTORED, known], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0 and done.stdout == out, (done.stdout, done.stderr)
