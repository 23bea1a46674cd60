"""Writes episode directories: base data, sharded episode records, manifest.

Example:
    >>> from gpicl_tf.config import get_preset
    >>> manifest = write_episodes(get_preset("smoke").data, "/tmp/eps")  # doctest: +SKIP

Layout of `out_dir` (all GZIP TFRecords, listed with sizes and sha256 in the
manifest, which is written last):

    base-train.tfrecord.gz, base-test.tfrecord.gz
    episodes-train-00000-of-00010.tfrecord.gz ...
    episodes-test-00000-of-00001.tfrecord.gz
    manifest.json
"""

from __future__ import annotations

import dataclasses
import glob
import os

import numpy as np
import tensorflow as tf
from absl import logging

from gpicl_tf.config import DataConfig
from gpicl_tf.data import augment, schema as schema_lib, sources, storage


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """Which base split and which task ids an episode split draws from."""

    name: str
    data_split: str
    task_low: int
    task_high: int
    episodes: int


def split_plans(config: DataConfig) -> list[SplitPlan]:
    """`train`: seen task ids on the train split; `test`: unseen ids, test split
    (meta-test); `seen`: seen task ids on the test split (memorisation); `valid`:
    other unseen ids on the train split (meta-validation: touches no test data)."""
    if not 0 <= config.log2_num_tasks <= 31:
        raise ValueError(f"log2_num_tasks={config.log2_num_tasks} must be in [0, 31]")
    n = 2**config.log2_num_tasks
    return [
        SplitPlan("train", "train", 0, n, config.train_episodes),
        SplitPlan("test", "test", augment.UNSEEN_TASK_OFFSET,
                  augment.UNSEEN_TASK_OFFSET + 2**31, config.test_episodes),
        SplitPlan("seen", "test", 0, n, config.test_episodes),
        SplitPlan("valid", "train", augment.VALID_TASK_OFFSET,
                  augment.VALID_TASK_OFFSET + 2**31, config.test_episodes),
    ]


def _episode_record(episode_id: int, task_id: int, indices: np.ndarray) -> bytes:
    feature = {
        "episode_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[episode_id])),
        "task_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[task_id])),
        "indices": tf.train.Feature(int64_list=tf.train.Int64List(value=indices.tolist())),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def shard_records(plan: SplitPlan, shard: int, first: int, count: int, num_examples: int,
                  episode_length: int, seed: int):
    """Yields the serialized episodes `first .. first+count-1` of one shard.

    Each shard has its own generator seeded by (seed, split, shard), so shards
    are reproducible independently of each other.
    """
    rng = np.random.default_rng([seed, sum(map(ord, plan.name)), shard])
    for episode_id in range(first, first + count):
        task_id = int(rng.integers(plan.task_low, plan.task_high))
        indices = rng.choice(num_examples, episode_length, replace=False)
        yield _episode_record(episode_id, task_id, indices)


def _prepare_directory(out_dir: str, overwrite: bool) -> None:
    os.makedirs(out_dir, exist_ok=True)
    manifest = os.path.join(out_dir, storage.MANIFEST)
    if os.path.exists(manifest):
        if not overwrite:
            raise FileExistsError(
                f"{out_dir!r} already holds an episode set ({manifest}); pass overwrite=True "
                "(--overwrite) to replace it")
        os.remove(manifest)  # from here on the old set is no longer complete
    for stale in glob.glob(os.path.join(out_dir, "*.tfrecord.gz")):
        os.remove(stale)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="ep", desc="episodes", disable=not enabled, mininterval=0.5)


def write_episodes(config: DataConfig, out_dir: str, *, overwrite: bool = False,
                   progress: bool = False) -> dict:
    """Writes the episode directory for `config` and returns its manifest."""
    schema = schema_lib.EpisodeSchema(config.episode_length, config.input_size,
                                      config.num_classes)
    if config.episodes_per_shard < 1:
        raise ValueError(f"episodes_per_shard={config.episodes_per_shard} must be positive")
    plans = split_plans(config)
    data = {s: sources.load_split(config.source, s, config) for s in sources.SPLITS}
    num_classes = data["train"].num_classes
    if num_classes > config.num_classes:
        raise ValueError(f"source {config.source!r} has {num_classes} classes, more than "
                         f"num_classes={config.num_classes}")
    for plan in plans:
        available = len(data[plan.data_split].y)
        if config.episode_length > available:
            raise ValueError(f"episode_length={config.episode_length} exceeds the {available} "
                             f"examples of {config.source!r} split {plan.data_split!r}")
    _prepare_directory(out_dir, overwrite)
    mean, std = sources.normalization_stats(data["train"].x)
    dtype = storage.base_dtype(np.concatenate([data["train"].x, data["test"].x]))
    base = {s: storage.write_base(os.path.join(out_dir, f"base-{s}.tfrecord.gz"),
                                  data[s].x, data[s].y, dtype) for s in sources.SPLITS}
    splits = {}
    with _progress(sum(p.episodes for p in plans), progress) as bar:
        for plan in plans:
            splits[plan.name] = _write_split(plan, config, out_dir,
                                             len(data[plan.data_split].y), bar)
    manifest = {
        "format": schema_lib.FORMAT,
        "schema": schema.to_dict(),
        "config": dataclasses.asdict(config),
        "source": {"name": config.source, "num_classes": num_classes,
                   "dim": int(data["train"].x.shape[1]), "mean": mean, "std": std},
        "base": base,
        "splits": splits,
    }
    storage.write_json(os.path.join(out_dir, storage.MANIFEST), manifest)
    logging.info("wrote %s: %s", out_dir,
                 {k: v["episodes"] for k, v in splits.items()})
    return manifest


def _write_split(plan: SplitPlan, config: DataConfig, out_dir: str, num_examples: int,
                 bar) -> dict:
    per = config.episodes_per_shard
    num_shards = max(1, -(-plan.episodes // per))
    shards = []
    for shard in range(num_shards):
        first = shard * per
        count = min(per, plan.episodes - first)
        name = f"episodes-{plan.name}-{shard:05d}-of-{num_shards:05d}.tfrecord.gz"
        records = shard_records(plan, shard, first, count, num_examples,
                                config.episode_length, config.seed)
        entry = storage.write_records(os.path.join(out_dir, name), records)
        entry["episodes"] = entry.pop("records")
        shards.append(entry)
        bar.update(count)
    return {"episodes": plan.episodes, "data_split": plan.data_split,
            "task_range": [plan.task_low, plan.task_high], "shards": shards}
