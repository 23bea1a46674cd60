"""The training benchmark runs end to end (smoke preset, a few steps)."""

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_train_step_benchmark_runs():
    done = subprocess.run([sys.executable, "benchmarks/train_step.py", "--presets", "smoke",
                           "--steps", "4"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "GFLOP/s" in out and "matmul shape alone" in out
    for line in ("in fit with real episodes", "in fit as train.run drives it",
                 "train.run end to end",
                 "episodes built on the host:", "built in the step from records:",
                 "with device-side construction"):
        assert line in out, line
