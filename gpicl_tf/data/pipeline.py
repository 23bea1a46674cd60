"""Reads episode directories into batched `tf.data` pipelines.

Example:
    >>> eps = open_episodes("tfrecords/cpu", expect={"input_size": 64})  # doctest: +SKIP
    >>> bias = make_bias_variable()                                       # doctest: +SKIP
    >>> ds = make_dataset(eps, "train", batch_size=64, bias=bias)         # doctest: +SKIP
    >>> features, targets = next(iter(ds))  # doctest: +SKIP

The curriculum's bias is a `tf.Variable` read inside the map: in each batch the
first round(bias * batch_size) episodes take the fixed task's permutation
("permutation" mode) or its projection and permutation ("task" mode). Batches
already prefetched keep the value they were built with; a change reaches the
batches after at most the prefetch depth (see tests/data/test_pipeline.py).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np
import tensorflow as tf

from gpicl_tf.config import BIAS_MODES
from gpicl_tf.data import kinds, schema as schema_lib, storage
from gpicl_tf.errors import InvalidInputError, UnknownKeyError

_EXPECTABLE = ("episode_length", "input_size", "num_classes", "source", "format")


@dataclasses.dataclass(frozen=True)
class EpisodeSet:
    """An opened, verified episode directory."""

    directory: str
    manifest: dict
    schema: schema_lib.EpisodeSchema
    shards: dict           # split -> tuple of good shard paths
    skipped: tuple = ()    # messages naming shards skipped as corrupt
    components: tuple = ()  # a mixture's component EpisodeSets
    weights: tuple = ()     # and their sampling weights

    @property
    def mixture(self) -> bool:
        return bool(self.components)

    @property
    def seed(self) -> int:
        return int(self.manifest["config"]["seed"])

    def num_episodes(self, split: str) -> int:
        return int(self.manifest["splits"][split]["episodes"])

    @functools.cached_property
    def _base(self) -> dict:
        return {}

    def base(self, data_split: str) -> tuple[np.ndarray, np.ndarray]:
        """Raw base data (x [M, dim] stored dtype, y int64 [M]) of a data split."""
        if data_split not in self._base:
            self._base[data_split] = storage.read_base(
                self.directory, self.manifest["base"][data_split])
        return self._base[data_split]


def _check_expectations(manifest: dict, expect: dict, path: str) -> None:
    found = dict(manifest["schema"])
    found["source"] = manifest["source"]["name"]
    found["format"] = manifest.get("format")
    for key, want in expect.items():
        if key not in _EXPECTABLE:
            raise UnknownKeyError(f"cannot check manifest field {key!r}; checkable: {_EXPECTABLE}")
        if found.get(key) != want:
            raise storage.ManifestMismatchError(
                f"manifest field {key!r} is {found.get(key)!r} in {path}, "
                f"the consumer expects {want!r}")


def open_episodes(directory: str, *, expect: dict | None = None, verify: str = "sha256",
                  on_corrupt: str = "raise") -> EpisodeSet:
    """Opens and verifies an episode directory.

    Args:
        directory: written by `write_episodes` / `pipelines.make_episodes`.
        expect: manifest fields the consumer relies on, e.g. {"input_size": 64};
            a mismatch raises `ManifestMismatchError` naming the field.
        verify: "sha256" (default), "size" or "none": how each file is checked.
        on_corrupt: "raise" (`CorruptShardError` naming the file) or "skip"
            (leave the shard out and list it in `EpisodeSet.skipped`).
    """
    if on_corrupt not in ("raise", "skip"):
        raise InvalidInputError(f"on_corrupt={on_corrupt!r} is not 'raise' or 'skip'")
    if verify not in ("sha256", "size", "none"):
        raise InvalidInputError(f"verify={verify!r} is not 'sha256', 'size' or 'none'")
    manifest = storage.read_manifest(directory)
    path = os.path.join(directory, storage.MANIFEST)
    if manifest.get("format") != schema_lib.FORMAT:
        raise storage.ManifestMismatchError(
            f"manifest field 'format' is {manifest.get('format')!r} in {path}, "
            f"this reader reads {schema_lib.FORMAT!r}")
    _check_expectations(manifest, expect or {}, path)
    if "mixture" in manifest:
        return _open_mixture(directory, manifest, verify, on_corrupt)
    for split, entry in manifest["base"].items():
        problem = storage.check_file(directory, entry, verify)
        if problem:  # base data is shared by every episode: never skippable
            raise storage.CorruptShardError(problem)
    shards, skipped = {}, []
    for split, info in manifest["splits"].items():
        good = []
        for entry in info["shards"]:
            problem = storage.check_file(directory, entry, verify)
            if problem and on_corrupt == "raise":
                raise storage.CorruptShardError(problem)
            if problem:
                skipped.append(problem)
            else:
                good.append(os.path.join(directory, entry["file"]))
        shards[split] = tuple(good)
    schema = schema_lib.EpisodeSchema.from_dict(manifest["schema"])
    _check_first_record(schema, shards, path)
    return EpisodeSet(directory, manifest, schema, shards, tuple(skipped))


def _open_mixture(directory: str, manifest: dict, verify: str, on_corrupt: str) -> EpisodeSet:
    """A mixture: every component opened and verified, and checked against the
    manifest (the component's manifest unchanged, its schema the mixture's)."""
    path = os.path.join(directory, storage.MANIFEST)
    schema = schema_lib.EpisodeSchema.from_dict(manifest["schema"])
    components = []
    for entry in manifest["mixture"]:
        sub = os.path.join(directory, entry["directory"])
        sub_manifest = os.path.join(sub, storage.MANIFEST)
        if not os.path.exists(sub_manifest) or (
                verify != "none" and storage.sha256_file(sub_manifest) != entry["manifest_sha256"]):
            raise storage.CorruptShardError(
                f"mixture component {sub!r} listed in {path} is missing or is not the set "
                "that manifest names (its manifest changed); write the mixture again")
        eps = open_episodes(sub, verify=verify, on_corrupt=on_corrupt)
        for key in ("episode_length", "input_size", "num_classes"):
            if getattr(eps.schema, key) != getattr(schema, key):
                raise storage.ManifestMismatchError(
                    f"mixture component {sub!r} has {key}={getattr(eps.schema, key)}, the "
                    f"mixture in {path} has {getattr(schema, key)}")
        components.append(eps)
    shards = {split: tuple(f for c in components for f in c.shards.get(split, ()))
              for split in manifest["splits"]}
    skipped = tuple(m for c in components for m in c.skipped)
    return EpisodeSet(directory, manifest, schema, shards, skipped, tuple(components),
                      tuple(float(e["weight"]) for e in manifest["mixture"]))


def _check_first_record(schema: schema_lib.EpisodeSchema, shards: dict, path: str) -> None:
    """The manifest's schema must describe the records: parses the first record of
    the first shard, or raises ManifestMismatchError naming the shard and the schema."""
    first = next((files[0] for files in shards.values() if files), None)
    if first is None:
        return
    for raw in tf.data.TFRecordDataset(first, compression_type="GZIP").take(1):
        try:
            tf.io.parse_single_example(raw, schema.record_spec())
        except tf.errors.InvalidArgumentError as e:
            detail = e.message.strip().splitlines()[0]
            raise storage.ManifestMismatchError(
                f"the records of {first} do not match the schema in {path} "
                f"(episode_length={schema.episode_length}, input_size={schema.input_size}): "
                f"{detail}") from None


def make_bias_variable(value: float = 0.0) -> tf.Variable:
    """The curriculum's bias fraction, on the host, outside any strategy scope."""
    with tf.device("/cpu:0"):
        return tf.Variable(value, trainable=False, dtype=tf.float32, name="bias_fraction")


def _records(files: tuple, shuffle: bool, skip_errors: bool) -> tf.data.Dataset:
    def read(path):
        ds = tf.data.TFRecordDataset(path, compression_type="GZIP")
        return ds.ignore_errors() if skip_errors else ds

    files_ds = tf.data.Dataset.from_tensor_slices(list(files))
    if not shuffle:
        return files_ds.flat_map(read)
    return files_ds.interleave(read, cycle_length=min(len(files), 8),
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def make_dataset(episodes: EpisodeSet, split: str, batch_size: int, *, shuffle: bool = True,
                 repeat: bool = True, bias: tf.Variable | None = None,
                 bias_mode: str = "permutation", seed: int = 0, shuffle_buffer: int = 2048,
                 drop_remainder: bool = True, prefetch: int = 4,
                 skip: int = 0, shard: tuple[int, int] = (1, 0),
                 shard_by: str = "files", service: str = "") -> tf.data.Dataset:
    """Batches of (features, targets) as the episodes' task builds them (see
    `schema`): classification ({"inputs": float32 [B, N, N_x], "labels": int32
    [B, N]}, targets [B, N]).

    `prefetch` bounds how many ready batches wait (and so how late a change of
    `bias` can arrive); pass tf.data.AUTOTUNE to let tf.data choose. `skip`
    leaves out the first `skip` episodes of the stream (a resumed run skips what
    its finished epochs consumed; positions keep counting from `skip`).

    `shard` = (count, index): this input pipeline reads only its part of the
    split (one of `count` workers): every count-th shard file from `index`
    (`shard_by="files"`: each worker reads its own files; needs at least
    `count` files) or every count-th record (`shard_by="records"`: for small
    splits such as meta-validation).
    """
    if batch_size < 1:
        raise InvalidInputError(f"batch_size={batch_size} must be positive")
    if bias_mode not in BIAS_MODES:
        raise InvalidInputError(f"bias_mode={bias_mode!r} is not one of {BIAS_MODES}")
    if episodes.mixture:
        return _mixture_dataset(episodes, split, batch_size, shuffle=shuffle, repeat=repeat,
                                bias=bias, bias_mode=bias_mode, seed=seed,
                                shuffle_buffer=shuffle_buffer, drop_remainder=drop_remainder,
                                prefetch=prefetch, skip=skip, shard=shard, shard_by=shard_by,
                                service=service)
    files = split_files(episodes, split, shard, shard_by)
    if service:
        if bias is not None and bias_mode != "permutation":
            raise InvalidInputError(
                f"bias_mode={bias_mode!r} with a tf.data service: the service "
                "applies the projections, so only bias_mode='permutation' can be "
                "applied by the trainer")
        ds = _service_stage(episodes, split, files, shuffle, shuffle_buffer, seed, service)
        if repeat:
            ds = ds.repeat()
        if skip:
            ds = ds.skip(skip)
        finish = kinds.of(episodes.schema).trainer_stage(episodes.schema, episodes.seed,
                                                         batch_size, bias)
        ds = ds.enumerate(start=skip).map(finish, num_parallel_calls=tf.data.AUTOTUNE,
                                          deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        return ds.prefetch(prefetch)
    build = kinds.of(episodes.schema).feature_builder(episodes, split, batch_size, bias, bias_mode)
    ds = record_stream(episodes, files, shuffle=shuffle, repeat=repeat, seed=seed,
                       shuffle_buffer=shuffle_buffer, skip=skip,
                       shard=shard if shard_by == "records" else (1, 0))
    ds = ds.enumerate(start=skip).map(build, num_parallel_calls=tf.data.AUTOTUNE,
                                      deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(prefetch)


def component_choices(weights, seed: int) -> tf.data.Dataset:
    """An endless stream of component indices (int64) drawn in proportion to
    `weights`, each from (seed, its position) with stateless ops: the same stream in
    every process. (`sample_from_datasets` mixes TensorFlow's global seed into its
    draws, and training sets that seed, so a mixture's meta-test episodes read after
    training in the main job differed from the same split read by
    `pipelines.evaluate`.)"""
    total = float(sum(weights))
    logits = tf.math.log(tf.constant([[w / total for w in weights]], tf.float32))

    def draw(position):
        key = tf.stack([tf.constant(seed, tf.int64), position])
        return tf.random.stateless_categorical(logits, 1, seed=key, dtype=tf.int64)[0, 0]

    return tf.data.Dataset.counter().map(draw)


def _mixture_dataset(episodes: EpisodeSet, split: str, batch_size: int, *, shuffle: bool,
                     repeat: bool, bias, bias_mode: str, seed: int, shuffle_buffer: int,
                     drop_remainder: bool, prefetch: int, skip: int, shard, shard_by: str,
                     service: str) -> tf.data.Dataset:
    """A mixture's batches: each component's projected episodes (its own files,
    shuffle and shards), drawn in proportion to the weights with `seed`, then the
    label permutations (and with them the curriculum) applied in stream order,
    as the tf.data service's trainer stage does."""
    if service:
        raise InvalidInputError(
            f"{episodes.directory} is a mixture; the tf.data service serves one episode "
            "set (serve a component, or train without --data_service)")
    if bias is not None and bias_mode != "permutation":
        raise InvalidInputError(
            f"bias_mode={bias_mode!r} with a mixture ({episodes.directory}): components "
            "have their own inputs, so only bias_mode='permutation' applies")
    streams = []
    for i, component in enumerate(episodes.components):
        files = split_files(component, split, shard, shard_by)
        ds = record_stream(component, files, shuffle=shuffle, repeat=repeat, seed=seed + i,
                           shuffle_buffer=shuffle_buffer,
                           shard=shard if shard_by == "records" else (1, 0))
        streams.append(ds.map(kinds.of(component.schema).served_stage(component, split),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))
    ds = tf.data.Dataset.choose_from_datasets(
        streams, component_choices(episodes.weights, seed), stop_on_empty_dataset=False)
    if skip:
        ds = ds.skip(skip)
    ds = ds.enumerate(start=skip).map(
        kinds.of(episodes.schema).trainer_stage(episodes.schema, episodes.seed, batch_size, bias),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(prefetch)


def split_files(episodes: EpisodeSet, split: str, shard: tuple[int, int] = (1, 0),
                shard_by: str = "files") -> tuple:
    """The shard files one input pipeline reads (checked: the split exists, holds
    episodes and readable shards; enough files for file sharding)."""
    if split not in episodes.shards:
        raise UnknownKeyError(
            f"split {split!r} is not in {episodes.directory}; it has {sorted(episodes.shards)}")
    files = episodes.shards[split]
    if episodes.num_episodes(split) == 0:
        raise InvalidInputError(f"split {split!r} of {episodes.directory} holds no episodes")
    if not files:
        raise storage.CorruptShardError(
            f"no readable shard left for split {split!r} in {episodes.directory}: "
            f"{list(episodes.skipped)}")
    count, index = shard
    if not 0 <= index < count:
        raise InvalidInputError(f"shard={shard}: index must be in [0, {count})")
    if shard_by not in ("files", "records"):
        raise InvalidInputError(f"shard_by={shard_by!r} is not 'files' or 'records'")
    if count > 1 and shard_by == "files":
        if len(files) < count:
            raise InvalidInputError(
                f"split {split!r} of {episodes.directory} has {len(files)} shard "
                f"file(s), too few for {count} input pipelines; write more shards "
                "(data.episodes_per_shard) or use fewer workers")
        files = files[index::count]
    return files


def record_stream(episodes: EpisodeSet, files, *, shuffle: bool, repeat: bool, seed: int,
                  shuffle_buffer: int, skip: int = 0,
                  shard: tuple[int, int] = (1, 0)) -> tf.data.Dataset:
    """Serialized episode records of `files`, in the order every consumer of a split
    sees them: files interleaved, every count-th record of `shard`, shuffled with
    `seed`, repeated, the first `skip` left out."""
    ds = _records(files, shuffle, skip_errors=bool(episodes.skipped))
    if shard[0] > 1:
        ds = ds.shard(*shard)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if skip:
        ds = ds.skip(skip)
    return ds


def _service_stage(episodes: EpisodeSet, split: str, files, shuffle: bool,
                   shuffle_buffer: int, seed: int, address: str) -> tf.data.Dataset:
    """What the tf.data service's workers compute: records -> the task's served
    elements (classification: projected inputs, base labels and task ids; the
    trainer applies the permutations)."""
    ds = record_stream(episodes, files, shuffle=shuffle, repeat=False, seed=seed,
                       shuffle_buffer=shuffle_buffer)
    ds = ds.map(kinds.of(episodes.schema).served_stage(episodes, split),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC, service=address))


def read_records(episodes: EpisodeSet, split: str) -> list[dict]:
    """Every stored record of a split, in file order, as numpy dicts (for tools)."""
    if episodes.mixture:
        raise InvalidInputError(f"{episodes.directory} is a mixture; read its components' "
                                "records (EpisodeSet.components)")
    spec = episodes.schema.record_spec()
    ds = _records(episodes.shards[split], shuffle=False, skip_errors=False)
    return [{k: v.numpy() for k, v in tf.io.parse_single_example(r, spec).items()} for r in ds]
