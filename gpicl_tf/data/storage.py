"""Files of an episode directory: atomic writes, checksums, manifest, base data.

Nothing is visible under its final name before it is complete: every file is
written to a hidden temporary name in the same directory, flushed to disk and
renamed; the manifest is written last, so a directory without `manifest.json`
is never a complete episode set.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from gpicl_tf.config import normalize_section
from gpicl_tf.errors import GpiclError, MissingFileError
# the filesystem helpers' home is gpicl_tf.io; re-exported for the episode code here
from gpicl_tf.io import (LOCK_FILE, _fsync, atomic_path, directory_lock,  # noqa: F401
                         is_version_name, process_alive, remove_stale_temporaries,
                         sha256_file)

MANIFEST = "manifest.json"
GZIP = tf.io.TFRecordOptions(compression_type="GZIP")
_BASE_CHUNK = 4096


class CorruptShardError(GpiclError, RuntimeError):
    """A shard or base file does not match the manifest (names the file)."""


class ManifestMismatchError(GpiclError, ValueError):
    """The manifest disagrees with what the consumer expects (names the field)."""


def write_records(path: str, records) -> dict:
    """Writes serialized records to a GZIP TFRecord file atomically.

    Returns:
        {"file", "records", "bytes", "sha256"} for the manifest.
    """
    count = 0
    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(tmp, options=GZIP) as writer:
            for record in records:
                writer.write(record)
                count += 1
        entry = {"file": os.path.basename(path), "records": count,
                 "bytes": os.path.getsize(tmp), "sha256": sha256_file(tmp)}
    return entry


def write_json(path: str, obj) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")


def read_manifest(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST)
    if not os.path.exists(path):
        raise MissingFileError(
            f"{path} does not exist: {directory!r} is not a complete episode directory "
            "(write one with python -m pipelines.make_episodes)")
    with open(path) as f:
        try:
            manifest = json.load(f)
        except json.JSONDecodeError as e:
            raise CorruptShardError(f"manifest {path} is not valid JSON: {e}") from None
    check_manifest(manifest, path)
    return manifest


_FILE_ENTRY = {"file": str, "bytes": int, "sha256": str}
_MANIFEST = {"format": str, "schema": dict, "config": dict, "source": dict, "base": dict,
             "splits": dict}
_SPLIT = {"episodes": int, "data_split": str, "shards": list}
_SCHEMA = {"episode_length": int, "input_size": int, "num_classes": int}


def _require(obj, fields: dict, where: str, path: str) -> None:
    if not isinstance(obj, dict):
        raise ManifestMismatchError(f"manifest {path}: {where} is not an object")
    for key, kind in fields.items():
        if key not in obj:
            raise ManifestMismatchError(f"manifest {path} lacks field {where}{key!r}")
        if not isinstance(obj[key], kind) or (kind is int and isinstance(obj[key], bool)):
            raise ManifestMismatchError(f"manifest {path}: field {where}{key!r} is "
                                        f"{obj[key]!r}, not a {kind.__name__}")


def written_settings(manifest: dict) -> dict[str, dict]:
    """The config sections an episode set was written with: {"data": ..., "functions":
    ..., "prior": ...} (functions only for function-regression sets, prior only for
    sets that drew from it). A key an older writer did not record has its default."""
    settings = {"data": normalize_section("data", manifest["config"], defaults=True)}
    for section in ("functions", "prior"):
        if section in manifest:
            settings[section] = normalize_section(section, manifest[section], defaults=True)
    return settings


def check_manifest(manifest, path: str) -> None:
    """Raises ManifestMismatchError naming the file and the field when a manifest
    lacks what the readers rely on (the schema, every listed file's size and sha256)."""
    _require(manifest, _MANIFEST, "", path)
    _require(manifest["schema"], _SCHEMA, "schema.", path)
    for name, entry in manifest["base"].items():
        _require(entry, {**_FILE_ENTRY, "examples": int, "dtype": str, "dim": int},
                 f"base.{name}.", path)
    for name, split in manifest["splits"].items():
        _require(split, _SPLIT, f"splits.{name}.", path)
        for i, shard in enumerate(split["shards"]):
            _require(shard, {**_FILE_ENTRY, "episodes": int}, f"splits.{name}.shards[{i}].",
                     path)


def check_file(directory: str, entry: dict, verify: str = "sha256") -> str | None:
    """Checks one listed file against its manifest entry.

    Args:
        verify: "sha256" (size and checksum), "size" or "none".
    Returns:
        None when the file is good, else a message naming the file.
    """
    path = os.path.join(directory, entry["file"])
    if verify == "none":
        return None
    if not os.path.exists(path):
        return f"shard {path} is missing"
    size = os.path.getsize(path)
    if size != entry["bytes"]:
        what = "truncated" if size < entry["bytes"] else "longer than listed"
        return f"shard {path} is {what}: {size} bytes, the manifest lists {entry['bytes']}"
    if verify == "sha256" and sha256_file(path) != entry["sha256"]:
        return f"shard {path} is corrupt: its sha256 differs from the manifest's"
    return None


# ---------------------------------------------------------------- base data

def base_dtype(x: np.ndarray) -> str:
    """uint8 when the values are bytes (pixels, digits), else float16."""
    if x.size and np.all(x == np.round(x)) and x.min() >= 0 and x.max() <= 255:
        return "uint8"
    return "float16"


def write_base(path: str, x: np.ndarray, y: np.ndarray, dtype: str) -> dict:
    """Stores raw base data in chunks of records: x bytes, y labels."""
    stored = x.astype(dtype)

    def records():
        for start in range(0, len(x), _BASE_CHUNK):
            xs, ys = stored[start:start + _BASE_CHUNK], y[start:start + _BASE_CHUNK]
            yield tf.train.Example(features=tf.train.Features(feature={
                "x": tf.train.Feature(bytes_list=tf.train.BytesList(value=[xs.tobytes()])),
                "y": tf.train.Feature(int64_list=tf.train.Int64List(value=ys.tolist())),
            })).SerializeToString(deterministic=True)

    entry = write_records(path, records())
    entry.update(examples=int(len(x)), dtype=dtype, dim=int(x.shape[1]))
    return entry


def read_base(directory: str, entry: dict) -> tuple[np.ndarray, np.ndarray]:
    """Reads base data back: x [N, dim] in its stored dtype, y int64 [N]."""
    path = os.path.join(directory, entry["file"])
    spec = {"x": tf.io.FixedLenFeature([], tf.string),
            "y": tf.io.VarLenFeature(tf.int64)}
    xs, ys = [], []
    try:
        for raw in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            ex = tf.io.parse_single_example(raw, spec)
            xs.append(np.frombuffer(ex["x"].numpy(), entry["dtype"]))
            ys.append(ex["y"].values.numpy())
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        raise CorruptShardError(f"base file {path} cannot be read: {e.message}") from None
    x = np.concatenate(xs).reshape(-1, entry["dim"])
    y = np.concatenate(ys)
    if len(x) != entry["examples"] or len(y) != entry["examples"]:
        raise CorruptShardError(
            f"base file {path} holds {len(x)} examples, the manifest lists {entry['examples']}")
    return x, y
