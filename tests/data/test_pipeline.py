import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from gpicl_tf.data import augment, pipeline, storage


def _damage(path, how):
    if how == "truncate":
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    else:
        with open(path, "r+b") as f:
            f.seek(40)
            byte = f.read(1)
            f.seek(40)
            f.write(bytes([byte[0] ^ 0xFF]))


def _shard(directory, i=1):
    manifest = storage.read_manifest(directory)
    return os.path.join(directory, manifest["splits"]["train"]["shards"][i]["file"])


def test_batches_have_schema_shapes(smoke_episodes):
    eps = pipeline.open_episodes(smoke_episodes)
    ds = pipeline.make_dataset(eps, "train", batch_size=4)
    spec_f, spec_t = ds.element_spec
    s = eps.schema
    assert spec_f["inputs"].shape.as_list() == [4, s.episode_length, s.input_size]
    assert spec_f["labels"].shape.as_list() == [4, s.episode_length]
    assert spec_t.shape.as_list() == [4, s.episode_length] and spec_t.dtype == tf.int32
    for key, spec in s.feature_specs().items():
        assert spec_f[key].dtype == spec.dtype, key
    features, targets = next(iter(ds))
    assert features["inputs"].dtype == tf.float32
    assert targets.numpy().min() >= 0 and targets.numpy().max() < s.num_classes


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_damaged_shard_error_names_the_file(fresh_episodes, how):
    path = _shard(fresh_episodes)
    _damage(path, how)
    with pytest.raises(storage.CorruptShardError, match=os.path.basename(path)) as err:
        pipeline.open_episodes(fresh_episodes)
    assert ("truncated" in str(err.value)) == (how == "truncate")


def test_damaged_shard_is_skipped_and_counted(fresh_episodes):
    path = _shard(fresh_episodes)
    _damage(path, "truncate")
    eps = pipeline.open_episodes(fresh_episodes, on_corrupt="skip")
    assert len(eps.skipped) == 1 and os.path.basename(path) in eps.skipped[0]
    assert path not in eps.shards["train"] and len(eps.shards["train"]) == 1
    ds = pipeline.make_dataset(eps, "train", batch_size=4, shuffle=False, repeat=False)
    assert sum(1 for _ in ds) == 32 // 4  # the good shard's 32 episodes


def test_damaged_base_file_is_never_skipped(fresh_episodes):
    _damage(os.path.join(fresh_episodes, "base-train.tfrecord.gz"), "flip")
    with pytest.raises(storage.CorruptShardError, match="base-train"):
        pipeline.open_episodes(fresh_episodes, on_corrupt="skip")


def test_manifest_mismatch_names_the_field(smoke_episodes):
    with pytest.raises(storage.ManifestMismatchError, match="'input_size' is 16.*expects 64"):
        pipeline.open_episodes(smoke_episodes, expect={"input_size": 64})
    with pytest.raises(storage.ManifestMismatchError, match="'source' is 'digits'"):
        pipeline.open_episodes(smoke_episodes, expect={"source": "mnist"})
    eps = pipeline.open_episodes(smoke_episodes, expect={"input_size": 16, "num_classes": 10})
    assert eps.schema.input_size == 16


@pytest.mark.slow
def test_inspect_cli_names_each_bad_shard(fresh_episodes):
    cmd = [sys.executable, "-m", "pipelines.inspect_episodes", fresh_episodes]
    good = subprocess.run(cmd, capture_output=True, text=True)
    assert good.returncode == 0 and "all files match" in good.stdout
    bad = [_shard(fresh_episodes, 0), _shard(fresh_episodes, 1)]
    _damage(bad[0], "truncate")
    _damage(bad[1], "flip")
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 1
    for path in bad:
        assert os.path.basename(path) in out.stdout
    assert "2 bad file(s)" in out.stdout


def _expected_targets(eps, records, fraction, batch):
    x, y = eps.base("train")
    c = eps.schema.num_classes
    fixed = augment.task_permutation(eps.seed, augment.FIXED_TASK_ID, c).numpy()
    out = []
    for i, r in enumerate(records):
        biased = i % batch < round(fraction * batch)
        perm = fixed if biased else augment.task_permutation(eps.seed, r["task_id"], c).numpy()
        out.append(perm[y[r["indices"]]])
    return np.stack(out)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.75, 1.0])
def test_bias_fixes_exactly_that_fraction_of_each_batch(smoke_episodes, fraction):
    eps = pipeline.open_episodes(smoke_episodes)
    bias = pipeline.make_bias_variable(fraction)
    ds = pipeline.make_dataset(eps, "train", batch_size=8, shuffle=False, repeat=False, bias=bias)
    got = np.concatenate([t.numpy() for _, t in ds])
    records = pipeline.read_records(eps, "train")
    np.testing.assert_array_equal(got, _expected_targets(eps, records, fraction, 8))


def test_task_mode_fixes_the_projection_too(smoke_episodes):
    eps = pipeline.open_episodes(smoke_episodes)
    bias = pipeline.make_bias_variable(1.0)
    ds = pipeline.make_dataset(eps, "train", batch_size=8, shuffle=False, bias=bias,
                               bias_mode="task")
    perm_ds = pipeline.make_dataset(eps, "train", batch_size=8, shuffle=False, bias=bias)
    (f_task, t_task), (f_perm, t_perm) = next(iter(ds)), next(iter(perm_ds))
    np.testing.assert_array_equal(t_task, t_perm)
    n_x = eps.schema.input_size
    # Two episodes drawing the same example under the fixed task agree exactly.
    x, _ = eps.base("train")
    records = pipeline.read_records(eps, "train")[:8]
    a = augment.task_projection(eps.seed, augment.FIXED_TASK_ID, x.shape[1], n_x).numpy()
    m = eps.manifest["source"]
    want = ((x[records[0]["indices"]] - m["mean"]) / m["std"]) @ a
    np.testing.assert_allclose(f_task["inputs"][0], want, rtol=1e-4, atol=1e-4)
    assert not np.allclose(f_perm["inputs"][0], want, atol=1e-3)


def test_bias_change_reaches_batches_despite_prefetch(smoke_episodes):
    eps = pipeline.open_episodes(smoke_episodes)
    records = pipeline.read_records(eps, "train")
    n, batch = len(records), 8
    unbiased = _expected_targets(eps, records, 0.0, batch)
    biased = _expected_targets(eps, records, 1.0, batch)
    assert not np.array_equal(unbiased, biased)
    bias = pipeline.make_bias_variable(0.0)
    ds = pipeline.make_dataset(eps, "train", batch_size=batch, shuffle=False, bias=bias,
                               prefetch=tf.data.AUTOTUNE)
    it = iter(ds)
    for step in range(3):  # the pipeline now runs ahead, filling its buffers
        np.testing.assert_array_equal(next(it)[1], unbiased[step * batch:(step + 1) * batch])
    bias.assign(1.0)
    first_biased = None
    for step in range(3, 60):
        rows = [(step * batch + b) % n for b in range(batch)]
        got = next(it)[1].numpy()
        if np.array_equal(got, biased[rows]):
            first_biased = step if first_biased is None else first_biased
        elif first_biased is not None:
            pytest.fail(f"batch {step} is not fully biased after batch {first_biased} was")
        else:
            # Before the change arrives a batch may mix old and new episodes.
            assert all(np.array_equal(got[b], unbiased[r]) or np.array_equal(got[b], biased[r])
                       for b, r in enumerate(rows))
    assert first_biased is not None, "the bias change never reached the batches"
    assert first_biased <= 3 + 16, f"the change took {first_biased - 3} batches to arrive"
