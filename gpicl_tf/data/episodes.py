"""Writes episode directories: base data, sharded episode records, manifest.

Example:
    >>> from gpicl_tf.config import get_preset
    >>> manifest = write_episodes(get_preset("smoke").data, "/tmp/eps")  # doctest: +SKIP

Layout of `out_dir` (all GZIP TFRecords, listed with sizes and sha256 in the
manifest, which is written last; function-regression sets have no base files):

    base-train.tfrecord.gz, base-test.tfrecord.gz
    episodes-train-00000-of-00010.tfrecord.gz ...
    episodes-test-00000-of-00001.tfrecord.gz
    manifest.json
"""

from __future__ import annotations

import dataclasses
import os
import re
import zlib

import numpy as np
import tensorflow as tf
from absl import logging

from gpicl_tf.config import DataConfig, FunctionConfig, PriorConfig
from gpicl_tf.data import augment, functions, prior, schema as schema_lib, sources, storage
from gpicl_tf.errors import ExistingFileError, InvalidInputError


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
    (meta-test); `seen`: task ids the train split used, on the test split
    (memorisation; none when there are no train episodes); `valid`: other unseen
    ids on the train split (meta-validation: touches no test data)."""
    if not 0 <= config.log2_num_tasks <= 31:
        raise InvalidInputError(f"log2_num_tasks={config.log2_num_tasks} must be in [0, 31]")
    n = 2**config.log2_num_tasks
    return [
        SplitPlan("train", "train", 0, n, config.train_episodes),
        SplitPlan("test", "test", augment.UNSEEN_TASK_OFFSET,
                  augment.UNSEEN_TASK_OFFSET + 2**31, config.test_episodes),
        SplitPlan("seen", "test", 0, n, config.test_episodes if config.train_episodes else 0),
        SplitPlan("valid", "train", augment.VALID_TASK_OFFSET,
                  augment.VALID_TASK_OFFSET + 2**31, config.test_episodes),
    ]


def split_salt(name: str) -> int:
    """A stable number for a split's name (its CRC-32): seeds do not depend on
    the order or the spelling of anything else."""
    return zlib.crc32(name.encode("utf-8"))


def draw_without_replacement(pool_size: int, count: int, seed: int, name: str) -> np.ndarray:
    """Indices int64 [count] into a pool of `pool_size`, without replacement,
    cycling: each run of `pool_size` draws is a fresh random permutation of the
    pool, so every pool member is used once before any is used again."""
    out, cycle = [], 0
    while count > 0:
        take = min(pool_size, count)
        rng = np.random.default_rng([seed, split_salt(name), 2, cycle])
        out.append(rng.choice(pool_size, take, replace=False).astype(np.int64))
        count -= take
        cycle += 1
    return np.concatenate(out) if out else np.zeros([0], np.int64)


def task_assignments(plans: list[SplitPlan], seed: int) -> dict[str, np.ndarray]:
    """Task id int64 [episodes] of every episode of every split.

    `train` draws its ids from [0, 2^k) without replacement (cycling when the
    episodes outnumber the tasks), so it uses exactly min(2^k, episodes)
    distinct tasks; `seen` draws, the same way, only from the ids `train`
    used; `test` and `valid` draw from their own 2^31 unseen ids.
    """
    ids = {plan.name: plan.task_low + draw_without_replacement(
        plan.task_high - plan.task_low, plan.episodes, seed, plan.name)
        for plan in plans if plan.name != "seen"}
    seen = next(plan for plan in plans if plan.name == "seen")
    used = np.unique(ids["train"])
    if seen.episodes and not len(used):
        raise InvalidInputError("the seen split needs train episodes to draw its tasks from")
    ids["seen"] = used[draw_without_replacement(len(used), seen.episodes, seed, seen.name)]
    return ids


def _episode_record(episode_id: int, task_id: int, indices: np.ndarray) -> bytes:
    feature = {
        "episode_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[episode_id])),
        "task_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[task_id])),
        "indices": tf.train.Feature(int64_list=tf.train.Int64List(value=indices.tolist())),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def shard_records(plan: SplitPlan, shard: int, first: int, task_ids: np.ndarray,
                  num_examples: int, episode_length: int, seed: int):
    """Yields the serialized episodes `first .. first+len(task_ids)-1` of one shard.

    Task ids come from the split's assignment (`task_assignments`); the example
    indices from a generator seeded by (seed, split, shard), so shards are
    reproducible independently of each other.
    """
    rng = np.random.default_rng([seed, split_salt(plan.name), shard])
    for offset, task_id in enumerate(task_ids):
        indices = rng.choice(num_examples, episode_length, replace=False)
        yield _episode_record(first + offset, int(task_id), indices)


WRITING = ".writing"  # present while a writer works: its pid; gone once the manifest is written
_OWN_FILE = re.compile(r"(base-(train|test)|episodes-[a-z]+-[0-9]{5}-of-[0-9]{5})\.tfrecord\.gz")


def _claim(out_dir: str) -> str:
    """Creates the directory's writer marker, or raises naming the live writer.

    A marker left by a dead writer is taken over (its files are ours to remove)."""
    marker = os.path.join(out_dir, WRITING)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        with open(marker) as f:
            text = f.read().strip()
        pid = int(text) if text.isdigit() else 0
        if pid and pid != os.getpid() and storage.process_alive(pid):
            raise ExistingFileError(
                f"another writer (pid {pid}) is writing episodes into "
                f"{out_dir!r}; wait for it or choose another --out") from None
        fd = os.open(marker, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return marker


def _prepare_directory(out_dir: str, overwrite: bool) -> str:
    """Claims `out_dir` and removes what an earlier writer of ours left there: the
    files its manifest lists (with overwrite), or, after a writer died, the files
    named as ours. Files it cannot show it wrote are never removed: one named like
    ours without a manifest listing it or a dead writer's marker is an error."""
    os.makedirs(out_dir, exist_ok=True)
    manifest = os.path.join(out_dir, storage.MANIFEST)
    crashed = os.path.exists(os.path.join(out_dir, WRITING))
    listed = []
    if os.path.exists(manifest):
        if not overwrite:
            raise ExistingFileError(
                f"{out_dir!r} already holds an episode set ({manifest}); pass overwrite=True "
                "(--overwrite) to replace it")
        old = storage.read_manifest(out_dir)
        listed = [e["file"] for e in old["base"].values()]
        listed += [s["file"] for split in old["splits"].values() for s in split["shards"]]
    marker = _claim(out_dir)
    storage.remove_stale_temporaries(out_dir)
    if os.path.exists(manifest):
        os.remove(manifest)  # from here on the old set is no longer complete
    own = [n for n in os.listdir(out_dir) if _OWN_FILE.fullmatch(n)]
    unknown = [n for n in own if n not in listed and not crashed]
    if unknown:
        os.remove(marker)
        raise ExistingFileError(
            f"{out_dir!r} holds {sorted(unknown)}, which no manifest of this "
            "directory lists: not removing files this writer cannot show it "
            "wrote; move them away or choose another --out")
    for name in own:
        os.remove(os.path.join(out_dir, name))
    return marker


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="ep", desc="episodes", disable=not enabled, mininterval=0.5)


MIXTURE = "mixture"


def write_episodes(config: DataConfig, out_dir: str, *, overwrite: bool = False,
                   progress: bool = False,
                   functions_config: FunctionConfig | None = None,
                   prior_config: PriorConfig | None = None) -> dict:
    """Writes the episode directory for `config` and returns its manifest.

    A "functions:FAMILY" source writes function-regression episodes (values
    stored, `functions_config` describes the family; default FunctionConfig());
    "prior" writes synthetic classification tables (values stored,
    `prior_config`; default PriorConfig()); "mixture" writes one episode set
    per component of `config.mixture` in sub-directories and a manifest naming
    them with their weights; any other source writes classification episodes
    over stored base data.
    """
    if config.episodes_per_shard < 1:
        raise InvalidInputError(f"episodes_per_shard={config.episodes_per_shard} must be positive")
    if config.source == MIXTURE:
        return _write_mixture(config, out_dir, overwrite, progress, prior_config)
    if config.mixture:
        raise InvalidInputError(
            f"data.mixture={list(config.mixture)} is set but data.source={config.source!r}; "
            f"a mixture needs data.source={MIXTURE!r}")
    plans = split_plans(config)
    family = functions.family_of(config.source)
    if config.source == prior.SOURCE:
        schema, prepare = _prior(config, prior_config or PriorConfig())
    elif family is None:
        schema, prepare = _classification(config, plans)
    else:
        schema, prepare = _regression(config, family, functions_config or FunctionConfig())
    task_ids = task_assignments(plans, config.seed)
    if 0 < config.train_episodes < 2**config.log2_num_tasks:
        logging.warning("train_episodes=%d < 2^log2_num_tasks=%d: meta-training uses only %d "
                        "distinct tasks", config.train_episodes, 2**config.log2_num_tasks,
                        config.train_episodes)
    marker = _prepare_directory(out_dir, overwrite)
    extra, make_records = prepare(out_dir)
    splits = {}
    with _progress(sum(p.episodes for p in plans), progress) as bar:
        for plan in plans:
            splits[plan.name] = _write_split(plan, config, out_dir, make_records,
                                             task_ids[plan.name], bar)
    manifest = {"format": schema_lib.FORMAT, "schema": schema.to_dict(),
                "config": dataclasses.asdict(config), **extra, "splits": splits}
    storage.write_json(os.path.join(out_dir, storage.MANIFEST), manifest)
    os.remove(marker)
    logging.info("wrote %s: %s", out_dir,
                 {k: v["episodes"] for k, v in splits.items()})
    return manifest


def ensure_episodes(config: DataConfig, out_dir: str,
                    functions_config: FunctionConfig | None = None,
                    prior_config: PriorConfig | None = None) -> str:
    """Writes the episodes of `config` into `out_dir`, or reuses what `out_dir` holds
    when it was written with the same settings (else an error naming the first
    difference). Returns `out_dir`."""
    if not os.path.exists(os.path.join(out_dir, storage.MANIFEST)):
        write_episodes(config, out_dir, overwrite=True, progress=True,
                       functions_config=functions_config, prior_config=prior_config)
        return out_dir
    written = storage.written_settings(storage.read_manifest(out_dir))
    wanted = {"data": dataclasses.asdict(config),
              "functions": dataclasses.asdict(functions_config or FunctionConfig()),
              "prior": dataclasses.asdict(prior_config or PriorConfig())}
    for section in written:
        for key, value in wanted[section].items():
            if written[section].get(key) != value:
                raise InvalidInputError(
                    f"{out_dir!r} holds episodes written with {section}.{key}="
                    f"{written[section].get(key)!r}; this run asks for {value!r}. Use another "
                    "--workdir (or delete that directory)")
    return out_dir


def _classification(config: DataConfig, plans: list[SplitPlan]):
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


def _regression(config: DataConfig, family: str, fcfg: FunctionConfig):
    """Checks the family's settings; returns the schema and a preparer (no base data)."""
    if config.num_classes != 0:
        raise InvalidInputError(
            f"num_classes={config.num_classes}: function regression "
            f"(source {config.source!r}) has no classes; set data.num_classes=0")
    functions.check_config(fcfg, config.input_size, config.episode_length)
    schema = schema_lib.EpisodeSchema(config.episode_length, config.input_size, 0,
                                      task="regression", num_queries=fcfg.num_queries)

    def prepare(out_dir: str):
        extra = {"source": {"name": config.source, "family": family, "num_classes": 0,
                            "dim": config.input_size},
                 "functions": dataclasses.asdict(fcfg), "base": {}}

        def make_records(plan, shard, first, task_ids):
            return function_records(plan, shard, first, task_ids, family, config, fcfg)
        return extra, make_records

    return schema, prepare


def _prior(config: DataConfig, pcfg: PriorConfig):
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


def prior_records(plan: SplitPlan, shard: int, first: int, task_ids: np.ndarray,
                  config: DataConfig, pcfg: PriorConfig):
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
        feature = {
            "episode_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[first + offset])),
            "task_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[task_id])),
            "x": tf.train.Feature(float_list=tf.train.FloatList(value=x.ravel())),
            "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=y)),
        }
        yield tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(
            deterministic=True)


def parse_mixture(config: DataConfig) -> list[tuple[str, float]]:
    """(source, weight) of every "SOURCE:WEIGHT" item of `config.mixture`, checked."""
    if not config.mixture:
        raise InvalidInputError(
            f"data.source={MIXTURE!r} needs data.mixture, e.g. \"digits:1,prior:2\"")
    out = []
    for item in config.mixture:
        source, sep, weight = item.rpartition(":")
        try:
            w = float(weight)
        except ValueError:
            w = -1.0
        if not sep or not source or not (w > 0 and np.isfinite(w)):
            raise InvalidInputError(
                f"data.mixture item {item!r} is not SOURCE:WEIGHT with a positive weight")
        if source == MIXTURE or functions.family_of(source):
            raise InvalidInputError(
                f"data.mixture item {item!r}: a component is a classification source "
                "(a dataset or 'prior'), not a mixture or function regression")
        if source in [s for s, _ in out]:
            raise InvalidInputError(f"data.mixture names {source!r} twice")
        out.append((source, w))
    return out


def _shares(total: int, weights: list[float]) -> list[int]:
    """`total` split in proportion to `weights` (largest remainders)."""
    raw = np.asarray(weights) / np.sum(weights) * total
    out = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - out))[:total - int(out.sum())]:
        out[i] += 1
    return out.tolist()


def mixture_components(config: DataConfig) -> list[tuple[str, float, DataConfig]]:
    """(sub-directory, weight, data config) of each component of a mixture: the
    weights' shares of the train and test episodes; everything else as `config`."""
    parsed = parse_mixture(config)
    weights = [w for _, w in parsed]
    train = _shares(config.train_episodes, weights)
    test = _shares(config.test_episodes, weights)
    return [(f"{i}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', source)}", w,
             dataclasses.replace(config, source=source, mixture=(), train_episodes=train[i],
                                 test_episodes=test[i]))
            for i, (source, w) in enumerate(parsed)]


def _write_mixture(config: DataConfig, out_dir: str, overwrite: bool, progress: bool,
                   prior_config: PriorConfig | None) -> dict:
    """Writes each component as its own episode set under `out_dir`, then the
    mixture's manifest (last: a mixture without it is not complete)."""
    components = mixture_components(config)
    pcfg = prior_config or PriorConfig()
    for name, _, cfg in components:
        if cfg.source == prior.SOURCE:
            prior.check_config(pcfg, cfg.num_classes, cfg.input_size)
    marker = _prepare_directory(out_dir, overwrite)
    entries, schemas, splits = [], [], {}
    for name, weight, cfg in components:
        sub = write_episodes(cfg, os.path.join(out_dir, name), overwrite=True,
                             progress=progress, prior_config=pcfg)
        schema = schema_lib.EpisodeSchema.from_dict(sub["schema"])
        schemas.append(schema)
        entries.append({"directory": name, "source": cfg.source, "weight": weight,
                        "manifest_sha256": storage.sha256_file(
                            os.path.join(out_dir, name, storage.MANIFEST))})
        for split, info in sub["splits"].items():
            total = splits.setdefault(split, {"episodes": 0, "data_split": info["data_split"],
                                              "task_range": info["task_range"],
                                              "distinct_tasks": 0, "shards": []})
            total["episodes"] += info["episodes"]
            total["distinct_tasks"] += info["distinct_tasks"]
    shared = schema_lib.EpisodeSchema(config.episode_length, config.input_size,
                                      config.num_classes)
    manifest = {"format": schema_lib.FORMAT, "schema": shared.to_dict(),
                "config": dataclasses.asdict(config),
                "source": {"name": MIXTURE, "num_classes": config.num_classes,
                           "dim": config.input_size},
                "mixture": entries, "base": {}, "splits": splits}
    if any(prior.SOURCE == c.source for _, _, c in components):
        manifest["prior"] = dataclasses.asdict(pcfg)
    storage.write_json(os.path.join(out_dir, storage.MANIFEST), manifest)
    os.remove(marker)
    logging.info("wrote mixture %s: %s", out_dir,
                 {e["directory"]: e["weight"] for e in entries})
    return manifest


def function_records(plan: SplitPlan, shard: int, first: int, task_ids: np.ndarray,
                     family: str, config: DataConfig, fcfg: FunctionConfig):
    """Yields the serialized function episodes `first .. first+len(task_ids)-1` of a
    shard: each re-creates its task's function and samples N points."""
    rng = np.random.default_rng([config.seed, split_salt(plan.name), shard, 1])
    d, n = config.input_size, config.episode_length
    for offset, task_id in enumerate(task_ids):
        episode_id = first + offset
        task_id = int(task_id)
        f = functions.task_function(family, config.seed, task_id, d, fcfg)
        ep = functions.sample_episode(rng, f, n, d, fcfg)
        feature = {
            "episode_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[episode_id])),
            "task_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[task_id])),
            "x": tf.train.Feature(float_list=tf.train.FloatList(value=ep["x"].ravel())),
            "y": tf.train.Feature(float_list=tf.train.FloatList(value=ep["y"])),
            "clean": tf.train.Feature(float_list=tf.train.FloatList(value=ep["clean"])),
            "query": tf.train.Feature(int64_list=tf.train.Int64List(value=ep["query"])),
        }
        yield tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(
            deterministic=True)


def _write_split(plan: SplitPlan, config: DataConfig, out_dir: str, make_records,
                 task_ids: np.ndarray, bar) -> dict:
    per = config.episodes_per_shard
    num_shards = max(1, -(-plan.episodes // per))
    shards = []
    for shard in range(num_shards):
        first = shard * per
        count = min(per, plan.episodes - first)
        name = f"episodes-{plan.name}-{shard:05d}-of-{num_shards:05d}.tfrecord.gz"
        records = make_records(plan, shard, first, task_ids[first:first + count])
        entry = storage.write_records(os.path.join(out_dir, name), records)
        entry["episodes"] = entry.pop("records")
        shards.append(entry)
        bar.update(count)
    return {"episodes": plan.episodes, "data_split": plan.data_split,
            "task_range": [plan.task_low, plan.task_high],
            "distinct_tasks": int(len(np.unique(task_ids))), "shards": shards}
