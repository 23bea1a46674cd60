"""What every kind of episode provides to the data stages (`gpicl_tf.data.kinds`):
its record writer and its readers, inside tf.data."""

from __future__ import annotations

import abc
import zlib

import numpy as np
import tensorflow as tf


def feature(kind: str, values) -> tf.train.Feature:
    """A tf.train.Feature of int64 ("int") or float32 ("float") values."""
    if kind == "int":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def serialize(features: dict) -> bytes:
    """A stored episode record: the tf.train.Example of `features`, deterministic bytes."""
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(
        deterministic=True)


def split_salt(name: str) -> int:
    """A stable number for a split's name (its CRC-32): seeds do not depend on
    the order or the spelling of anything else."""
    return zlib.crc32(name.encode("utf-8"))


def bias_flag(position, batch_size: int, bias: tf.Variable | None) -> tf.Tensor:
    """Whether the episode at `position` of the stream takes the curriculum's fixed
    task: the first round(bias x batch) episodes of every batch do."""
    if bias is None:
        return tf.constant(False)
    fixed = tf.cast(tf.round(bias.read_value() * batch_size), tf.int64)
    return position % batch_size < fixed


def base_tables(episodes, split: str):
    """The split's base examples as constants: x [M, dim], y int32 [M], mean, std."""
    manifest = episodes.manifest
    base_x, base_y = episodes.base(manifest["splits"][split]["data_split"])
    return (tf.constant(base_x), tf.constant(base_y.astype(np.int32)),
            float(manifest["source"]["mean"]), float(manifest["source"]["std"]))


class EpisodeKind(abc.ABC):
    """How one kind of episode is written and read (its shapes: `schema.Layout`).

    `episodes` arguments are opened episode sets (`pipeline.EpisodeSet`).
    Capabilities: `curriculum` (the label-permutation bias and its plateau
    schedule apply), `device_episodes` (episodes can be built inside the train step).
    """

    name: str = ""
    curriculum: bool = False
    device_episodes: bool = False

    @abc.abstractmethod
    def claims(self, source: str) -> bool:
        """Whether `source` (data.source) writes this kind's episodes."""

    def settings(self, data_config) -> tuple[str, ...]:
        """The config sections besides `data` that this source's episodes are
        written with (what an episode cache must key on)."""
        return ()

    def label(self, source: str) -> str:
        """How reports name a source of this kind."""
        return source

    @abc.abstractmethod
    def writer(self, config, plans, functions_config, prior_config):
        """(schema, prepare) for `episodes.write_episodes`: prepare(out_dir) stores
        what the records refer to and returns (manifest extras, make_records)."""

    @abc.abstractmethod
    def feature_builder(self, episodes, split: str, batch_size: int, bias, bias_mode: str):
        """(position, raw record) -> (features, targets), inside tf.data."""

    @abc.abstractmethod
    def served_stage(self, episodes, split: str):
        """raw record -> what a tf.data service worker sends."""

    @abc.abstractmethod
    def trainer_stage(self, schema, seed: int, batch_size: int, bias):
        """(position, served element) -> (features, targets), in the trainer."""

    @abc.abstractmethod
    def record_check(self, schema, manifest: dict, split_info: dict):
        """A function of a parsed record returning a problem or None (inspection)."""
