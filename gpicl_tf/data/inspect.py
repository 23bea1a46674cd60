"""Full check of an episode directory: checksums, counts, parse, index ranges."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from gpicl_tf.data import kinds, storage
from gpicl_tf.data.schema import EpisodeSchema


def _check_shard(directory: str, entry: dict, spec: dict, check_record) -> str | None:
    problem = storage.check_file(directory, entry, "sha256")
    if problem:
        return problem
    path = os.path.join(directory, entry["file"])
    count = 0
    try:
        for raw in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            bad = check_record(tf.io.parse_single_example(raw, spec))
            if bad:
                return f"shard {path} record {count} has {bad}"
            count += 1
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        return f"shard {path} cannot be read at record {count}: {e.message}"
    if count != entry["episodes"]:
        return f"shard {path} holds {count} episodes, the manifest lists {entry['episodes']}"
    return None


def inspect_directory(directory: str) -> dict:
    """Returns {"summary": {...}, "problems": [messages naming files]}."""
    manifest = storage.read_manifest(directory)
    if "mixture" in manifest:
        return _inspect_mixture(directory, manifest)
    schema = EpisodeSchema.from_dict(manifest["schema"])
    problems, sizes = [], {}
    for split, entry in manifest["base"].items():
        problem = storage.check_file(directory, entry, "sha256")
        if problem is None:
            try:
                storage.read_base(directory, entry)
            except storage.CorruptShardError as e:
                problem = str(e)
        if problem:
            problems.append(problem)
    spec = schema.record_spec()
    for split, info in manifest["splits"].items():
        check = kinds.of(schema).record_check(schema, manifest, info)
        for entry in info["shards"]:
            problem = _check_shard(directory, entry, spec, check)
            if problem:
                problems.append(problem)
        sizes[split] = {"episodes": info["episodes"], "shards": len(info["shards"]),
                        "bytes": int(np.sum([s["bytes"] for s in info["shards"]]))}
    summary = {"directory": directory, "source": manifest["source"]["name"],
               "schema": {k: manifest["schema"][k] for k in
                          ("episode_length", "input_size", "num_classes")},
               "splits": sizes}
    return {"summary": summary, "problems": problems}


def _inspect_mixture(directory: str, manifest: dict) -> dict:
    """Each component inspected in full, its manifest checked against the mixture's."""
    problems, sizes = [], {}
    for entry in manifest["mixture"]:
        sub = os.path.join(directory, entry["directory"])
        if not os.path.exists(os.path.join(sub, storage.MANIFEST)):
            problems.append(f"mixture component {sub} has no manifest")
            continue
        if storage.sha256_file(os.path.join(sub, storage.MANIFEST)) != entry["manifest_sha256"]:
            problems.append(f"mixture component {sub}: its manifest is not the one "
                            f"{directory}/manifest.json names")
        report = inspect_directory(sub)
        problems += report["problems"]
        for split, v in report["summary"]["splits"].items():
            total = sizes.setdefault(split, {"episodes": 0, "shards": 0, "bytes": 0})
            for key in total:
                total[key] += v[key]
    weights = ", ".join(f"{e['source']} {e['weight']:g}" for e in manifest["mixture"])
    summary = {"directory": directory, "source": f"mixture ({weights})",
               "schema": {k: manifest["schema"][k] for k in
                          ("episode_length", "input_size", "num_classes")},
               "splits": sizes}
    return {"summary": summary, "problems": problems}


def format_report(report: dict) -> str:
    s = report["summary"]
    lines = [f"episode directory {s['directory']}: source {s['source']}, schema {s['schema']}"]
    for split, v in s["splits"].items():
        per = v["bytes"] / max(v["episodes"], 1)
        lines.append(f"  {split}: {v['episodes']} episodes, {v['shards']} shards, "
                     f"{v['bytes']} bytes ({per:.0f} bytes/episode)")
    if report["problems"]:
        lines.append(f"{len(report['problems'])} bad file(s):")
        lines.extend(f"  BAD {p}" for p in report["problems"])
    else:
        lines.append("all files match the manifest")
    return "\n".join(lines)
