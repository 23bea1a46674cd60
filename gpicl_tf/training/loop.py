"""A custom distributed training loop: the same Keras model, optimizer, loss and
metrics as `fit`, run by `strategy.run` under any tf.distribute strategy
(MultiWorkerMirroredStrategy included, where Keras 3's `fit` breaks).

    history = fit(model, strategy, make_train, make_val, spec, callbacks)

- Input: `strategy.distribute_datasets_from_function`; each input pipeline
  builds its own batches (per-replica batch = global batch / replicas) from its
  own shard files.
- Step: per replica, loss = sum of per-example losses / global batch (so the
  cross-replica SUM is the global mean, as `fit` computes it on one device);
  Keras' optimizer all-reduces the gradients. Metrics are sums of hits and
  counts, reduced across replicas and accumulated on the device; the host reads
  them once per epoch.
- Callbacks: the same Keras callbacks as `fit` (curriculum, finite guard,
  plateau stop, CSV logger, TensorBoard, weight checkpoints), driven through
  `keras.callbacks.CallbackList`.
- Resume: `tf.train.CheckpointManager` over (model, optimizer, epoch); the chief
  writes `checkpoint_dir`, other workers write to a temporary directory that is
  deleted (TensorFlow's multi-worker guidance), and all restore the chief's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import shutil
import tempfile
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from gpicl_tf.training.objectives import Objective

EPOCH_KEY = "epoch/.ATTRIBUTES/VARIABLE_VALUE"


@dataclasses.dataclass(frozen=True)
class LoopSpec:
    """What the loop runs: `steps` optimizer steps in epochs of `steps_per_epoch`,
    `global_batch` episodes per step, `val_steps` validation batches per epoch."""

    steps: int
    steps_per_epoch: int
    global_batch: int
    val_steps: int
    objective: Objective
    window: int
    jit: bool
    checkpoint_dir: str
    is_chief: bool = True
    builder: Callable | None = None  # record batch -> (features, targets), on the device


def latest_checkpoint(checkpoint_dir: str) -> str | None:
    """The newest checkpoint's prefix in `checkpoint_dir`, or None."""
    return tf.train.latest_checkpoint(checkpoint_dir) if os.path.isdir(checkpoint_dir) else None


def checkpoint_epoch(checkpoint_dir: str) -> int:
    """The epoch a run resumes from (the latest checkpoint's counter), or 0."""
    latest = latest_checkpoint(checkpoint_dir)
    return int(tf.train.load_variable(latest, EPOCH_KEY)) if latest else 0


def weights_digest(model: keras.Model) -> str:
    """sha256 of every weight's bytes, in order: equal digests, equal models."""
    h = hashlib.sha256()
    for w in model.weights:
        h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(w.value)).tobytes())
    return h.hexdigest()


class Steps:
    """The compiled distributed train and eval steps of one model."""

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy, spec: LoopSpec):
        self.model, self.strategy, self.spec = model, strategy, spec
        self.replicas = strategy.num_replicas_in_sync
        # The function given to strategy.run is itself the compiled step: a nested
        # tf.function holding the optimizer's all-reduce fails under several replicas.
        self.replica_train = tf.function(self._update, jit_compile=spec.jit)
        self.replica_eval = tf.function(self._replica_eval, jit_compile=spec.jit)

    def _update(self, features, targets):
        model, spec = self.model, self.spec
        with tf.GradientTape() as tape:
            pred = model(features, training=True)
            loss = tf.reduce_sum(spec.objective.example_losses(targets, pred)) / \
                spec.global_batch
            if model.losses:
                loss += tf.add_n(model.losses) / self.replicas
            scaled = model.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, spec.objective.batch_sums(targets, pred, spec.window)

    def _replica_eval(self, features, targets):
        pred = self.model(features, training=False)
        loss = tf.reduce_sum(self.spec.objective.example_losses(targets, pred)) / \
            self.spec.global_batch
        return loss, self.spec.objective.batch_sums(targets, pred, self.spec.window)

    def _reduce(self, loss, sums):
        return (self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                self.strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None))

    @tf.function
    def train(self, iterator):
        batch = next(iterator)
        args = batch if isinstance(batch, tuple) else (batch,)
        if self.spec.builder is not None:
            # Record batches become episodes on each replica's device first, outside
            # XLA: XLA draws other numbers than TensorFlow's kernels from the same
            # stateless Philox seed, and tasks must be the same wherever they are built.
            args = self.strategy.run(self.spec.builder, args=args)
        return self._reduce(*self.strategy.run(self.replica_train, args=args))

    @tf.function
    def evaluate(self, iterator):
        return self._reduce(*self.strategy.run(self.replica_eval, args=next(iterator)))


def _epoch_logs(loss_sum, sums, batches: int, spec: LoopSpec, prefix: str = "") -> dict:
    logs = {"loss": float(loss_sum) / max(batches, 1),
            **spec.objective.metric_logs(np.asarray(sums), spec.window)}
    return {prefix + k: v for k, v in logs.items()}


def fit(model: keras.Model, strategy: tf.distribute.Strategy,
        make_train: Callable[[tf.distribute.InputContext], tf.data.Dataset],
        make_val: Callable[[tf.distribute.InputContext], tf.data.Dataset] | None,
        spec: LoopSpec, callbacks: list[keras.callbacks.Callback]) -> dict[str, list]:
    """Trains `model` (compiled: its optimizer is used) for spec.steps steps;
    returns the history {name: [value per epoch]} as `fit` would."""
    with strategy.scope():
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=epoch_var)
    latest = latest_checkpoint(spec.checkpoint_dir)
    if latest:
        ckpt.restore(latest).assert_existing_objects_matched()
        logging.info("resumed from %s (epoch %d, step %d)", latest, int(epoch_var.numpy()),
                     int(model.optimizer.iterations.numpy()))
    write_dir = spec.checkpoint_dir if spec.is_chief else tempfile.mkdtemp(prefix="worker-ckpt-")
    manager = tf.train.CheckpointManager(ckpt, write_dir, max_to_keep=2)

    train_iter = iter(strategy.distribute_datasets_from_function(make_train))
    val_iter = iter(strategy.distribute_datasets_from_function(make_val)) \
        if make_val is not None and spec.val_steps else None
    steps = Steps(model, strategy, spec)
    recorder = keras.callbacks.History()   # sees the logs as the callbacks leave them
    cbs = keras.callbacks.CallbackList([*callbacks, recorder], model=model)
    epochs = math.ceil(spec.steps / spec.steps_per_epoch)
    model.stop_training = False
    cbs.on_train_begin()
    try:
        for epoch in range(int(epoch_var.numpy()), epochs):
            cbs.on_epoch_begin(epoch)
            loss_sum, sums = tf.constant(0.0), None
            for batch in range(spec.steps_per_epoch):
                cbs.on_train_batch_begin(batch)
                loss, batch_total = steps.train(train_iter)
                loss_sum += loss
                sums = batch_total if sums is None else sums + batch_total
                cbs.on_train_batch_end(batch, {"loss": loss})
            logs = _epoch_logs(loss_sum, sums, spec.steps_per_epoch, spec)
            if val_iter is not None:
                v_loss, v_sums = tf.constant(0.0), None
                for _ in range(spec.val_steps):
                    loss, batch_total = steps.evaluate(val_iter)
                    v_loss += loss
                    v_sums = batch_total if v_sums is None else v_sums + batch_total
                logs.update(_epoch_logs(v_loss, v_sums, spec.val_steps, spec, "val_"))
            epoch_var.assign(epoch + 1)
            cbs.on_epoch_end(epoch, logs)   # the curriculum adds bias_fraction to logs
            manager.save(checkpoint_number=epoch + 1)
            logging.info("epoch %d/%d (step %d): %s", epoch + 1, epochs,
                         int(model.optimizer.iterations.numpy()),
                         " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
            if model.stop_training:
                break
        if model.optimizer.use_ema:      # as fit does: the averaged weights are the model's
            model.optimizer.finalize_variable_values(model.trainable_variables)
        cbs.on_train_end()
    finally:
        if not spec.is_chief:
            shutil.rmtree(write_dir, ignore_errors=True)
    return recorder.history
