"""Meta-training: one readable `run(config, workdir, episodes_dir)`.

Example:
    >>> summary = run(get_preset("smoke"), "/tmp/run", "/tmp/eps")  # doctest: +SKIP

The workdir holds `config.json` (the resolved config), `history.csv`,
`tensorboard/`, `checkpoints/`, `backup/` (BackupAndRestore: a killed run started
again with the same arguments resumes from its last finished epoch),
`model.keras` and `summary.json` (written last: the run is complete).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os

import keras
import tensorflow as tf
from absl import logging

from gpicl_tf.config import Config, normalize_section
from gpicl_tf import io as files
from gpicl_tf.data import device_episodes, kinds, pipeline, storage
from gpicl_tf.errors import InvalidInputError
from gpicl_tf.models import build_model
from gpicl_tf.models.sequence_models import check_model_config
from gpicl_tf.training import callbacks as callbacks_lib
from gpicl_tf.training import distribute
from gpicl_tf.training import loop as loop_lib
from gpicl_tf.training import objectives
from gpicl_tf.training import optimizers

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
MODEL_FILE = "model.keras"


# Muon orthogonalises the update of the hidden layers' matrices; the matrices at
# the ends (token embedding, logits) take AdamW steps, as Muon's authors advise.
MUON_ADAM_LAYERS = ("token_embedding", "token_features", "logits", "prediction")


def make_optimizer(cfg, schedule=None) -> keras.optimizers.Optimizer:
    """A row run's optimizer (`optimizers.build_optimizer`): Adam (AdamW when
    weight_decay > 0) or Muon, with warm-up + cosine decay, clipping and, when
    cfg.ema_momentum > 0, a moving average of the weights. `schedule` replaces the
    step-based cosine (e.g. `budget.BudgetSchedule`)."""
    if schedule is None:
        schedule = optimizers.warmup_cosine(cfg.learning_rate, cfg.steps, cfg.warmup_steps,
                                            cfg.min_lr_ratio)
    return optimizers.build_optimizer(
        cfg.optimizer, schedule, weight_decay=cfg.weight_decay, clip_norm=cfg.clip_norm,
        epsilon=cfg.adam_epsilon, ema_momentum=cfg.ema_momentum,
        muon_exclude=MUON_ADAM_LAYERS)


def _history_rows(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "history.csv")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def resume_epoch(workdir: str, loop: str) -> int:
    """The number of epochs the state a run resumes from has finished (0: fresh)."""
    if loop == "keras":
        return callbacks_lib.backup_epoch(os.path.join(workdir, "backup"))
    return loop_lib.checkpoint_epoch(os.path.join(workdir, "loop_checkpoints"))


def resumed_history(workdir: str, epochs: int) -> list[dict]:
    """history.csv's rows of the first `epochs` epochs, the ones the resume state has
    finished; the file is cut to them, so an epoch that ran past its last checkpoint
    before a kill, and is run again, is neither counted twice nor read by the
    curriculum as having happened."""
    return files.cut_csv(os.path.join(workdir, "history.csv"), "epoch", epochs)


def _check_resume(workdir: str, config: Config) -> None:
    """A workdir belongs to one config once its run has finished an epoch: resuming
    with another is an error. A run that failed before (a diverging learning rate,
    a bad seed) binds nothing: its config is replaced."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return
    progress = os.path.exists(os.path.join(workdir, SUMMARY_FILE)) or \
        os.path.exists(os.path.join(workdir, MODEL_FILE)) or \
        resume_epoch(workdir, "keras") > 0 or resume_epoch(workdir, "custom") > 0
    if not progress:
        logging.info("%s holds a run that never finished an epoch; replacing its config", path)
        return
    with open(path) as f:
        saved = json.load(f)["config"]
    new = config.to_dict()
    for section in new:
        if section not in saved or section in ("eval", "tune"):
            continue  # added since that run was written, or not read by training
        # "a,b" of older files become tuples; a setting added since that run was
        # written counts as its default (what the code did before it existed), so
        # resuming an older run with it changed is refused like any other change.
        old = normalize_section(section, saved[section], defaults=True)
        now = normalize_section(section, new[section])
        for key in now:
            if old[key] != now[key]:
                raise InvalidInputError(
                    f"{workdir!r} holds a run with {section}.{key}="
                    f"{old[key]!r}, this run has {now[key]!r}; use another --workdir")


def written_config(config: Config, episodes_dir: str) -> Config:
    """`config` with the sections its episodes were written with (data, and the
    functions or prior settings where the set has them) taken from the manifest."""
    written = storage.written_settings(storage.read_manifest(episodes_dir))
    for section, values in written.items():
        cls = type(getattr(config, section))
        names = {f.name for f in dataclasses.fields(cls)}
        taken = cls(**{k: v for k, v in values.items() if k in names})
        if taken != getattr(config, section):
            logging.info("%s config taken from %s/manifest.json", section, episodes_dir)
            config = dataclasses.replace(config, **{section: taken})
    return config


def check_episode_overrides(config: Config, episodes_dir: str, keys: list[str]) -> None:
    """Raises ValueError when an explicit `data.*` or `functions.*` override disagrees
    with what the episodes were written with (training takes the manifest's
    values, so such an override would silently do nothing)."""
    written = storage.written_settings(storage.read_manifest(episodes_dir))
    for path in keys:
        section, _, key = path.partition(".")
        if section not in written or key not in written[section]:
            continue
        want = getattr(getattr(config, section), key)
        if want != written[section][key]:
            raise InvalidInputError(
                f"--set {path}={want!r} disagrees with the episodes in {episodes_dir!r}, "
                f"written with {path}={written[section][key]!r}; write new episodes "
                "(pipelines.make_episodes) or drop the override")


def _save_model(model: keras.Model, path: str) -> None:
    with files.atomic_path(path, keep_suffix=True) as tmp:
        model.save(tmp)


def check_training(tcfg, kind: kinds.EpisodeKind) -> None:
    """Raises naming the setting when the train config `tcfg` cannot apply to
    episodes of `kind` (the curriculum and device-side episodes are not for all)."""
    if tcfg.bias_fraction > 0 and not kind.curriculum:
        raise InvalidInputError(
            f"train.bias_fraction={tcfg.bias_fraction}: the curriculum biases label "
            f"permutations; {kind.name} episodes take none (set 0)")
    if tcfg.stop_at_plateau_exit and not kind.curriculum:
        raise InvalidInputError(
            "train.stop_at_plateau_exit=True: the plateau is a classification loss level "
            f"(ln C); {kind.name} runs have none")
    if tcfg.episodes_on_device and not kind.device_episodes:
        raise InvalidInputError(
            f"train.episodes_on_device=True: {kind.name} episodes are built on the host only")


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras' global dtype policy set to `name` inside the block, restored after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def compile_model(config: Config, schema, jit: bool, schedule=None) -> keras.Model:
    """The learner of `config.model` for `schema` in the precision of
    `config.train.precision` (its layers keep the policy they were built with),
    compiled with the loss and metrics of its episodes (training, tuning and the
    benchmarks all build it here); `schedule` as `make_optimizer` takes it."""
    with dtype_policy(config.train.precision):
        model = build_model(config.model, schema)
        objective = objectives.of(schema)
        model.compile(optimizer=make_optimizer(config.train, schedule), loss=objective.loss(),
                      metrics=objective.metrics(schema), jit_compile=jit)
    return model


def _pipeline_of(ctx: tf.distribute.InputContext | None, batch_size: int):
    """(input pipelines, this pipeline's index, per-replica batch) of a context."""
    if ctx is None:
        return 1, 0, batch_size
    return (ctx.num_input_pipelines, ctx.input_pipeline_id,
            ctx.get_per_replica_batch_size(batch_size))


def validation_options() -> tf.data.Options:
    """tf.data options of the meta-validation stream: no autotuning (see
    `dataset_makers`); its parallel stages then use a fixed parallelism (the
    cores), and the batches are the same."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def dataset_makers(episodes: pipeline.EpisodeSet, tcfg, bias: tf.Variable, *,
                   resumed_epochs: int = 0, data_service: str = ""):
    """(make_train, make_val): functions of an optional tf.distribute.InputContext
    returning the training stream (the curriculum's `bias` applied; the episodes of
    `resumed_epochs` finished epochs skipped) and the meta-validation stream (unseen
    tasks of the train data, "valid"; the meta-test split stays untouched until
    evaluation; repeated, so each epoch's validation batches are the same full pass).

    The validation stream runs without tf.data's autotuning: Keras' fit deletes
    its validation iterator at every evaluation, and deleting an autotuned
    iterator waits for its optimisation thread, which, after an epoch of training
    on two busy cores, blocked fit for 14-20 s at the end of most epochs (the cpu
    preset's 205 ms steps showed as 410 ms epochs)."""
    def make_train(ctx: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        pipelines, index, batch = _pipeline_of(ctx, tcfg.batch_size)
        skip = resumed_epochs * tcfg.steps_per_epoch * (tcfg.batch_size // pipelines)
        if tcfg.episodes_on_device:
            return device_episodes.record_dataset(
                episodes, "train", batch, bias=bias, seed=tcfg.seed,
                shuffle_buffer=tcfg.shuffle_buffer, skip=skip, shard=(pipelines, index))
        return pipeline.make_dataset(episodes, "train", batch, bias=bias,
                                     bias_mode=tcfg.bias_mode, seed=tcfg.seed,
                                     shuffle_buffer=tcfg.shuffle_buffer, skip=skip,
                                     shard=(pipelines, index), service=data_service)

    def make_val(ctx: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        pipelines, index, batch = _pipeline_of(ctx, tcfg.batch_size)
        return pipeline.make_dataset(episodes, "valid", batch, shuffle=False,
                                     shard=(pipelines, index),
                                     shard_by="records").with_options(validation_options())

    return make_train, make_val


def curriculum(tcfg, bias: tf.Variable, num_classes: int, monitor: str = "val_loss",
               left_plateau: bool = False) -> callbacks_lib.CurriculumCallback:
    """The curriculum callback of the train config `tcfg`, driving `bias`."""
    return callbacks_lib.CurriculumCallback(
        bias, tcfg.bias_schedule, tcfg.bias_fraction, tcfg.bias_anneal_steps,
        max(num_classes, 2), tcfg.plateau_drop, monitor=monitor, left_plateau=left_plateau)


def run_callbacks(config: Config, workdir: str, bias, monitor: str, with_curriculum: bool,
               loop: str, is_chief: bool) -> list[keras.callbacks.Callback]:
    """The callbacks of a run: curriculum, guards, and (chief only) the files."""
    tcfg = config.train
    threshold = callbacks_lib.plateau_threshold(max(config.data.num_classes, 2),
                                                tcfg.plateau_drop)
    # The plateau schedule watches the loss on unseen tasks; a resumed run
    # remembers from its history whether the plateau was already left, reading only
    # the epochs its resume state has finished (the history row of each epoch is
    # written before that epoch's resume state: the file callbacks come first).
    history = resumed_history(workdir, resume_epoch(workdir, loop)) if is_chief \
        else _history_rows(workdir)
    left = callbacks_lib.plateau_left_in(history, monitor, threshold)
    out = [curriculum(tcfg, bias, config.data.num_classes, monitor, left)] \
        if with_curriculum else []
    if tcfg.stop_at_plateau_exit:
        out.append(callbacks_lib.PlateauStop(threshold, monitor))
    out.append(callbacks_lib.FiniteGuard())
    if is_chief:
        out += [
            keras.callbacks.ModelCheckpoint(
                os.path.join(workdir, "checkpoints", "epoch-{epoch:04d}.weights.h5"),
                save_weights_only=True),
            keras.callbacks.TensorBoard(os.path.join(workdir, "tensorboard")),
            keras.callbacks.CSVLogger(os.path.join(workdir, "history.csv"), append=True),
        ]
    # Last, so that an epoch's resume state is written after its history row (the
    # custom loop checkpoints with tf.train.CheckpointManager after every callback).
    if loop == "keras":
        out.append(callbacks_lib.AtomicBackupAndRestore(os.path.join(workdir, "backup")))
    return out


def run(config: Config, workdir: str, episodes_dir: str, **kwargs) -> dict:
    """`_train` holding `workdir` (its chief, under multi_worker): a second run in
    the same workdir is an error naming this one's pid."""
    if kwargs.get("strategy") == "multi_worker" and \
            not distribute.parse_tf_config(os.environ.get("TF_CONFIG")).is_chief:
        return _train(config, workdir, episodes_dir, **kwargs)
    with files.directory_lock(workdir, "training run"):
        return _train(config, workdir, episodes_dir, **kwargs)


def _preflight(config: Config, schema, kind: kinds.EpisodeKind, loop: str, data_service: str,
               data_service_timeout_s: float) -> None:
    """Every check a run makes before it writes anything: settings against the
    episodes, the loop against device-side episodes, the dispatcher's answer."""
    tcfg = config.train
    check_training(tcfg, kind)
    check_model_config(config.model, schema)
    if tcfg.episodes_on_device and (loop != "custom" or data_service):
        raise InvalidInputError(
            "train.episodes_on_device=True needs train.loop=custom and no --data_service "
            f"(here: loop {loop!r}, data service {data_service or 'none'})")
    if data_service:
        from gpicl_tf.data import service

        service.check_dispatcher(data_service, data_service_timeout_s)


def _train(config: Config, workdir: str, episodes_dir: str, *, strategy: str = "default",
           cpu_devices: int = 0, tpu: str = "", data_service: str = "", verbose="auto",
           data_service_timeout_s: float = 30.0) -> dict:
    """Meta-trains `config.model` on the episodes in `episodes_dir`.

    Under strategy="multi_worker" every worker runs this with the same
    arguments (TF_CONFIG set); worker 0, the chief, writes `workdir` (which the
    other workers read to resume: a shared filesystem across hosts).

    `data_service`: a tf.data service dispatcher ("host:port") whose workers
    read and project the training episodes (`pipeline.make_dataset(service=)`);
    the curriculum's label permutations are applied here. It must answer within
    `data_service_timeout_s` (an error naming it, before anything is written).

    Returns:
        the summary also written to workdir/summary.json: final training and
        meta-validation ("valid": unseen tasks, train data) metrics, the step
        count, the strategy, XLA.
    """
    # ------------------------------------------------------------------ set-up
    episodes = pipeline.open_episodes(episodes_dir)
    config = written_config(config, episodes_dir)
    done = os.path.join(workdir, SUMMARY_FILE)
    _check_resume(workdir, config)
    if os.path.exists(done):
        logging.info("%s is complete (%s); not training again", workdir, done)
        with open(done) as f:
            return json.load(f)
    tcfg = config.train
    kind = kinds.of(episodes.schema)
    loop = "custom" if strategy == "multi_worker" else tcfg.loop
    _preflight(config, episodes.schema, kind, loop, data_service, data_service_timeout_s)
    strat = distribute.make_strategy(strategy, cpu_devices, tpu)
    cluster = distribute.cluster_of(strat)
    is_chief = cluster is None or cluster.is_chief
    replicas = strat.num_replicas_in_sync
    if tcfg.batch_size % replicas:
        raise InvalidInputError(
            f"train.batch_size={tcfg.batch_size} is not divisible by the "
            f"{replicas} replicas of {type(strat).__name__}")
    if is_chief:
        _open_workdir(workdir, config, episodes_dir)
    jit = distribute.use_xla(strat, tcfg.jit_compile)
    if tcfg.deterministic:
        tf.config.experimental.enable_op_determinism()  # for the process: cannot be undone
    keras.utils.set_random_seed(tcfg.seed)

    # ------------------------------------------------------------------ data
    bias = pipeline.make_bias_variable(tcfg.bias_fraction)
    checkpoint_dir = os.path.join(workdir, "loop_checkpoints")
    # A resumed run skips the episodes its finished epochs consumed, so it sees the
    # same batches an uninterrupted run would (bit-identical with train.deterministic).
    resumed = resume_epoch(workdir, loop)
    make_train, make_val = dataset_makers(episodes, tcfg, bias, resumed_epochs=resumed,
                                          data_service=data_service)
    val_steps = episodes.num_episodes("valid") // tcfg.batch_size
    epochs = math.ceil(tcfg.steps / tcfg.steps_per_epoch)

    # ------------------------------------------------------------------ model
    with strat.scope():
        model = compile_model(config, episodes.schema, jit)
    monitor = "val_loss" if val_steps else "loss"
    callbacks = run_callbacks(config, workdir, bias, monitor, kind.curriculum, loop, is_chief)
    logging.info("training %s (%d parameters) for %d steps on %s (%d replicas, global "
                 "batch %d, %d per replica), %s loop, XLA %s, input %s", config.model.arch,
                 model.count_params(), tcfg.steps, distribute.strategy_name(strat), replicas,
                 tcfg.batch_size, tcfg.batch_size // replicas, loop, jit,
                 f"tf.data service {data_service}" if data_service else "in process")

    # ------------------------------------------------------------------ train
    if loop == "custom":
        spec = loop_lib.LoopSpec(
            steps=tcfg.steps, steps_per_epoch=tcfg.steps_per_epoch,
            global_batch=tcfg.batch_size, val_steps=val_steps,
            objective=objectives.of(episodes.schema),
            window=min(10, config.data.episode_length), jit=jit,
            checkpoint_dir=checkpoint_dir, is_chief=is_chief,
            builder=device_episodes.EpisodeBuilder(episodes, "train", tcfg.bias_mode)
            if tcfg.episodes_on_device else None)
        history = loop_lib.fit(model, strat, make_train, make_val if val_steps else None,
                               spec, callbacks)
    else:
        history = model.fit(make_train(), epochs=epochs, steps_per_epoch=tcfg.steps_per_epoch,
                            validation_data=make_val() if val_steps else None,
                            validation_steps=val_steps or None, callbacks=callbacks,
                            verbose=verbose, shuffle=False).history

    # ------------------------------------------------------------------ save
    summary = _summary(model, history, strat, cluster, loop, jit, tcfg, epochs, data_service)
    if is_chief:
        _save_model(model, os.path.join(workdir, MODEL_FILE))
        storage.write_json(done, summary)
    return summary


def _open_workdir(workdir: str, config: Config, episodes_dir: str) -> None:
    """The chief's workdir: created, a killed run's temporaries removed, the config
    and its episodes written (what a resume is checked against)."""
    os.makedirs(workdir, exist_ok=True)
    for directory in (workdir, os.path.join(workdir, "backup")):
        files.remove_stale_temporaries(directory)
    storage.write_json(os.path.join(workdir, CONFIG_FILE),
                       {"config": config.to_dict(), "episodes": os.path.abspath(episodes_dir)})


def _summary(model, history: dict, strat, cluster, loop: str, jit: bool, tcfg, epochs: int,
             data_service: str) -> dict:
    """What a finished run wrote (summary.json): its final metrics, steps and set-up."""
    return {
        "steps": int(model.optimizer.iterations.numpy()),
        "epochs": epochs,
        "parameters": int(model.count_params()),
        "strategy": distribute.strategy_name(strat),
        "replicas": int(strat.num_replicas_in_sync),
        "workers": len(cluster.workers) if cluster else 1,
        "loop": loop,
        "xla": jit,
        "precision": tcfg.precision,
        "data_service": data_service or None,
        "final": {k: float(v[-1]) for k, v in history.items()},
        "weights_sha256": loop_lib.weights_digest(model),
    }
