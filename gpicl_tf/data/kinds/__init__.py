"""Kinds of episodes, as the data stages see them: each writes and reads its own
records (`base.EpisodeKind`); its shapes are `schema.LAYOUTS`. The writer picks
the kind of a source (`for_source`), the readers the kind of an episode set's
schema (`of`). A new kind is a module here and a layout in `schema`.

Example:
    >>> for_source("functions:sine").name
    'regression'
    >>> for_source("digits").curriculum
    True
"""

from __future__ import annotations

from gpicl_tf.data import schema as schema_lib
from gpicl_tf.data.kinds import classification, regression
from gpicl_tf.data.kinds.base import EpisodeKind

KINDS: dict[str, EpisodeKind] = {k.name: k for k in (classification.KIND, regression.KIND)}


def get(name: str) -> EpisodeKind:
    """The kind called `name`; an unknown name is an error naming the known ones."""
    schema_lib.layout_of(name)
    return KINDS[name]


def of(schema: schema_lib.EpisodeSchema) -> EpisodeKind:
    """The kind of the episodes `schema` describes."""
    return KINDS[schema.task]


def for_source(source: str) -> EpisodeKind:
    """The kind whose episodes `source` writes (the first that claims it, else
    the default: a dataset source is classification)."""
    for kind in KINDS.values():
        if kind.claims(source):
            return kind
    return KINDS[schema_lib.DEFAULT_TASK]


__all__ = ["KINDS", "EpisodeKind", "for_source", "get", "of"]
