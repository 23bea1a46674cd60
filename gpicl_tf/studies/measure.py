"""What the studies measure of a trained cell: accuracy over the last positions
of episode sets (the learner alone, no baselines), and the unseen dataset they share.

Example:
    >>> figures = accuracy_figures(model, {"unseen": (eps, "test")}, 256)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os

import keras
from absl import logging

import gpicl_tf.models  # noqa: F401  (registers the layers for loading)
from gpicl_tf import tasks
from gpicl_tf.config import Config
from gpicl_tf.data import episodes as episodes_lib, sources
from gpicl_tf.eval import evaluate
from gpicl_tf.studies.runner import episode_key
from gpicl_tf.training import train


def load_model(run_dir: str) -> keras.Model:
    return keras.models.load_model(os.path.join(run_dir, train.MODEL_FILE), compile=False)


def accuracy_figures(model: keras.Model, sets: dict[str, tuple], limit: int) -> dict:
    """For each name -> (EpisodeSet, split), over its first `limit` episodes:
    {name}_acc, the mean accuracy over the last 10 positions, its 95% interval
    half-width {name}_ci95, and {name}_improvement (last 10 minus first 10)."""
    out = {}
    for name, (eset, split) in sets.items():
        if eset.num_episodes(split) == 0:
            out.update({f"{name}_acc": None, f"{name}_ci95": None, f"{name}_improvement": None})
            continue
        inputs, labels = evaluate.episode_arrays(eset, split, limit)
        summary = evaluate.learner_summary(evaluate.learner_correct(model, inputs, labels))
        out[f"{name}_acc"] = round(summary["last10"], 4)
        out[f"{name}_ci95"] = round(summary["last10_ci95"], 4)
        out[f"{name}_improvement"] = round(summary["improvement"], 4)
    return out


def unseen_dataset(base: Config, episode_root: str) -> tuple[str, str] | None:
    """(name, episode dir) of the first available `eval.datasets` entry that is
    not the training source, projected to the model's input size; None if none is."""
    for name in base.eval.datasets:
        if name == base.data.source or \
                tasks.for_source(name) is not tasks.for_source(base.data.source):
            continue
        data = dataclasses.replace(base.data, source=name, mixture=(), train_episodes=0,
                                   test_episodes=base.eval.episodes)
        cfg = dataclasses.replace(base, data=data)
        out = os.path.join(episode_root, "eval-" + episode_key(cfg))
        try:
            return name, episodes_lib.ensure_episodes(data, out, base.functions, base.prior)
        except sources.SourceUnavailableError as e:
            logging.warning("unseen dataset %s not available: %s", name, e)
    return None
