"""Meta-training of the cell learner on prior tables drawn on the fly.

    run(config, workdir)            # resumes from workdir's last checkpoint
    run(config, workdir, warm_start="saved_models/tabular/1")   # from released weights

A custom loop (the batches change shape from step to step, so no XLA): each
step reads batch `step` of `gpicl_tf.data.tables` (made ahead in a thread),
takes one optimizer step on the weighted cross-entropy of the test rows, and
every `checkpoint_every` steps writes a checkpoint (model, optimizer, step: the
resume point), the model's weights (kept for averaging) and the validation
loss and accuracy on a fixed set of prior tables. At the end, the mean of the
last `average_last` checkpoints' weights is the released model
(`model.keras`), with `summary.json`.

Files in workdir: config.json, ckpt/ (resume), weights/step-N.weights.h5,
log.csv (every log_every steps), validation.csv, model.keras, summary.json.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from gpicl_tf.config.cell import CellRunConfig
from gpicl_tf import io as files
from gpicl_tf.data import tables
from gpicl_tf.errors import InvalidInputError, MissingFileError
from gpicl_tf.models.cell import CellTransformer
from gpicl_tf.training import optimizers
from gpicl_tf.training.optimizers import AttentionMuon  # noqa: F401  (its old home)
from gpicl_tf.training.train import dtype_policy

CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
SUMMARY_FILE = "summary.json"
RELEASED_KERAS = files.RELEASED_KERAS


def build_model(cfg: CellRunConfig) -> CellTransformer:
    m = cfg.model
    model = CellTransformer(num_classes=m.num_classes, model_size=m.model_size,
                            num_layers=m.num_layers, num_heads=m.num_heads,
                            mlp_ratio=m.mlp_ratio, max_features=m.max_features,
                            id_size=m.id_size, clip=cfg.prior.clip, seed=cfg.train.seed,
                            feature_groups=m.feature_groups, thinking_rows=m.thinking_rows,
                            norm=m.norm, residual_decay=m.residual_decay,
                            scalar_embedding=m.scalar_embedding, rbf_centers=m.rbf_centers,
                            decoder=m.decoder)
    model.build()
    return model


def build_optimizer(cfg: CellRunConfig) -> keras.optimizers.Optimizer:
    """The cell run's optimizer (`optimizers.build_optimizer`): the warm-up stops a
    step before the end."""
    t = cfg.train
    schedule = optimizers.warmup_cosine(t.learning_rate, t.steps,
                                        min(t.warmup_steps, t.steps - 1), t.final_lr_fraction)
    return optimizers.build_optimizer(t.optimizer, schedule, weight_decay=t.weight_decay,
                                      clip_norm=t.clip_norm, muon_attention=t.muon_attention)


def weighted_loss(logits, labels, weight):
    """(mean cross-entropy, accuracy) over test rows with weight 1."""
    ce = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    total = tf.maximum(tf.reduce_sum(weight), 1.0)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
    return tf.reduce_sum(ce * weight) / total, tf.reduce_sum(correct * weight) / total


_SPEC = {"context_x": tf.TensorSpec([None, None, None], tf.float32),
         "context_y": tf.TensorSpec([None, None], tf.int32),
         "query_x": tf.TensorSpec([None, None, None], tf.float32),
         "query_y": tf.TensorSpec([None, None], tf.int32),
         "query_weight": tf.TensorSpec([None, None], tf.float32),
         "column_ids": tf.TensorSpec([None, None, None], tf.float32)}


def make_steps(model: CellTransformer, optimizer):
    """(train_step, eval_step) as tf.functions over batches of any shape."""

    @tf.function(input_signature=[_SPEC])
    def train_step(batch):
        with tf.GradientTape() as tape:
            logits = model(batch, training=True)
            loss, acc = weighted_loss(logits, batch["query_y"], batch["query_weight"])
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, acc

    @tf.function(input_signature=[_SPEC])
    def eval_step(batch):
        batch = {k: v for k, v in batch.items() if k != "column_ids"}    # the fixed table
        logits = model(batch, training=False)
        return weighted_loss(logits, batch["query_y"], batch["query_weight"])

    return train_step, eval_step


def validate(eval_step, batches) -> tuple[float, float]:
    """Mean loss and accuracy over the validation batches, weighted by test rows."""
    total = loss = acc = 0.0
    for batch in batches:
        w = float(batch["query_weight"].sum())
        l_, a_ = eval_step(batch)
        loss, acc, total = loss + float(l_) * w, acc + float(a_) * w, total + w
    return loss / max(total, 1.0), acc / max(total, 1.0)


def load_warm_start(path: str) -> CellTransformer:
    """The cell model of a finished run (its workdir or model.keras) or of a
    released version (its directory, holding assets.extra/cell_model.keras)."""
    for candidate in (path, os.path.join(path, MODEL_FILE), os.path.join(path, RELEASED_KERAS)):
        if os.path.isfile(candidate) and candidate.endswith(".keras"):
            model = keras.models.load_model(candidate, compile=False)
            if not isinstance(model, CellTransformer):
                raise InvalidInputError(f"warm start {candidate!r} is a "
                                        f"{type(model).__name__}, not a CellTransformer")
            return model
    raise MissingFileError(f"warm start {path!r}: no model.keras or {RELEASED_KERAS} there")


def _check_workdir(cfg: CellRunConfig, workdir: str) -> None:
    """A workdir holds one run: a stored config that differs (beyond train.steps)
    is refused, naming the first difference."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return
    with open(path) as f:
        stored = json.load(f)["config"]
    mine, defaults = cfg.to_dict(), CellRunConfig().to_dict()
    for section in mine:
        for key, value in mine[section].items():
            if (section, key) in (("train", "steps"), ("train", "max_seconds")):
                continue
            # a key newer than the stored run has its default there
            old = stored.get(section, {}).get(key, defaults[section][key])
            if old != value:
                raise InvalidInputError(
                    f"workdir {workdir!r} holds a run with {section}.{key}="
                    f"{old!r}, not {value!r}: use another "
                    "--workdir, or the stored setting to resume it")


def _append_csv(path: str, row: dict) -> None:
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def average_weights(model: CellTransformer, paths: list[str]) -> None:
    """Sets `model`'s weights to the mean of the weight files `paths`."""
    total = None
    for path in paths:
        model.load_weights(path)
        w = [np.asarray(v, np.float64) for v in model.get_weights()]
        total = w if total is None else [a + b for a, b in zip(total, w)]
    model.set_weights([a / len(paths) for a in total])


def run(cfg: CellRunConfig, workdir: str, warm_start: str | None = None) -> dict:
    """Meta-trains (or resumes) the cell learner in `workdir`; returns the summary."""
    # ---- set-up ---------------------------------------------------------------
    with files.directory_lock(workdir, "cell training run"):
        _check_workdir(cfg, workdir)
        os.makedirs(os.path.join(workdir, "weights"), exist_ok=True)
        for directory in (workdir, os.path.join(workdir, "weights")):
            files.remove_stale_temporaries(directory)
        with files.atomic_path(os.path.join(workdir, CONFIG_FILE)) as tmp:
            with open(tmp, "w") as f:
                json.dump({"config": cfg.to_dict()}, f, indent=2, sort_keys=True)
        keras.utils.set_random_seed(cfg.train.seed)
        with dtype_policy(cfg.train.precision):
            return _run(cfg, workdir, warm_start)


def _save_weights(model: CellTransformer, workdir: str, step: int) -> None:
    """weights/step-N.weights.h5, never visible half-written."""
    path = os.path.join(workdir, "weights", f"step-{step}.weights.h5")
    with files.atomic_path(path, keep_suffix=True) as tmp:
        model.save_weights(tmp)


def _run(cfg: CellRunConfig, workdir: str, warm_start: str | None) -> dict:
    t = cfg.train
    # ---- model, optimizer, resume point ---------------------------------------
    model = build_model(cfg)
    if warm_start:
        source = load_warm_start(warm_start)
        if source.get_config()["model_size"] != model.model_size or \
                [tuple(w.shape) for w in source.weights] != [tuple(w.shape) for w in model.weights]:
            raise InvalidInputError(f"warm start {warm_start!r} has another architecture "
                                    f"than model={cfg.model}")
        model.set_weights(source.get_weights())
    optimizer = build_optimizer(cfg)
    optimizer.build(model.trainable_variables)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_var)
    manager = tf.train.CheckpointManager(ckpt, os.path.join(workdir, "ckpt"), max_to_keep=2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logging.info("resumed at step %d from %s", int(step_var), manager.latest_checkpoint)
    start = int(step_var)
    for name in ("log.csv", "validation.csv"):      # rows of steps lost with the kill
        files.cut_csv(os.path.join(workdir, name), "step", start + 1)
    train_step, eval_step = make_steps(model, optimizer)
    valid = tables.validation_batches(cfg)
    # ---- the loop -------------------------------------------------------------
    began, seen, losses, accs, final = time.time(), 0, [], [], start
    feeder = tables.Prefetcher(cfg, start, t.steps)
    try:
        for step, batch in feeder:
            if step >= t.steps:
                break
            loss, acc = train_step(batch)
            loss = float(loss)
            if not np.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at step {step}: lower "
                                         f"train.learning_rate={t.learning_rate}")
            losses.append(loss)
            accs.append(float(acc))
            seen += batch["context_x"].shape[0]
            done = final = step + 1
            # the last step: the planned one, or the first to end past the budget
            last = done == t.steps or bool(t.max_seconds) and time.time() - began >= t.max_seconds
            if done % t.log_every == 0 or last:
                _append_csv(os.path.join(workdir, "log.csv"), {
                    "step": done, "loss": np.mean(losses), "accuracy": np.mean(accs),
                    "learning_rate": float(optimizer.learning_rate),
                    "seconds": round(time.time() - began, 2), "tables": seen})
                losses, accs = [], []
            if done % t.checkpoint_every == 0 or last:
                step_var.assign(done)
                manager.save(checkpoint_number=done)
                _save_weights(model, workdir, done)
                _prune_weights(workdir, t.average_last, t.keep_every)
                v_loss, v_acc = validate(eval_step, valid)
                _append_csv(os.path.join(workdir, "validation.csv"), {
                    "step": done, "loss": round(v_loss, 5), "accuracy": round(v_acc, 5),
                    "seconds": round(time.time() - began, 2)})
                logging.info("step %d: validation loss %.4f accuracy %.4f (%.0f s)",
                             done, v_loss, v_acc, time.time() - began)
            elif t.average_every and done % t.average_every == 0:
                _save_weights(model, workdir, done)
                _prune_weights(workdir, t.average_last, t.keep_every)
            if last:
                break
    finally:
        feeder.close()
    # ---- the released weights: mean of the last checkpoints -------------------
    window = t.average_last * (t.average_every or t.checkpoint_every)
    kept = [p for p in _weight_files(workdir) if final - window < weights_step(p) <= final]
    if kept:
        average_weights(model, kept)
    v_loss, v_acc = validate(eval_step, valid)
    with files.atomic_path(os.path.join(workdir, MODEL_FILE), keep_suffix=True) as tmp:
        model.save(tmp)
    budget = {"stopped_at_max_seconds": t.max_seconds} if final < t.steps else {}
    summary = {"steps": final, **budget, "averaged": [os.path.basename(p) for p in kept],
               "validation_loss": v_loss, "validation_accuracy": v_acc,
               "parameters": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
               "seconds_this_session": round(time.time() - began, 1)}
    with files.atomic_path(os.path.join(workdir, SUMMARY_FILE)) as tmp:
        with open(tmp, "w") as f:
            json.dump(summary, f, indent=2)
    return summary


def _weight_files(workdir: str) -> list[str]:
    files = glob.glob(os.path.join(workdir, "weights", "step-*.weights.h5"))
    return sorted(files, key=weights_step)


def weights_step(path: str) -> int:
    """The step of a weights file step-N.weights.h5."""
    return int(os.path.basename(path)[5:].split(".")[0])


def _prune_weights(workdir: str, keep: int, keep_every: int = 0) -> None:
    """Keeps the last `keep` weight files and those of multiples of `keep_every`."""
    for path in _weight_files(workdir)[:-keep]:
        if not (keep_every and weights_step(path) % keep_every == 0):
            os.remove(path)
