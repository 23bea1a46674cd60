"""One registration per kind of episode (`config.kinds`): each layer finds its part there."""

import pytest

from gpicl_tf.config import kinds as registry
from gpicl_tf.data import kinds as data_kinds
from gpicl_tf.data import schema
from gpicl_tf.data.kinds.base import EpisodeKind
from gpicl_tf.tasks.base import Task
from gpicl_tf.training import objectives


@pytest.mark.parametrize("name", registry.names())
def test_every_layer_finds_its_part_of_each_kind(name):
    from gpicl_tf import tasks

    assert isinstance(schema.layout_of(name), schema.Layout)
    episodes = data_kinds.get(name)
    assert isinstance(episodes, EpisodeKind) and episodes.name == name
    s = schema.EpisodeSchema(episode_length=4, input_size=2, task=name,
                             **({"num_classes": 0, "num_queries": 2} if name == "regression"
                                else {"num_classes": 3}))
    assert data_kinds.of(s) is episodes
    assert isinstance(objectives.of(s), objectives.Objective)
    task = tasks.get(name)
    assert isinstance(task, Task) and task.name == name and task.kind is episodes
    assert task.objective is objectives.of(s)
    assert registry.learners(name) and all(callable(registry.learner(name, a))
                                           for a in registry.learners(name))
    assert callable(registry.part(name, "model_check"))


def test_the_kinds_and_their_learners():
    assert registry.names() == ("classification", "regression")
    assert registry.DEFAULT == schema.DEFAULT_TASK == "classification"
    assert registry.learners("classification") == ("transformer", "lstm", "mlp", "maml", "vsml")
    assert registry.learner("regression", "lstm") is None


def test_bad_names_and_references_are_named():
    with pytest.raises(ValueError, match=r"task='ranking' is not one of \('classification', "):
        registry.get("ranking")
    with pytest.raises(ValueError, match="task='ranking' is not one of"):
        schema.EpisodeSchema(episode_length=4, input_size=2, num_classes=3, task="ranking")
    with pytest.raises(ValueError, match="part='loss' is not one of"):
        registry.part("classification", "loss")
    spec = registry.get("regression")
    with pytest.raises(ValueError, match="kind 'regression' is registered already"):
        registry.register(spec)
    monkeypatched = registry.KindSpec(name="ranking", layout="gpicl_tf.data.schema:NOPE",
                                      episodes=spec.episodes, learners=spec.learners,
                                      model_check=spec.model_check, objective=spec.objective,
                                      task=spec.task)
    registry._KINDS["ranking"] = monkeypatched
    try:
        with pytest.raises(ValueError, match=r"ranking.layout='gpicl_tf.data.schema:NOPE' "
                                             "names nothing importable"):
            registry.part("ranking", "layout")
    finally:
        del registry._KINDS["ranking"]
    with pytest.raises(ValueError, match=r"ranking.task='tasks.ranking' is not 'module:attr"):
        registry.KindSpec(name="ranking", layout=spec.layout, episodes=spec.episodes,
                          learners=spec.learners, model_check=spec.model_check,
                          objective=spec.objective, task="tasks.ranking")


def test_a_new_kind_is_one_registration(monkeypatch):
    """A kind registered once (here one that reuses regression's parts) is found
    by the schema, the data stages, the objectives and the learner builder."""
    from gpicl_tf.config import ModelConfig
    from gpicl_tf.models import sequence_models

    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))
    spec = registry.get("regression")
    registry.register(registry.KindSpec(
        name="smooth", layout=spec.layout, episodes=spec.episodes, learners=spec.learners,
        model_check=spec.model_check, objective=spec.objective, task=spec.task))
    s = schema.EpisodeSchema(episode_length=6, input_size=1, num_classes=0, num_queries=2,
                             task="smooth")
    assert s.layout is schema.REGRESSION_LAYOUT
    assert objectives.of(s) is objectives.REGRESSION
    model = sequence_models.build_model(ModelConfig(layout="pfn", model_size=8, num_layers=1,
                                                    num_heads=2, key_size=4), s)
    assert model.count_params() > 0
    with pytest.raises(ValueError, match=r"arch='maml' does not learn smooth episodes|"
                                         r"function regression episodes are learned by"):
        sequence_models.check_model_config(ModelConfig(arch="maml"), s)
