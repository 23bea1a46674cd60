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

The writer, the reader, the models' named inputs and (later) the serving
signatures all take their keys, shapes and dtypes from `EpisodeSchema`.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

FORMAT = "gpicl_tf.episodes/1"
INPUTS = "inputs"
LABELS = "labels"
TARGETS = "targets"


@dataclasses.dataclass(frozen=True)
class EpisodeSchema:
    """Shapes of one episode; the same object describes storage and model I/O."""

    episode_length: int
    input_size: int
    num_classes: int

    def __post_init__(self):
        for name in ("episode_length", "input_size", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if self.num_classes < 2:
            raise ValueError(f"num_classes={self.num_classes} must be at least 2")

    @property
    def token_size(self) -> int:
        return self.input_size + self.num_classes

    def record_spec(self) -> dict[str, tf.io.FixedLenFeature]:
        """Feature spec of a stored episode record."""
        return {
            "episode_id": tf.io.FixedLenFeature([], tf.int64),
            "task_id": tf.io.FixedLenFeature([], tf.int64),
            "indices": tf.io.FixedLenFeature([self.episode_length], tf.int64),
        }

    def feature_specs(self, length: int | None = None) -> dict[str, tf.TensorSpec]:
        """Model input specs (batch-first); `length` None allows any length."""
        return {INPUTS: tf.TensorSpec([None, length, self.input_size], tf.float32, name=INPUTS),
                LABELS: tf.TensorSpec([None, length], tf.int32, name=LABELS)}

    def target_spec(self, length: int | None = None) -> tf.TensorSpec:
        return tf.TensorSpec([None, length], tf.int32, name=TARGETS)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["record"] = {k: {"shape": list(v.shape), "dtype": v.dtype.name}
                       for k, v in self.record_spec().items()}
        d["features"] = {INPUTS: {"shape": [self.episode_length, self.input_size],
                                  "dtype": "float32"},
                         LABELS: {"shape": [self.episode_length], "dtype": "int32"}}
        d["targets"] = {"shape": [self.episode_length], "dtype": "int32"}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EpisodeSchema":
        return cls(episode_length=d["episode_length"], input_size=d["input_size"],
                   num_classes=d["num_classes"])
