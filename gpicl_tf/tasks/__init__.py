"""Tasks: what the applications (main job, export, studies, tuning, the command
line) ask of a kind of episode. A `Task` names its parts in the layers below
(`data.kinds`, `config.kinds.learners`, `training.objectives`; one registration
per kind, `config.kinds`) and adds its evaluation and report. Tasks are looked up here, at the edges, by
source (`for_source`) or by name (`get`, e.g. an episode set's `schema.task`);
no lower layer imports this package.

Example:
    >>> for_source("functions:sine").name
    'regression'
    >>> for_source("digits").curriculum
    True
"""

from __future__ import annotations

from gpicl_tf.config import kinds as kind_registry
from gpicl_tf.data import kinds
from gpicl_tf.tasks.base import Task

DEFAULT = kind_registry.DEFAULT


def get(name: str) -> Task:
    """The task called `name`; an unknown name is an error naming the known ones."""
    return kind_registry.part(name, "task")


def for_source(source: str) -> Task:
    """The task whose episodes `source` writes (`data.kinds.for_source`)."""
    return get(kinds.for_source(source).name)


__all__ = ["DEFAULT", "Task", "for_source", "get"]
