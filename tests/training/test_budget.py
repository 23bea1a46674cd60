import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from gpicl_tf.config import override
from gpicl_tf.data.schema import EpisodeSchema
from gpicl_tf.errors import InvalidInputError
from gpicl_tf.training import budget, train


def test_schedule_warms_up_over_steps_then_follows_elapsed_time():
    s = budget.BudgetSchedule(peak=1e-2, warmup_steps=10, min_ratio=0.1)
    assert float(s(0)) == pytest.approx(1e-3)          # (0 + 1) / 10 of the peak
    assert float(s(4)) == pytest.approx(5e-3)
    s.progress.assign(0.0)
    assert float(s(10)) == pytest.approx(1e-2)          # warm, no time spent
    s.progress.assign(0.5)
    assert float(s(1000)) == pytest.approx(1e-2 * (0.1 + 0.9 * 0.5))
    s.progress.assign(1.0)
    assert float(s(20)) == pytest.approx(1e-3)          # the floor, however few steps
    s.progress.assign(3.0)                              # clipped
    assert float(s(20)) == pytest.approx(1e-3)
    again = budget.BudgetSchedule.from_config(s.get_config())
    assert again.get_config() == s.get_config()


@pytest.mark.parametrize("kwargs", [dict(peak=0.0, warmup_steps=1, min_ratio=0.1),
                                    dict(peak=1.0, warmup_steps=-1, min_ratio=0.1),
                                    dict(peak=1.0, warmup_steps=1, min_ratio=1.5)])
def test_schedule_refuses_bad_settings(kwargs):
    with pytest.raises(InvalidInputError, match="BudgetSchedule"):
        budget.BudgetSchedule(**kwargs)


def test_clock_stops_training_when_the_budget_is_spent_not_counting_the_first_step():
    now = [100.0]
    schedule = budget.BudgetSchedule(1e-3, 0, 0.0)
    clock = budget.BudgetClock(schedule, seconds=10.0, clock=lambda: now[0])
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    seen = []

    class Tick(keras.callbacks.Callback):      # each step "takes" 3 s, the first 50 s
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(schedule.progress.numpy()))
            now[0] += 50.0 if batch == 0 else 3.0

    x = np.zeros((64, 2), np.float32)
    history = model.fit(x, x[:, :1], batch_size=1, epochs=1, verbose=0,
                        callbacks=[Tick(), clock])
    # Clock starts at the end of step 1; steps 2..5 end at +3, +6, +9, +12 s: stop after 5.
    assert int(model.optimizer.iterations.numpy()) == 5
    assert seen == [0.0, 0.0, pytest.approx(0.3), pytest.approx(0.6), pytest.approx(0.9)]
    assert float(schedule.progress.numpy()) == 1.0
    assert history.history["steps"] == [5.0]
    with pytest.raises(InvalidInputError, match="0 seconds"):
        budget.BudgetClock(schedule, 0)


def test_muon_and_weight_averaging_are_built_as_configured(smoke_config):
    schema = EpisodeSchema(12, 16, 10)
    cfg = override(smoke_config, ["train.optimizer=muon", "train.ema_momentum=0.9",
                                  "train.weight_decay=0.01"])
    model = train.compile_model(cfg, schema, jit=False)
    opt = model.optimizer
    assert isinstance(opt, keras.optimizers.Muon) and opt.use_ema and opt.ema_momentum == 0.9
    # The token embedding and logits take AdamW steps; hidden matrices Muon's.
    adam = {v.path for v in model.trainable_variables if opt._should_use_adamw(v)}
    assert any("token_embedding" in p for p in adam) and any("logits" in p for p in adam)
    assert any(len(v.shape) == 2 and v.path not in adam for v in model.trainable_variables)
    with pytest.raises(ValueError, match="train.optimizer='sgd'"):
        override(smoke_config, ["train.optimizer=sgd"])
    with pytest.raises(ValueError, match="train.ema_momentum=1.0"):
        override(smoke_config, ["train.ema_momentum=1.0"])


@pytest.mark.parametrize("loop", ["keras", "custom"])
def test_averaged_weights_become_the_models_when_training_ends(smoke_config, smoke_episodes,
                                                               tmp_path, loop):
    """With ema_momentum the saved model holds the average, not the last step's weights:
    the same run without the average ends elsewhere, and the average is not the start."""
    ends = {}
    for ema in (0.0, 0.5):
        cfg = override(smoke_config, [f"train.ema_momentum={ema}", f"train.loop={loop}",
                                      "train.deterministic=true"])
        workdir = str(tmp_path / f"{loop}{ema}")
        train.run(cfg, workdir, smoke_episodes, verbose=0)
        ends[ema] = keras.models.load_model(os.path.join(workdir, train.MODEL_FILE),
                                            compile=False).get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(ends[0.0], ends[0.5]))
    assert all(np.isfinite(w).all() for w in ends[0.5])
