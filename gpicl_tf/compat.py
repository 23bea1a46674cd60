"""Every private API of Keras and Keras Tuner that gpicl_tf relies on, in one place.

Each name below says in its docstring which private name or internal state it
relies on. tests/test_compat.py pins the versions of requirements.txt
(`KERAS_VERSION`, `KERAS_TUNER_VERSION`) and checks that each of them still
exists and behaves as relied on: upgrading either library starts there.
Keras Tuner is imported only inside the functions that need it.
"""

from __future__ import annotations

import keras

KERAS_VERSION = "3.15.1"
KERAS_TUNER_VERSION = "1.4.8"


class BackupAndRestoreHooks(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` with public names for its save and
    restore steps and the paths and counters they use, for a subclass to override."""

    def _save_model(self):
        """Relies on Keras calling `_save_model` at every save point (epoch or batch end)."""
        self.save_state()

    def save_state(self) -> None:
        """Writes the weights and the training metadata (Keras' own writer by default)."""
        super()._save_model()

    def load_state(self) -> None:
        """Relies on `_load_model` loading `weights_path` and setting the model's initial epoch."""
        self._load_model()

    @property
    def weights_path(self) -> str:
        """Relies on `_weights_path`, where Keras writes and reads the latest weights."""
        return self._weights_path

    @property
    def metadata_path(self) -> str:
        """Relies on `_training_metadata_path`, the JSON of the epoch and batch saved."""
        return self._training_metadata_path

    @property
    def prev_weights_path(self) -> str:
        """Relies on `_prev_weights_path`, the previous weights kept by double_checkpoint."""
        return self._prev_weights_path

    @property
    def current_epoch(self) -> int:
        """Relies on `_current_epoch`, the number of epochs done (set at each epoch end)."""
        return self._current_epoch

    @property
    def last_batch_seen(self) -> int:
        """Relies on `_last_batch_seen`, the batch index within the epoch last seen."""
        return self._last_batch_seen


def initial_epoch(model: keras.Model) -> int | None:
    """Relies on `Model._initial_epoch`, the epoch a restore tells `fit` to start from."""
    return model._initial_epoch


def ongoing_trials(oracle) -> dict:
    """Relies on `Oracle.ongoing_trials`, the oracle's map of tuner id to running trial."""
    return oracle.ongoing_trials


def tuner_ids(oracle) -> set:
    """Relies on `Oracle.tuner_ids`, the oracle's set of tuners it is waiting on."""
    return oracle.tuner_ids


def fail_trial(oracle, tuner_id: str, trial, message: str) -> None:
    """Relies on `keras_tuner.engine.trial.TrialStatus` and on the oracle's internal
    `ongoing_trials` and `tuner_ids`: ends `trial` as FAILED and forgets its tuner."""
    import keras_tuner

    trial.status = keras_tuner.engine.trial.TrialStatus.FAILED
    trial.message = message
    oracle.end_trial(trial)
    oracle.ongoing_trials.pop(tuner_id, None)
    oracle.tuner_ids.discard(tuner_id)
