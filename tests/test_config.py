import json

import pytest

from gpicl_tf import config as config_lib


@pytest.mark.parametrize("name", sorted(config_lib.PRESETS))
def test_presets_round_trip_through_json(name):
    cfg = config_lib.get_preset(name)
    back = config_lib.Config.from_json(cfg.to_json())
    assert back == cfg
    assert json.loads(back.to_json()) == cfg.to_dict()


def test_override_converts_types():
    cfg = config_lib.override(config_lib.get_preset("smoke"), [
        "train.batch_size=4", "train.learning_rate=3e-4", "data.source=random",
        "train.jit_compile=false", "train.adam_epsilon=1"])
    assert cfg.train.batch_size == 4 and cfg.train.learning_rate == 3e-4
    assert cfg.data.source == "random" and cfg.train.jit_compile is False
    assert isinstance(cfg.train.adam_epsilon, float)


def test_unknown_key_is_named():
    with pytest.raises(KeyError, match="train.batch_sise"):
        config_lib.override(config_lib.get_preset("smoke"), ["train.batch_sise=4"])
    with pytest.raises(KeyError, match="trian"):
        config_lib.override(config_lib.get_preset("smoke"), ["trian.batch_size=4"])
    with pytest.raises(KeyError, match="bogus"):
        config_lib.Config.from_dict({"model": {"bogus": 1}})


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="train.batch_size='four'"):
        config_lib.override(config_lib.get_preset("smoke"), ["train.batch_size=four"])
    with pytest.raises(ValueError, match="train.batch_size=2.5"):
        config_lib.override(config_lib.get_preset("smoke"), ["train.batch_size=2.5"])
    with pytest.raises(ValueError, match="not of the form"):
        config_lib.override(config_lib.get_preset("smoke"), ["train.batch_size"])
    with pytest.raises(KeyError, match="unknown preset 'gpu'"):
        config_lib.get_preset("gpu")
