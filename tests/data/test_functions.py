import dataclasses

import numpy as np
import pytest

from gpicl_tf.config import FunctionConfig
from gpicl_tf.data import episodes, functions, pipeline, storage
from gpicl_tf.data.schema import INPUTS, QUERY, VALUES


@pytest.mark.parametrize("family", functions.FAMILIES)
@pytest.mark.parametrize("d", [1, 3])
def test_a_task_is_the_same_function_everywhere_and_differs_between_ids(family, d):
    cfg = FunctionConfig()
    x = np.random.default_rng(0).uniform(-1, 1, (50, d))
    f = functions.task_function(family, 0, 7, d, cfg)
    again = functions.task_function(family, 0, 7, d, cfg)
    other = functions.task_function(family, 0, 8, d, cfg)
    other_seed = functions.task_function(family, 1, 7, d, cfg)
    assert f(x).shape == (50,)
    np.testing.assert_array_equal(f(x), again(x))
    assert not np.allclose(f(x), other(x))
    assert not np.allclose(f(x), other_seed(x))
    assert np.all(np.isfinite(f(x)))


def test_mlp_tasks_are_standardised_then_scaled_within_the_configured_range():
    cfg = FunctionConfig(mlp_output_min=0.5, mlp_output_max=0.5)
    x = np.random.default_rng(1).uniform(-1, 1, (4000, 2))
    stds = [functions.task_function("mlp", 0, t, 2, cfg)(x).std() for t in range(20)]
    np.testing.assert_allclose(stds, 0.5, rtol=0.15)


def test_sine_and_linear_follow_their_formulas():
    cfg = FunctionConfig(sine_amplitude_min=0.3, sine_amplitude_max=0.3,
                         sine_frequency_min=1.0, sine_frequency_max=1.0)
    x = np.linspace(-1, 1, 401)[:, None]
    y = functions.task_function("sine", 0, 3, 1, cfg)(x)
    assert abs(y.max() - 0.3) < 1e-3 and abs(y.min() + 0.3) < 1e-3
    np.testing.assert_allclose(y[:200], y[200:400], atol=1e-9)  # period 1 in x
    lin = functions.task_function("linear", 0, 3, 1, cfg)(x)
    np.testing.assert_allclose(np.diff(lin, 2), 0, atol=1e-12)


def test_gp_samples_have_about_unit_variance():
    x = np.random.default_rng(2).uniform(-1, 1, (64, 1))
    values = np.concatenate([functions.task_function("gp", 0, t, 1, FunctionConfig())(x)
                             for t in range(200)])
    assert 0.8 < values.var() < 1.2


def test_unknown_family_and_bad_settings_are_named():
    with pytest.raises(ValueError, match="'cosine'"):
        functions.family_of("functions:cosine")
    assert functions.family_of("digits") is None
    with pytest.raises(ValueError, match="num_queries=24"):
        functions.check_config(FunctionConfig(num_queries=24), 1, 24)
    with pytest.raises(ValueError, match=r"mlp_activations=\('tanh', 'gelu'\)"):
        functions.check_config(FunctionConfig(mlp_activations="tanh,gelu"), 1, 24)
    with pytest.raises(ValueError, match="gp_length_min=0.0"):
        functions.check_config(FunctionConfig(gp_length_min=0.0), 1, 24)
    with pytest.raises(ValueError, match="noise_std=-0.1"):
        functions.check_config(FunctionConfig(noise_std=-0.1), 1, 24)


def test_function_episodes_go_through_the_same_writer_manifest_and_reader(
        function_episodes, functions_config):
    eps = pipeline.open_episodes(function_episodes, expect={"input_size": 1})
    assert eps.schema.task == "regression" and eps.schema.num_queries == 8
    assert eps.manifest["source"]["family"] == "mlp"
    assert eps.manifest["base"] == {}
    assert set(eps.shards) == {"train", "test", "seen", "valid"}
    features, targets = next(iter(pipeline.make_dataset(eps, "train", 16)))
    n = functions_config.data.episode_length
    assert features[INPUTS].shape == (16, n, 1)
    assert targets.shape == (16, n, 2)
    query = features[QUERY].numpy()
    np.testing.assert_array_equal(query.sum(1), 8)
    np.testing.assert_array_equal(query, targets[..., 1].numpy())
    values, y = features[VALUES].numpy(), targets[..., 0].numpy()
    assert np.all(values[query == 1] == 0)                 # a query's value is hidden
    np.testing.assert_array_equal(values[query == 0], y[query == 0])
    assert np.all(np.abs(features[INPUTS].numpy()) <= 1)


def test_function_episodes_are_byte_identical_and_noise_is_as_configured(tmp_path,
                                                                         functions_config):
    data = functions_config.data
    fcfg = dataclasses.replace(functions_config.functions, noise_std=0.2)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    episodes.write_episodes(data, a, functions_config=fcfg)
    episodes.write_episodes(data, b, functions_config=fcfg)
    for split in ("train", "test"):
        for sa, sb in zip(storage.read_manifest(a)["splits"][split]["shards"],
                          storage.read_manifest(b)["splits"][split]["shards"]):
            assert sa["sha256"] == sb["sha256"]
    records = pipeline.read_records(pipeline.open_episodes(a), "train")
    noise = np.concatenate([r["y"] - r["clean"] for r in records])
    assert abs(noise.std() - 0.2) < 0.02


def test_unseen_tasks_are_disjoint_from_training_tasks(function_episodes):
    eps = pipeline.open_episodes(function_episodes)
    train = {int(r["task_id"]) for r in pipeline.read_records(eps, "train")}
    test = {int(r["task_id"]) for r in pipeline.read_records(eps, "test")}
    seen = {int(r["task_id"]) for r in pipeline.read_records(eps, "seen")}
    assert not train & test
    assert max(seen) < 2 ** eps.manifest["config"]["log2_num_tasks"]


def test_regression_needs_no_classes_and_a_known_family(tmp_path, functions_config):
    with pytest.raises(ValueError, match="num_classes=10"):
        episodes.write_episodes(dataclasses.replace(functions_config.data, num_classes=10),
                                str(tmp_path / "a"))
    with pytest.raises(ValueError, match="'spline'"):
        episodes.write_episodes(dataclasses.replace(functions_config.data,
                                                    source="functions:spline"),
                                str(tmp_path / "b"))
    assert not (tmp_path / "a").exists() or not (tmp_path / "a" / "manifest.json").exists()


def test_inspect_reads_a_function_regression_set(function_episodes, functions_config):
    from gpicl_tf.data import inspect

    report = inspect.inspect_directory(function_episodes)
    assert report["problems"] == []
    assert report["summary"]["splits"]["train"]["episodes"] == \
        functions_config.data.train_episodes
    assert "all files match the manifest" in inspect.format_report(report)
