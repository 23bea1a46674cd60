"""MultiWorkerMirroredStrategy: two real workers on 127.0.0.1.

Keras 3 fit() fails under it (upstream keras-team/keras#20585). This test
reproduces the failure with plain Keras code; when it starts to fail, upstream
has fixed the bug and train.loop=keras can be allowed under strategy='multi_worker'
(which uses the custom loop: tests/training/test_custom_loop.py).
"""

import json
import os
import subprocess
import sys

import pytest

from gpicl_tf.training import distribute
from tests.conftest import free_ports


@pytest.mark.slow
def test_keras_fit_under_two_workers_still_fails_upstream():
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(os.path.dirname(__file__), "mwms_worker.py")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("the two workers did not finish within 240 s")
        outputs.append((p.returncode, out, err[-2000:]))
    for rc, out, err in outputs:
        assert rc == 0, err
        assert "FIT_OK" not in out, ("Keras fit now works under MultiWorkerMirroredStrategy: "
                                     "allow train.loop=keras with strategy='multi_worker'")
        assert "FIT_FAILED" in out and "PerReplica" in out, out + err


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        distribute.make_strategy("multi_worker")


def test_unknown_strategy_is_named():
    with pytest.raises(ValueError, match="'horovod'"):
        distribute.make_strategy("horovod")
