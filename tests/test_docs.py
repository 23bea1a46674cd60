"""The docs site builds strictly, and the README's links lead somewhere."""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_docs_build_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install '.[docs]')")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "--config-file", os.path.join(ROOT, "mkdocs.yml"),
                           "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").exists()


def test_the_readmes_relative_links_exist():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert local, "no relative links found"
    missing = [t for t in local if not os.path.exists(os.path.join(ROOT, t))]
    assert not missing, missing


def test_the_readme_keeps_the_two_commands():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    assert "bash scripts/main.sh --preset cpu --workdir runs/cpu" in text
    assert "bash scripts/test.sh" in text
    assert "## The tabular learner" in text
