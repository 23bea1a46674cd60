"""The one optimizer builder (`training.optimizers`) and the two configs that use it."""

import keras
import numpy as np
import pytest

from gpicl_tf.config import get_preset, override
from gpicl_tf.config.cell import get_cell_preset
from gpicl_tf.training import cell_train, optimizers, train


@pytest.mark.parametrize("kind, decay, want", [
    ("adam", 0.0, keras.optimizers.Adam), ("adam", 0.01, keras.optimizers.AdamW),
    ("adamw", 0.0, keras.optimizers.AdamW), ("muon", 0.01, keras.optimizers.Muon)])
def test_each_kind_is_its_keras_optimizer(kind, decay, want):
    opt = optimizers.build_optimizer(kind, 1e-3, weight_decay=decay, clip_norm=2.0,
                                     epsilon=1e-6)
    assert type(opt) is want
    assert opt.global_clipnorm == 2.0 and opt.epsilon == 1e-6
    if kind != "adam" or decay:
        assert opt.weight_decay == decay
    assert optimizers.build_optimizer(kind, 1e-3).global_clipnorm is None   # 0: no clip
    assert type(optimizers.build_optimizer("muon", 1e-3, muon_attention=True)) is \
        optimizers.AttentionMuon


def test_an_unknown_kind_is_named():
    with pytest.raises(ValueError, match="optimizer 'sgd' is not one of"):
        optimizers.build_optimizer("sgd", 1e-3)


def test_warmup_cosine_rises_then_decays_to_its_floor():
    schedule = optimizers.warmup_cosine(1e-2, steps=110, warmup_steps=10, final_fraction=0.1)
    lr = [float(schedule(s)) for s in (0, 5, 10, 60, 110, 500)]
    np.testing.assert_allclose(lr, [0.0, 5e-3, 1e-2, 0.55e-2, 1e-3, 1e-3], rtol=1e-5)
    flat = optimizers.warmup_cosine(1e-2, steps=100, warmup_steps=0, final_fraction=0.0)
    np.testing.assert_allclose([float(flat(0)), float(flat(50))], [1e-2, 5e-3], rtol=1e-5)


def test_both_configs_build_what_they_ask_for():
    """A row run: its epsilon, EMA and the end layers left to AdamW under Muon; a
    cell run: AdamW whatever the decay, the warm-up stopped a step before the end."""
    row = override(get_preset("smoke"), ["train.optimizer=muon", "train.ema_momentum=0.99",
                                         "train.weight_decay=0.02"])
    opt = train.make_optimizer(row.train)
    assert type(opt) is keras.optimizers.Muon and opt.use_ema and opt.ema_momentum == 0.99
    assert opt.epsilon == row.train.adam_epsilon and opt.weight_decay == 0.02
    assert list(opt.exclude_layers) == list(train.MUON_ADAM_LAYERS)
    cell = override(get_cell_preset("cell_smoke"), ["train.weight_decay=0",
                                                        "train.warmup_steps=10",
                                                        "train.steps=4"])
    opt = cell_train.build_optimizer(cell)
    assert type(opt) is keras.optimizers.AdamW and opt.weight_decay == 0.0
    schedule = opt.learning_rate if callable(opt.learning_rate) else opt._learning_rate
    assert schedule.warmup_steps == 3 and schedule.decay_steps == 1
