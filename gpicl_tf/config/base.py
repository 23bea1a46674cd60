"""What both config families share (the row learners' `Config`, the cell
learner's `CellRunConfig`): a frozen dataclass of frozen sections, its JSON
form, loading with every value checked and coerced to its field's type, and
`section.key=value` overrides (`override`).

Example:
    >>> from gpicl_tf.config import get_preset
    >>> override(get_preset("smoke"), ["train.steps=7"]).train.steps
    7
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, ClassVar

from gpicl_tf.config.checks import _coerce, _tuple_fields, sections_dict
from gpicl_tf.errors import InvalidInputError, UnknownKeyError


class Sections:
    """Mixin of a run config: a frozen dataclass whose fields are frozen section
    dataclasses. A section or key missing from a loaded dict takes the config
    class's default (`cls()`); unknown ones are errors naming them; `RETIRED`
    names keys older files hold that the sections no longer have."""

    # section -> key -> (the value that meant "off", what replaced it): an older file's
    # retired key loads only at its "off" value (dropped); any other is an error
    RETIRED: ClassVar[dict[str, dict[str, tuple[Any, str]]]] = {}

    @classmethod
    def section_classes(cls) -> dict[str, type]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready sections (tuple fields as lists)."""
        return sections_dict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        sections = cls.section_classes()
        unknown = sorted(set(d) - set(sections))
        if unknown:
            raise UnknownKeyError(f"unknown config section(s) {unknown}; known: {sorted(sections)}")
        defaults = dataclasses.asdict(cls())
        return cls(**{name: cls._section(kind, name, d.get(name, {}), defaults[name])
                      for name, kind in sections.items()})

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    @classmethod
    def _section(cls, kind: type, name: str, given: dict[str, Any], default: dict[str, Any]):
        retired = cls.RETIRED.get(name, {})
        for key in set(given) & set(retired):
            off, instead = retired[key]
            if _coerce(type(off), given[key], f"{name}.{key}") != off:
                raise InvalidInputError(f"{name}.{key}={given[key]!r} is no longer a setting; "
                                        f"set {instead}")
        given = {k: v for k, v in given.items() if k not in retired}
        hints = typing.get_type_hints(kind)
        unknown = sorted(set(given) - set(hints))
        if unknown:
            raise UnknownKeyError(f"unknown key(s) {unknown} in config section '{name}'")
        section = kind(**{k: _coerce(hints[k], v, f"{name}.{k}")
                          for k, v in {**default, **given}.items()})
        _tuple_fields(section, name)
        return section


def override(config: Sections, assignments: list[str] | tuple[str, ...]):
    """`config` (either family) with each `section.key=value` applied, checked as at load."""
    d = config.to_dict()
    for item in assignments:
        path, sep, value = item.partition("=")
        section, dot, key = path.strip().partition(".")
        if not sep or not dot:
            raise InvalidInputError(f"override {item!r} is not of the form section.key=value")
        if section not in d:
            raise UnknownKeyError(f"unknown config section '{section}' in override {item!r}; "
                                  f"known: {sorted(d)}")
        if key not in d[section]:
            raise UnknownKeyError(f"unknown config key '{path.strip()}' in override {item!r}")
        d[section][key] = value
    return type(config).from_dict(d)
