"""Tasks: what the applications (main job, export, studies, tuning, the command
line) ask of a kind of episode. A `Task` names its parts in the layers below
(`data.kinds`, `models.sequence_models.LEARNERS`, `training.objectives`) and
adds its evaluation and report. Tasks are looked up here, at the edges, by
source (`for_source`) or by name (`get`, e.g. an episode set's `schema.task`);
no lower layer imports this package.

Example:
    >>> for_source("functions:sine").name
    'regression'
    >>> for_source("digits").curriculum
    True
"""

from __future__ import annotations

from gpicl_tf.data import kinds
from gpicl_tf.tasks import classification, regression
from gpicl_tf.tasks.base import Task

TASKS: dict[str, Task] = {t.name: t for t in (classification.TASK, regression.TASK)}
DEFAULT = classification.TASK.name


def get(name: str) -> Task:
    """The task called `name`; an unknown name is an error naming the known ones."""
    kinds.get(name)
    return TASKS[name]


def for_source(source: str) -> Task:
    """The task whose episodes `source` writes (`data.kinds.for_source`)."""
    return TASKS[kinds.for_source(source).name]


__all__ = ["TASKS", "Task", "for_source", "get"]
