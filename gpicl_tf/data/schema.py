"""The one episode schema: stored record, model features and targets.

A stored episode is compact: its id, its task id and the indices of its
examples in the base data (`base-<split>` files beside the shards). At read time
the task's projection and permutation are re-derived from the task id and the
model features are built:

    record:   episode_id int64 [], task_id int64 [], indices int64 [N]
    features: inputs float32 [N, input_size]   projected x_1..x_N
              labels int32 [N]                 permuted y_1..y_N
    targets:  int32 [N]                        y_1..y_N

The model turns features into tokens (the paper's concat(x_j, one_hot(y_{j-1})),
or the PFN layout) and never lets a prediction see its own or a later label.

Synthetic classification tables (`data.source="prior"`) have no base data
either: their episodes store the prepared values (`stored_dim` > 0 columns,
zero-padded) and the labels; the reader projects and permutes them as above:

    record:   episode_id int64 [], task_id int64 [], x float [N * stored_dim],
              labels int64 [N]

Function regression (`task="regression"`) stores the values themselves, since
a function episode has no base data to index:

    record:   episode_id int64 [], task_id int64 [], x float [N * d],
              y float [N] (observed), clean float [N] (noise-free), query int64 [N]
    features: inputs float32 [N, d]    x_1..x_N
              values float32 [N]       y_j, zeroed where query_j = 1
              query float32 [N]        1 for the M hidden points
    targets:  float32 [N, 2]           (y_j, query_j): the loss scores queries only

The writer, the reader, the models' named inputs and the serving signatures
all take their keys, shapes and dtypes from `EpisodeSchema`; the layout of each
kind of episode (`EpisodeSchema.task`) is a `Layout` here, and how each kind is
written and read is its `gpicl_tf.data.kinds` module.
"""

from __future__ import annotations

import abc
import dataclasses

import tensorflow as tf

from gpicl_tf.config import kinds as kind_registry
from gpicl_tf.errors import InvalidInputError

FORMAT = "gpicl_tf.episodes/1"
INPUTS = "inputs"
LABELS = "labels"
TARGETS = "targets"
VALUES = "values"
QUERY = "query"
_IDS = {"episode_id": tf.io.FixedLenFeature([], tf.int64),
        "task_id": tf.io.FixedLenFeature([], tf.int64)}


class Layout(abc.ABC):
    """The keys, shapes and dtypes of one kind of episode."""

    def check(self, schema: "EpisodeSchema") -> None:
        """Raises naming the field when `schema` is not a valid episode of this kind."""

    @abc.abstractmethod
    def token_size(self, schema: "EpisodeSchema") -> int:
        """Size of one model token: x and what the kind appends to it."""

    @abc.abstractmethod
    def record_spec(self, schema: "EpisodeSchema") -> dict[str, tf.io.FixedLenFeature]:
        """The TFRecord features of one stored episode."""

    @abc.abstractmethod
    def feature_specs(self, schema: "EpisodeSchema", length) -> dict[str, tf.TensorSpec]:
        """The model's named inputs for episodes of `length` examples."""

    @abc.abstractmethod
    def target_spec(self, schema: "EpisodeSchema", length) -> tf.TensorSpec:
        """The targets of episodes of `length` examples."""


class ClassificationLayout(Layout):
    """Indexed (`stored_dim` 0) or stored (prior tables) examples; int labels."""

    def check(self, schema):
        if not isinstance(schema.num_classes, int) or schema.num_classes < 2:
            raise InvalidInputError(f"num_classes={schema.num_classes!r} must be at least 2")
        if not isinstance(schema.stored_dim, int) or schema.stored_dim < 0:
            raise InvalidInputError(
                f"stored_dim={schema.stored_dim!r} must be a non-negative integer")

    def token_size(self, schema):
        return schema.input_size + schema.num_classes   # x and a one-hot label

    def record_spec(self, schema):
        n = schema.episode_length
        if schema.stored_dim:
            return {**_IDS, "x": tf.io.FixedLenFeature([n * schema.stored_dim], tf.float32),
                    "labels": tf.io.FixedLenFeature([n], tf.int64)}
        return {**_IDS, "indices": tf.io.FixedLenFeature([n], tf.int64)}

    def feature_specs(self, schema, length):
        return {INPUTS: tf.TensorSpec([None, length, schema.input_size], tf.float32, name=INPUTS),
                LABELS: tf.TensorSpec([None, length], tf.int32, name=LABELS)}

    def target_spec(self, schema, length):
        return tf.TensorSpec([None, length], tf.int32, name=TARGETS)


class RegressionLayout(Layout):
    """Function values stored in the record; M of the N points are queries."""

    def check(self, schema):
        if not 1 <= schema.num_queries < schema.episode_length:
            raise InvalidInputError(
                f"num_queries={schema.num_queries} must be in "
                f"[1, episode_length={schema.episode_length})")
        if schema.stored_dim:
            raise InvalidInputError(
                f"stored_dim={schema.stored_dim!r}: function episodes store x itself (set 0)")

    def token_size(self, schema):
        return schema.input_size + 2     # x, the value, the query flag

    def record_spec(self, schema):
        n = schema.episode_length
        return {**_IDS, "x": tf.io.FixedLenFeature([n * schema.input_size], tf.float32),
                "y": tf.io.FixedLenFeature([n], tf.float32),
                "clean": tf.io.FixedLenFeature([n], tf.float32),
                "query": tf.io.FixedLenFeature([n], tf.int64)}

    def feature_specs(self, schema, length):
        return {INPUTS: tf.TensorSpec([None, length, schema.input_size], tf.float32, name=INPUTS),
                VALUES: tf.TensorSpec([None, length], tf.float32, name=VALUES),
                QUERY: tf.TensorSpec([None, length], tf.float32, name=QUERY)}

    def target_spec(self, schema, length):
        return tf.TensorSpec([None, length, 2], tf.float32, name=TARGETS)


# each kind's layout, as its registration (`config.kinds`) names it
CLASSIFICATION_LAYOUT = ClassificationLayout()
REGRESSION_LAYOUT = RegressionLayout()
DEFAULT_TASK = kind_registry.DEFAULT


def layout_of(task: str) -> Layout:
    """The layout of the episodes of `task`; an unknown one is an error naming the known ones."""
    return kind_registry.part(task, "layout")


@dataclasses.dataclass(frozen=True)
class EpisodeSchema:
    """Shapes of one episode; the same object describes storage and model I/O."""

    episode_length: int
    input_size: int
    num_classes: int
    task: str = DEFAULT_TASK
    num_queries: int = 0
    stored_dim: int = 0

    def __post_init__(self):
        layout_of(self.task)  # an unknown task is an error naming the known ones
        for name in ("episode_length", "input_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name}={value!r} must be a positive integer")
        self.layout.check(self)

    @property
    def layout(self) -> Layout:
        """The layout of these episodes' kind."""
        return layout_of(self.task)

    @property
    def token_size(self) -> int:
        return self.layout.token_size(self)

    def record_spec(self) -> dict[str, tf.io.FixedLenFeature]:
        """Feature spec of a stored episode record."""
        return self.layout.record_spec(self)

    def feature_specs(self, length: int | None = None) -> dict[str, tf.TensorSpec]:
        """Model input specs (batch-first); `length` None allows any length."""
        return self.layout.feature_specs(self, length)

    def target_spec(self, length: int | None = None) -> tf.TensorSpec:
        return self.layout.target_spec(self, length)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["record"] = {k: {"shape": list(v.shape), "dtype": v.dtype.name}
                       for k, v in self.record_spec().items()}
        d["features"] = {k: {"shape": [self.episode_length, *v.shape[2:]], "dtype": v.dtype.name}
                         for k, v in self.feature_specs().items()}
        t = self.target_spec()
        d["targets"] = {"shape": [self.episode_length, *t.shape[2:]], "dtype": t.dtype.name}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EpisodeSchema":
        return cls(episode_length=d["episode_length"], input_size=d["input_size"],
                   num_classes=d["num_classes"], task=d.get("task", DEFAULT_TASK),
                   num_queries=d.get("num_queries", 0), stored_dim=d.get("stored_dim", 0))
