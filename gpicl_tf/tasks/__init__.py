"""Task kinds: everything that differs between kinds of episodes lives here.

A `Task` (classification over datasets and the table prior; function
regression) provides its record schema and writer, its tf.data feature
builder, its model, loss and metrics, its evaluator and baselines and its
report. The stages ask the task of their episodes (`of(schema)`) or of a
source (`for_source(name)`) and never branch on the kind themselves; a new
kind is one module with a `TASK` registered in `TASKS`.

Example:
    >>> for_source("functions:sine").name
    'regression'
    >>> for_source("digits").curriculum
    True
"""

from __future__ import annotations

from gpicl_tf.errors import InvalidInputError
from gpicl_tf.tasks import classification, regression
from gpicl_tf.tasks.base import Task

TASKS: dict[str, Task] = {t.name: t for t in (classification.TASK, regression.TASK)}
DEFAULT = classification.TASK.name


def get(name: str) -> Task:
    """The task called `name`; an unknown name is an error naming the known ones."""
    if name not in TASKS:
        raise InvalidInputError(f"task={name!r} is not one of {tuple(TASKS)}")
    return TASKS[name]


def of(schema) -> Task:
    """The task of an episode schema (`EpisodeSchema.task`)."""
    return get(schema.task)


def for_source(source: str) -> Task:
    """The task whose episodes `source` writes (the first that claims it, else
    the default: a dataset source is classification)."""
    for task in TASKS.values():
        if task.claims(source):
            return task
    return TASKS[DEFAULT]


__all__ = ["TASKS", "Task", "for_source", "get", "of"]
