"""The curriculum callback: drives the input pipeline's bias variable."""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from absl import logging

SCHEDULES = ("constant", "linear", "plateau")
MONITORS = ("val_loss", "loss")


def bias_at(schedule: str, fraction: float, step: int, anneal_steps: int,
            left_plateau: bool) -> float:
    """The bias fraction at `step`.

    constant: `fraction` throughout; linear: from `fraction` down to 0 over
    `anneal_steps`; plateau: `fraction` until the loss has left the plateau, 0 after.
    """
    if schedule == "constant":
        return fraction
    if schedule == "linear":
        return fraction * max(0.0, 1.0 - step / max(anneal_steps, 1))
    if schedule == "plateau":
        return 0.0 if left_plateau else fraction
    raise ValueError(f"bias_schedule={schedule!r} is not one of {SCHEDULES}")


class CurriculumCallback(keras.callbacks.Callback):
    """Sets the pipeline's bias fraction before every training batch.

    Args:
        bias: the `tf.Variable` read by the tf.data map
            (`gpicl_tf.data.pipeline.make_bias_variable`).
        schedule: "constant", "linear" or "plateau".
        fraction: the initial fraction of each batch that uses the fixed task.
        anneal_steps: length of the linear anneal.
        num_classes: chance loss is ln(num_classes); the plateau is left once the
            monitored loss falls below (1 - plateau_drop) * ln(num_classes).
        plateau_drop: relative drop below chance loss that counts as leaving.
        monitor: "val_loss" (the default): the loss on unseen tasks at the end of
            each epoch. The biased training loss is a poor signal: a fixed task is
            memorised within tens of steps, long before the learner generalises,
            so "loss" (checked after every batch) is only for runs without
            meta-validation.
        left_plateau: the plateau was already left (a resumed run).
    """

    def __init__(self, bias: tf.Variable, schedule: str = "constant", fraction: float = 0.0,
                 anneal_steps: int = 1000, num_classes: int = 10, plateau_drop: float = 0.1,
                 monitor: str = "val_loss", left_plateau: bool = False):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"bias_schedule={schedule!r} is not one of {SCHEDULES}")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"bias_fraction={fraction} must be in [0, 1]")
        if monitor not in MONITORS:
            raise ValueError(f"monitor={monitor!r} is not one of {MONITORS}")
        self.bias, self.schedule, self.fraction = bias, schedule, fraction
        self.anneal_steps, self.plateau_drop, self.monitor = anneal_steps, plateau_drop, monitor
        self.threshold = plateau_threshold(num_classes, plateau_drop)
        self.left_plateau = left_plateau
        self._logged = None

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def on_train_batch_begin(self, batch, logs=None):
        value = bias_at(self.schedule, self.fraction, self._step(), self.anneal_steps,
                        self.left_plateau)
        if value != float(self.bias.numpy()):
            self.bias.assign(value)
        if self._logged is None or abs(value - self._logged) >= 0.05 or \
                (value == 0.0) != (self._logged == 0.0):
            logging.info("curriculum: step %d bias fraction %.3f", self._step(), value)
            self._logged = value

    def _check(self, logs) -> None:
        loss = (logs or {}).get(self.monitor)
        if self.schedule == "plateau" and not self.left_plateau and loss is not None \
                and float(loss) < self.threshold:
            self.left_plateau = True
            logging.info("curriculum: %s %.3f < %.3f at step %d: plateau left, bias off",
                         self.monitor, float(loss), self.threshold, self._step())

    def on_train_batch_end(self, batch, logs=None):
        if self.monitor == "loss":
            self._check(logs)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["bias_fraction"] = float(self.bias.numpy())
        if self.monitor == "val_loss":
            self._check(logs)


def plateau_threshold(num_classes: int, plateau_drop: float) -> float:
    return (1.0 - plateau_drop) * math.log(num_classes)


def plateau_left_in(history: list[dict], monitor: str, threshold: float) -> bool:
    """Whether any recorded epoch (history.csv rows) had `monitor` below threshold."""
    return any(float(row.get(monitor) or math.inf) < threshold for row in history)
