"""Keras Tuner searches: a HyperModel over the meta-learner, tuners, results.

Example:
    >>> results = run_search(get_preset("cpu"), "runs/tune", "tfrecords/cpu",
    ...                      tuner="random")  # doctest: +SKIP

The objective is meta-validation accuracy over the last 10 positions on unseen
tasks of the train data (`val_acc_last10` on the "valid" split), never the
training loss: memorising the training tasks cannot win. Searches resume: a
search started again in the same directory skips finished trials. Distributed
search uses Keras Tuner's chief/worker mode (KERASTUNER_TUNER_ID,
KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import threading
import time

import keras_tuner
from absl import logging

from gpicl_tf import compat, tasks
from gpicl_tf.config import Config, override
from gpicl_tf import io as files
from gpicl_tf.data import pipeline, storage
from gpicl_tf.errors import InvalidInputError
from gpicl_tf.training import budget, train as training
from gpicl_tf.training.callbacks import FiniteGuard

OBJECTIVE = "val_acc_last10"
TUNERS = ("random", "hyperband", "bayesian")


def search_space(config: Config) -> dict:
    """The search space from `config.tune` (checked when the config loads)."""
    t = config.tune
    return {"model_size": list(t.model_sizes), "num_layers": list(t.num_layers),
            "num_heads": list(t.num_heads), "adam_epsilon": list(t.adam_epsilons),
            "batch_size": list(t.batch_sizes), "bias_fraction": list(t.bias_fractions),
            "optimizer": list(t.optimizers), "weight_decay": list(t.weight_decays),
            "ema_momentum": list(t.ema_momentums)}


def config_for(config: Config, values: dict) -> Config:
    """The config a trial's hyperparameter values stand for."""
    model = dataclasses.replace(config.model, model_size=values["model_size"],
                                num_layers=values["num_layers"], num_heads=values["num_heads"],
                                key_size=values["model_size"] // values["num_heads"])
    train = dataclasses.replace(config.train, learning_rate=values["learning_rate"],
                                adam_epsilon=values["adam_epsilon"],
                                batch_size=values["batch_size"],
                                bias_fraction=values["bias_fraction"],
                                bias_schedule="plateau" if values["bias_fraction"] else "constant",
                                optimizer=values.get("optimizer", config.train.optimizer),
                                weight_decay=values.get("weight_decay", config.train.weight_decay),
                                ema_momentum=values.get("ema_momentum", config.train.ema_momentum),
                                steps=int(values.get("steps", config.tune.steps)))
    return dataclasses.replace(config, model=model, train=train)


class GPICLHyperModel(keras_tuner.HyperModel):
    """Builds and meta-trains one trial's learner on the episode directory, as
    `train.run` would: its precision (`compile_model`), curriculum and FiniteGuard."""

    def __init__(self, config: Config, episodes_dir: str):
        super().__init__(name="gpicl")
        self.config, self.episodes_dir = config, episodes_dir
        self.space = search_space(config)
        self.episodes = pipeline.open_episodes(episodes_dir)
        if not tasks.get(self.episodes.schema.task).tunable:
            raise InvalidInputError(
                f"{episodes_dir} holds {self.episodes.schema.task} episodes; the search "
                "scores accuracy (val_acc_last10)")
        if self.episodes.num_episodes("valid") < max(self.space["batch_size"]):
            raise InvalidInputError(
                f"{episodes_dir} holds {self.episodes.num_episodes('valid')} "
                "meta-validation episodes, fewer than the largest batch size")

    def _values(self, hp) -> dict:
        values = {k: hp.Choice(k, v) for k, v in self.space.items()}
        values["learning_rate"] = hp.Float("learning_rate", self.config.tune.learning_rate_min,
                                           self.config.tune.learning_rate_max, sampling="log")
        return values

    def build(self, hp):
        """The trial's compiled model; a time-budgeted trial's model carries its
        `BudgetSchedule` as `budget_schedule` for `fit`'s clock (None otherwise)."""
        cfg = config_for(self.config, self._values(hp))
        t = cfg.train
        schedule = budget.BudgetSchedule(t.learning_rate, t.warmup_steps, t.min_lr_ratio) \
            if self.config.tune.trial_seconds else None
        model = training.compile_model(cfg, self.episodes.schema, t.jit_compile, schedule)
        model.budget_schedule = schedule
        return model

    def fit(self, hp, model, *args, epochs=None, callbacks=None, verbose="auto", **kwargs):
        cfg = config_for(self.config, self._values(hp))
        t = cfg.train
        bias = pipeline.make_bias_variable(t.bias_fraction)
        make_train, make_val = training.dataset_makers(self.episodes, t, bias)
        steps_per_epoch = min(t.steps_per_epoch, t.steps)
        epochs = epochs or math.ceil(t.steps / steps_per_epoch)
        schedule = getattr(model, "budget_schedule", None)
        clock = [budget.BudgetClock(schedule, self.config.tune.trial_seconds)] \
            if schedule is not None else []
        return model.fit(make_train(), epochs=epochs, steps_per_epoch=steps_per_epoch,
                         validation_data=make_val(),
                         validation_steps=self.episodes.num_episodes("valid") // t.batch_size,
                         callbacks=[*(callbacks or []), *clock, training.curriculum(
                             t, bias, self.episodes.schema.num_classes),
                             FiniteGuard()],      # a diverged trial fails, as a run does
                         verbose=verbose, shuffle=False)


def make_tuner(kind: str, hypermodel: GPICLHyperModel, directory: str, max_trials: int):
    if kind not in TUNERS:
        raise InvalidInputError(f"tuner={kind!r} is not one of {TUNERS}")
    if kind == "hyperband" and hypermodel.config.tune.trial_seconds:
        raise InvalidInputError(
            f"tuner='hyperband' with tune.trial_seconds={hypermodel.config.tune.trial_seconds}: "
            "Hyperband budgets trials in epochs, a timed trial in seconds; use "
            "tuner='random' or 'bayesian', or tune.trial_seconds=0")
    common = dict(objective=keras_tuner.Objective(OBJECTIVE, direction="max"),
                  directory=directory, project_name="search", overwrite=False,
                  seed=hypermodel.config.tune.seed)
    if kind == "random":
        return keras_tuner.RandomSearch(hypermodel, max_trials=max_trials, **common)
    if kind == "bayesian":
        return keras_tuner.BayesianOptimization(hypermodel, max_trials=max_trials, **common)
    t = hypermodel.config.train
    max_epochs = max(2, math.ceil(hypermodel.config.tune.steps / t.steps_per_epoch))
    return keras_tuner.Hyperband(hypermodel, max_epochs=max_epochs, factor=3, **common)


def results(tuner) -> list[dict]:
    """Every trial, best first (trials without a score last)."""
    rows = []
    for trial in tuner.oracle.trials.values():
        score = None if trial.score is None else float(trial.score)
        steps = trial.metrics.get_last_value("steps") if trial.metrics.exists("steps") else None
        rows.append({"trial": trial.trial_id, "status": trial.status, "score": score,
                     **({"steps": int(steps)} if steps is not None else {}),
                     **trial.hyperparameters.values})
    return sorted(rows, key=lambda r: (r["score"] is None, -(r["score"] or 0.0)))


def write_results(rows: list[dict], config: Config, out_dir: str) -> dict:
    """results.csv, results.md (best first) and best_config.json (for --config)."""
    keys = ["trial", "status", "score"] + sorted({k for r in rows for k in r} -
                                                 {"trial", "status", "score"})
    paths = {k: os.path.join(out_dir, f) for k, f in
             (("csv", "results.csv"), ("md", "results.md"), ("best", "best_config.json"))}
    with files.atomic_path(paths["csv"]) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, keys)
            writer.writeheader()
            writer.writerows(rows)
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    with files.atomic_path(paths["md"]) as tmp:
        with open(tmp, "w") as f:
            f.write(f"Objective: {OBJECTIVE} (meta-validation, unseen tasks), best first.\n\n")
            f.write("\n".join(lines) + "\n")
    best = next((r for r in rows if r["score"] is not None), None)
    if best is not None:
        storage.write_json(paths["best"], config_for(config, best).to_dict())
    return paths


def fail_stalled_trials(oracle, timeout_s: float, started: dict, now: float) -> list[str]:
    """Ends as FAILED every ongoing trial older than `timeout_s` (a dead worker's)."""
    failed = []
    for tuner_id, trial in list(compat.ongoing_trials(oracle).items()):
        first_seen = started.setdefault(trial.trial_id, now)
        if now - first_seen > timeout_s:
            message = (f"worker {tuner_id} sent no result for trial {trial.trial_id} "
                       f"within {timeout_s:.0f} s")
            logging.error(message)
            compat.fail_trial(oracle, tuner_id, trial, message)
            failed.append(trial.trial_id)
    return failed


def _watchdog(oracle, timeout_s: float, stop: threading.Event) -> None:
    started: dict = {}
    while not stop.wait(2.0):
        fail_stalled_trials(oracle, timeout_s, started, time.monotonic())


def is_chief() -> bool:
    return os.environ.get("KERASTUNER_TUNER_ID", "chief") == "chief" and \
        "KERASTUNER_ORACLE_IP" in os.environ


def run_search(config: Config, workdir: str, episodes_dir: str, *, tuner: str = "random",
               max_trials: int | None = None, verbose="auto") -> list[dict]:
    """Runs (or resumes) a search; the chief (or a process alone) writes the
    results and returns the rows, best first; a worker returns []. `max_trials`
    (None: tune.max_trials) is checked as tune.max_trials is."""
    if max_trials is not None:
        config = override(config, [f"tune.max_trials={max_trials}"])
    os.makedirs(workdir, exist_ok=True)
    hypermodel = GPICLHyperModel(config, episodes_dir)
    t = make_tuner(tuner, hypermodel, workdir, config.tune.max_trials)
    stop = threading.Event()
    if is_chief():
        threading.Thread(target=_watchdog, args=(t.oracle, config.tune.trial_timeout_s, stop),
                         daemon=True).start()
    try:
        t.search(verbose=verbose)
    finally:
        stop.set()
    if "KERASTUNER_ORACLE_IP" in os.environ and not is_chief():
        return []  # a worker: the chief holds the trials and writes the results
    rows = results(t)
    write_results(rows, config, workdir)
    return rows
