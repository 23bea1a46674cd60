"""The sections of a run config, as frozen dataclasses that check their values
when built: data, model, train, eval, tune, functions, prior."""

from __future__ import annotations

import dataclasses

from gpicl_tf.config.checks import (_POSITIVE, _SEED, _STEPS, _all, _at_least, _between, _check, _in,
                                    _tuple_fields)
from gpicl_tf.errors import InvalidInputError

ARCHS = ("transformer", "lstm", "mlp", "maml", "vsml")
# Learners trained beside the Transformer on the same episodes (`EvalConfig.sequence_baselines`).
SEQUENCE_BASELINES = ("lstm", "mlp", "maml", "vsml")
LAYOUTS = ("paper", "pfn")
POSITIONS = ("none", "sinusoidal")
BIAS_MODES = ("permutation", "task")
OPTIMIZERS = ("adam", "muon")
BIAS_SCHEDULES = ("constant", "linear", "plateau")
LOOPS = ("keras", "custom")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What episodes are made of.

    Attributes:
        source: base dataset name (see `gpicl_tf.data.sources`),
            "functions:FAMILY" for function regression (`gpicl_tf.data.functions`),
            "prior" for synthetic classification tables (`gpicl_tf.data.prior`,
            settings in the `prior` section), or "mixture" (see `mixture`).
        mixture: with source="mixture", the components as "SOURCE:WEIGHT" items
            (e.g. "digits:1,fashion_mnist_idx:1,prior:2"): each is written as its
            own episode set with the weight's share of the episodes, and training
            samples the components in proportion to the weights.
        data_dir: where TFDS or IDX files live ("" = the source's default).
        download: let TFDS download missing data (needs internet).
        image_size: resize images to this square size (0 = keep).
        grayscale: convert colour images to one channel.
        input_size: the model's input size N_x; every dataset is projected to it
            (function regression: the dimension d of x).
        num_classes: size of the shared prediction head (0 for function regression).
        episode_length: examples per episode (N).
        log2_num_tasks: meta-training uses 2**log2_num_tasks task ids.
        train_episodes: episodes written for meta-training.
        test_episodes: episodes written for meta-test (unseen tasks, test split).
        episodes_per_shard: episodes per TFRecord shard.
        seed: global seed; same seed gives byte-identical shards.
        random_dim: input size of the synthetic "random" source.
        random_examples: examples per split of the synthetic "random" source.
    """

    source: str = "digits"
    data_dir: str = ""
    download: bool = False
    image_size: int = 0
    grayscale: bool = False
    input_size: int = 64
    num_classes: int = 10
    episode_length: int = 100
    log2_num_tasks: int = 16
    train_episodes: int = 20_000
    test_episodes: int = 512
    episodes_per_shard: int = 2_048
    seed: int = 0
    random_dim: int = 64
    random_examples: int = 2_000
    mixture: tuple[str, ...] = ()

    def __post_init__(self):
        _tuple_fields(self, "data")
        _check("data", self, {
            "image_size": _at_least(0), "input_size": _at_least(1), "num_classes": _at_least(0),
            "episode_length": _at_least(1), "log2_num_tasks": _between(0, 31),
            "train_episodes": _at_least(0), "test_episodes": _at_least(0),
            "episodes_per_shard": _at_least(1), "seed": _SEED,
            "random_dim": _at_least(1), "random_examples": _at_least(1)})


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The sequence model. Sizes follow the paper's names (N_M = model_size).

    `layout`: "paper" (token j = [x_j, one_hot(y_{j-1})], causal) or "pfn"
    (context tokens [x_i, one_hot(y_i)], queries [x_j, 0] attending to the
    context before them); the LSTM, MAML and VSML read the paper layout.

    `positions`: "none" (the causal mask alone orders the tokens) or
    "sinusoidal" (a fixed sine/cosine code of each token's position added to its
    embedding, paper layout only: the PFN layout's context is a set). In the paper
    layout a label sits in the token after its input, so pairing them takes a
    previous-token head; positions were meant to make that head easier to find,
    but measured here they did not help: with the searched recipe the run without
    them ended higher after 4,000 steps (0.154 against 0.121 over the last 10
    positions), and the paper layout left its plateau without them (step 7,900 of
    20,000; docs/results/plateau.md).

    MAML (`models.meta_learners.MAMLClassifier`): a classifier with `maml_hidden`
    ReLU units (0 = linear), `maml_steps` inner gradient steps on each prefix,
    starting at learning rate `maml_inner_lr` (meta-learned per step), second
    order unless `maml_first_order`. VSML (`VSMLCell`): one layer of sub-LSTMs
    with `vsml_state` units each, one per input-output weight.

    `key_size`: each attention head's size; 0 derives it as model_size / num_heads
    (`head_size`; then num_heads must divide model_size). An explicit value is
    used as given (the heads are projected back to model_size); every preset
    keeps key_size x num_heads = model_size, and a Transformer built otherwise logs
    a warning naming the three values.
    """

    arch: str = "transformer"
    layout: str = "paper"
    positions: str = "none"
    model_size: int = 128
    num_layers: int = 4
    num_heads: int = 8
    key_size: int = 16
    mlp_ratio: int = 4
    dropout: float = 0.0
    lstm_units: int = 256
    mlp_hidden: int = 256
    maml_hidden: int = 32
    maml_steps: int = 5
    maml_inner_lr: float = 0.5
    maml_first_order: bool = False
    vsml_state: int = 8

    def __post_init__(self):
        _check("model", self, {
            "arch": _in(ARCHS), "layout": _in(LAYOUTS), "positions": _in(POSITIONS),
            "model_size": _at_least(1),
            "num_layers": _at_least(1), "num_heads": _at_least(1), "key_size": _at_least(0),
            "mlp_ratio": _at_least(1), "dropout": _between(0.0, 1.0, closed_high=False),
            "lstm_units": _at_least(1), "mlp_hidden": _at_least(1),
            "maml_hidden": _at_least(0), "maml_steps": _at_least(1),
            "maml_inner_lr": _POSITIVE, "vsml_state": _at_least(1)})
        if self.positions != "none" and (self.arch != "transformer" or self.layout != "paper"):
            raise InvalidInputError(
                f"model.positions={self.positions!r} is for the Transformer's paper layout, "
                f"not arch={self.arch!r} with layout={self.layout!r} (the PFN layout's "
                "context is a set, the LSTM counts positions itself)")
        if self.key_size == 0 and self.model_size % self.num_heads:
            raise InvalidInputError(
                f"model.key_size=0 derives the head size as model_size / num_heads, but "
                f"num_heads={self.num_heads} does not divide model_size={self.model_size}")

    @property
    def head_size(self) -> int:
        """Each attention head's size: key_size, or model_size / num_heads for 0."""
        return self.key_size or self.model_size // self.num_heads


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Meta-optimisation and the curriculum.

    The curriculum fixes `bias_fraction` of every batch to one task: its label
    permutation only (`bias_mode="permutation"`, the paper) or its projection
    too (`"task"`, as a public replication does), following `bias_schedule`
    ("constant", "linear" anneal over `bias_anneal_steps`, or "plateau": off
    once the loss on unseen meta-validation tasks falls `plateau_drop` below
    chance; the biased training loss falls within tens of steps, as the fixed
    task is memorised, and says nothing about the plateau).

    `precision`: Keras' dtype policy for the run: "float32", "mixed_bfloat16"
    (TPUs, recent GPUs and CPUs with AVX512-BF16) or "mixed_float16" (GPUs;
    `fit` and the custom loop then scale the loss: Keras' LossScaleOptimizer).
    Logits and losses stay float32.

    `optimizer`: "adam" (Adam; AdamW when `weight_decay` > 0) or "muon" (Keras'
    Muon on the hidden layers' matrices, AdamW on the token embedding, the logits
    and every vector). `ema_momentum` > 0 keeps an exponential moving average of
    the weights (Keras' `use_ema`), which become the model's weights when
    training ends; validation during training reads the raw weights.

    `episodes_on_device`: the host ships only records (example indices, task id,
    bias flag) and the train step builds the episodes on the device
    (`data.device_episodes`; custom loop, classification). Off by default: on
    this 2-core CPU the host pipeline is faster (benchmarks/input_pipeline.py).

    `loop`: "keras" (`Model.fit`) or "custom" (`training.loop`: strategy.run of a
    compiled step, the same losses, metrics and callbacks; the only loop that
    works under the multi_worker strategy, which always uses it).

    `stop_at_plateau_exit`: end training after the first epoch whose unseen-task
    loss is below the plateau threshold (the plateau studies).

    `deterministic`: TensorFlow op determinism (`enable_op_determinism`, for the
    whole process) on top of the seeds, so the same command gives bit-identical
    weights and reports (tests/training/test_determinism.py).
    """

    batch_size: int = 64
    steps: int = 3_000
    steps_per_epoch: int = 250
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1
    adam_epsilon: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    jit_compile: bool = True
    shuffle_buffer: int = 2_048
    bias_fraction: float = 0.0
    bias_mode: str = "permutation"
    bias_schedule: str = "constant"
    bias_anneal_steps: int = 1_000
    plateau_drop: float = 0.1
    seed: int = 0
    deterministic: bool = False
    stop_at_plateau_exit: bool = False
    loop: str = "keras"
    precision: str = "float32"
    episodes_on_device: bool = False
    optimizer: str = "adam"
    ema_momentum: float = 0.0

    def __post_init__(self):
        _check("train", self, {
            "batch_size": _at_least(1), "steps": _STEPS, "steps_per_epoch": _STEPS,
            "learning_rate": _POSITIVE, "warmup_steps": _at_least(0),
            "min_lr_ratio": _between(0.0, 1.0), "adam_epsilon": _POSITIVE,
            "weight_decay": _at_least(0.0), "clip_norm": _at_least(0.0),
            "shuffle_buffer": _at_least(1), "bias_fraction": _between(0.0, 1.0),
            "bias_mode": _in(BIAS_MODES), "bias_schedule": _in(BIAS_SCHEDULES),
            "bias_anneal_steps": _at_least(1), "loop": _in(LOOPS),
            "precision": _in(PRECISIONS), "optimizer": _in(OPTIMIZERS),
            "ema_momentum": _between(0.0, 1.0, closed_high=False),
            "plateau_drop": _between(0.0, 1.0, closed_high=False), "seed": _SEED})


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Meta-test evaluation (lists: `--set eval.positions=1,2,5` or a JSON list).

    Attributes:
        datasets: unseen datasets, projected to the model's input size.
        episodes: meta-test episodes per evaluation set.
        positions: where baselines are fitted (1-indexed; the last position is
            always added); the learners are evaluated at every position.
        sequence_baselines: architectures trained by the same pipeline and
            evaluated beside the Transformer (`SEQUENCE_BASELINES`: "lstm", "mlp",
            "maml", "vsml"), with its curriculum.
        baseline_steps: meta-training steps of each sequence baseline (0 = the
            Transformer's `train.steps`: the same budget).
        baseline_train: training settings ("KEY=VALUE" of the `train` section) the
            sequence baselines are meta-trained with in place of the Transformer's
            (e.g. ("optimizer=adam", "ema_momentum=0.0")); () = the Transformer's.
        sgd_tuning_episodes: meta-training episodes on which the baselines'
            settings are chosen, at the last position (logistic regression's C,
            SGD's learning rate and steps, the SVM's C and gamma; for function
            regression, k-NN's k, ridge's alpha, the polynomial degree, the GP kernel).
        seeds: the main job meta-trains the Transformer with this many training
            seeds (train.seed, train.seed + 1, ...) and reports each and their
            mean with a 95% interval across seeds.
        ensemble: views of each episode a Transformer learner answers
            (`eval.evaluate.ensemble_probabilities`: the episode, then random
            relabellings of its classes with random rotations of its inputs,
            probabilities averaged). 1 = one pass; > 1 adds a row
            "NAME (ensemble of E views)" beside each Transformer's one-pass row.
    """

    datasets: tuple[str, ...] = ("fashion_mnist_idx", "random")
    episodes: int = 256
    positions: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100)
    sequence_baselines: tuple[str, ...] = ("lstm", "mlp")
    baseline_steps: int = 0
    baseline_train: tuple[str, ...] = ()
    sgd_tuning_episodes: int = 512
    seeds: int = 1
    ensemble: int = 1

    def __post_init__(self):
        _tuple_fields(self, "eval")
        _check("eval", self, {
            "episodes": _at_least(1), "positions": _all(_at_least(1)),
            "sequence_baselines": _all(_in(SEQUENCE_BASELINES)), "baseline_steps": _at_least(0),
            "sgd_tuning_episodes": _at_least(2), "seeds": _at_least(1),
            "ensemble": _at_least(1)})
        train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
        for item in self.baseline_train:
            key, sep, _ = str(item).partition("=")
            if not sep or key.strip() not in train_keys:
                raise InvalidInputError(
                    f"eval.baseline_train item {item!r} is not KEY=VALUE with KEY a train "
                    f"setting (one of {sorted(train_keys)})")


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """Keras Tuner search space (lists of choices) and budget.

    Every `num_heads` choice must divide every `model_sizes` choice (the key
    size is model_size / num_heads). Each trial trains `steps` steps, or with
    `trial_seconds` > 0 for that many seconds of training (at most `steps`
    steps; the learning rate's cosine follows elapsed time: `training.budget`),
    so fast and slow recipes get the same compute; its score
    is meta-validation accuracy over the last 10 positions on unseen tasks
    (`val_acc_last10`). A distributed trial with no result for
    `trial_timeout_s` seconds is failed by the chief, so a dead worker cannot
    hang the search.
    """

    model_sizes: tuple[int, ...] = (32, 64)
    num_layers: tuple[int, ...] = (1, 2)
    num_heads: tuple[int, ...] = (2, 4)
    learning_rate_min: float = 3e-4
    learning_rate_max: float = 3e-3
    adam_epsilons: tuple[float, ...] = (1e-8, 1e-16)
    batch_sizes: tuple[int, ...] = (32, 64)
    bias_fractions: tuple[float, ...] = (0.0, 0.5, 0.9)
    optimizers: tuple[str, ...] = ("adam",)
    weight_decays: tuple[float, ...] = (0.0,)
    ema_momentums: tuple[float, ...] = (0.0,)
    steps: int = 600
    trial_seconds: int = 0
    max_trials: int = 6
    seed: int = 0
    trial_timeout_s: int = 3600

    def __post_init__(self):
        _tuple_fields(self, "tune")
        _check("tune", self, {
            "model_sizes": _all(_at_least(1), True), "num_layers": _all(_at_least(1), True),
            "num_heads": _all(_at_least(1), True), "adam_epsilons": _all(_POSITIVE, True),
            "batch_sizes": _all(_at_least(1), True),
            "bias_fractions": _all(_between(0.0, 1.0), True),
            "optimizers": _all(_in(OPTIMIZERS), True),
            "weight_decays": _all(_at_least(0.0), True),
            "ema_momentums": _all(_between(0.0, 1.0, closed_high=False), True),
            "trial_seconds": _at_least(0),
            "learning_rate_min": _POSITIVE, "learning_rate_max": _POSITIVE,
            "steps": _at_least(1), "max_trials": _at_least(1), "trial_timeout_s": _at_least(1)})
        for size in self.model_sizes:
            for heads in self.num_heads:
                if size % heads:
                    raise InvalidInputError(
                        f"tune.num_heads choice {heads} does not divide tune.model_sizes "
                        f"choice {size}")
        if self.learning_rate_min > self.learning_rate_max:
            raise InvalidInputError(
                f"tune.learning_rate_min={self.learning_rate_min} > "
                f"learning_rate_max={self.learning_rate_max}")


@dataclasses.dataclass(frozen=True)
class FunctionConfig:
    """Function-regression task families (used when `data.source` is
    "functions:FAMILY"; see `gpicl_tf.data.functions`). x ~ U(-1, 1) in
    `data.input_size` dimensions; every observed y carries N(0, noise_std^2) noise.

    Attributes:
        num_queries: points per episode whose y is hidden (value zeroed, query flag set).
        noise_std: observation noise of every y (context and query targets).
        mlp_depth, mlp_width, mlp_activations: random MLP functions; each task
            picks one activation of the comma-separated list.
        mlp_weight_scale: weights ~ N(0, scale^2 / fan_in); biases ~ N(0, mlp_bias_scale^2).
        mlp_output_min, mlp_output_max: each MLP task is standardised on 256
            reference points, then scaled by a log-uniform factor in this range.
        sine_*: y = A sin(2 pi f u.x + phase), A and f uniform in their ranges,
            u a random unit direction, phase uniform in [0, 2 pi).
        linear_slope_scale, linear_bias_scale: y = a.x + b, a ~ N(0, s^2 / d), b ~ N(0, s_b^2).
        poly_degree, poly_coef_scale: y = sum_k c_k (u.x)^k, c_k ~ N(0, s^2).
        gp_length_min, gp_length_max: Gaussian-process samples (RBF kernel, unit
            variance, 256 random Fourier features), length scale log-uniform in range.
    """

    num_queries: int = 16
    noise_std: float = 0.1
    mlp_depth: int = 2
    mlp_width: int = 32
    mlp_activations: tuple[str, ...] = ("tanh", "swish", "relu")
    mlp_weight_scale: float = 2.0
    mlp_bias_scale: float = 1.0
    mlp_output_min: float = 0.25
    mlp_output_max: float = 1.5
    sine_amplitude_min: float = 0.1
    sine_amplitude_max: float = 1.0
    sine_frequency_min: float = 0.25
    sine_frequency_max: float = 1.0
    linear_slope_scale: float = 1.0
    linear_bias_scale: float = 0.5
    poly_degree: int = 3
    poly_coef_scale: float = 0.7
    gp_length_min: float = 0.2
    gp_length_max: float = 0.8

    def __post_init__(self):
        _tuple_fields(self, "functions")


@dataclasses.dataclass(frozen=True)
class PriorConfig:
    """Synthetic classification tables (`data.source="prior"`; `gpicl_tf.data.prior`).

    Attributes:
        max_features: columns stored per episode (tasks have fewer, zero-padded).
        min_features: fewest features a task has.
        kinds: the classic mixture's mechanisms, drawn from ("mlp", "scm", "tree").
        min_classes, max_classes: a task's class count is uniform in this range
            (max_classes <= data.num_classes).
        informative_min: a task's informative fraction of features is uniform in
            [informative_min, 1]; the other features are noise.
        class_concentration: Dirichlet concentration of the class proportions
            (smaller: more imbalanced).
        label_noise_max: a task's label-noise rate is uniform in [0, this].
        discrete_fraction, heavy_tail_fraction: probability that a feature is
            discretised (2 to 10 levels) / heavy-tailed.
        mlp_depth_max, mlp_width: the random MLPs.
        scm_extra_nodes: the SCMs have this many (at most, plus 2) nodes beyond
            the informative features.
        clip: prepared (standardised) values are clipped to [-clip, clip], in
            episodes and in the estimator alike.
        tree_depth_max, tree_count_max: the "tree" mechanism's random axis-aligned
            trees (depth 1 to this, 1 to this many summed per score).
        discrete_heavy_fraction: probability that a task is binary/categorical-heavy
            (each feature discretised with probability in [0.5, 1], half of those
            binary) instead of using `discrete_fraction`.
        missing_fraction: probability that a task has missing values (NaN); such a
            task blanks each cell of a random half of its columns with a rate in
            (0, missing_rate_max].
        missing_rate_max: see missing_fraction.
        mixture: the generator: "classic" (the mechanisms of `kinds`; the default)
            or "tabicl" (TabICL's SCM mixture, `gpicl_tf.data.prior_scm`; reads the
            feature, class, concentration, label-noise, tree_depth_max,
            tree_count_max and missing settings and those below, not `kinds`,
            informative_min, discrete_*, heavy_tail_fraction or mlp_*), or "both"
            (each task from "tabicl" with probability `tabicl_share`, else from
            "classic").
        tabicl_share: "both": the share of tasks drawn from TabICL's mixture.
        tree_fraction: "tabicl": share of tree-based SCMs (the rest MLP-based).
        categorical_fraction: "tabicl": probability that a column is categorical
            (integer codes).
        categorical_max_levels: "tabicl": most categories of a categorical column
            (a column's count is round(Gamma(1, 10)) clipped to [2, this]).
        rank_fraction: "tabicl": share of tasks whose class thresholds are quantiles
            of the target (by rank); the others threshold its standardised value.
        scm_layers_max, scm_hidden_max: "tabicl": the MLP-based SCMs' layers
            (2 to this) and units per layer (log-uniform in [4, this]).
        classes_on_both_sides: every class an episode keeps occurs in its training
            rows and in its test rows (where the caller says which are which, as
            `gpicl_tf.data.tables` does; classes too rare for that are dropped).
    """

    max_features: int = 32
    min_features: int = 2
    kinds: tuple[str, ...] = ("mlp", "scm")
    min_classes: int = 2
    max_classes: int = 10
    informative_min: float = 0.3
    class_concentration: float = 2.0
    label_noise_max: float = 0.1
    discrete_fraction: float = 0.2
    heavy_tail_fraction: float = 0.2
    mlp_depth_max: int = 3
    mlp_width: int = 32
    scm_extra_nodes: int = 8
    clip: float = 6.0
    tree_depth_max: int = 5
    tree_count_max: int = 4
    discrete_heavy_fraction: float = 0.0
    missing_fraction: float = 0.0
    missing_rate_max: float = 0.3
    mixture: str = "classic"
    tree_fraction: float = 0.3
    categorical_fraction: float = 0.2
    categorical_max_levels: int = 30
    rank_fraction: float = 0.5
    scm_layers_max: int = 6
    scm_hidden_max: int = 128
    classes_on_both_sides: bool = False
    tabicl_share: float = 0.5

    def __post_init__(self):
        _tuple_fields(self, "prior")
        _check("prior", self, {
            "max_features": _at_least(1), "min_features": _at_least(1),
            "kinds": _all(_in(("mlp", "scm", "tree")), True), "min_classes": _at_least(2),
            "max_classes": _at_least(2), "informative_min": _between(0.0, 1.0),
            "class_concentration": _POSITIVE, "label_noise_max": _between(0.0, 1.0),
            "discrete_fraction": _between(0.0, 1.0), "heavy_tail_fraction": _between(0.0, 1.0),
            "mlp_depth_max": _at_least(1), "mlp_width": _at_least(1),
            "scm_extra_nodes": _at_least(0), "clip": _POSITIVE,
            "tree_depth_max": _at_least(1), "tree_count_max": _at_least(1),
            "discrete_heavy_fraction": _between(0.0, 1.0),
            "missing_fraction": _between(0.0, 1.0), "missing_rate_max": _between(0.0, 1.0),
            "mixture": _in(("classic", "tabicl", "both")),
            "tabicl_share": _between(0.0, 1.0), "tree_fraction": _between(0.0, 1.0),
            "categorical_fraction": _between(0.0, 1.0),
            "categorical_max_levels": _between(2, 256), "rank_fraction": _between(0.0, 1.0),
            "scm_layers_max": _at_least(2), "scm_hidden_max": _at_least(4),
            "classes_on_both_sides": ((lambda v: isinstance(v, bool)), "true or false")})
