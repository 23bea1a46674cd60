"""Kinds of episodes, each registered once (as seqio registers a task): a
`KindSpec` names the kind's part in every layer, and each layer looks up only
its own part, by the kind's name (an episode set's `schema.task`):

    layout       the episode's shapes and model I/O        (data.schema)
    episodes     its records: writer, readers, which sources it claims (data.kinds)
    learners     `ModelConfig.arch` -> model builder        (models.sequence_models)
    model_check  what else a model config must satisfy      (models.sequence_models)
    objective    its loss and metrics                       (training.objectives)
    task         its evaluation and report                  (tasks)

A part is named as "module:attribute" and imported on first use by the layer
that asks for it, so this bottom-layer registry imports nothing above it and no
layer reaches a part above itself. A new kind is its parts, written in their
layers, and one `register` call below.

Example:
    >>> learners("regression")
    ('transformer',)
    >>> part("classification", "layout").token_size.__qualname__
    'ClassificationLayout.token_size'
"""

from __future__ import annotations

import dataclasses
import functools
import importlib

from gpicl_tf.errors import InvalidInputError

PARTS = ("layout", "episodes", "model_check", "objective", "task")


@dataclasses.dataclass(frozen=True)
class KindSpec:
    """One kind of episode: its name and the "module:attribute" of each part."""

    name: str
    layout: str
    episodes: str
    learners: tuple[tuple[str, str], ...]       # (arch, "module:builder"), in order
    model_check: str
    objective: str
    task: str

    def __post_init__(self):
        for field in PARTS:
            _check_reference(getattr(self, field), f"{self.name}.{field}")
        for arch, ref in self.learners:
            _check_reference(ref, f"{self.name}.learners[{arch!r}]")


def _check_reference(ref: str, where: str) -> None:
    module, sep, attribute = ref.partition(":")
    if not (sep and module and attribute):
        raise InvalidInputError(f"{where}={ref!r} is not 'module:attribute'")


_KINDS: dict[str, KindSpec] = {}
DEFAULT = "classification"


def register(spec: KindSpec) -> KindSpec:
    """Adds `spec`; a second kind of the same name is an error."""
    if spec.name in _KINDS:
        raise InvalidInputError(f"kind {spec.name!r} is registered already")
    _KINDS[spec.name] = spec
    return spec


def names() -> tuple[str, ...]:
    """The registered kinds, in registration order (the default first)."""
    return tuple(_KINDS)


def get(name: str) -> KindSpec:
    """The spec of kind `name`; an unknown name is an error naming the known ones."""
    if name not in _KINDS:
        raise InvalidInputError(f"task={name!r} is not one of {names()}")
    return _KINDS[name]


@functools.lru_cache(maxsize=None)
def _resolve(ref: str):
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _resolved(ref: str, where: str):
    try:
        return _resolve(ref)
    except (ImportError, AttributeError) as e:
        raise InvalidInputError(f"{where}={ref!r} names nothing importable: {e}") from e


def part(name: str, which: str):
    """Kind `name`'s part `which` (one of `PARTS`), imported on first use."""
    if which not in PARTS:
        raise InvalidInputError(f"part={which!r} is not one of {PARTS}")
    return _resolved(getattr(get(name), which), f"{name}.{which}")


def learner(name: str, arch: str):
    """The builder of kind `name`'s learner `arch`, or None if the kind has none."""
    refs = dict(get(name).learners)
    return _resolved(refs[arch], f"{name}.learners[{arch!r}]") if arch in refs else None


def learners(name: str) -> tuple[str, ...]:
    """The archs that learn kind `name`."""
    return tuple(arch for arch, _ in get(name).learners)


_MODELS = "gpicl_tf.models.sequence_models"

register(KindSpec(
    name="classification",
    layout="gpicl_tf.data.schema:CLASSIFICATION_LAYOUT",
    episodes="gpicl_tf.data.kinds.classification:KIND",
    learners=(("transformer", f"{_MODELS}:build_transformer"),
              ("lstm", f"{_MODELS}:build_lstm"), ("mlp", f"{_MODELS}:build_mlp"),
              ("maml", f"{_MODELS}:build_maml"), ("vsml", f"{_MODELS}:build_vsml")),
    model_check=f"{_MODELS}:check_classification_model",
    objective="gpicl_tf.training.objectives:CLASSIFICATION",
    task="gpicl_tf.tasks.classification:TASK"))

register(KindSpec(
    name="regression",
    layout="gpicl_tf.data.schema:REGRESSION_LAYOUT",
    episodes="gpicl_tf.data.kinds.regression:KIND",
    learners=(("transformer", f"{_MODELS}:build_function_transformer"),),
    model_check=f"{_MODELS}:check_function_model",
    objective="gpicl_tf.training.objectives:REGRESSION",
    task="gpicl_tf.tasks.regression:TASK"))
