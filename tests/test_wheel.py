"""The wheel installs outside the checkout and works from any directory: the version, the
released models as package data, the `gpicl` command and the README's estimator quickstart."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.test_examples import snippets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pip(*args, timeout=600):
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _build_wheel(out: str) -> str:
    """Builds from a copy of the checkout (setuptools leaves build/ and *.egg-info behind, and
    a stale build/ could slip removed files into a wheel), without build isolation where this
    environment's setuptools can (no package index needed)."""
    src = os.path.join(os.path.dirname(out), "src")
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "tfrecords", "saved_models", "logs", "site", "build",
        "*.egg-info", "__pycache__", ".pytest_cache"))
    try:
        import setuptools
        isolated = int(setuptools.__version__.split(".")[0]) < 64
    except ImportError:
        isolated = True
    _pip("wheel", src, "--no-deps", "-w", out, *([] if isolated else ["--no-build-isolation"]))
    wheels = [f for f in os.listdir(out) if f.endswith(".whl")]
    assert len(wheels) == 1, wheels
    return os.path.join(out, wheels[0])


@pytest.mark.slow
def test_the_wheel_works_from_another_directory(tmp_path):
    from gpicl_tf._version import __version__

    wheel = _build_wheel(str(tmp_path / "wheel"))
    site = str(tmp_path / "site")
    _pip("install", "--no-deps", "--target", site, wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GPICL_MODEL")}
    env.update(PYTHONPATH=site, GPICL_TCMALLOC="0", TF_CPP_MIN_LOG_LEVEL="2")

    def run(*argv, timeout=300):
        return subprocess.run(list(argv), cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=timeout)

    done = run(sys.executable, "-c", "import gpicl_tf, gpicl_tf.released as r; "
               "print(gpicl_tf.__version__); print(gpicl_tf.__file__); "
               "print(r.model_dir('general'))")
    assert done.returncode == 0, done.stderr
    version, module, general = done.stdout.split()
    assert version == __version__
    assert module.startswith(site) and general.startswith(site)   # not the checkout
    for part in ("saved_model.pb", "gpicl_config.json", "fingerprint.pb",
                 "variables/variables.index", "variables/variables.data-00000-of-00001",
                 "assets.extra/tf_serving_warmup_requests"):
        assert os.path.exists(os.path.join(general, "1", part)), part

    for argv in ([os.path.join(site, "bin", "gpicl"), "--help"],
                 [sys.executable, "-m", "pipelines.cli", "--help"]):
        done = run(*argv)
        assert done.returncode == 0 and "make-episodes" in done.stdout, done.stderr
    done = run(os.path.join(site, "bin", "gpicl"), "export", "--help")
    assert "--max_context" in done.stdout and site in done.stdout, done.stdout + done.stderr

    quickstart = snippets(os.path.join(ROOT, "README.md"))[0][1]
    assert "GPICLClassifier" in quickstart
    done = run(sys.executable, "-c", quickstart, timeout=900)
    assert done.returncode == 0 and "accuracy" in done.stdout, done.stdout + done.stderr
