import json
import os

import pytest

from gpicl_tf import config as config_lib


@pytest.mark.parametrize("name", sorted(config_lib.PRESETS))
def test_presets_round_trip_through_json(name):
    cfg = config_lib.get_preset(name)
    back = config_lib.Config.from_json(cfg.to_json())
    assert back == cfg
    assert json.loads(back.to_json()) == cfg.to_dict()


@pytest.mark.parametrize("name", sorted(config_lib.PRESETS))
def test_every_preset_runs_its_named_recipe(name):
    from gpicl_tf.config import presets

    train = config_lib.get_preset(name).train
    recipe, curriculum = presets.PRESET_RECIPES[name]
    for key, value in {**presets.RECIPES[recipe], **presets.CURRICULA[curriculum]}.items():
        assert getattr(train, key) == value, (name, key)
    assert presets.recipe_of(train) == (recipe, curriculum)


def test_smoke_is_the_cpu_recipe_shrunk():
    from gpicl_tf.config import presets

    smoke, cpu = config_lib.get_preset("smoke"), config_lib.get_preset("cpu")
    assert smoke == presets.shrunk(cpu)
    assert smoke.model.layout == cpu.model.layout == "pfn"
    assert presets.recipe_of(smoke.train) == presets.recipe_of(cpu.train) == ("muon", "plateau")
    assert smoke.train.steps < 100 and smoke.data.train_episodes < 1000 and smoke.eval.ensemble > 1


def test_a_recipe_is_named_and_not_restated():
    from gpicl_tf.config import presets

    with pytest.raises(KeyError, match="'sgd'"):
        presets.train_recipe("sgd", "none", steps=10)
    with pytest.raises(KeyError, match="'sometimes'"):
        presets.train_recipe("adam", "sometimes", steps=10)
    with pytest.raises(KeyError, match="learning_rate"):
        presets.train_recipe("adam", "none", steps=10, learning_rate=3e-4)
    assert presets.recipe_of(presets.train_recipe("adam", "none", steps=10)) == ("adam", "none")
    assert presets.recipe_of(config_lib.TrainConfig(learning_rate=5e-4)) is None


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


@pytest.mark.parametrize("assignment,message", [
    ("train.steps=0", r"train.steps=0 must be in \[1, 2147483647\]"),
    ("train.steps=-5", r"train.steps=-5 must be in \[1, "),
    ("train.steps=99999999999999999999", r"train.steps=99999999999999999999 must be in \[1, "),
    ("train.steps_per_epoch=0", r"train.steps_per_epoch=0 must be in \[1, "),
    ("train.seed=99999999999999999999", r"train.seed=99999999999999999999 must be in "
                                        r"\[0, 4294967295\]"),
    ("data.seed=-1", r"data.seed=-1 must be in \[0, 4294967295\]"),
    ("train.learning_rate=NaN", "train.learning_rate=nan must be positive and finite"),
    ("train.learning_rate=-0.001", "train.learning_rate=-0.001 must be positive and finite"),
    ("train.bias_fraction=1.5", r"train.bias_fraction=1.5 must be in \[0.0, 1.0\]"),
    ("train.bias_mode=label", "train.bias_mode='label' must be one of"),
    ("model.arch=gru", "model.arch='gru' must be one of"),
    ("model.layout=tabpfn", "model.layout='tabpfn' must be one of"),
    ("data.episodes_per_shard=0", "data.episodes_per_shard=0 must be >= 1"),
    ("eval.seeds=0", "eval.seeds=0 must be >= 1"),
])
def test_ranges_and_choices_are_checked_when_the_config_loads(assignment, message):
    with pytest.raises(ValueError, match=message):
        config_lib.override(config_lib.get_preset("smoke"), [assignment])
    section, rest = assignment.split(".", 1)
    key, value = rest.split("=", 1)
    with pytest.raises(ValueError, match=message):  # a JSON config file takes the same check
        config_lib.Config.from_json(json.dumps({section: {key: json.loads(value)
                                                          if value[0] in "-0123456789N"
                                                          else value}}))


def test_list_fields_take_commas_or_json_and_round_trip():
    from gpicl_tf.config import Config, EvalConfig, FunctionConfig, get_preset, override

    cfg = override(get_preset("smoke"), ["eval.positions=1, 3,5", 'eval.datasets=["random"]',
                                         "eval.sequence_baselines=", "tune.adam_epsilons=1e-8"])
    assert cfg.eval.positions == (1, 3, 5) and cfg.eval.datasets == ("random",)
    assert cfg.eval.sequence_baselines == () and cfg.tune.adam_epsilons == (1e-8,)
    assert Config.from_json(cfg.to_json()) == cfg
    assert EvalConfig(positions="2,4").positions == (2, 4)            # built in code
    assert FunctionConfig(mlp_activations=["tanh"]).mlp_activations == ("tanh",)
    with pytest.raises(ValueError, match="eval.sequence_baselines=.*'gru'.*lstm"):
        override(cfg, ["eval.sequence_baselines=lstm,gru"])
    with pytest.raises(ValueError, match="eval.positions=.* each >= 1"):
        override(cfg, ["eval.positions=0,5"])
    with pytest.raises(ValueError, match=r"eval.positions='\[1,' is not a valid JSON list"):
        override(cfg, ["eval.positions=[1,"])


def test_older_files_with_comma_strings_still_load_and_compare():
    from gpicl_tf.config import Config, get_preset, normalize_section

    old = get_preset("functions_smoke").to_dict()
    old["eval"]["positions"] = "1,2,5"
    old["functions"]["mlp_activations"] = "tanh,swish,relu"
    cfg = Config.from_dict(old)
    assert cfg.eval.positions == (1, 2, 5) and cfg.functions == get_preset("functions_smoke").functions
    assert normalize_section("functions", old["functions"])["mlp_activations"] == (
        "tanh", "swish", "relu")


def test_retired_keys_load_at_their_off_value_only():
    from gpicl_tf.config import Config, get_preset, override

    old = get_preset("smoke").to_dict()
    old["train"]["mixed_precision"] = False          # what every older config.json holds
    assert Config.from_dict(old) == get_preset("smoke")
    old["train"]["mixed_precision"] = True
    with pytest.raises(ValueError, match="train.mixed_precision=True is no longer a setting; "
                                         "set train.precision=mixed_bfloat16"):
        Config.from_dict(old)
    with pytest.raises(KeyError, match="unknown config key 'train.mixed_precision'"):
        override(get_preset("smoke"), ["train.mixed_precision=false"])
    with open(os.path.join(os.path.dirname(__file__), "..", "gpicl_tf", "released", "general", "1",
                           "gpicl_config.json")) as f:
        released = json.load(f)
    Config.from_dict(released["config"])    # a released model's config still loads
