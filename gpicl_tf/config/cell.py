"""Config of the cell learner (`gpicl_tf.models.cell`) and its meta-training on
prior tables (`gpicl_tf.data.tables`, `gpicl_tf.training.cell_train`).

A `CellRunConfig` has four sections, `model`, `tables`, `train` and `prior`
(the table prior's `PriorConfig`), round-trips through JSON and takes
`section.key=value` overrides (`config.base.override`, the row learner's
`Config`'s too); each rule is checked once, when a section is built.

Example:
    >>> cfg = override(get_cell_preset("cell_smoke"), ["train.steps=3"])
    >>> cfg.train.steps
    3
"""

from __future__ import annotations

import dataclasses

from gpicl_tf.config import PriorConfig
from gpicl_tf.config.base import Sections, override  # noqa: F401  (the example above)
from gpicl_tf.config.checks import _POSITIVE, _at_least, _between, _check, _in
from gpicl_tf.errors import InvalidInputError, UnknownKeyError

OPTIMIZERS = ("adamw", "muon")
CELL_PRECISIONS = ("float32", "mixed_bfloat16")
CELL_NORMS = ("layer", "rms")                    # as gpicl_tf.models.cell_layers
CELL_SCALAR_EMBEDDINGS = ("linear", "rbf")
CELL_DECODERS = ("label", "mean")


@dataclasses.dataclass(frozen=True)
class CellModelConfig:
    """The cell backbone's sizes and options (`CellTransformer`'s arguments).

    The options of the 2026 small-compute recipe (issue 38; `CellTransformer`'s
    docstring says what each does) default to the released models' architecture,
    so a stored config without them loads as before:
        feature_groups: column shifts grouped into each token, e.g. (1, 3, 7, 15);
            () = off.
        thinking_rows: learned rows every row reads besides the training rows; 0 = off.
        norm: "layer" (LayerNorm) or "rms" (RMSNorm).
        residual_decay: layer i's residual branches scaled by residual_decay ** i;
            1.0 = off.
        scalar_embedding: "linear" or "rbf" (`rbf_centers` radial-basis features).
        decoder: "label" (the test row's label token) or "mean" (of its cell tokens).
    """

    num_classes: int = 10
    model_size: int = 96
    num_layers: int = 3
    num_heads: int = 4
    mlp_ratio: int = 2
    max_features: int = 128
    id_size: int = 16
    feature_groups: tuple[int, ...] = ()
    thinking_rows: int = 0
    norm: str = "layer"
    residual_decay: float = 1.0
    scalar_embedding: str = "linear"
    rbf_centers: int = 16
    decoder: str = "label"

    def __post_init__(self):
        _check("model", self, {
            "num_classes": _at_least(2), "model_size": _at_least(1), "num_layers": _at_least(1),
            "num_heads": _at_least(1), "mlp_ratio": _at_least(1), "max_features": _at_least(1),
            "id_size": _at_least(1), "thinking_rows": _at_least(0),
            "norm": _in(CELL_NORMS), "residual_decay": _between(0.0, 1.0),
            "scalar_embedding": _in(CELL_SCALAR_EMBEDDINGS), "rbf_centers": _at_least(2),
            "decoder": _in(CELL_DECODERS)})
        if self.residual_decay == 0.0:
            raise InvalidInputError(f"model.residual_decay={self.residual_decay!r} must be "
                                    "in (0, 1]")
        shifts = tuple(self.feature_groups)
        if len(set(shifts)) != len(shifts) or any(
                isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shifts):
            raise InvalidInputError(f"model.feature_groups={self.feature_groups!r} must be "
                                    "distinct integers >= 1 (column shifts)")
        if self.model_size % self.num_heads:
            raise InvalidInputError(f"model.num_heads={self.num_heads} does not divide "
                                    f"model.model_size={self.model_size}")


@dataclasses.dataclass(frozen=True)
class TableConfig:
    """How prior tables are batched (`gpicl_tf.data.tables`).

    Every batch draws one row count R in [min_rows, max_rows], one training
    fraction in [min_train_fraction, max_train_fraction] (the rest are test rows)
    and one feature count C (log-uniform in [prior.min_features,
    prior.max_features]); its tables (tasks drawn afresh) share that shape. The
    batch holds about `cells_per_step` cells: B = cells_per_step / (R (C + 1)),
    within [min_batch, max_batch].
    """

    min_rows: int = 32
    max_rows: int = 256
    min_train_fraction: float = 0.4
    max_train_fraction: float = 0.9
    cells_per_step: int = 40_000
    min_batch: int = 2
    max_batch: int = 64
    validation_tables: int = 128

    def __post_init__(self):
        _check("tables", self, {
            "min_rows": _at_least(4), "max_rows": _at_least(4),
            "min_train_fraction": _between(0.0, 1.0, closed_high=False),
            "max_train_fraction": _between(0.0, 1.0, closed_high=False),
            "cells_per_step": _at_least(1), "min_batch": _at_least(1),
            "max_batch": _at_least(1), "validation_tables": _at_least(1)})
        if self.min_rows > self.max_rows:
            raise InvalidInputError(f"tables.min_rows={self.min_rows} exceeds "
                                    f"tables.max_rows={self.max_rows}")
        if not 0 < self.min_train_fraction <= self.max_train_fraction:
            raise InvalidInputError(
                f"tables.min_train_fraction={self.min_train_fraction} must be in (0, "
                f"tables.max_train_fraction={self.max_train_fraction}]")
        if self.min_batch > self.max_batch:
            raise InvalidInputError(f"tables.min_batch={self.min_batch} exceeds "
                                    f"tables.max_batch={self.max_batch}")


@dataclasses.dataclass(frozen=True)
class CellTrainConfig:
    """Meta-training of the cell learner.

    Attributes:
        steps: optimizer steps; seed: of the tables, the model and the validation set.
        optimizer: "adamw" or "muon" (Keras' Muon on matrices, AdamW on the rest).
        muon_attention: with "muon", the attention projections (3-D kernels, which
            Keras' Muon leaves to AdamW) are Muon's too, each as the matrix it is
            (E x heads*head_size); False = Keras' split (the Dense kernels only).
        learning_rate, weight_decay, warmup_steps: a linear warm-up to
            learning_rate, then a cosine decay to learning_rate * final_lr_fraction.
        clip_norm: global gradient-norm clip (0 = none).
        precision: "float32" or "mixed_bfloat16" (logits, loss and the
            standardisation stay float32).
        checkpoint_every: steps between checkpoints (resume point) and validations.
        average_last: the released weights are the mean of this many last
            checkpoints' weights (1 = the last only).
        average_every: steps between the weights that are averaged (0 =
            checkpoint_every); it must divide checkpoint_every.
        max_seconds: wall-clock budget of a session's training loop: once a step
            ends past it, the run checkpoints, validates, averages and saves as
            at its last step (0 = none). The learning-rate schedule still
            follows `steps`; the workdir check ignores this budget.
        log_every: steps between lines of the training log.
        keep_every: the weights of every step that is a multiple of this are kept
            (for a curve of benchmark accuracy against meta-training time;
            0 = only the last `average_last`).
    """

    steps: int = 3_000
    seed: int = 0
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    final_lr_fraction: float = 0.05
    clip_norm: float = 1.0
    precision: str = "float32"
    checkpoint_every: int = 100
    average_last: int = 1
    log_every: int = 10
    keep_every: int = 0
    muon_attention: bool = False
    average_every: int = 0
    max_seconds: float = 0.0

    def __post_init__(self):
        _check("train", self, {"keep_every": _at_least(0),
            "steps": _at_least(1), "seed": _between(0, 2**31 - 1),
            "optimizer": _in(OPTIMIZERS), "learning_rate": _POSITIVE,
            "weight_decay": _at_least(0.0), "warmup_steps": _at_least(0),
            "final_lr_fraction": _between(0.0, 1.0), "clip_norm": _at_least(0.0),
            "precision": _in(CELL_PRECISIONS), "checkpoint_every": _at_least(1),
            "average_last": _at_least(1), "log_every": _at_least(1),
            "average_every": _at_least(0), "max_seconds": _at_least(0.0)})
        if not isinstance(self.muon_attention, bool):
            raise InvalidInputError(f"train.muon_attention={self.muon_attention!r} must be "
                                    "true or false")
        if self.muon_attention and self.optimizer != "muon":
            raise InvalidInputError(f"train.muon_attention={self.muon_attention!r} needs "
                                    f"train.optimizer='muon', not {self.optimizer!r}")
        if self.average_every and self.checkpoint_every % self.average_every:
            raise InvalidInputError(
                f"train.average_every={self.average_every} does not divide "
                f"train.checkpoint_every={self.checkpoint_every}")


def broad_prior(**kw) -> PriorConfig:
    """The cell learner's prior: MLP, SCM and tree mechanisms, up to 100 features,
    2-10 imbalanced classes, binary/categorical-heavy tables and missing values."""
    return PriorConfig(**{**dict(
        max_features=100, min_features=1, kinds=("mlp", "scm", "tree"), min_classes=2,
        max_classes=10, class_concentration=1.5, discrete_heavy_fraction=0.25,
        missing_fraction=0.2), **kw})


def tabicl_prior(**kw) -> PriorConfig:
    """TabICL's prior mixture (`gpicl_tf.data.prior_scm`): 70% MLP-based and 30%
    tree-based SCMs (trees of depth 2-4, 1-4 per node), 2-100 features, 2-10 classes
    (binary half the time) by thresholds on the target's value or rank (Dirichlet(1)
    proportions: imbalanced), categorical columns with probability 0.2, every class
    on both sides of an episode, no label noise but the SCMs' own, missing values on
    a fifth of the tables (rate up to 0.3). TabICL's training fraction 0.1-0.9 is a
    `TableConfig` setting: pair it with tables.min_train_fraction=0.1."""
    return PriorConfig(**{**dict(
        mixture="tabicl", max_features=100, min_features=2, min_classes=2, max_classes=10,
        class_concentration=1.0, label_noise_max=0.0, tree_fraction=0.3, tree_depth_max=4,
        tree_count_max=4, categorical_fraction=0.2, rank_fraction=0.5,
        classes_on_both_sides=True, missing_fraction=0.2, missing_rate_max=0.3), **kw})


@dataclasses.dataclass(frozen=True)
class CellRunConfig(Sections):
    model: CellModelConfig = CellModelConfig()
    tables: TableConfig = TableConfig()
    train: CellTrainConfig = CellTrainConfig()
    prior: PriorConfig = dataclasses.field(default_factory=broad_prior)

    def __post_init__(self):
        if self.prior.max_features > self.model.max_features:
            raise InvalidInputError(
                f"prior.max_features={self.prior.max_features} exceeds model.max_features="
                f"{self.model.max_features}, the columns the model can read")
        if self.prior.max_classes > self.model.num_classes:
            raise InvalidInputError(
                f"prior.max_classes={self.prior.max_classes} exceeds model.num_classes="
                f"{self.model.num_classes}, the model's head")


def _cell_smoke() -> CellRunConfig:
    """Seconds: a 16-wide, 1-layer model, 4 steps of tiny tables (tests)."""
    return CellRunConfig(
        model=CellModelConfig(model_size=16, num_layers=1, num_heads=2, max_features=16,
                              id_size=4),
        tables=TableConfig(min_rows=8, max_rows=24, cells_per_step=2_000, max_batch=8,
                           validation_tables=8),
        train=CellTrainConfig(steps=4, warmup_steps=1, checkpoint_every=2, log_every=1),
        prior=broad_prior(max_features=8))


def _cell_cpu() -> CellRunConfig:
    """The released tabular learner's recipe (issue 28; docs/tabular.md):

        python -m pipelines.train_cell --preset cell_cpu --workdir runs/cell_cpu \
            --export_dir saved_models --export_name tabular

    A 96-wide, 3-layer cell model (360,298 parameters) on 2,000 batches of
    about 40,000 cells of prior tables (32-256 rows, 1-100 columns), AdamW at
    3e-3 (it beat 1e-3 and tied Keras' Muon in 150-step runs), float32 (mixed
    bfloat16 was 1.03x faster at this width), the mean of the last 3
    checkpoints' weights. 3,895 s here (65 minutes; beside other work for much of
    it: about 1.3 s a step alone, 1.6-2.6 s beside tests and benchmarks).
    """
    return CellRunConfig(train=CellTrainConfig(
        steps=2_000, learning_rate=3e-3, warmup_steps=150, checkpoint_every=100,
        average_last=3, keep_every=500))


def _cell_recipe() -> CellRunConfig:
    """cell_cpu with the 2026 small-compute recipe's architecture and optimizer
    (modded-nanoTabPFN; issue 38), as this 2-core CPU can afford them:

        python -m pipelines.train_cell --preset cell_recipe --workdir runs/cell_recipe \
            --set train.max_seconds=3600

    Kept from the recipe, at about cell_cpu's cost per step: feature grouping
    (shifts 1, 3, 7, 15 through the one cell embedding: a wider input to one
    Dense), RMSNorm, the residual scale decaying 0.95 a layer, the decoder reading
    the mean of a test row's cell tokens, Muon on every matrix (the attention
    projections included) with AdamW on the rest, weight decay 0.01, and the mean
    of the last 10 weights taken every 20 steps (the last 200 of the cosine's
    tail; cell_cpu averages 3 checkpoints 100 apart), and the 16 thinking rows,
    the one option with a cost here: a table of R rows becomes R + 16 (+37% at
    R = 43). Not taken: the recipe's width 256 and 5 layers (by width squared and
    depth, an estimated 7-12x cell_cpu's cost per step here, so that many times
    fewer tables in the same hours), lr 1e-3 (3e-3 beat 1e-3 with AdamW and tied
    it with Muon here, docs/tabular.md) and LimiX's RBF scalar embedding (not part
    of that recipe; one `--set model.scalar_embedding=rbf` away).

    Step time against cell_cpu (2026-12 helper run, 5 prior batches of the preset
    twice, interleaved, beside a training run at nice 19, so noisy: the same batch
    varied up to 2x): the median of per-batch ratios 1.05-1.21x over three runs
    (without the thinking rows 0.85-0.99x).
    """
    base = _cell_cpu()
    return dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, feature_groups=(1, 3, 7, 15), thinking_rows=16,
                                  norm="rms", residual_decay=0.95, decoder="mean"),
        train=dataclasses.replace(base.train, optimizer="muon", muon_attention=True,
                                  average_last=10, average_every=20))


def _cell_mixed() -> CellRunConfig:
    """cell_recipe on a broader prior (issue 38: version 4's candidate): half of the
    tasks from TabICL's SCM mixture (`prior.mixture=both`: real tree splits,
    categorical columns, class thresholds by value or rank) and half from the
    classic one, and tables of up to 512 rows (cell_recipe: 256) so that contexts
    of 256-460 training rows are seen. Meant as a warm start of version 3:

        python -m pipelines.train_cell --preset cell_mixed --workdir runs/cell_mixed \
            --warm_start gpicl_tf/released/tabular/3 --set train.steps=2000 \
            --set train.learning_rate=0.0015 --set train.warmup_steps=100
    """
    base = _cell_recipe()
    return dataclasses.replace(
        base, prior=dataclasses.replace(base.prior, mixture="both", tabicl_share=0.5),
        tables=dataclasses.replace(base.tables, max_rows=512))


def _cell_long() -> CellRunConfig:
    """cell_mixed for longer and on larger tables (issue 38: version 5's candidate):
    4,000 steps of one cosine from lr 1.5e-3 (cell_mixed was warm-started for 2,000,
    and its validation loss was still falling as its schedule ended) on tables of up
    to 1,024 rows, so that contexts of 500-900 training rows, the 500-row benchmark's
    case, are seen in meta-training. Longer than one session here, so it is built
    in pieces: the same command resumes from the last checkpoint (bit for bit), each
    session's share capped by `train.max_seconds`:

        python -m pipelines.train_cell --preset cell_long --workdir runs/cell_long \
            --warm_start gpicl_tf/released/tabular/4 --set train.max_seconds=5400
    """
    base = _cell_mixed()
    return dataclasses.replace(
        base, tables=dataclasses.replace(base.tables, max_rows=1024),
        train=dataclasses.replace(base.train, steps=4_000, learning_rate=1.5e-3,
                                  warmup_steps=100, keep_every=500))


CELL_PRESETS = {"cell_smoke": _cell_smoke, "cell_cpu": _cell_cpu, "cell_recipe": _cell_recipe,
                "cell_mixed": _cell_mixed, "cell_long": _cell_long}


def get_cell_preset(name: str) -> CellRunConfig:
    if name not in CELL_PRESETS:
        raise UnknownKeyError(f"unknown cell preset {name!r}; known: {sorted(CELL_PRESETS)}")
    return CELL_PRESETS[name]()
