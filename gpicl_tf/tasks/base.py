"""The interface every task kind implements (`gpicl_tf.tasks`)."""

from __future__ import annotations

import abc

import numpy as np
import tensorflow as tf

from gpicl_tf.errors import InvalidInputError


def feature(kind: str, values) -> tf.train.Feature:
    """A tf.train.Feature of int64 ("int") or float32 ("float") values."""
    if kind == "int":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def serialize(features: dict) -> bytes:
    """A stored episode record: the tf.train.Example of `features`, deterministic bytes."""
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(
        deterministic=True)


class Task(abc.ABC):
    """One kind of episode and everything that depends on it.

    Capabilities (class attributes) say which shared machinery applies:
    `curriculum` (the label-permutation bias and its plateau schedule),
    `device_episodes` (episodes built inside the train step), `exportable` (the
    classification serving signature), `tunable` (the Keras Tuner search
    scores accuracy), `sequence_baselines` (LSTM and MLP trained beside the
    Transformer in the main job).
    """

    name: str = ""
    curriculum: bool = False
    device_episodes: bool = False
    exportable: bool = False
    tunable: bool = False
    sequence_baselines: bool = False
    held_out: str = "unseen tasks"        # how reports name the meta-test set
    unseen_source: str = "unseen dataset"  # and a set from another source

    @abc.abstractmethod
    def claims(self, source: str) -> bool:
        """Whether `source` (data.source) writes this task's episodes."""

    def settings(self, data_config) -> tuple[str, ...]:
        """The config sections besides `data` that this source's episodes are
        written with (what an episode cache must key on)."""
        return ()

    def label(self, source: str) -> str:
        """How reports name a source of this task."""
        return source

    # ------------------------------------------------------------- schema
    @abc.abstractmethod
    def check_schema(self, schema) -> None:
        """Raises naming the field when `schema` is not a valid episode of this task."""

    @abc.abstractmethod
    def token_size(self, schema) -> int:
        """Size of one model token: x and what the task appends to it."""

    @abc.abstractmethod
    def record_spec(self, schema) -> dict[str, tf.io.FixedLenFeature]:
        """Feature spec of a stored episode record."""

    @abc.abstractmethod
    def feature_specs(self, schema, length: int | None) -> dict[str, tf.TensorSpec]:
        """Model input specs (batch-first); `length` None allows any length."""

    @abc.abstractmethod
    def target_spec(self, schema, length: int | None) -> tf.TensorSpec:
        """Spec of the targets (batch-first)."""

    # ------------------------------------------------------------- episodes
    @abc.abstractmethod
    def writer(self, config, plans, functions_config, prior_config):
        """(schema, prepare) for `episodes.write_episodes`: prepare(out_dir) stores
        what the records refer to and returns (manifest extras, make_records)."""

    @abc.abstractmethod
    def feature_builder(self, episodes, split: str, batch_size: int, bias, bias_mode: str):
        """(position, raw record) -> (features, targets), inside tf.data."""

    @abc.abstractmethod
    def served_stage(self, episodes, split: str):
        """raw record -> what a tf.data service worker sends."""

    @abc.abstractmethod
    def trainer_stage(self, schema, seed: int, batch_size: int, bias):
        """(position, served element) -> (features, targets), in the trainer."""

    @abc.abstractmethod
    def record_check(self, schema, manifest: dict, split_info: dict):
        """A function of a parsed record returning a problem or None (inspection)."""

    # ------------------------------------------------------------- model and training
    def check_model(self, model_config) -> None:
        """Raises naming the setting when the model cannot learn this task."""

    @abc.abstractmethod
    def build_model(self, model_config, schema):
        """The Keras model of `model_config` for this task's episodes."""

    def check_training(self, train_config) -> None:
        """Raises naming the setting when training cannot apply it to this task."""
        t = train_config
        if t.bias_fraction > 0 and not self.curriculum:
            raise InvalidInputError(
                f"train.bias_fraction={t.bias_fraction}: the curriculum biases label "
                f"permutations; {self.name} episodes take none (set 0)")
        if t.stop_at_plateau_exit and not self.curriculum:
            raise InvalidInputError(
                "train.stop_at_plateau_exit=True: the plateau is a classification loss level "
                f"(ln C); {self.name} runs have none")
        if t.episodes_on_device and not self.device_episodes:
            raise InvalidInputError(
                f"train.episodes_on_device=True: {self.name} episodes are built on the host only")

    @abc.abstractmethod
    def loss(self):
        """The Keras loss of `Model.compile`."""

    @abc.abstractmethod
    def metrics(self, schema) -> list:
        """The Keras metrics of `Model.compile`."""

    @abc.abstractmethod
    def example_losses(self, y_true, y_pred) -> tf.Tensor:
        """Loss per episode [B] whose batch mean is `fit`'s loss (the custom loop)."""

    @abc.abstractmethod
    def batch_sums(self, y_true, y_pred, window: int) -> tf.Tensor:
        """float32 [K] sums whose ratios are the metrics (`metric_logs`)."""

    @abc.abstractmethod
    def metric_logs(self, sums: np.ndarray, window: int) -> dict:
        """The `fit` metric names and values from summed `batch_sums`."""

    # ------------------------------------------------------------- evaluation
    @abc.abstractmethod
    def evaluate(self, models: dict[str, str], sets: dict, tune_set: tuple, eval_config) -> dict:
        """The report of `models` (name -> model file) on `sets` against the task's
        baselines, tuned on `tune_set` (episode dir, split)."""

    @abc.abstractmethod
    def write_report(self, report: dict, out_dir: str) -> dict:
        """Writes report.json, report.md and the plots to `out_dir`; returns their paths."""

    @abc.abstractmethod
    def markdown(self, report: dict) -> str:
        """The report's tables as Markdown."""
