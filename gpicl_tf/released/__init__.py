"""Released models, shipped inside the package in TF Serving's layout NAME/VERSION/.

    >>> from gpicl_tf import released
    >>> released.model_dir("general")             # doctest: +ELLIPSIS
    '.../gpicl_tf/released/general'
    >>> "general" in released.available()
    True

`general`: the row Transformer of the `general_cpu` run (docs/results/general_cpu.md), the
estimator's default; `tabular`: the cell learner of the `cell_cpu` run (docs/tabular.md). A model
directory can be served as is (`gpicl serve --model_base_path DIR`) or handed to
`GPICLClassifier` (a version directory, DIR/1).
"""

from __future__ import annotations

import importlib.resources
import os
import re

_NAME = re.compile(r"[A-Za-z0-9_]+")


def _root() -> str:
    """This package's directory on disk (installed wheels and source checkouts alike)."""
    root = importlib.resources.files(__name__)
    if not isinstance(root, os.PathLike):   # e.g. imported from a zip file
        raise RuntimeError(f"released models need {__name__} on a file system, not {root!r}")
    return os.fspath(root)


def model_dir(name: str) -> str:
    """The model directory (holding VERSION/ folders) of the released model `name`.

    The path is returned whether or not the model has been released yet: a missing
    one is reported by whoever loads it, with the command that builds it.

    Args:
        name: a released model's name, e.g. "general" or "tabular".
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"released model name={name!r} must be letters, digits or '_'")
    return os.path.join(_root(), name)


def available() -> list[str]:
    """Names of the released models that have at least one version folder."""
    root = _root()
    return sorted(n for n in os.listdir(root)
                  if _NAME.fullmatch(n) and os.path.isdir(os.path.join(root, n))
                  and any(v.isdigit() for v in os.listdir(os.path.join(root, n))))
