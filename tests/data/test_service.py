"""The tf.data service path: the same batches as the in-process pipeline (the
curriculum's bias applied by the trainer), and a training run fed by a
dispatcher with two worker processes."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from gpicl_tf.data import pipeline, service
from tests.conftest import free_ports


@pytest.fixture(scope="module")
def local_service():
    dispatcher = service.start_dispatcher(free_ports(1)[0])
    worker = service.start_worker(dispatcher.target.split("://")[-1])
    yield dispatcher.target
    worker.stop()
    dispatcher.stop()


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_served_batches_equal_in_process_batches(smoke_episodes, local_service, fraction):
    eps = pipeline.open_episodes(smoke_episodes)
    bias = pipeline.make_bias_variable(fraction)
    kwargs = dict(shuffle=False, bias=bias)
    here = next(iter(pipeline.make_dataset(eps, "train", 8, **kwargs)))
    served = next(iter(pipeline.make_dataset(eps, "train", 8, service=local_service, **kwargs)))
    np.testing.assert_allclose(here[0]["inputs"], served[0]["inputs"], atol=1e-5)
    np.testing.assert_array_equal(here[1], served[1])
    np.testing.assert_array_equal(here[0]["labels"], served[0]["labels"])


def test_bias_changes_reach_served_batches(smoke_episodes, local_service):
    """The bias variable lives in the trainer: changing it changes the labels of
    the batches the trainer builds from served episodes."""
    eps = pipeline.open_episodes(smoke_episodes)
    bias = pipeline.make_bias_variable(0.0)
    ds = pipeline.make_dataset(eps, "train", 8, shuffle=False, bias=bias,
                               service=local_service, prefetch=0)
    unbiased = next(iter(ds))[1].numpy()
    bias.assign(1.0)
    fixed = next(iter(ds))[1].numpy()      # the same first batch, all on the fixed permutation
    assert (unbiased != fixed).any()
    one_task = next(iter(pipeline.make_dataset(eps, "train", 8, shuffle=False,
                                               bias=pipeline.make_bias_variable(1.0))))
    np.testing.assert_array_equal(fixed, one_task[1])


def test_task_bias_needs_the_projection_here(smoke_episodes, local_service):
    eps = pipeline.open_episodes(smoke_episodes)
    with pytest.raises(ValueError, match="bias_mode='task' with a tf.data service"):
        pipeline.make_dataset(eps, "train", 8, bias=pipeline.make_bias_variable(0.5),
                              bias_mode="task", service=local_service)


def test_bad_addresses_are_named():
    with pytest.raises(ValueError, match="'nohost' must be host:port"):
        service.start_worker("nohost")
    with pytest.raises(ValueError, match="port 70000"):
        service.start_dispatcher(70000)


@pytest.mark.parametrize("address, error, message", [
    ("bogus:notaport", ValueError, "'bogus:notaport' must be host:port"),
    ("127.0.0.1:0", ValueError, "port in \\[1, 65535\\]"),
    ("127.0.0.1:99999", ValueError, "port in \\[1, 65535\\]"),
    ("127.0.0.1:{free}", RuntimeError, "no tf.data service dispatcher answers at "
                                       "'127.0.0.1:\\d+' within 2 s"),
    ("no-such-host.invalid:5050", RuntimeError, "'no-such-host.invalid:5050' within 2 s"),
])
def test_a_dead_or_malformed_dispatcher_is_an_error_naming_it(address, error, message):
    address = address.format(free=free_ports(1)[0])
    start = time.time()
    with pytest.raises(error, match=message):
        service.check_dispatcher(address, timeout_s=2)
    assert time.time() - start < 10


def test_a_live_dispatcher_passes_the_check(local_service):
    service.check_dispatcher(local_service, timeout_s=10)


@pytest.mark.slow
def test_training_with_a_dead_data_service_exits_2_naming_it(smoke_episodes, tmp_path):
    port = free_ports(1)[0]
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.train", "--preset", "smoke", "--episodes",
         smoke_episodes, "--workdir", str(tmp_path / "run"), "--data_service",
         f"127.0.0.1:{port}", "--connect_timeout_s", "3"],
        capture_output=True, text=True, env={**os.environ, "GPICL_TCMALLOC": "0"}, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"no tf.data service dispatcher answers at '127.0.0.1:{port}'" in done.stderr
    assert not os.path.exists(tmp_path / "run" / "config.json")


@pytest.mark.slow
def test_a_dispatcher_with_two_workers_feeds_training(smoke_episodes, tmp_path):
    port = free_ports(1)[0]
    env = {**os.environ, "GPICL_TCMALLOC": "0"}
    servers = [subprocess.Popen([sys.executable, "-m", "pipelines.data_service",
                                 "--dispatcher_port", str(port)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    try:
        time.sleep(3)
        servers += [subprocess.Popen([sys.executable, "-m", "pipelines.data_service", "--worker",
                                      "--dispatcher", f"localhost:{port}"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for _ in range(2)]
        done = subprocess.run(
            [sys.executable, "-m", "pipelines.train", "--preset", "smoke", "--episodes",
             smoke_episodes, "--workdir", str(tmp_path / "run"), "--data_service",
             f"localhost:{port}", "--set", "model.layout=pfn"],
            capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads(done.stdout[done.stdout.index("{"):])
        assert summary["data_service"] == f"localhost:{port}" and summary["steps"] == 20
        assert f"input tf.data service localhost:{port}" in done.stderr
        assert all(s.poll() is None for s in servers)     # the servers kept serving
    finally:
        for s in servers:
            s.kill()
            s.wait()
