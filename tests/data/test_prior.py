"""The synthetic table prior and mixtures of sources."""

import dataclasses
import json
import os

import numpy as np
import pytest

from gpicl_tf.config import PriorConfig, get_preset, override
from gpicl_tf.data import episodes, inspect, pipeline, prior, storage

SMALL = PriorConfig(max_features=6, max_classes=5)


def _data(**changes):
    return dataclasses.replace(get_preset("smoke").data, **changes)


def test_a_task_is_the_same_in_every_draw_and_differs_across_ids():
    a = prior.task(0, 3, PriorConfig(), 10)
    b = prior.task(0, 3, PriorConfig(), 10)
    xa, ya = a.sample(np.random.default_rng(1), 50)
    xb, yb = b.sample(np.random.default_rng(1), 50)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    shapes = {(t.num_features, t.num_classes, t.kind)
              for t in (prior.task(0, i, PriorConfig(), 10) for i in range(40))}
    assert len(shapes) > 10  # feature counts, class counts and kinds vary


def test_tasks_span_the_configured_ranges_and_carry_signal():
    from sklearn.linear_model import LogisticRegression

    cfg = PriorConfig(min_features=3, max_features=9, min_classes=2, max_classes=4)
    rng = np.random.default_rng(0)
    gains = []
    for tid in range(30):
        t = prior.task(0, tid, cfg, 10)
        assert 3 <= t.num_features <= 9 and 2 <= t.num_classes <= 4
        x, y = t.sample(rng, 400)
        assert x.shape == (400, t.num_features) and y.min() >= 0 and y.max() < t.num_classes
        z = prior.prepare_table(x[:200], x, cfg.clip)
        if len(np.unique(y[:200])) < 2:
            continue
        acc = LogisticRegression(max_iter=300).fit(z[:200], y[:200]).score(z[200:], y[200:])
        gains.append(acc - np.bincount(y[200:]).max() / 200)
    # the labels depend on the features: well above the majority class on average
    assert np.mean(gains) > 0.05


def test_prepare_table_standardises_clips_and_fills_missing_values():
    fit = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    x = np.array([[2.0, 3.5], [np.nan, 1.0], [1e6, 1.0]])
    z = prior.prepare_table(fit, x, clip=3.0)
    assert z[0, 0] == 0.0 and z[1, 0] == 0.0     # the mean; a missing value becomes the mean
    assert z[2, 0] == 3.0                        # clipped
    assert z[0, 1] == 2.5                        # a constant column keeps scale 1
    padded = prior.pad(z, 8)
    assert padded.shape == (3, 8) and np.all(padded[:, 2:] == 0)
    np.testing.assert_allclose(padded[:, :2], z * 2.0)
    with pytest.raises(ValueError, match="3 features exceed the 2 stored columns"):
        prior.pad(np.zeros((1, 3)), 2)


def test_column_statistics_hold_at_any_scale_and_warn_about_nothing():
    """Computed on each column divided by a power of two: numpy's exact values on
    ordinary columns, the same standardised table at 1e-170 or 1e300 (where the
    variance itself underflows to 0 or overflows), and no warning for a column
    without a value (numpy's "Mean of empty slice")."""
    import warnings

    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 4)) * [1.0, 3e-5, 7e4, 1.0] + [0.0, 1.0, -2e5, 9.0]
    x[::4, 0] = np.nan
    mean, std = prior.column_stats(x)
    np.testing.assert_array_equal(mean, np.nanmean(x, 0))
    np.testing.assert_array_equal(std, np.nanstd(x, 0))
    for scale in (1e-170, 1e300):
        np.testing.assert_allclose(prior.prepare_table(x * scale, x * scale, 6.0),
                                   prior.prepare_table(x, x, 6.0), atol=1e-12)
    x[:, 2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean, std = prior.column_stats(x)
        z = prior.prepare_table(x, x, 6.0)
    assert mean[2] == 0.0 and std[2] == 0.0 and np.all(z[:, 2] == 0.0)


@pytest.mark.parametrize("change, match", [
    ({"max_classes": 12}, "prior.max_classes=12 exceeds data.num_classes=10"),
    ({"min_features": 7, "max_features": 6}, "prior.min_features=7"),
    ({"min_classes": 5, "max_classes": 3}, "prior.min_classes=5"),
])
def test_bad_prior_settings_are_named(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        episodes.write_episodes(_data(source="prior"), str(tmp_path / "p"),
                                prior_config=dataclasses.replace(SMALL, **change))
    assert not os.path.exists(tmp_path / "p" / storage.MANIFEST)


def test_prior_episodes_are_written_read_and_inspected(tmp_path):
    out = str(tmp_path / "prior")
    manifest = episodes.write_episodes(_data(source="prior"), out, prior_config=SMALL)
    assert manifest["prior"]["max_features"] == 6 and manifest["base"] == {}
    assert manifest["schema"]["stored_dim"] == 6
    eps = pipeline.open_episodes(out)
    features, targets = next(iter(pipeline.make_dataset(eps, "train", 4, shuffle=False)))
    assert features["inputs"].shape == (4, 12, 16) and targets.shape == (4, 12)
    assert np.all(np.isfinite(features["inputs"].numpy()))
    rec = pipeline.read_records(eps, "train")[0]
    task = prior.task(0, int(rec["task_id"]), SMALL, 10)
    assert rec["labels"].max() < task.num_classes
    # the stored values are the task's columns, prepared and padded
    x = rec["x"].reshape(12, 6)
    assert np.all(x[:, task.num_features:] == 0)
    assert inspect.inspect_directory(out)["problems"] == []
    again = str(tmp_path / "again")
    episodes.write_episodes(_data(source="prior"), again, prior_config=SMALL)
    for split in manifest["splits"]:
        assert [s["sha256"] for s in manifest["splits"][split]["shards"]] == \
            [s["sha256"] for s in storage.read_manifest(again)["splits"][split]["shards"]]


def test_mixture_writes_components_and_samples_them_by_weight(tmp_path):
    out = str(tmp_path / "mix")
    cfg = _data(source="mixture", mixture=("digits:1", "prior:3"), train_episodes=400,
                test_episodes=40)
    manifest = episodes.write_episodes(cfg, out, prior_config=SMALL)
    assert [(e["source"], e["weight"]) for e in manifest["mixture"]] == \
        [("digits", 1.0), ("prior", 3.0)]
    assert manifest["splits"]["train"]["episodes"] == 400
    sub = [storage.read_manifest(os.path.join(out, e["directory"])) for e in manifest["mixture"]]
    assert [m["splits"]["train"]["episodes"] for m in sub] == [100, 300]
    eps = pipeline.open_episodes(out)
    assert eps.mixture and eps.weights == (1.0, 3.0)
    # which component each episode came from: prior inputs come from 6 stored
    # columns (rank <= 6 across the episode), digits from 64
    ds = pipeline.make_dataset(eps, "train", 40, seed=1)
    ranks = [np.linalg.matrix_rank(e) for f, _ in ds.take(5) for e in f["inputs"].numpy()]
    share = np.mean([r <= 6 for r in ranks])
    assert 0.6 < share < 0.9  # 3/4 expected
    # finite splits go through every episode of every component once
    n = sum(int(t.shape[0]) for _, t in pipeline.make_dataset(
        eps, "test", 16, shuffle=False, repeat=False, drop_remainder=False))
    assert n == 40
    assert inspect.inspect_directory(out)["problems"] == []


def test_a_mixtures_stream_does_not_depend_on_the_global_seed(tmp_path):
    """Training sets TensorFlow's global seed; the main job then reads the meta-test
    split in the same process: it must be the same episodes `pipelines.evaluate`
    reads in a fresh one."""
    import tensorflow as tf

    out = str(tmp_path / "mix")
    episodes.write_episodes(_data(source="mixture", mixture=("digits:1", "prior:1"),
                                  train_episodes=64, test_episodes=32), out,
                            prior_config=SMALL)
    eps = pipeline.open_episodes(out)

    def labels(global_seed):
        tf.random.set_seed(global_seed)
        ds = pipeline.make_dataset(eps, "test", 32, shuffle=False, repeat=False,
                                   drop_remainder=False)
        return np.concatenate([t.numpy() for _, t in ds])

    first = labels(0)
    assert np.array_equal(first, labels(12345))
    assert len(first) == 32
    choices = list(pipeline.component_choices((1.0, 3.0), seed=7).take(2000).as_numpy_iterator())
    assert 0.70 < np.mean(choices) < 0.80          # weight 3 of 4 on component 1
    assert choices == list(pipeline.component_choices((1.0, 3.0), seed=7).take(2000)
                           .as_numpy_iterator())


def test_mixture_curriculum_bias_fixes_the_permutation_of_the_first_episodes(tmp_path):
    out = str(tmp_path / "mix")
    episodes.write_episodes(_data(source="mixture", mixture=("digits:1", "prior:1")), out,
                            prior_config=SMALL)
    eps = pipeline.open_episodes(out)
    bias = pipeline.make_bias_variable(1.0)
    a = next(iter(pipeline.make_dataset(eps, "train", 8, bias=bias, seed=3)))
    bias.assign(0.0)
    b = next(iter(pipeline.make_dataset(eps, "train", 8, bias=bias, seed=3)))
    np.testing.assert_array_equal(a[0]["inputs"], b[0]["inputs"])  # same episodes
    assert not np.array_equal(a[1], b[1])                           # other permutations
    with pytest.raises(ValueError, match="bias_mode='task' with a mixture"):
        pipeline.make_dataset(eps, "train", 8, bias=bias, bias_mode="task")


def test_mixture_errors_name_the_problem(tmp_path):
    for mixture, match in [((), "needs data.mixture"),
                           (("digits",), "'digits' is not SOURCE:WEIGHT"),
                           (("digits:0",), "positive weight"),
                           (("digits:1", "digits:2"), "names 'digits' twice"),
                           (("functions:sine:1",), "not a mixture or regression episodes")]:
        with pytest.raises(ValueError, match=match):
            episodes.write_episodes(_data(source="mixture", mixture=mixture),
                                    str(tmp_path / "m"))
    with pytest.raises(ValueError, match="data.mixture=.*data.source='digits'"):
        episodes.write_episodes(_data(mixture=("digits:1",)), str(tmp_path / "m"))


def test_a_changed_or_missing_component_is_refused(tmp_path):
    out = str(tmp_path / "mix")
    manifest = episodes.write_episodes(_data(source="mixture", mixture=("digits:1", "prior:1")),
                                       out, prior_config=SMALL)
    sub = os.path.join(out, manifest["mixture"][1]["directory"])
    episodes.write_episodes(_data(source="prior", seed=5), sub, overwrite=True,
                            prior_config=SMALL)
    with pytest.raises(storage.CorruptShardError, match="is not the set that manifest names"):
        pipeline.open_episodes(out)
    assert any("is not the one" in p for p in inspect.inspect_directory(out)["problems"])


def test_a_mixture_trains_and_its_settings_come_from_the_manifest(tmp_path):
    from gpicl_tf.training import train

    out = str(tmp_path / "mix")
    cfg = override(get_preset("smoke"), ["data.source=mixture", "data.mixture=digits:1,prior:1",
                                         "prior.max_features=6", "prior.max_classes=5",
                                         "model.layout=pfn", "train.steps=10",
                                         "train.bias_fraction=0.5"])
    episodes.ensure_episodes(cfg.data, out, cfg.functions, cfg.prior)
    episodes.ensure_episodes(cfg.data, out, cfg.functions, cfg.prior)  # reused, not rewritten
    with pytest.raises(ValueError, match="prior.max_features=6; this run asks for 32"):
        episodes.ensure_episodes(cfg.data, out, cfg.functions, PriorConfig())
    plain = override(get_preset("smoke"), ["model.layout=pfn", "train.steps=10"])
    summary = train.run(plain, str(tmp_path / "run"), out, verbose=0)
    assert np.isfinite(summary["final"]["loss"])
    with open(tmp_path / "run" / train.CONFIG_FILE) as f:
        saved = json.load(f)["config"]
    assert saved["data"]["mixture"] == ["digits:1", "prior:1"]
    assert saved["prior"]["max_features"] == 6


def test_a_mixture_does_not_replace_a_components_episode_set_without_overwrite(tmp_path):
    out = str(tmp_path / "mix")
    cfg = _data(source="mixture", mixture=("digits:1", "prior:1"), train_episodes=64,
                test_episodes=16)
    name = episodes.mixture_components(cfg)[0][0]
    episodes.write_episodes(_data(train_episodes=200), os.path.join(out, name))   # the user's
    with pytest.raises(FileExistsError, match=f"{name}' already holds an episode set .*"
                                              "--overwrite"):
        episodes.write_episodes(cfg, out, prior_config=SMALL)
    assert storage.read_manifest(os.path.join(out, name))["splits"]["train"]["episodes"] == 200
    assert not os.path.exists(os.path.join(out, storage.MANIFEST))
    episodes.write_episodes(cfg, out, prior_config=SMALL, overwrite=True)
    assert storage.read_manifest(os.path.join(out, name))["splits"]["train"]["episodes"] == 32
    # a mixture writer that died before its manifest: the same command writes it again
    os.remove(os.path.join(out, storage.MANIFEST))
    episodes.write_episodes(cfg, out, prior_config=SMALL)
    assert pipeline.open_episodes(out).mixture
    sizes = episodes.split_sizes(out, storage.read_manifest(out))   # make_episodes' summary
    assert sizes["train"]["episodes"] == 64 and sizes["train"]["shards"] >= 2
    assert sizes["train"]["bytes"] > 0
