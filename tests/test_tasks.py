"""The task registry, the episode kinds and layouts below it (layering: tests/test_layers.py)."""

import pytest

from gpicl_tf import tasks
from gpicl_tf.config import get_preset
from gpicl_tf.data.schema import EpisodeSchema


def test_sources_map_to_their_task():
    assert tasks.for_source("digits").name == "classification"
    assert tasks.for_source("prior").name == "classification"
    assert tasks.for_source("mixture").name == "classification"
    assert tasks.for_source("functions:gp").name == "regression"
    assert tasks.for_source("functions:gp").label("functions:gp") == "gp"
    with pytest.raises(ValueError, match="task='ranking' is not one of"):
        tasks.get("ranking")
    with pytest.raises(ValueError, match="task='ranking' is not one of"):
        EpisodeSchema(10, 4, 3, task="ranking")


def test_capabilities_follow_the_task():
    c, r = tasks.get("classification"), tasks.get("regression")
    assert c.curriculum and c.exportable and c.tunable and c.device_episodes
    assert not (r.curriculum or r.exportable or r.tunable or r.device_episodes)
    cfg = get_preset("functions_smoke")
    with pytest.raises(ValueError, match="bias_fraction=0.5: .* regression episodes take none"):
        r.check_training(type(cfg.train)(bias_fraction=0.5))
    with pytest.raises(ValueError, match="episodes_on_device=True: regression episodes"):
        r.check_training(type(cfg.train)(episodes_on_device=True))
    c.check_training(type(cfg.train)(bias_fraction=0.5, episodes_on_device=True))


def test_schemas_take_their_shapes_from_the_task():
    c = EpisodeSchema(12, 4, 3)
    assert c.token_size == 7 and set(c.record_spec()) == {"episode_id", "task_id", "indices"}
    stored = EpisodeSchema(12, 4, 3, stored_dim=6)
    assert stored.record_spec()["x"].shape == [72]
    r = EpisodeSchema(12, 2, 0, task="regression", num_queries=3)
    assert r.token_size == 4 and r.target_spec().shape.as_list() == [None, None, 2]
    with pytest.raises(ValueError, match="num_queries=0 must be in"):
        EpisodeSchema(12, 2, 0, task="regression")
    with pytest.raises(ValueError, match="num_classes=1 must be at least 2"):
        EpisodeSchema(12, 2, 1)
