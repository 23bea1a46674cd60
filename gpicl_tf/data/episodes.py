"""Writes episode directories: base data, sharded episode records, manifest.

Example:
    >>> from gpicl_tf.config import get_preset
    >>> manifest = write_episodes(get_preset("smoke").data, "/tmp/eps")  # doctest: +SKIP

Layout of `out_dir` (all GZIP TFRecords, listed with sizes and sha256 in the
manifest, which is written last; sets whose records carry their values, such
as random functions and the table prior, have no base files):

    base-train.tfrecord.gz, base-test.tfrecord.gz
    episodes-train-00000-of-00010.tfrecord.gz ...
    episodes-test-00000-of-00001.tfrecord.gz
    manifest.json
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
from absl import logging

from gpicl_tf.config import DataConfig, FunctionConfig, PriorConfig
from gpicl_tf.data import augment, kinds, prior, schema as schema_lib, storage
from gpicl_tf.data.kinds.base import split_salt
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


def _check_out_dir(out_dir: str) -> None:
    """An output directory must be named and must not be (or lie under) a file."""
    if not out_dir or not out_dir.strip():
        raise InvalidInputError("the episode directory (--out) is an empty string")
    probe = os.path.abspath(out_dir)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise ExistingFileError(
            f"cannot write episodes into {out_dir!r}: {probe!r} is a file, not a directory")


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="ep", desc="episodes", disable=not enabled, mininterval=0.5)


MIXTURE = "mixture"


def write_episodes(config: DataConfig, out_dir: str, *, overwrite: bool = False,
                   progress: bool = False,
                   functions_config: FunctionConfig | None = None,
                   prior_config: PriorConfig | None = None) -> dict:
    """Writes the episode directory for `config` and returns its manifest.

    The source's kind (`kinds.for_source`) writes the records: a dataset's
    episodes index its stored base data; "prior" tables (`prior_config`, default
    PriorConfig()) and "functions:FAMILY" episodes (`functions_config`, default
    FunctionConfig()) store their values. "mixture" writes one episode set per
    component of `config.mixture` in sub-directories and a manifest naming them
    with their weights.
    """
    if config.episodes_per_shard < 1:
        raise InvalidInputError(f"episodes_per_shard={config.episodes_per_shard} must be positive")
    _check_out_dir(out_dir)
    if config.source == MIXTURE:
        return _write_mixture(config, out_dir, overwrite, progress, prior_config)
    if config.mixture:
        raise InvalidInputError(
            f"data.mixture={list(config.mixture)} is set but data.source={config.source!r}; "
            f"a mixture needs data.source={MIXTURE!r}")
    plans = split_plans(config)
    schema, prepare = kinds.for_source(config.source).writer(config, plans, functions_config,
                                                             prior_config)
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
        if source == MIXTURE or not kinds.for_source(source).curriculum:
            raise InvalidInputError(
                f"data.mixture item {item!r}: a component is a source whose episodes take "
                "label permutations (a dataset or 'prior'), not a mixture or "
                f"{kinds.for_source(source).name} episodes")
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


def split_sizes(directory: str, manifest: dict) -> dict[str, dict]:
    """{split: {"episodes", "shards", "bytes"}} of an episode set; a mixture's are
    its components' sums (its own manifest lists no shard)."""
    if "mixture" not in manifest:
        return {name: {"episodes": split["episodes"], "shards": len(split["shards"]),
                       "bytes": sum(s["bytes"] for s in split["shards"])}
                for name, split in manifest["splits"].items()}
    sizes = {}
    for entry in manifest["mixture"]:
        sub = os.path.join(directory, entry["directory"])
        for name, v in split_sizes(sub, storage.read_manifest(sub)).items():
            total = sizes.setdefault(name, {"episodes": 0, "shards": 0, "bytes": 0})
            for key in total:
                total[key] += v[key]
    return sizes


def _written_with(directory: str, config: DataConfig, prior_config: PriorConfig) -> bool:
    """Whether the episode set in `directory` was written with these settings (then
    writing it again, as a mixture writer that died does, replaces nothing new)."""
    try:
        written = storage.written_settings(storage.read_manifest(directory))
    except Exception:  # noqa: BLE001  (unreadable: not provably the same set)
        return False
    wanted = {"data": dataclasses.asdict(config), "prior": dataclasses.asdict(prior_config)}
    same = json.loads(json.dumps({k: wanted[k] for k in written if k in wanted}))
    return json.loads(json.dumps({k: written[k] for k in same})) == same and \
        set(written) <= set(wanted)


def _write_mixture(config: DataConfig, out_dir: str, overwrite: bool, progress: bool,
                   prior_config: PriorConfig | None) -> dict:
    """Writes each component as its own episode set under `out_dir`, then the
    mixture's manifest (last: a mixture without it is not complete)."""
    components = mixture_components(config)
    pcfg = prior_config or PriorConfig()
    for name, _, cfg in components:
        if cfg.source == prior.SOURCE:
            prior.check_config(pcfg, cfg.num_classes, cfg.input_size)
    if not overwrite:   # a component folder's set is replaced only as a plain set is
        for name, _, cfg in components:
            sub = os.path.join(out_dir, name)
            if os.path.exists(os.path.join(sub, storage.MANIFEST)) and \
                    not _written_with(sub, cfg, pcfg):
                raise ExistingFileError(
                    f"{sub!r} already holds an episode set that component {name!r} of this "
                    f"mixture would replace; pass overwrite=True (--overwrite) to replace it")
    marker = _prepare_directory(out_dir, overwrite)
    entries, splits = [], {}
    for name, weight, cfg in components:
        sub = write_episodes(cfg, os.path.join(out_dir, name), overwrite=True,
                             progress=progress, prior_config=pcfg)
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
