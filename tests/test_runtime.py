import os
import subprocess
import sys

import pytest

from gpicl_tf import runtime


def test_reexec_plan_preloads_an_installed_tcmalloc(tmp_path):
    lib = tmp_path / "libtcmalloc_minimal.so.4"
    lib.write_bytes(b"")
    argv = ["python", "-m", "pipelines.run", "--preset", "smoke"]
    plan = runtime.reexec_plan({"LD_PRELOAD": "/x/other.so"}, "", argv, candidates=(str(lib),))
    assert plan is not None
    new_argv, env = plan
    assert new_argv == argv
    assert env["LD_PRELOAD"] == f"{lib} /x/other.so"
    # Once re-executed, or already loaded, or switched off, or absent: go on as is.
    assert runtime.reexec_plan(env, "", argv, candidates=(str(lib),)) is None
    assert runtime.reexec_plan({}, "7f00 r-xp /usr/lib/libtcmalloc_minimal.so.4\n", argv,
                               candidates=(str(lib),)) is None
    assert runtime.reexec_plan({"GPICL_TCMALLOC": "0"}, "", argv, candidates=(str(lib),)) is None
    assert runtime.reexec_plan({}, "", argv, candidates=(str(tmp_path / "none.so"),)) is None


def test_a_named_library_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="GPICL_TCMALLOC='/no/such.so'"):
        runtime.find_tcmalloc({"GPICL_TCMALLOC": "/no/such.so"})


@pytest.mark.skipif(not any(os.path.exists(c) for c in runtime.CANDIDATES),
                    reason="tcmalloc is not installed (scripts/env.sh installs it as root)")
@pytest.mark.slow
def test_pipeline_scripts_run_on_tcmalloc(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "GPICL_TCMALLOC", "GPICL_TCMALLOC_REEXECUTED")}
    cmd = [sys.executable, "-m", "pipelines.study", "no_such_study", "--workdir",
           str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "unknown study 'no_such_study'" in done.stderr
    assert "memory allocator: tcmalloc" in done.stderr, done.stderr[-2000:]
    done = subprocess.run(cmd, capture_output=True, text=True,
                          env={**env, "GPICL_TCMALLOC": "0"})
    assert "memory allocator: glibc malloc" in done.stderr, done.stderr[-2000:]


def test_free_ports_are_distinct_and_bindable():
    import socket

    ports = runtime.free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_benchmarks_import_nothing_from_the_tests():
    """A benchmark runs from a checkout or an installed wheel alone (issue 31)."""
    import ast
    import glob

    root = os.path.join(os.path.dirname(__file__), "..")
    for path in sorted(glob.glob(os.path.join(root, "benchmarks", "*.py"))):
        tree = ast.parse(open(path).read())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in names if m == "tests" or m.startswith("tests.")], path
