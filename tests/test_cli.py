"""The `gpicl` command: one subcommand per pipeline module, each the module itself."""

import json
import os
import subprocess
import sys

import pytest

from pipelines import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_STAGES = {"__init__", "common", "cli"}


def _gpicl(*args, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=timeout,
                          env={**os.environ, "GPICL_TCMALLOC": "0", "PYTHONPATH": ROOT})


def test_every_pipeline_module_is_a_subcommand():
    modules = {f[:-3] for f in os.listdir(os.path.join(ROOT, "pipelines"))
               if f.endswith(".py")} - NOT_STAGES
    assert sorted(module for module, _ in cli.COMMANDS.values()) == sorted(modules)


def test_the_overview_lists_every_command_on_one_line(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, line) in cli.COMMANDS.items():
        assert f"  {name}  " in out or f"  {name} " in out
        assert sum(line in row for row in out.splitlines()) == 1, line
    assert cli.main([]) == 0


def test_an_unknown_command_is_exit_2_naming_it(capsys):
    assert cli.main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


def test_a_subcommands_help_is_its_pipelines_flags():
    done = _gpicl("train", "--help")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr  # absl's --help
    assert "Meta-trains a sequence learner" in done.stdout
    for flag in ("--episodes", "--workdir", "--strategy", "--preset", "--set"):
        assert flag in done.stdout, flag


@pytest.mark.slow
def test_every_subcommand_has_help():
    for name, (module, _) in cli.COMMANDS.items():
        done = _gpicl(name, "--help")
        assert "Traceback" not in done.stderr and "--helpfull" in done.stdout, (name, done.stderr)
        direct = subprocess.run([sys.executable, "-m", f"pipelines.{module}", "--help"],
                                capture_output=True, text=True, cwd=ROOT, timeout=120,
                                env={**os.environ, "PYTHONPATH": ROOT})
        assert done.returncode == direct.returncode, name   # absl exits 1 after --help
        assert done.stdout == direct.stdout, name       # the same module, the same flags


@pytest.mark.slow
def test_a_subcommand_runs_its_stage_and_reports_bad_input(tmp_path):
    done = _gpicl("make-episodes", "--preset", "smoke", "--out", str(tmp_path / "ep"),
                  cwd=str(tmp_path), timeout=300)
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "ep" / "manifest.json") as f:
        assert json.load(f)["splits"]
    bad = _gpicl("make-episodes", "--preset", "nope", "--out", str(tmp_path / "x"),
                 cwd=str(tmp_path), timeout=300)
    assert bad.returncode == 2 and "error: unknown preset 'nope'" in bad.stderr


def test_the_readme_lists_the_commands_as_gpicl_help_does():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    overview = [row.strip() for row in cli.usage().splitlines() if row.startswith("  ")]
    assert len(overview) == len(cli.COMMANDS)
    for row in overview:
        assert row in readme, row
