import os
import subprocess
import sys
import time

import pytest
import requests

from gpicl_tf.export import saved_model
from tests.conftest import free_ports


@pytest.fixture(scope="session")
def model_base(trained_run, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("saved_models"))
    saved_model.export_run(trained_run, base, "gpicl")
    return base


def start_server(model_base, *extra):
    """A real server process on 127.0.0.1 serving BASE/gpicl (REST and gRPC)."""
    port, grpc_port = free_ports(2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.serve", "--model_base_path",
         os.path.join(model_base, "gpicl"), "--port", str(port), "--grpc_port", str(grpc_port),
         "--poll_seconds", "0.5", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stdout.read()[-3000:]}")
        try:
            if requests.get(f"{url}/v1/models/gpicl", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("server did not start within 90 s")
    return proc, {"url": url, "grpc": f"127.0.0.1:{grpc_port}", "base": model_base,
                  "pid": proc.pid}


@pytest.fixture(scope="session")
def server(model_base):
    """The server with its default bounds."""
    proc, info = start_server(model_base)
    yield info
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def bounded_server(model_base):
    """A server with one prediction slot, no queue and a 200 MB body limit."""
    proc, info = start_server(model_base, "--max_in_flight", "1", "--max_queued", "0",
                              "--max_body_bytes", "200000000")
    yield info
    proc.terminate()
    proc.wait(timeout=30)
