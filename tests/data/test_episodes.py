import dataclasses
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gpicl_tf.data import augment, episodes, pipeline, storage
from gpicl_tf.data.kinds import classification


def _files(directory):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(directory, "*")))


def test_manifest_lists_every_file_with_checksums(smoke_episodes, smoke_config):
    manifest = storage.read_manifest(smoke_episodes)
    assert manifest["schema"]["episode_length"] == smoke_config.data.episode_length
    assert storage.written_settings(manifest)["data"] == dataclasses.asdict(smoke_config.data)
    listed = [e["file"] for e in manifest["base"].values()]
    listed += [s["file"] for split in manifest["splits"].values() for s in split["shards"]]
    assert sorted(listed + ["manifest.json"]) == _files(smoke_episodes)
    for split in manifest["splits"].values():
        assert sum(s["episodes"] for s in split["shards"]) == split["episodes"]
        for s in split["shards"]:
            path = os.path.join(smoke_episodes, s["file"])
            assert os.path.getsize(path) == s["bytes"]
            assert storage.sha256_file(path) == s["sha256"]


def test_same_seed_gives_byte_identical_shards(tmp_path, smoke_config):
    cfg = dataclasses.replace(smoke_config.data, train_episodes=40, test_episodes=8)
    a, b, c = (str(tmp_path / n) for n in "abc")
    episodes.write_episodes(cfg, a)
    episodes.write_episodes(cfg, b)
    episodes.write_episodes(dataclasses.replace(cfg, seed=1), c)
    for name in _files(a):
        if name != "manifest.json":
            with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
                assert fa.read() == fb.read(), name
    sha = lambda d: [s["sha256"] for s in storage.read_manifest(d)["splits"]["train"]["shards"]]
    assert sha(a) != sha(c)


def test_write_read_round_trip(smoke_episodes):
    eps = pipeline.open_episodes(smoke_episodes)
    records = pipeline.read_records(eps, "train")
    manifest = eps.manifest
    per = manifest["config"]["episodes_per_shard"]
    plans = episodes.split_plans(episodes.DataConfig(**manifest["config"]))
    task_ids = episodes.task_assignments(plans, eps.seed)["train"]
    expected = []
    for shard, entry in enumerate(manifest["splits"]["train"]["shards"]):
        first = shard * per
        expected += list(classification.shard_records(plans[0], shard, first,
                                                task_ids[first:first + entry["episodes"]],
                                                manifest["base"]["train"]["examples"],
                                                eps.schema.episode_length, eps.seed))
    assert len(records) == len(expected) == eps.num_episodes("train")
    assert [r["episode_id"] for r in records] == list(range(len(records)))
    assert all(0 <= r["task_id"] < 2**manifest["config"]["log2_num_tasks"] for r in records)
    assert all(len(set(r["indices"].tolist())) == eps.schema.episode_length for r in records)

    # The model features equal a numpy re-derivation from the stored record.
    ds = pipeline.make_dataset(eps, "train", batch_size=4, shuffle=False, repeat=False)
    features, targets = next(iter(ds))
    x, y = eps.base("train")
    mean, std = manifest["source"]["mean"], manifest["source"]["std"]
    for i in range(4):
        idx, task = records[i]["indices"], records[i]["task_id"]
        a = augment.task_projection(eps.seed, task, x.shape[1], eps.schema.input_size).numpy()
        perm = augment.task_permutation(eps.seed, task, eps.schema.num_classes).numpy()
        want_x = ((x[idx].astype(np.float32) - mean) / std) @ a
        want_y = perm[y[idx]]
        np.testing.assert_array_equal(targets[i], want_y)
        np.testing.assert_array_equal(features["labels"][i], want_y)
        np.testing.assert_allclose(features["inputs"][i], want_x, rtol=1e-4, atol=1e-4)


def test_test_split_uses_unseen_tasks_and_test_data(smoke_episodes):
    eps = pipeline.open_episodes(smoke_episodes)
    records = pipeline.read_records(eps, "test")
    assert eps.manifest["splits"]["test"]["data_split"] == "test"
    assert all(r["task_id"] >= augment.UNSEEN_TASK_OFFSET for r in records)
    assert max(r["indices"].max() for r in records) < eps.manifest["base"]["test"]["examples"]


def _task_ids(directory, split):
    return [int(r["task_id"]) for r in pipeline.read_records(pipeline.open_episodes(directory),
                                                                split)]


def test_seen_tasks_were_all_meta_trained_and_train_uses_every_task(tmp_path, smoke_config):
    # 2^4 = 16 tasks, 40 train episodes: every task used (cycling), the seen
    # split (test data) only on ids the train split used.
    cfg = dataclasses.replace(smoke_config.data, train_episodes=40, test_episodes=32)
    out = str(tmp_path / "eps")
    manifest = episodes.write_episodes(cfg, out)
    train, seen = _task_ids(out, "train"), _task_ids(out, "seen")
    assert sorted(set(train)) == list(range(16))
    # without replacement: each run of 16 consecutive episodes holds 16 distinct tasks
    assert len(set(train[:16])) == len(set(train[16:32])) == 16
    assert set(seen) <= set(train) and len(set(seen)) == 16
    assert manifest["splits"]["train"]["distinct_tasks"] == 16
    assert manifest["splits"]["seen"]["distinct_tasks"] == 16


def test_fewer_episodes_than_tasks_are_all_distinct_and_seen_stays_inside(tmp_path,
                                                                          smoke_config):
    cfg = dataclasses.replace(smoke_config.data, log2_num_tasks=10, train_episodes=50,
                              test_episodes=40)
    out = str(tmp_path / "eps")
    manifest = episodes.write_episodes(cfg, out)
    train, seen = _task_ids(out, "train"), _task_ids(out, "seen")
    assert len(set(train)) == 50 == manifest["splits"]["train"]["distinct_tasks"]
    assert set(seen) <= set(train)
    assert len(set(seen)) == 40


def test_eval_only_set_has_no_seen_episodes(tmp_path, smoke_config):
    cfg = dataclasses.replace(smoke_config.data, source="random", train_episodes=0,
                              test_episodes=8)
    manifest = episodes.write_episodes(cfg, str(tmp_path / "eps"))
    assert manifest["splits"]["seen"]["episodes"] == 0
    assert manifest["splits"]["test"]["distinct_tasks"] == 8


def test_existing_set_is_not_overwritten_silently(fresh_episodes, smoke_config):
    with pytest.raises(FileExistsError, match="overwrite"):
        episodes.write_episodes(smoke_config.data, fresh_episodes)


def test_failed_write_leaves_no_complete_set(fresh_episodes, smoke_config, monkeypatch):
    real = storage.write_records
    calls = []

    def failing(path, records):
        calls.append(path)
        if len(calls) == 4:  # base-train, base-test, shard 0, then the disk "fills"
            raise OSError(28, "No space left on device")
        return real(path, records)

    monkeypatch.setattr(storage, "write_records", failing)
    with pytest.raises(OSError, match="No space"):
        episodes.write_episodes(smoke_config.data, fresh_episodes, overwrite=True)
    assert not os.path.exists(os.path.join(fresh_episodes, "manifest.json"))
    assert not [f for f in os.listdir(fresh_episodes) if ".tmp" in f]
    with pytest.raises(FileNotFoundError, match="not a complete episode directory"):
        pipeline.open_episodes(fresh_episodes)


def test_interrupted_record_stream_leaves_no_file(tmp_path):
    def records():
        yield b"one"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        storage.write_records(str(tmp_path / "x.tfrecord.gz"), records())
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("field,value", [("episode_length", 0), ("input_size", -1),
                                         ("num_classes", 1)])
def test_bad_schema_values_are_named(tmp_path, smoke_config, field, value):
    with pytest.raises(ValueError, match=f"{field}={value}"):
        episodes.write_episodes(dataclasses.replace(smoke_config.data, **{field: value}),
                                str(tmp_path))


def test_too_long_episode_is_named(tmp_path, smoke_config):
    cfg = dataclasses.replace(smoke_config.data, source="random", random_examples=10)
    with pytest.raises(ValueError, match="episode_length=12 exceeds the 10 examples"):
        episodes.write_episodes(cfg, str(tmp_path))


def test_too_many_classes_is_named(tmp_path, smoke_config):
    with pytest.raises(ValueError, match="num_classes=5"):
        episodes.write_episodes(dataclasses.replace(smoke_config.data, num_classes=5),
                                str(tmp_path))


@pytest.mark.slow
def test_make_episodes_cli(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "pipelines.make_episodes", "--preset", "smoke",
           "--out", str(out), "--set", "data.train_episodes=20", "--noprogress"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "train: 20 episodes" in done.stdout
    assert json.load(open(out / "manifest.json"))["splits"]["train"]["episodes"] == 20
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode != 0 and "overwrite" in again.stderr


def test_writer_never_deletes_files_it_cannot_show_it_wrote(tmp_path, smoke_config):
    out = tmp_path / "eps"
    out.mkdir()
    (out / "my_own_data.tfrecord.gz").write_bytes(b"precious")
    cfg = dataclasses.replace(smoke_config.data, train_episodes=16, test_episodes=8)
    episodes.write_episodes(cfg, str(out))
    episodes.write_episodes(cfg, str(out), overwrite=True)
    assert (out / "my_own_data.tfrecord.gz").read_bytes() == b"precious"
    assert not (out / episodes.WRITING).exists()
    # a file named like a shard, listed by no manifest and left by no dead writer: refused
    os.remove(out / "manifest.json")
    with pytest.raises(FileExistsError, match="episodes-train-00000-of-00001.tfrecord.gz.*no "
                                              "manifest"):
        episodes.write_episodes(cfg, str(out), overwrite=True)
    assert (out / "episodes-train-00000-of-00001.tfrecord.gz").exists()


def test_a_dead_writers_files_are_replaced_and_a_live_writer_is_refused(tmp_path, smoke_config):
    out = tmp_path / "eps"
    cfg = dataclasses.replace(smoke_config.data, train_episodes=16, test_episodes=8)
    episodes.write_episodes(cfg, str(out))
    os.remove(out / "manifest.json")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (out / episodes.WRITING).write_text(dead)                 # a writer that was killed
    (out / f".base-train.tfrecord.gz.tmp-{dead}").write_bytes(b"half")
    manifest = episodes.write_episodes(cfg, str(out))
    assert manifest["splits"]["train"]["episodes"] == 16
    assert not [n for n in os.listdir(out) if n.startswith(".")]
    os.remove(out / "manifest.json")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / episodes.WRITING).write_text(str(sleeper.pid))  # a writer still at work
        with pytest.raises(FileExistsError, match=f"another writer \\(pid {sleeper.pid}\\)"):
            episodes.write_episodes(cfg, str(out))
    finally:
        sleeper.kill()


def test_manifest_lacking_fields_is_named(fresh_episodes):
    path = os.path.join(fresh_episodes, "manifest.json")
    manifest = json.load(open(path))
    del manifest["splits"]["train"]["shards"][0]["sha256"]
    json.dump(manifest, open(path, "w"))
    with pytest.raises(storage.ManifestMismatchError,
                       match=r"manifest .*manifest.json lacks field splits.train.shards\[0\]."
                             r"'sha256'"):
        pipeline.open_episodes(fresh_episodes)
    del manifest["schema"]
    json.dump(manifest, open(path, "w"))
    with pytest.raises(storage.ManifestMismatchError, match="lacks field 'schema'"):
        storage.read_manifest(fresh_episodes)


def test_manifest_schema_that_disagrees_with_the_records_is_named(fresh_episodes):
    path = os.path.join(fresh_episodes, "manifest.json")
    manifest = json.load(open(path))
    manifest["schema"]["episode_length"] = 50
    json.dump(manifest, open(path, "w"))
    with pytest.raises(storage.ManifestMismatchError,
                       match=r"the records of .*episodes-.*\.tfrecord\.gz do not match the "
                             r"schema in .*manifest.json \(episode_length=50"):
        pipeline.open_episodes(fresh_episodes)


def test_an_output_path_that_cannot_be_a_directory_is_a_named_error(smoke_config, tmp_path):
    (tmp_path / "file").write_text("x")
    for out, error, message in [
            ("", ValueError, "--out\\) is an empty string"),
            (str(tmp_path / "file"), FileExistsError, "'.*file' is a file, not a directory"),
            (str(tmp_path / "file" / "sub"), FileExistsError, "'.*file' is a file, not a")]:
        with pytest.raises(error, match=message):
            episodes.write_episodes(smoke_config.data, out)
    assert (tmp_path / "file").read_text() == "x"
