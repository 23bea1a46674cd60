"""Configs as frozen dataclasses, with `smoke`, `cpu` and `paper` presets.

A `Config` groups the data, model and training settings. It round-trips through
JSON (`to_dict` / `from_dict`), and `override` applies `section.key=value`
strings; an unknown section or key raises an error naming it.

    checks.py    the rules sections check when built, value conversion
    sections.py  the sections (DataConfig, ModelConfig, TrainConfig, ...)
    base.py      what both config families share: loading, JSON, overrides
    kinds.py     the kinds of episodes, each registered once with its parts
    run.py       Config: the row learners' sections together, older files
    presets.py   the named configs
    cell.py      the cell learner's config (its own sections and presets)

Example:
    >>> cfg = override(get_preset("smoke"), ["train.batch_size=4"])
    >>> cfg.train.batch_size
    4
"""

from gpicl_tf.config.checks import (  # noqa: F401  (the rules config/cell.py imports from here)
    _POSITIVE, _all, _at_least, _between, _check, _coerce, _in, _tuple_fields)
from gpicl_tf.config.presets import PRESETS, get_preset
from gpicl_tf.config.base import override
from gpicl_tf.config.run import Config, normalize_section
from gpicl_tf.config.sections import (ARCHS, BIAS_MODES, BIAS_SCHEDULES, LAYOUTS, LOOPS,
                                      PRECISIONS, DataConfig, EvalConfig, FunctionConfig,
                                      ModelConfig, PriorConfig, TrainConfig, TuneConfig)

__all__ = ["ARCHS", "BIAS_MODES", "BIAS_SCHEDULES", "LAYOUTS", "LOOPS", "PRECISIONS", "PRESETS",
           "Config", "DataConfig", "EvalConfig", "FunctionConfig", "ModelConfig", "PriorConfig",
           "TrainConfig", "TuneConfig", "get_preset", "normalize_section", "override"]
