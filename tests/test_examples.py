"""The Python snippets of the README and the docs run, so they cannot rot.

A fenced ```python block right after a `<!-- test: run -->` line is run as a script in a
fresh directory, with the repository on PYTHONPATH. Every Python block of the README must
be marked.
"""

import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = "<!-- test: run -->"
BLOCK = re.compile(r"^(<!-- test: run -->\n)?```python\n(.*?)^```", re.M | re.S)


def snippets(path: str) -> list[tuple[bool, str]]:
    """(marked, code) of every ```python block of a Markdown file."""
    with open(path) as f:
        return [(bool(m.group(1)), m.group(2)) for m in BLOCK.finditer(f.read())]


FILES = [os.path.join(ROOT, "README.md")] + sorted(
    glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
MARKED = [(os.path.relpath(path, ROOT), i, code) for path in FILES
          for i, (marked, code) in enumerate(snippets(path)) if marked]


def test_every_readme_snippet_is_marked_for_testing():
    found = snippets(os.path.join(ROOT, "README.md"))
    assert len(found) >= 2 and all(marked for marked, _ in found)


@pytest.mark.slow
@pytest.mark.parametrize("where,index,code", MARKED,
                         ids=[f"{where}:{index}" for where, index, _ in MARKED])
def test_snippet_runs(where, index, code, tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT, "GPICL_TCMALLOC": "0",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("GPICL_MODEL", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{where} snippet {index}:\n{done.stdout}\n{done.stderr}"
