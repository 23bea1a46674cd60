"""What training minimises and reports for each kind of episode (`EpisodeSchema.task`):
the Keras loss and metrics of `Model.compile`, and the per-episode losses and
metric sums of the custom loop (`training.loop`), which reproduce `fit`'s.

Example:
    >>> of(EpisodeSchema(12, 4, 3)).metric_logs(np.array([6., 12., 2., 4., 5.]), 5)["accuracy"]
    0.5
"""

from __future__ import annotations

import abc

import numpy as np
import tensorflow as tf

from gpicl_tf.config import kinds as kind_registry
from gpicl_tf.data.schema import EpisodeSchema
from gpicl_tf.models.layers import sequence_accuracy_parts
from gpicl_tf.training.metrics import (EpisodeCrossEntropy, QueryMSE, episode_cross_entropy,
                                       query_mse, sequence_metrics)


class Objective(abc.ABC):
    """The loss and metrics of one kind of episode."""

    @abc.abstractmethod
    def loss(self):
        """The Keras loss of `Model.compile`."""

    @abc.abstractmethod
    def metrics(self, schema: EpisodeSchema) -> list:
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


class Classification(Objective):
    """Cross-entropy over each episode's classes; accuracy, first and last positions."""

    def loss(self):
        return EpisodeCrossEntropy()

    def metrics(self, schema):
        return sequence_metrics(min(10, schema.episode_length))

    def example_losses(self, y_true, y_pred):
        per_token = episode_cross_entropy(y_true, y_pred)
        return tf.reduce_mean(tf.cast(per_token, tf.float32), axis=-1)

    def batch_sums(self, y_true, y_pred, window):
        hits = tf.cast(sequence_accuracy_parts(y_true, y_pred), tf.float32)   # [B, N]
        first, last = hits[:, :window], hits[:, -window:]
        return tf.stack([tf.reduce_sum(hits), tf.cast(tf.size(hits), tf.float32),
                         tf.reduce_sum(first), tf.reduce_sum(last),
                         tf.cast(tf.size(first), tf.float32)])

    def metric_logs(self, sums, window):
        div = (lambda a, b: float(a / b) if b else 0.0)
        total, count, first, last, wcount = (float(v) for v in sums)
        return {"accuracy": div(total, count), f"acc_first{window}": div(first, wcount),
                f"acc_last{window}": div(last, wcount), "improvement": div(last - first, wcount)}


class Regression(Objective):
    """Mean squared error on the query points."""

    def loss(self):
        return query_mse

    def metrics(self, schema):
        return [QueryMSE()]

    def example_losses(self, y_true, y_pred):
        return query_mse(y_true, y_pred)

    def batch_sums(self, y_true, y_pred, window):
        y, query = y_true[..., 0], y_true[..., 1]
        sq = tf.square(tf.cast(y_pred, tf.float32) - y) * query
        return tf.stack([tf.reduce_sum(sq), tf.reduce_sum(query)])

    def metric_logs(self, sums, window):
        return {"mse": float(sums[0] / sums[1]) if sums[1] else 0.0}


# each kind's objective, as its registration (`config.kinds`) names it
CLASSIFICATION = Classification()
REGRESSION = Regression()


def of(schema: EpisodeSchema) -> Objective:
    """The objective of the episodes `schema` describes."""
    return kind_registry.part(schema.task, "objective")
