"""The curriculum callback: drives the input pipeline's bias variable."""

from __future__ import annotations

import json
import math
import os
import shutil

import keras
import tensorflow as tf
from absl import logging

from gpicl_tf import compat
from gpicl_tf.config import BIAS_SCHEDULES as SCHEDULES
from gpicl_tf.errors import GpiclError, InvalidInputError, UnavailableError

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
    raise InvalidInputError(f"bias_schedule={schedule!r} is not one of {SCHEDULES}")


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
            raise InvalidInputError(f"bias_schedule={schedule!r} is not one of {SCHEDULES}")
        if not 0.0 <= fraction <= 1.0:
            raise InvalidInputError(f"bias_fraction={fraction} must be in [0, 1]")
        if monitor not in MONITORS:
            raise InvalidInputError(f"monitor={monitor!r} is not one of {MONITORS}")
        self.bias, self.schedule, self.fraction = bias, schedule, fraction
        self.anneal_steps, self.plateau_drop, self.monitor = anneal_steps, plateau_drop, monitor
        self.threshold = plateau_threshold(num_classes, plateau_drop)
        self.left_plateau = left_plateau
        self._logged = None
        self._epoch_start = None   # the optimizer's step at this epoch's start
        self._value = None         # the value last assigned to `bias`

    def _step(self, batch: int | None = None) -> int:
        """The global step of `batch` in this epoch: counted from the step read once
        at the epoch's start, so no batch waits for the device to read it back (a
        host round trip per step); read from the optimizer outside an epoch."""
        if batch is None or self._epoch_start is None:
            return int(self.model.optimizer.iterations.numpy())
        return self._epoch_start + batch

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_begin(self, batch, logs=None):
        step = self._step(batch)
        value = bias_at(self.schedule, self.fraction, step, self.anneal_steps,
                        self.left_plateau)
        if value != self._value:
            self.bias.assign(value)
            self._value = value
        if self._logged is None or abs(value - self._logged) >= 0.05 or \
                (value == 0.0) != (self._logged == 0.0):
            logging.info("curriculum: step %d bias fraction %.3f", step, value)
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


class PlateauStop(keras.callbacks.Callback):
    """Ends training after the first epoch whose `monitor` falls below
    `threshold` (the plateau studies measure when the plateau is left and need
    no steps after it)."""

    def __init__(self, threshold: float, monitor: str = "val_loss"):
        super().__init__()
        self.threshold, self.monitor = threshold, monitor

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get(self.monitor)
        if loss is not None and float(loss) < self.threshold:
            logging.info("%s %.3f < %.3f after epoch %d: plateau left, training stops",
                         self.monitor, float(loss), self.threshold, epoch + 1)
            self.model.stop_training = True


class NonFiniteError(GpiclError, FloatingPointError):
    """Training produced a non-finite loss or weight (names the epoch and what)."""


class FiniteGuard(keras.callbacks.Callback):
    """Stops training with `NonFiniteError` when an epoch ends with a non-finite
    loss or weight (checked once per epoch: no extra synchronisation per step),
    so a diverged run fails loudly instead of saving and exporting NaNs."""

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        bad = [k for k, v in logs.items() if isinstance(v, (int, float)) and not math.isfinite(v)]
        if bad:
            raise NonFiniteError(f"epoch {epoch + 1}: {', '.join(f'{k}={logs[k]}' for k in bad)}"
                                 " is not finite; lower train.learning_rate or check the data")
        name = first_non_finite_weight(self.model)
        if name:
            raise NonFiniteError(f"epoch {epoch + 1}: weight {name!r} holds NaN or Inf; lower "
                                 "train.learning_rate or check the data")


def first_non_finite_weight(model: keras.Model) -> str | None:
    """The path of the first weight holding NaN or Inf, or None."""
    for w in model.weights:
        if not bool(tf.reduce_all(tf.math.is_finite(tf.cast(w.value, tf.float32)))):
            return w.path
    return None


def backup_epoch(backup_dir: str) -> int:
    """The epoch a run resumes from: the epoch counter of the state that
    `AtomicBackupAndRestore` will restore (the previous one when the latest is
    unreadable), or 0 for a fresh run."""
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        path = os.path.join(backup_dir, name)
        if not os.path.exists(path):
            continue
        try:
            with open(path) as f:
                return int(json.load(f)["epoch"])
        except (ValueError, KeyError, TypeError, OSError):
            continue
    return 0


class AtomicBackupAndRestore(compat.BackupAndRestoreHooks):
    """BackupAndRestore whose resume state is never half-written.

    The weights and the epoch counter are written under temporary names and
    renamed into place, keeping the previous state as `*.bkp`. An unreadable
    state file at resume falls back to the previous one with a warning naming
    the bad file; with no previous state it is an error naming the file.
    """

    def __init__(self, backup_dir: str):
        super().__init__(backup_dir, double_checkpoint=True)

    def save_state(self) -> None:
        os.makedirs(self.backup_dir, exist_ok=True)
        pid = os.getpid()
        weights_tmp = os.path.join(self.backup_dir, f".tmp-{pid}-latest.weights.h5")
        meta_tmp = os.path.join(self.backup_dir, f".tmp-{pid}-training_metadata.json")
        self.model.save_weights(weights_tmp, overwrite=True)
        with open(meta_tmp, "w") as f:
            json.dump({"epoch": self.current_epoch, "batch": self.last_batch_seen}, f)
            f.flush()
            os.fsync(f.fileno())
        for path in (self.weights_path, self.metadata_path):
            if os.path.exists(path):
                shutil.copyfile(path, path + ".tmp-bkp")
                os.replace(path + ".tmp-bkp", path + ".bkp")
        os.replace(weights_tmp, self.weights_path)
        os.replace(meta_tmp, self.metadata_path)

    def on_train_begin(self, logs=None):
        try:
            self.load_state()
        except Exception as e:  # noqa: BLE001  (h5py raises OSError, json ValueError, ...)
            bad = f"{self.weights_path} or {self.metadata_path}"
            if not os.path.exists(self.prev_weights_path):
                raise UnavailableError(
                    f"resume state {bad} is unreadable ({type(e).__name__}: "
                    f"{e}) and no previous state exists; delete "
                    f"{self.backup_dir} to start the run over") from e
            logging.warning("resume state %s is unreadable (%s); falling back to the "
                            "previous epoch's state %s", bad, e, self.prev_weights_path)
            for path in (self.weights_path, self.metadata_path):
                if os.path.exists(path + ".bkp"):
                    os.replace(path + ".bkp", path)
            self.load_state()
