"""Episodes built on the device equal the host pipeline's, bias included."""

import numpy as np
import pytest
import tensorflow as tf

from gpicl_tf.data import device_episodes, pipeline


@pytest.mark.parametrize("fraction,mode", [(0.0, "permutation"), (0.5, "permutation"),
                                           (0.5, "task"), (1.0, "task")])
def test_device_built_batches_equal_host_built_batches(smoke_episodes, fraction, mode):
    eps = pipeline.open_episodes(smoke_episodes)
    bias = pipeline.make_bias_variable(fraction)
    host = pipeline.make_dataset(eps, "train", 8, bias=bias, bias_mode=mode, seed=3, skip=5)
    records = device_episodes.record_dataset(eps, "train", 8, bias=bias, seed=3, skip=5)
    builder = device_episodes.EpisodeBuilder(eps, "train", bias_mode=mode)
    build = tf.function(builder)          # as in the train step (outside XLA: see loop.Steps)
    for (h_features, h_targets), rec in zip(host.take(3), records.take(3)):
        features, targets = build(rec)
        np.testing.assert_allclose(features["inputs"], h_features["inputs"], atol=2e-5)
        np.testing.assert_array_equal(features["labels"], h_features["labels"])
        np.testing.assert_array_equal(targets, h_targets)
        assert rec["biased"].numpy().sum() == round(fraction * 8)


def test_records_are_small(smoke_episodes):
    eps = pipeline.open_episodes(smoke_episodes)
    rec = next(iter(device_episodes.record_dataset(eps, "train", 8)))
    assert set(rec) == {"indices", "task_id", "biased"}
    assert rec["indices"].shape == (8, eps.schema.episode_length)


def test_function_sets_are_refused(tmp_path):
    import dataclasses

    from gpicl_tf.config import get_preset
    from gpicl_tf.data import episodes

    cfg = get_preset("functions_smoke").data
    episodes.write_episodes(dataclasses.replace(cfg, train_episodes=16, test_episodes=4),
                            str(tmp_path / "f"))
    with pytest.raises(ValueError, match="holds regression episodes"):
        device_episodes.record_dataset(pipeline.open_episodes(str(tmp_path / "f")), "train", 4)
