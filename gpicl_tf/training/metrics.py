"""Per-position accuracy metrics for sequences of predictions (B, T, C)."""

from __future__ import annotations

import keras
from keras import ops

from gpicl_tf.models.layers import sequence_accuracy_parts


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


def sequence_metrics(window: int = 10) -> list[keras.metrics.Metric]:
    return [PositionAccuracy(name="accuracy"),
            PositionAccuracy(0, window, name=f"acc_first{window}"),
            PositionAccuracy(-window, None, name=f"acc_last{window}"),
            WithinSequenceImprovement(window)]
