"""Kinds of episodes, as the data stages see them: each writes and reads its own
records (`base.EpisodeKind`); its shapes are its `schema` layout. Both are parts
of the kind's one registration (`gpicl_tf.config.kinds`). The writer picks the
kind of a source (`for_source`), the readers the kind of an episode set's
schema (`of`). A new kind is a module here, a layout in `schema` and its
registration.

Example:
    >>> for_source("functions:sine").name
    'regression'
    >>> for_source("digits").curriculum
    True
"""

from __future__ import annotations

from gpicl_tf.config import kinds as kind_registry
from gpicl_tf.data import schema as schema_lib
from gpicl_tf.data.kinds.base import EpisodeKind


def get(name: str) -> EpisodeKind:
    """The kind called `name`; an unknown name is an error naming the known ones."""
    return kind_registry.part(name, "episodes")


def of(schema: schema_lib.EpisodeSchema) -> EpisodeKind:
    """The kind of the episodes `schema` describes."""
    return get(schema.task)


def for_source(source: str) -> EpisodeKind:
    """The kind whose episodes `source` writes (the first registered that claims
    it, else the default: a dataset source is classification)."""
    for name in kind_registry.names():
        if get(name).claims(source):
            return get(name)
    return get(kind_registry.DEFAULT)


__all__ = ["EpisodeKind", "for_source", "get", "of"]
