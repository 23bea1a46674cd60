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
all take their keys, shapes and dtypes from `EpisodeSchema`, which asks its
task (`gpicl_tf.tasks`) for them.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from gpicl_tf import tasks
from gpicl_tf.errors import InvalidInputError

FORMAT = "gpicl_tf.episodes/1"
INPUTS = "inputs"
LABELS = "labels"
TARGETS = "targets"
VALUES = "values"
QUERY = "query"


@dataclasses.dataclass(frozen=True)
class EpisodeSchema:
    """Shapes of one episode; the same object describes storage and model I/O."""

    episode_length: int
    input_size: int
    num_classes: int
    task: str = tasks.DEFAULT
    num_queries: int = 0
    stored_dim: int = 0

    def __post_init__(self):
        tasks.get(self.task)  # an unknown task is an error naming the known ones
        for name in ("episode_length", "input_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name}={value!r} must be a positive integer")
        self.kind.check_schema(self)

    @property
    def kind(self) -> tasks.Task:
        """The task object of these episodes."""
        return tasks.get(self.task)

    @property
    def token_size(self) -> int:
        return self.kind.token_size(self)

    def record_spec(self) -> dict[str, tf.io.FixedLenFeature]:
        """Feature spec of a stored episode record."""
        return self.kind.record_spec(self)

    def feature_specs(self, length: int | None = None) -> dict[str, tf.TensorSpec]:
        """Model input specs (batch-first); `length` None allows any length."""
        return self.kind.feature_specs(self, length)

    def target_spec(self, length: int | None = None) -> tf.TensorSpec:
        return self.kind.target_spec(self, length)

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
                   num_classes=d["num_classes"], task=d.get("task", tasks.DEFAULT),
                   num_queries=d.get("num_queries", 0), stored_dim=d.get("stored_dim", 0))
