import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402

import pytest  # noqa: E402

from gpicl_tf.config import get_preset  # noqa: E402
from gpicl_tf.runtime import free_ports  # noqa: E402,F401  (the tests import it from here)


@pytest.fixture(scope="session")
def smoke_config():
    return get_preset("smoke")


@pytest.fixture(scope="session")
def smoke_episodes(tmp_path_factory, smoke_config):
    """A smoke episode directory, written once per session (treat as read-only)."""
    from gpicl_tf.data import episodes

    out = str(tmp_path_factory.mktemp("smoke_episodes"))
    episodes.write_episodes(smoke_config.data, out, overwrite=True)
    return out


@pytest.fixture(scope="session")
def trained_run(smoke_config, smoke_episodes, tmp_path_factory):
    """A finished smoke training run (PFN layout, 10 steps), read-only."""
    from gpicl_tf.config import override
    from gpicl_tf.training import train

    workdir = str(tmp_path_factory.mktemp("trained_run"))
    train.run(override(smoke_config, ["model.layout=pfn", "train.steps=10"]), workdir,
              smoke_episodes, verbose=0)
    return workdir


@pytest.fixture
def fresh_episodes(tmp_path, smoke_config):
    """A smoke episode directory a test may damage."""
    from gpicl_tf.data import episodes

    out = str(tmp_path / "eps")
    cfg = dataclasses.replace(smoke_config.data, train_episodes=64, test_episodes=16)
    episodes.write_episodes(cfg, out)
    return out


@pytest.fixture(scope="session")
def functions_config():
    return get_preset("functions_smoke")


@pytest.fixture(scope="session")
def function_episodes(tmp_path_factory, functions_config):
    """Function-regression smoke episodes (random MLP functions), read-only."""
    from gpicl_tf.data import episodes

    out = str(tmp_path_factory.mktemp("function_episodes"))
    episodes.write_episodes(functions_config.data, out, functions_config=functions_config.functions)
    return out


@pytest.fixture
def other_process():
    """Another live process (a workdir lock's holder), killed at teardown if the test
    has not killed it."""
    import subprocess
    import sys

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield other
    other.kill()
    other.wait()
