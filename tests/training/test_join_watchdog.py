"""A multi-worker worker whose peer never joins ends with exit status 2 and a
one-line error naming the peer (`training.join_watchdog`), even while it is
blocked in C holding the GIL, as TensorFlow's MultiWorkerMirroredStrategy holds
it while joining. Plain Python processes, no TensorFlow: a few seconds."""

import json
import os
import subprocess
import sys

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


def test_sigints_python_handler_is_restored_after_joining():
    code = ("import os, signal, time\n"
            "from gpicl_tf.training import join_watchdog\n"
            "with join_watchdog.exit_on_sigint():\n"
            "    pass\n"
            "try:\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(5)\n"
            "except KeyboardInterrupt:\n"
            "    print('KeyboardInterrupt')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0 and done.stdout == "KeyboardInterrupt\n", done.stderr
