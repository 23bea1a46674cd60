"""The episode loss and per-position accuracy metrics for sequences of
predictions (B, T, C), each over its episode's own classes."""

from __future__ import annotations

import keras
from keras import ops

from gpicl_tf.models.layers import mask_absent_classes, sequence_accuracy_parts


def episode_cross_entropy(y_true, y_pred):
    """Per-token cross-entropy (B, T) of logits over the classes of each episode:
    logits of classes no target of the episode names are masked, so a 3-class task
    under a 10-class head is a 3-way choice. Equal bit for bit to sparse
    categorical cross-entropy where every class is present."""
    return keras.losses.sparse_categorical_crossentropy(
        y_true, mask_absent_classes(y_pred, y_true), from_logits=True)


@keras.saving.register_keras_serializable(package="gpicl_tf")
class EpisodeCrossEntropy(keras.losses.Loss):
    """`episode_cross_entropy`, averaged over tokens and episodes (as Keras'
    SparseCategoricalCrossentropy averages)."""

    def __init__(self, name: str = "episode_cross_entropy", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return episode_cross_entropy(y_true, y_pred)


@keras.saving.register_keras_serializable(package="gpicl_tf")
class PositionAccuracy(keras.metrics.Metric):
    """Accuracy over positions [start, stop) of every sequence.

    Negative indices count from the end, so `PositionAccuracy(-10, None)` is
    the accuracy over the last 10 positions, whatever the sequence length.
    """

    def __init__(self, start: int = 0, stop: int | None = None, name: str = "accuracy",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.start, self.stop = start, stop
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        del sample_weight
        hits = sequence_accuracy_parts(y_true, y_pred)[:, self.start:self.stop]  # (B, T')
        self.correct.assign_add(ops.sum(hits))
        self.count.assign_add(ops.cast(ops.size(hits), "float32"))

    def result(self):
        return ops.divide_no_nan(self.correct, self.count)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@keras.saving.register_keras_serializable(package="gpicl_tf")
class WithinSequenceImprovement(keras.metrics.Metric):
    """Accuracy over the last `window` positions minus over the first `window`:
    the signature of in-context learning."""

    def __init__(self, window: int = 10, name: str = "improvement", **kwargs):
        super().__init__(name=name, **kwargs)
        self.window = window
        self.first = self.add_variable(shape=(), initializer="zeros", name="first_correct")
        self.last = self.add_variable(shape=(), initializer="zeros", name="last_correct")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        del sample_weight
        hits = sequence_accuracy_parts(y_true, y_pred)                     # (B, T)
        self.first.assign_add(ops.sum(hits[:, :self.window]))
        self.last.assign_add(ops.sum(hits[:, -self.window:]))
        self.count.assign_add(ops.cast(ops.size(hits[:, :self.window]), "float32"))

    def result(self):
        return ops.divide_no_nan(self.last - self.first, self.count)

    def get_config(self):
        return {**super().get_config(), "window": self.window}


@keras.saving.register_keras_serializable(package="gpicl_tf")
def query_mse(y_true, y_pred):
    """Mean squared error over the query points of each episode.

    y_true (B, N, 2) holds (y, query flag); y_pred (B, N). Returns (B,): the
    mean over each episode's queries (Keras then averages over the batch).
    """
    y, query = y_true[..., 0], y_true[..., 1]
    squared = ops.square(ops.cast(y_pred, y.dtype) - y) * query
    return ops.divide_no_nan(ops.sum(squared, axis=-1), ops.sum(query, axis=-1))


@keras.saving.register_keras_serializable(package="gpicl_tf")
class QueryMSE(keras.metrics.Metric):
    """Mean squared error over every query point seen (the regression metric)."""

    def __init__(self, name: str = "mse", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        del sample_weight
        y, query = y_true[..., 0], y_true[..., 1]
        self.total.assign_add(ops.sum(ops.square(ops.cast(y_pred, y.dtype) - y) * query))
        self.count.assign_add(ops.sum(query))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)


def sequence_metrics(window: int = 10) -> list[keras.metrics.Metric]:
    return [PositionAccuracy(name="accuracy"),
            PositionAccuracy(0, window, name=f"acc_first{window}"),
            PositionAccuracy(-window, None, name=f"acc_last{window}"),
            WithinSequenceImprovement(window)]
