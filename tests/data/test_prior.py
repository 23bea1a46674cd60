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


# ---- the classic mixture stays byte-identical; TabICL's mixture (prior_scm) -------------

def _digest(arrays) -> str:
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _task_arrays(cfg, n_tasks=12, rows=40):
    for i in range(n_tasks):
        x, y = prior.task(0, i, cfg, 10).sample(np.random.default_rng(i), rows)
        yield from (x, y)


def _batch_arrays(batches):
    for b in batches:
        for key in sorted(b):
            yield from (np.frombuffer(key.encode(), np.uint8), b[key])


def test_the_default_generators_are_those_before_the_tabicl_mixture():
    """Digests computed with the prior of commit a13b7b5, before mixture= and
    classes_on_both_sides existed: PriorConfig(), broad_prior and the cell presets'
    training and validation batches (the released tabular builds read these)."""
    from gpicl_tf.config.cell import broad_prior, get_cell_preset
    from gpicl_tf.data import tables

    smoke, cpu = get_cell_preset("cell_smoke"), get_cell_preset("cell_cpu")
    every = PriorConfig(kinds=("mlp", "scm", "tree"), max_features=12,
                        discrete_heavy_fraction=0.5, missing_fraction=0.5)
    got = {
        "default": _digest(_task_arrays(PriorConfig())),
        "broad": _digest(_task_arrays(broad_prior(max_features=12))),
        "every classic knob": _digest(_task_arrays(every)),
        "cell_smoke batches": _digest(_batch_arrays(tables.table_batch(smoke, s)
                                                    for s in range(6))),
        "cell_smoke validation": _digest(_batch_arrays(tables.validation_batches(smoke))),
        "cell_cpu batches": _digest(_batch_arrays(tables.table_batch(cpu, s) for s in range(2))),
    }
    assert got == {
        "default": "f6025dc74ac3122c00c320cc2eec85325b3f2d63ba7a6b185d85dab406b73e72",
        "broad": "1d3db74b17e11e351fe5ea4d51dc29e1863bd0ff667792e521a7edb5dd8e8bef",
        "every classic knob":
            "39fe67fd65384a59f32a0e52c91f50b72af9729ee0207756dae4aaca562ab8b0",
        "cell_smoke batches":
            "c798aa5904f131d83b5711283de602774b3c9cc506039b9ef85b339fd7dc0d8a",
        "cell_smoke validation":
            "c9f093dbb6efe16405836583e68f0e2821bead90b7f4c5c45b319ae505741d9e",
        "cell_cpu batches": "f357a2b7d5956be86f19209db213c493a9611c78fbe183e3f3835bef91206baf",
    }


def _tabicl(**kw):
    from gpicl_tf.config.cell import tabicl_prior

    return tabicl_prior(**{"max_features": 6, "missing_fraction": 0.0, **kw})


def test_tabicl_tasks_mix_mlp_and_tree_scms_and_are_fixed_functions_of_their_id():
    cfg = _tabicl(min_features=3, max_features=3)
    tasks = [prior.task(0, i, cfg, 10) for i in range(120)]
    share = np.mean([t.kind == "tree_scm" for t in tasks])
    assert {t.kind for t in tasks} == {"mlp_scm", "tree_scm"} and 0.18 < share < 0.42
    counts = np.array([t.num_classes for t in tasks])
    assert 0.35 < np.mean(counts == 2) < 0.75 and counts.max() == 10   # binary half the time
    a, b = prior.task(0, 7, cfg, 10), prior.task(0, 7, cfg, 10)
    for u, v in zip(a.sample(np.random.default_rng(1), 30), b.sample(np.random.default_rng(1), 30)):
        np.testing.assert_array_equal(u, v)
    x, y = prior.episode(a, np.random.default_rng(2), 20, 6, cfg.clip)   # the row learner's
    assert x.shape == (20, 6) and np.all(np.isfinite(x)) and y.max() < a.num_classes


def test_both_mixtures_draw_each_task_from_one_of_them_by_the_share():
    kinds = {}
    for share in (0.0, 0.5, 1.0):
        cfg = _tabicl(mixture="both", tabicl_share=share, kinds=("mlp", "scm", "tree"))
        kinds[share] = [prior.task(0, i, cfg, 10).kind for i in range(200)]
    tabicl = {"mlp_scm", "tree_scm"}
    assert set(kinds[0.0]) == {"mlp", "scm", "tree"} and set(kinds[1.0]) == tabicl
    assert 0.4 < np.mean([k in tabicl for k in kinds[0.5]]) < 0.6
    with pytest.raises(ValueError, match="prior.tabicl_share=1.5"):
        _tabicl(mixture="both", tabicl_share=1.5)
    with pytest.raises(ValueError, match="prior.mixture='some'"):
        _tabicl(mixture="some")


def test_tabicl_categorical_columns_are_integer_codes_of_their_drawn_cardinality():
    cfg = _tabicl(min_features=40, max_features=40, categorical_fraction=0.5)
    fractions, full = [], []
    for i in range(3):
        task = prior.task(0, i, cfg, 10)
        x, _ = task.sample(np.random.default_rng(i), 3000)
        cat = np.flatnonzero(task.levels)
        fractions.append(len(cat) / 40)
        for j in cat:
            assert np.all(x[:, j] == np.round(x[:, j]))
            assert 0 <= x[:, j].min() and x[:, j].max() < task.levels[j]
            full.append(len(np.unique(x[:, j])) == task.levels[j])
        assert 2 <= task.levels[cat].min() and task.levels.max() <= cfg.categorical_max_levels
        numeric = np.flatnonzero(task.levels == 0)
        assert np.mean([len(np.unique(x[:, j])) > 30 for j in numeric]) > 0.6
    assert 0.3 < np.mean(fractions) < 0.7
    assert np.mean(full) > 0.8           # each code holds reference values: all of them occur


def _class_shares(cfg, n_tasks=12, rows=4000):
    shares = []
    for i in range(n_tasks):
        task = prior.task(0, i, cfg, 10)
        _, y = task.sample(np.random.default_rng(i), rows)
        shares.append(np.bincount(y, minlength=task.num_classes) / rows)
    return shares


def test_tabicl_class_thresholds_by_rank_follow_the_proportions_and_by_value_are_skewed():
    common = dict(min_features=4, max_features=4, min_classes=4, max_classes=4,
                  tree_fraction=0.0)
    by_rank = _class_shares(_tabicl(rank_fraction=1.0, class_concentration=500.0, **common))
    # near-equal proportions: quantiles of the target on the task's 256 reference rows
    deviation = np.abs(np.array(by_rank) - 0.25).max(1)
    assert deviation.max() < 0.1 and deviation.mean() < 0.05, deviation
    by_value = _class_shares(_tabicl(rank_fraction=0.0, **common))
    assert np.mean([s.max() for s in by_value]) > np.mean([s.max() for s in by_rank]) + 0.1
    for s in by_value:                   # a model is redrawn until two classes hold 1%
        assert (s >= 0.005).sum() >= 2


def test_every_class_occurs_on_both_sides_of_each_table():
    from gpicl_tf.config.cell import broad_prior, get_cell_preset
    from gpicl_tf.data import tables

    smoke = get_cell_preset("cell_smoke")
    low = dataclasses.replace(smoke.tables, min_train_fraction=0.1)
    for p in (_tabicl(max_features=8, missing_fraction=0.2),
              broad_prior(max_features=8, classes_on_both_sides=True)):   # either mixture
        cfg = dataclasses.replace(smoke, prior=p, tables=low)
        for step in range(8):
            b = tables.table_batch(cfg, step)
            for fit, test in zip(b["context_y"], b["query_y"]):
                assert set(fit.tolist()) == set(test.tolist()) and len(set(fit.tolist())) >= 2
            assert np.all(b["query_weight"] == 1.0)
    task = prior.task(0, 1, _tabicl(), 10)
    with pytest.raises(ValueError, match="train=10 training rows must be in"):
        task.sample(np.random.default_rng(0), 10, train=10)


def test_both_sides_order_keeps_the_frequent_classes_and_drops_singletons():
    from gpicl_tf.data import prior_task

    y = np.array([0] * 6 + [1] * 3 + [2] + [3] * 2)
    order = prior_task.both_sides_order(np.random.default_rng(0), y, 8, 3)
    fit, test = set(y[order[:3]].tolist()), set(y[order[3:]].tolist())
    assert len(set(order.tolist())) == 8 and fit == test and 2 not in fit
    assert prior_task.both_sides_order(np.random.default_rng(0), y, 12, 3) is None  # too few


def test_tabicl_tables_have_missing_values_at_their_drawn_rate():
    cfg = _tabicl(min_features=20, max_features=20, missing_fraction=1.0, missing_rate_max=0.4)
    for i in range(4):
        task = prior.task(0, i, cfg, 10)
        x, _ = task.sample(np.random.default_rng(i), 3000)
        holed = np.isnan(x)
        assert not holed[:, ~task._missing_columns].any()
        if task._missing_columns.any():
            rate = holed[:, task._missing_columns].mean()
            assert abs(rate - task._missing_rate) < 0.02 and task._missing_rate <= 0.4
    some = _tabicl(missing_fraction=0.3)
    share = np.mean([prior.task(0, i, some, 10)._missing_rate > 0 for i in range(80)])
    assert 0.12 < share < 0.5


def test_a_tree_scm_node_is_piecewise_constant_in_its_parents():
    """A node's forest, along one parent with the others fixed, changes value only
    where the parent crosses one of its thresholds on that parent, and no reference
    value sits on a threshold (the splits fall between values, as a fitted tree's)."""
    from gpicl_tf.data import prior_scm

    rng = np.random.default_rng(0)
    parents = rng.standard_normal((256, 3))
    forest = prior_scm.Forest(rng, parents, units=2, trees=3, depth=3)
    grid = np.tile(parents[:1], (4001, 1))
    grid[:, 0] = np.linspace(-3, 3, 4001)
    out = forest(grid)                                      # [4001, 2]
    on_0 = forest.thresholds[forest.features == 0]
    crossed = np.array([np.any((a < on_0) & (on_0 <= b)) for a, b in zip(grid[:-1, 0],
                                                                          grid[1:, 0])])
    changed = np.any(out[1:] != out[:-1], axis=1)
    assert changed.any() and not np.any(changed & ~crossed)
    assert len(np.unique(out[:, 0])) <= len(np.unique(on_0)) + 1
    assert not np.isin(forest.thresholds, parents).any()
    # a whole tree SCM: its noise-free target is unchanged by tiny moves of the features
    cfg = _tabicl(tree_fraction=1.0, min_features=4, max_features=4)
    scm = prior.task(0, 2, cfg, 10)._latent
    x = scm.causes(np.random.default_rng(1), 500)

    def clean(v):
        for layer, _ in scm.layers:
            v = layer(v)
        return v
    assert np.mean(clean(x) == clean(x + 1e-9)) > 0.99


@pytest.mark.parametrize("change, match", [
    ({"mixture": "tabpfn"}, "prior.mixture='tabpfn' must be one of"),
    ({"tree_fraction": 1.5}, "prior.tree_fraction=1.5"),
    ({"categorical_fraction": -0.1}, "prior.categorical_fraction=-0.1"),
    ({"categorical_max_levels": 1}, "prior.categorical_max_levels=1"),
    ({"rank_fraction": 2.0}, "prior.rank_fraction=2.0"),
    ({"scm_layers_max": 1}, "prior.scm_layers_max=1"),
    ({"scm_hidden_max": 3}, "prior.scm_hidden_max=3"),
    ({"classes_on_both_sides": "yes"}, "prior.classes_on_both_sides='yes'"),
])
def test_bad_tabicl_settings_are_named(change, match):
    with pytest.raises(ValueError, match=match):
        PriorConfig(**change)


def test_tabicl_prior_is_selected_by_config_and_overrides():
    from gpicl_tf.config import override
    from gpicl_tf.config.cell import CellRunConfig, tabicl_prior

    cfg = CellRunConfig(prior=tabicl_prior())
    assert CellRunConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert cfg.prior.mixture == "tabicl" and cfg.prior.classes_on_both_sides
    assert (cfg.prior.min_features, cfg.prior.max_features, cfg.prior.max_classes) == (2, 100, 10)
    plain = override(CellRunConfig(), ["prior.mixture=tabicl",
                                            "prior.classes_on_both_sides=true"])
    assert plain.prior.mixture == "tabicl" and plain.prior.classes_on_both_sides is True
    with pytest.raises(ValueError, match="prior.classes_on_both_sides='maybe'"):
        override(CellRunConfig(), ["prior.classes_on_both_sides=maybe"])


def test_the_prior_speed_benchmark_reports_both_mixtures(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("prior_speed", "benchmarks/prior_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(["--preset", "cell_smoke", "--batches", "2", "--repeats", "1",
                          "--blas_threads", "1"])
    assert set(results) == {"classic", "tabicl"}
    for r in results.values():
        assert r["tables_s"] > 0 and r["rows_s"] >= r["tables_s"] and r["tables"] >= 2
    assert "| tabicl |" in capsys.readouterr().out
