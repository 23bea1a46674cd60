"""Every example in the package's docstrings runs and prints what it says (the
ones that need an episode directory or a trained model say `+SKIP`)."""

import doctest
import importlib
import pkgutil

import pytest

import gpicl_tf

MODULES = sorted(m.name for m in pkgutil.walk_packages(gpicl_tf.__path__, "gpicl_tf.")
                 if not m.name.startswith("gpicl_tf.released."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"


def test_the_examples_are_collected():
    """The list is the package's modules, and some of them hold examples that run."""
    assert "gpicl_tf.models.layers" in MODULES and "gpicl_tf.config.presets" in MODULES
    finder = doctest.DocTestFinder()
    examples = sum(len(t.examples) for t in finder.find(
        importlib.import_module("gpicl_tf.models.layers")))
    assert examples >= 3
