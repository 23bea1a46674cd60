"""Training under a wall-clock budget: a learning-rate schedule over elapsed time.

A compute-budgeted comparison (the recipe search) gives every trial the same
seconds, not the same steps: a model twice as fast takes twice the steps. The
schedule warms up linearly over `warmup_steps` steps, then follows a cosine
from `peak` to `peak * min_ratio` over the budget's *time*; `BudgetClock`
advances its progress after every step and stops training when the budget is
spent. The clock starts after the first step, so compilation is not counted;
validation between epochs is.
"""

from __future__ import annotations

import math
import time

import keras
import tensorflow as tf

from gpicl_tf.errors import InvalidInputError


@keras.saving.register_keras_serializable(package="gpicl_tf")
class BudgetSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up over steps, then a cosine over the budget's elapsed fraction
    (`progress`, a variable in [0, 1] that `BudgetClock` advances)."""

    def __init__(self, peak: float, warmup_steps: int, min_ratio: float,
                 progress: tf.Variable | None = None):
        if not peak > 0 or warmup_steps < 0 or not 0.0 <= min_ratio <= 1.0:
            raise InvalidInputError(f"BudgetSchedule(peak={peak}, warmup_steps={warmup_steps}, "
                                    f"min_ratio={min_ratio}): peak > 0, warmup_steps >= 0, "
                                    "min_ratio in [0, 1]")
        self.peak, self.warmup_steps, self.min_ratio = peak, warmup_steps, min_ratio
        self.progress = progress if progress is not None else tf.Variable(
            0.0, trainable=False, dtype=tf.float32, name="budget_progress")

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * tf.minimum(1.0, (step + 1.0) / max(self.warmup_steps, 1))
        p = tf.clip_by_value(tf.convert_to_tensor(self.progress), 0.0, 1.0)
        cosine = self.peak * (self.min_ratio + (1.0 - self.min_ratio) * 0.5 *
                              (1.0 + tf.cos(math.pi * p)))
        return tf.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "min_ratio": self.min_ratio}


class BudgetClock(keras.callbacks.Callback):
    """Advances `schedule.progress` to elapsed / `seconds` after every step and
    stops training once `seconds` have passed since the end of the first step.
    Adds `steps` (optimizer steps so far) to each epoch's logs."""

    def __init__(self, schedule: BudgetSchedule, seconds: float, clock=time.monotonic):
        super().__init__()
        if not seconds > 0:
            raise InvalidInputError(f"a time budget of {seconds!r} seconds: must be > 0")
        self.schedule, self.seconds, self.clock = schedule, float(seconds), clock
        self.start = None
        self.elapsed = 0.0

    def on_train_begin(self, logs=None):
        self.start = None
        self.schedule.progress.assign(0.0)

    def on_train_batch_end(self, batch, logs=None):
        now = self.clock()
        if self.start is None:
            self.start = now
            return
        self.elapsed = now - self.start
        self.schedule.progress.assign(min(1.0, self.elapsed / self.seconds))
        if self.elapsed >= self.seconds:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["steps"] = float(self.model.optimizer.iterations.numpy())
