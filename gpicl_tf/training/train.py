"""Meta-training: one readable `run(config, workdir, episodes_dir)`.

Example:
    >>> summary = run(get_preset("smoke"), "/tmp/run", "/tmp/eps")  # doctest: +SKIP

The workdir holds `config.json` (the resolved config), `history.csv`,
`tensorboard/`, `checkpoints/`, `backup/` (BackupAndRestore: a killed run started
again with the same arguments resumes from its last finished epoch),
`model.keras` and `summary.json` (written last: the run is complete).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os

import keras
import tensorflow as tf
from absl import logging

from gpicl_tf.config import Config, DataConfig, FunctionConfig
from gpicl_tf.data import pipeline, storage
from gpicl_tf.models import build_model
from gpicl_tf.models.sequence_models import check_model_config
from gpicl_tf.training import callbacks as callbacks_lib
from gpicl_tf.training import distribute
from gpicl_tf.training.metrics import QueryMSE, query_mse, sequence_metrics

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
MODEL_FILE = "model.keras"


def make_optimizer(cfg) -> keras.optimizers.Optimizer:
    """Adam (AdamW when weight_decay > 0) with warm-up + cosine decay and clipping."""
    decay_steps = max(cfg.steps - cfg.warmup_steps, 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if cfg.warmup_steps else cfg.learning_rate,
        decay_steps=decay_steps, alpha=cfg.min_lr_ratio,
        warmup_target=cfg.learning_rate if cfg.warmup_steps else None,
        warmup_steps=cfg.warmup_steps)
    kwargs = dict(learning_rate=schedule, epsilon=cfg.adam_epsilon,
                  global_clipnorm=cfg.clip_norm or None)
    if cfg.weight_decay > 0:
        return keras.optimizers.AdamW(weight_decay=cfg.weight_decay, **kwargs)
    return keras.optimizers.Adam(**kwargs)


def _history_rows(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "history.csv")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def _check_resume(workdir: str, config: Config) -> None:
    """A workdir belongs to one config: resuming with another is an error."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return
    with open(path) as f:
        saved = json.load(f)["config"]
    new = config.to_dict()
    for section in new:
        if section not in saved or section in ("eval", "tune"):
            continue  # added since that run was written, or not read by training
        for key in new[section]:
            if key not in saved[section]:
                continue  # a setting added since that run was written
            if saved[section][key] != new[section][key]:
                raise ValueError(
                    f"{workdir!r} holds a run with {section}.{key}="
                    f"{saved[section][key]!r}, this run has {new[section][key]!r}; "
                    "use another --workdir")


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
            raise ValueError(
                f"--set {path}={want!r} disagrees with the episodes in {episodes_dir!r}, "
                f"written with {path}={written[section][key]!r}; write new episodes "
                "(pipelines.make_episodes) or drop the override")


def _save_model(model: keras.Model, path: str) -> None:
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{name}")
    model.save(tmp)
    os.replace(tmp, path)


def run(config: Config, workdir: str, episodes_dir: str, *, strategy: str = "default",
        cpu_devices: int = 0, tpu: str = "", verbose="auto") -> dict:
    """Meta-trains `config.model` on the episodes in `episodes_dir`.

    Returns:
        the summary also written to workdir/summary.json: final training and
        meta-validation ("valid": unseen tasks, train data) metrics, the step
        count, the strategy, XLA.
    """
    # ------------------------------------------------------------------ set-up
    episodes = pipeline.open_episodes(episodes_dir)
    data = DataConfig(**episodes.manifest["config"])
    if data != config.data:
        logging.info("data config taken from %s/manifest.json", episodes_dir)
        config = dataclasses.replace(config, data=data)
    if "functions" in episodes.manifest:
        written = FunctionConfig(**episodes.manifest["functions"])
        if written != config.functions:
            logging.info("functions config taken from %s/manifest.json", episodes_dir)
            config = dataclasses.replace(config, functions=written)
    os.makedirs(workdir, exist_ok=True)
    for directory in (workdir, os.path.join(workdir, "backup")):
        storage.remove_stale_temporaries(directory)
    done = os.path.join(workdir, SUMMARY_FILE)
    _check_resume(workdir, config)
    if os.path.exists(done):
        logging.info("%s is complete (%s); not training again", workdir, done)
        with open(done) as f:
            return json.load(f)
    tcfg = config.train
    regression = episodes.schema.regression
    if regression and tcfg.bias_fraction > 0:
        raise ValueError(f"train.bias_fraction={tcfg.bias_fraction}: the curriculum biases "
                         "classification tasks; function-regression episodes take none (set 0)")
    if regression and tcfg.stop_at_plateau_exit:
        raise ValueError("train.stop_at_plateau_exit=True: the plateau is a classification "
                         "loss level (ln C); function-regression runs have none")
    check_model_config(config.model, episodes.schema)  # fails before config.json is written
    storage.write_json(os.path.join(workdir, CONFIG_FILE),
                       {"config": config.to_dict(), "episodes": os.path.abspath(episodes_dir)})
    strat = distribute.make_strategy(strategy, cpu_devices, tpu)
    jit = distribute.use_xla(strat, tcfg.jit_compile)
    previous_policy = keras.config.dtype_policy()
    if tcfg.mixed_precision:
        gpu = bool(tf.config.list_logical_devices("GPU"))
        keras.config.set_dtype_policy("mixed_float16" if gpu else "mixed_bfloat16")
    if tcfg.deterministic:
        tf.config.experimental.enable_op_determinism()  # for the process: cannot be undone
    keras.utils.set_random_seed(tcfg.seed)

    # ------------------------------------------------------------------ data
    bias = pipeline.make_bias_variable(tcfg.bias_fraction)
    # A resumed run skips the episodes its finished epochs consumed, so it sees the
    # same batches an uninterrupted run would (bit-identical with train.deterministic).
    resumed = callbacks_lib.backup_epoch(os.path.join(workdir, "backup"))
    train_ds = pipeline.make_dataset(episodes, "train", tcfg.batch_size, bias=bias,
                                     bias_mode=tcfg.bias_mode, seed=tcfg.seed,
                                     shuffle_buffer=tcfg.shuffle_buffer,
                                     skip=resumed * tcfg.steps_per_epoch * tcfg.batch_size)
    # Meta-validation on unseen tasks of the train data ("valid"); the meta-test
    # split stays untouched until evaluation.
    val_ds, val_steps = None, episodes.num_episodes("valid") // tcfg.batch_size
    if val_steps:
        # Repeated: Keras keeps one validation iterator across epochs, and each
        # epoch's validation_steps batches are then the same full pass.
        val_ds = pipeline.make_dataset(episodes, "valid", tcfg.batch_size, shuffle=False)

    # ------------------------------------------------------------------ model
    try:
        with strat.scope():
            model = build_model(config.model, episodes.schema)
            model.compile(
                optimizer=make_optimizer(tcfg),
                loss=query_mse if regression
                else keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=[QueryMSE()] if regression
                else sequence_metrics(min(10, config.data.episode_length)),
                jit_compile=jit)

        # -------------------------------------------------------------- fit
        # The plateau schedule watches the loss on unseen tasks; a resumed run
        # remembers from its history whether the plateau was already left.
        monitor = "val_loss" if val_ds is not None else "loss"
        left = callbacks_lib.plateau_left_in(
            _history_rows(workdir), monitor,
            callbacks_lib.plateau_threshold(max(config.data.num_classes, 2), tcfg.plateau_drop))
        callbacks = [] if regression else [
            callbacks_lib.CurriculumCallback(
                bias, tcfg.bias_schedule, tcfg.bias_fraction, tcfg.bias_anneal_steps,
                config.data.num_classes, tcfg.plateau_drop, monitor=monitor,
                left_plateau=left)]
        if tcfg.stop_at_plateau_exit:
            callbacks.append(callbacks_lib.PlateauStop(callbacks_lib.plateau_threshold(
                max(config.data.num_classes, 2), tcfg.plateau_drop), monitor))
        callbacks += [
            callbacks_lib.FiniteGuard(),
            callbacks_lib.AtomicBackupAndRestore(os.path.join(workdir, "backup")),
            keras.callbacks.ModelCheckpoint(
                os.path.join(workdir, "checkpoints", "epoch-{epoch:04d}.weights.h5"),
                save_weights_only=True),
            keras.callbacks.TensorBoard(os.path.join(workdir, "tensorboard")),
            keras.callbacks.CSVLogger(os.path.join(workdir, "history.csv"), append=True),
        ]
        epochs = math.ceil(tcfg.steps / tcfg.steps_per_epoch)
        logging.info("training %s (%d parameters) for %d steps on %s, XLA %s",
                     config.model.arch, model.count_params(), tcfg.steps,
                     type(strat).__name__, jit)
        history = model.fit(train_ds, epochs=epochs, steps_per_epoch=tcfg.steps_per_epoch,
                            validation_data=val_ds, validation_steps=val_steps or None,
                            callbacks=callbacks, verbose=verbose, shuffle=False)

        # -------------------------------------------------------------- save
        _save_model(model, os.path.join(workdir, MODEL_FILE))
        summary = {
            "steps": int(model.optimizer.iterations.numpy()),
            "epochs": epochs,
            "parameters": int(model.count_params()),
            "strategy": type(strat).__name__,
            "replicas": int(strat.num_replicas_in_sync),
            "xla": jit,
            "final": {k: float(v[-1]) for k, v in history.history.items()},
        }
    finally:
        keras.config.set_dtype_policy(previous_policy)
    storage.write_json(done, summary)
    return summary
