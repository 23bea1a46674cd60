"""The run config: its sections together (`Config`), its JSON form, older files'
values (`normalize_section`) and `section.key=value` overrides (`override`)."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from gpicl_tf.config.checks import _coerce, sections_dict
from gpicl_tf.config.sections import (DataConfig, EvalConfig, FunctionConfig, ModelConfig,
                                      PriorConfig, TrainConfig, TuneConfig)
from gpicl_tf.errors import InvalidInputError, UnknownKeyError


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    tune: TuneConfig = TuneConfig()
    functions: FunctionConfig = FunctionConfig()
    prior: PriorConfig = PriorConfig()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready sections (tuple fields as lists)."""
        return sections_dict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(sections))
        if unknown:
            raise UnknownKeyError(f"unknown config section(s) {unknown}; known: {sorted(sections)}")
        parts = {}
        for name, section_cls in _section_classes().items():
            parts[name] = _section_from_dict(section_cls, d.get(name, {}), name)
        return cls(**parts)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        return cls.from_dict(json.loads(text))


def _section_classes() -> dict[str, type]:
    return {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig,
            "tune": TuneConfig, "functions": FunctionConfig, "prior": PriorConfig}


# Keys that older files hold and configs no longer have: each loads only at the
# value that meant "off" (dropped); any other value is an error naming what replaced it.
RETIRED = {"train": {"mixed_precision": (False, "train.precision=mixed_bfloat16 (CPU, TPU) "
                                                "or mixed_float16 (GPU)")}}


def _drop_retired(name: str, d: dict[str, Any]) -> dict[str, Any]:
    retired = RETIRED.get(name, {})
    for key in set(d) & set(retired):
        off, instead = retired[key]
        if _coerce(type(off), d[key], f"{name}.{key}") != off:
            raise InvalidInputError(f"{name}.{key}={d[key]!r} is no longer a setting; "
                                    f"set {instead}")
    return {k: v for k, v in d.items() if k not in retired}


def _section_from_dict(section_cls: type, d: dict[str, Any], name: str):
    d = _drop_retired(name, d)
    hints = typing.get_type_hints(section_cls)
    unknown = sorted(set(d) - set(hints))
    if unknown:
        raise UnknownKeyError(f"unknown key(s) {unknown} in config section '{name}'")
    return section_cls(**{k: _coerce(hints[k], v, f"{name}.{k}") for k, v in d.items()})


def normalize_section(name: str, d: dict[str, Any], defaults: bool = False) -> dict[str, Any]:
    """A section as stored (an older config.json, a manifest) with each known key's
    value in its field's type ("1,2" -> (1, 2)); unknown keys are kept as they are;
    with `defaults`, a field the stored section lacks (added since) gets its default."""
    cls = _section_classes()[name]
    hints = typing.get_type_hints(cls)
    out = {k: _coerce(hints[k], v, f"{name}.{k}") if k in hints else v for k, v in d.items()}
    if defaults:
        for k, v in dataclasses.asdict(cls()).items():
            out.setdefault(k, v)
    return out


def override(config: Config, assignments: list[str] | tuple[str, ...]) -> Config:
    """Returns `config` with `section.key=value` assignments applied."""
    d = config.to_dict()
    for item in assignments:
        if "=" not in item:
            raise InvalidInputError(f"override {item!r} is not of the form section.key=value")
        path, value = item.split("=", 1)
        section, _, key = path.strip().partition(".")
        if section not in d:
            raise UnknownKeyError(f"unknown config section '{section}' in override {item!r}")
        if key not in d[section]:
            raise UnknownKeyError(f"unknown config key '{path.strip()}' in override {item!r}")
        d[section][key] = value
    return Config.from_dict(d)
