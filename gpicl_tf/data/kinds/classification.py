"""Classification episodes: real datasets seen through random projections and
label permutations (the paper's augmentation), and synthetic tables from the prior.

Records either index examples of the stored base data (`indices`) or, for the
prior, carry the prepared values themselves (`stored_dim` > 0); the reader
projects and permutes both the same way, so the curriculum, the device-side
builder (indexed sets), export and the estimator see one kind of episode.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from gpicl_tf.config import PriorConfig
from gpicl_tf.data import augment, prior, schema as schema_lib, sources, storage
from gpicl_tf.data.kinds.base import (EpisodeKind, base_tables, bias_flag, feature, serialize,
                                      split_salt)
from gpicl_tf.data.schema import INPUTS, LABELS
from gpicl_tf.errors import InvalidInputError


def index_record(episode_id: int, task_id: int, indices: np.ndarray) -> bytes:
    """A record indexing `indices` of the base data."""
    return serialize({"episode_id": feature("int", [episode_id]),
                      "task_id": feature("int", [task_id]),
                      "indices": feature("int", indices.tolist())})


def shard_records(plan, shard: int, first: int, task_ids: np.ndarray, num_examples: int,
                  episode_length: int, seed: int):
    """Yields the serialized episodes `first .. first+len(task_ids)-1` of one shard.

    Task ids come from the split's assignment (`episodes.task_assignments`); the
    example indices from a generator seeded by (seed, split, shard), so shards
    are reproducible independently of each other.
    """
    rng = np.random.default_rng([seed, split_salt(plan.name), shard])
    for offset, task_id in enumerate(task_ids):
        indices = rng.choice(num_examples, episode_length, replace=False)
        yield index_record(first + offset, int(task_id), indices)


def prior_records(plan, shard: int, first: int, task_ids: np.ndarray, config, pcfg):
    """Yields the serialized prior episodes `first .. first+len(task_ids)-1` of a
    shard: each re-creates its task and draws N rows of it."""
    rng = np.random.default_rng([config.seed, split_salt(plan.name), shard, 2])
    cache: dict = {}
    for offset, task_id in enumerate(task_ids):
        task_id = int(task_id)
        if task_id not in cache:
            if len(cache) > 4096:
                cache.clear()
            cache[task_id] = prior.task(config.seed, task_id, pcfg, config.num_classes)
        x, y = prior.episode(cache[task_id], rng, config.episode_length, pcfg.max_features,
                             pcfg.clip)
        yield serialize({"episode_id": feature("int", [first + offset]),
                         "task_id": feature("int", [task_id]),
                         "x": feature("float", x.ravel()),
                         "labels": feature("int", y)})


class Classification(EpisodeKind):
    name = "classification"
    curriculum = True
    device_episodes = True

    def claims(self, source: str) -> bool:
        return not source.startswith("functions:")

    def settings(self, data_config) -> tuple[str, ...]:
        return ("prior",) if data_config.source == "prior" or data_config.mixture else ()

    def writer(self, config, plans, functions_config, prior_config):
        if config.source == prior.SOURCE:
            return _prior_writer(config, prior_config or PriorConfig())
        return _dataset_writer(config, plans)

    def _example_reader(self, episodes, split: str):
        """record -> (x float32 [N, d_in] normalised, base labels int32 [N]): gathered
        from the base data, or (values stored) read from the record."""
        schema = episodes.schema
        if schema.stored_dim:
            n, d = schema.episode_length, schema.stored_dim
            return lambda rec: (tf.reshape(rec["x"], [n, d]), tf.cast(rec["labels"], tf.int32))
        x_table, y_table, mean, std = base_tables(episodes, split)
        return lambda rec: ((tf.cast(tf.gather(x_table, rec["indices"]), tf.float32) - mean)
                            / std, tf.gather(y_table, rec["indices"]))

    def feature_builder(self, episodes, split, batch_size, bias, bias_mode):
        schema = episodes.schema
        spec = schema.record_spec()
        seed = episodes.seed
        examples = self._example_reader(episodes, split)

        def build(position, raw):
            rec = tf.io.parse_single_example(raw, spec)
            x, labels = examples(rec)                                  # [N, d_in], [N]
            biased = bias_flag(position, batch_size, bias)
            return augment.augment_episode(
                x, labels, seed=seed, task_id=rec["task_id"], input_size=schema.input_size,
                num_classes=schema.num_classes,
                fixed_projection=tf.logical_and(biased, bias_mode == "task"),
                fixed_permutation=biased)

        return build

    def served_stage(self, episodes, split):
        """raw record -> {"inputs" projected, "base_labels", "task_id"}: everything of
        an episode but its label permutation (which the trainer applies, and with it
        the curriculum)."""
        schema = episodes.schema
        spec = schema.record_spec()
        examples = self._example_reader(episodes, split)

        def project(raw):
            rec = tf.io.parse_single_example(raw, spec)
            x, labels = examples(rec)
            return {"inputs": augment.project_inputs(x, seed=episodes.seed,
                                                     task_id=rec["task_id"],
                                                     input_size=schema.input_size),
                    "base_labels": labels, "task_id": rec["task_id"]}

        return project

    def trainer_stage(self, schema, seed, batch_size, bias):
        """The label permutation of a served episode: the task's own or (biased
        position) the fixed one."""
        def finish(position, episode):
            perm_id = tf.where(bias_flag(position, batch_size, bias),
                               tf.constant(augment.FIXED_TASK_ID, tf.int64), episode["task_id"])
            targets = augment.permute_labels(episode["base_labels"], seed=seed,
                                             task_id=perm_id, num_classes=schema.num_classes)
            return {INPUTS: episode["inputs"], LABELS: targets}, targets

        return finish

    def record_check(self, schema, manifest, split_info):
        if schema.stored_dim:
            num_classes = schema.num_classes

            def check(rec: dict) -> str | None:
                labels = rec["labels"].numpy()
                if labels.min() < 0 or labels.max() >= num_classes:
                    return f"labels outside [0, {num_classes}): [{labels.min()}, {labels.max()}]"
                if not np.all(np.isfinite(rec["x"].numpy())):
                    return "non-finite x values"
                return None
            return check
        num_examples = manifest["base"][split_info["data_split"]]["examples"]

        def check(rec: dict) -> str | None:
            idx = rec["indices"].numpy()
            if idx.min() < 0 or idx.max() >= num_examples:
                return f"indices outside [0, {num_examples}): [{idx.min()}, {idx.max()}]"
            return None
        return check


def _dataset_writer(config, plans):
    """Checks the source; returns the schema and a preparer that stores the base data."""
    schema = schema_lib.EpisodeSchema(config.episode_length, config.input_size,
                                      config.num_classes)
    data = {s: sources.load_split(config.source, s, config) for s in sources.SPLITS}
    num_classes = data["train"].num_classes
    if num_classes > config.num_classes:
        raise InvalidInputError(
            f"source {config.source!r} has {num_classes} classes, more than "
            f"num_classes={config.num_classes}")
    for plan in plans:
        available = len(data[plan.data_split].y)
        if config.episode_length > available:
            raise InvalidInputError(
                f"episode_length={config.episode_length} exceeds the {available} "
                f"examples of {config.source!r} split {plan.data_split!r}")

    def prepare(out_dir: str):
        mean, std = sources.normalization_stats(data["train"].x)
        dtype = storage.base_dtype(np.concatenate([data["train"].x, data["test"].x]))
        base = {s: storage.write_base(os.path.join(out_dir, f"base-{s}.tfrecord.gz"),
                                      data[s].x, data[s].y, dtype) for s in sources.SPLITS}
        extra = {"source": {"name": config.source, "num_classes": num_classes,
                            "dim": int(data["train"].x.shape[1]), "mean": mean, "std": std},
                 "base": base}

        def make_records(plan, shard, first, task_ids):
            return shard_records(plan, shard, first, task_ids, len(data[plan.data_split].y),
                                 config.episode_length, config.seed)
        return extra, make_records

    return schema, prepare


def _prior_writer(config, pcfg):
    """Checks the prior's settings; returns the schema and a preparer (no base data)."""
    prior.check_config(pcfg, config.num_classes, config.input_size)
    schema = schema_lib.EpisodeSchema(config.episode_length, config.input_size,
                                      config.num_classes, stored_dim=pcfg.max_features)

    def prepare(out_dir: str):
        extra = {"source": {"name": prior.SOURCE, "num_classes": config.num_classes,
                            "dim": pcfg.max_features},
                 "prior": dataclasses.asdict(pcfg), "base": {}}

        def make_records(plan, shard, first, task_ids):
            return prior_records(plan, shard, first, task_ids, config, pcfg)
        return extra, make_records

    return schema, prepare


KIND = Classification()
