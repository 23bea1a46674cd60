"""The row learners' run config: its sections together (`Config`; loading, JSON
and overrides are `config.base`'s, shared with the cell learner's config) and
older files' values (`normalize_section`)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from gpicl_tf.config.base import Sections
from gpicl_tf.config.checks import _coerce
from gpicl_tf.config.sections import (DataConfig, EvalConfig, FunctionConfig, ModelConfig,
                                      PriorConfig, TrainConfig, TuneConfig)


@dataclasses.dataclass(frozen=True)
class Config(Sections):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    tune: TuneConfig = TuneConfig()
    functions: FunctionConfig = FunctionConfig()
    prior: PriorConfig = PriorConfig()

    RETIRED = {"train": {"mixed_precision": (False, "train.precision=mixed_bfloat16 (CPU, TPU) "
                                                    "or mixed_float16 (GPU)")}}


def normalize_section(name: str, d: dict[str, Any], defaults: bool = False) -> dict[str, Any]:
    """A section as stored (an older config.json, a manifest) with each known key's
    value in its field's type ("1,2" -> (1, 2)); unknown keys are kept as they are;
    with `defaults`, a field the stored section lacks (added since) gets its default."""
    cls = Config.section_classes()[name]
    hints = typing.get_type_hints(cls)
    out = {k: _coerce(hints[k], v, f"{name}.{k}") if k in hints else v for k, v in d.items()}
    if defaults:
        for k, v in dataclasses.asdict(cls()).items():
            out.setdefault(k, v)
    return out
