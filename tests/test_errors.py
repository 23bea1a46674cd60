import os
import subprocess
import sys

import pytest

from gpicl_tf import errors
from gpicl_tf.config import PRESETS, get_preset, override

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_main(body: str) -> subprocess.CompletedProcess:
    code = ("from pipelines import common\n"
            "from gpicl_tf import errors\n"
            f"def main(argv):\n    {body}\n"
            "common.run(main)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "GPICL_TCMALLOC": "0",
                                         "PYTHONPATH": ROOT}, timeout=120)


def test_user_errors_are_one_line_and_bugs_keep_their_traceback():
    user = _run_main("raise errors.InvalidInputError('data.seed=-1 must be >= 0')")
    assert user.returncode == 2 and "error: data.seed=-1 must be >= 0" in user.stderr
    assert "Traceback" not in user.stderr
    bug = _run_main("raise ValueError('a library bug')")
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "a library bug" in bug.stderr


def test_user_errors_are_also_the_builtin_a_caller_expects():
    with pytest.raises(errors.GpiclError):
        override(get_preset("smoke"), ["train.batch_size=0"])
    with pytest.raises(ValueError):
        override(get_preset("smoke"), ["train.batch_size=0"])
    with pytest.raises(KeyError) as info:
        get_preset("nope")
    assert isinstance(info.value, errors.GpiclError)
    assert str(info.value) == f"unknown preset 'nope'; known: {sorted(PRESETS)}"


def test_inspect_episodes_names_a_manifest_field_in_one_line(smoke_episodes, tmp_path):
    import json

    manifest = json.load(open(os.path.join(smoke_episodes, "manifest.json")))
    del manifest["schema"]["num_classes"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    done = subprocess.run([sys.executable, "-m", "pipelines.inspect_episodes", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "lacks field schema.'num_classes'" in done.stderr and "Traceback" not in done.stderr
