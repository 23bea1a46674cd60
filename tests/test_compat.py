"""The private APIs of Keras and Keras Tuner that gpicl_tf/compat.py relies on still
exist and behave as relied on, at the versions pinned in requirements.txt."""

import json
import os
import re

import keras
import keras_tuner
import numpy as np

from gpicl_tf import compat

REQUIREMENTS = os.path.join(os.path.dirname(__file__), "..", "requirements.txt")


def _pinned(name: str) -> str:
    with open(REQUIREMENTS) as f:
        return re.search(rf"^{re.escape(name)}==(\S+)$", f.read(), re.M).group(1)


def test_versions_are_the_pinned_ones():
    assert compat.KERAS_VERSION == _pinned("keras") == keras.__version__
    assert compat.KERAS_TUNER_VERSION == _pinned("keras-tuner") == keras_tuner.__version__


def _model() -> keras.Model:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def test_backup_and_restore_keeps_the_private_names_the_hooks_use(tmp_path):
    names = ("save_state", "load_state", "weights_path", "metadata_path",
             "prev_weights_path", "current_epoch", "last_batch_seen")
    assert not [n for n in names if hasattr(keras.callbacks.BackupAndRestore, n)]  # no shadowing
    for hook in ("_save_model", "_load_model"):
        assert callable(getattr(keras.callbacks.BackupAndRestore, hook))
    callback = compat.BackupAndRestoreHooks(str(tmp_path), double_checkpoint=True)
    assert callback.weights_path == os.path.join(str(tmp_path), "latest.weights.h5")
    assert callback.metadata_path == os.path.join(str(tmp_path), "training_metadata.json")
    assert callback.prev_weights_path == callback.weights_path + ".bkp"
    assert (callback.current_epoch, callback.last_batch_seen) == (0, 0)


def test_keras_saves_through_save_model_and_restores_the_initial_epoch(tmp_path):
    saved = []

    class Recording(compat.BackupAndRestoreHooks):
        def save_state(self):
            saved.append((self.current_epoch, self.last_batch_seen))
            super().save_state()

    model = _model()
    model.optimizer.build(model.trainable_variables)
    callback = Recording(str(tmp_path))
    callback.set_model(model)
    for epoch in range(3):
        callback.on_epoch_end(epoch)
    assert saved == [(1, 0), (2, 0), (3, 0)]       # Keras calls _save_model at each epoch end
    with open(callback.metadata_path) as f:
        assert json.load(f) == {"epoch": 3, "batch": 0}
    assert compat.initial_epoch(model) is None     # Model._initial_epoch: none before a restore
    weights = [w.copy() for w in model.get_weights()]
    model.set_weights([np.zeros_like(w) for w in weights])
    fresh = compat.BackupAndRestoreHooks(str(tmp_path))
    fresh.set_model(model)
    fresh.load_state()
    assert compat.initial_epoch(model) == 3
    for got, want in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(got, want)


def test_oracle_internal_state_and_failing_a_trial(tmp_path):
    def build(hp):
        hp.Choice("units", [1, 2])
        return _model()

    tuner = keras_tuner.RandomSearch(build, objective="val_loss", max_trials=2,
                                     directory=str(tmp_path), project_name="p", seed=0)
    oracle = tuner.oracle
    trial = oracle.create_trial("tuner0")
    assert compat.ongoing_trials(oracle) == {"tuner0": trial}
    assert "tuner0" in compat.tuner_ids(oracle)
    assert keras_tuner.engine.trial.TrialStatus.FAILED == "FAILED"
    compat.fail_trial(oracle, "tuner0", trial, "no result")
    assert oracle.trials[trial.trial_id].status == "FAILED"
    assert oracle.trials[trial.trial_id].message == "no result"
    assert compat.ongoing_trials(oracle) == {} and "tuner0" not in compat.tuner_ids(oracle)


def test_a_bare_oracle_has_the_internal_state():
    oracle = keras_tuner.oracles.RandomSearchOracle(objective="val_loss", max_trials=1)
    assert compat.ongoing_trials(oracle) == {} and compat.tuner_ids(oracle) == set()
