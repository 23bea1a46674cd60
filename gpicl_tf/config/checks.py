"""The rules config sections check when they are built (`_check` with `_at_least`,
`_in`, `_between`, `_all`, `_POSITIVE`) and the conversion of JSON and
command-line values to a field's type (`_coerce`, `_tuple_fields`). Private to
`gpicl_tf.config`: the sections (`sections`, `cell`) use them."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any

from gpicl_tf.errors import InvalidInputError


def _check(section: str, obj, rules: dict) -> None:
    """Raises ValueError naming `section.key=value` for the first rule a field breaks.

    rules: key -> (predicate, what the value must be).
    """
    for key, (ok, must) in rules.items():
        value = getattr(obj, key)
        if isinstance(value, float) and not math.isfinite(value) or not ok(value):
            raise InvalidInputError(f"{section}.{key}={value!r} must be {must}")


def _at_least(n):
    return (lambda v: v >= n), f">= {n}"


def _in(choices):
    return (lambda v: v in choices), f"one of {choices}"


def _between(lo, hi, closed_high=True):
    if closed_high:
        return (lambda v: lo <= v <= hi), f"in [{lo}, {hi}]"
    return (lambda v: lo <= v < hi), f"in [{lo}, {hi})"


_POSITIVE = ((lambda v: v > 0), "positive and finite")
_SEED = _between(0, 2 ** 32 - 1)    # numpy's and Keras's seed range
_STEPS = _between(1, 2 ** 31 - 1)   # step counters are int32 in places


def _all(rule, nonempty: bool = False):
    """A rule on every element of a tuple field (and, optionally, at least one)."""
    ok, must = rule
    return ((lambda v: (len(v) > 0 or not nonempty) and all(ok(x) for x in v)),
            f"{'a non-empty list' if nonempty else 'a list'} of values each {must}")


def _tuple_fields(obj, section: str) -> None:
    """Normalises the tuple fields of a section built directly (Python code, a
    manifest): "1,2,5", JSON lists and lists all become tuples of the field's type."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if typing.get_origin(hints[f.name]) is tuple:
            value = getattr(obj, f.name)
            if not isinstance(value, tuple) or not all(
                    isinstance(v, typing.get_args(hints[f.name])[0]) for v in value):
                object.__setattr__(obj, f.name,
                                   _coerce(hints[f.name], value, f"{section}.{f.name}"))


def _coerce(kind: type, value: Any, key: str) -> Any:
    """Converts a JSON or command-line value to the field's type, or raises.
    Tuple fields take "a,b,c", a JSON list ("[1, 2]") or a list."""
    if typing.get_origin(kind) is tuple:
        element, given = typing.get_args(kind)[0], value
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as e:
                    raise InvalidInputError(f"{key}={value!r} is not a valid JSON list") from e
            else:
                value = [v.strip() for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise InvalidInputError(f"{key}={given!r} is not a list of {element.__name__}")
        try:
            return tuple(_coerce(element, v, key) for v in value)
        except InvalidInputError:
            raise InvalidInputError(
                f"{key}={given!r} is not a list of {element.__name__}") from None
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        if kind is bool:
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise InvalidInputError(f"{key}={value!r} is not a boolean")
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"{key}={value!r} is not a valid {kind.__name__}") from e
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidInputError(f"{key}={value!r} is not a valid {kind.__name__}")
    return value


def sections_dict(config) -> dict:
    """A config of dataclass sections as JSON-ready dicts (tuple fields as lists)."""
    return {name: {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}
            for name, section in dataclasses.asdict(config).items()}
