"""Released models are package data, found through importlib.resources."""

import os

import pytest

from gpicl_tf import released


def test_model_dir_is_inside_the_package():
    import gpicl_tf

    where = released.model_dir("general")
    package = os.path.dirname(os.path.abspath(gpicl_tf.__file__))
    assert where == os.path.join(package, "released", "general")
    assert os.path.exists(os.path.join(where, "1", "saved_model.pb"))
    assert os.path.exists(os.path.join(where, "1", "assets.extra", "tf_serving_warmup_requests"))
    assert "general" in released.available()


def test_a_bad_name_is_an_error_naming_it():
    for bad in ("../general", "", "general/1", None):
        with pytest.raises(ValueError, match="released model name"):
            released.model_dir(bad)


def test_the_estimator_defaults_to_the_released_models(monkeypatch):
    """With no model_path and no $GPICL_MODEL, the estimator loads the newest version of
    the released `general` model (the row Transformer of general_cpu, its model card's
    sizes) and answers exactly as with that path given."""
    import json

    import numpy as np
    from sklearn.datasets import load_iris

    from gpicl_tf import sklearn as sk

    monkeypatch.delenv("GPICL_MODEL", raising=False)
    path = sk.default_model_path()
    versions = [v for v in os.listdir(released.model_dir("general")) if v.isdigit()]
    assert path == os.path.join(released.model_dir("general"), max(versions, key=int))
    with open(os.path.join(path, "gpicl_config.json")) as f:
        meta = json.load(f)
    model, data = meta["config"]["model"], meta["config"]["data"]
    assert meta.get("backbone", "row") == "row" and data["source"] == "mixture"
    assert (model["arch"], model["layout"], model["model_size"], model["num_layers"]) == \
        ("transformer", "pfn", 128, 3)
    assert meta["max_context"] == 512 and meta["schema"]["num_classes"] == 10
    X, y = load_iris(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:60], order[60:90]
    default = sk.GPICLClassifier(n_ensemble=2).fit(X[train], y[train])
    explicit = sk.GPICLClassifier(path, n_ensemble=2).fit(X[train], y[train])
    assert default.model_path_ == path
    np.testing.assert_array_equal(default.predict_proba(X[test]),
                                  explicit.predict_proba(X[test]))
    assert default.score(X[test], y[test]) > 0.5           # iris: chance is 1/3
    version = os.path.join(sk.GENERAL_MODEL_DIR, "1")
    monkeypatch.setenv("GPICL_MODEL", version)             # the user's choice still wins
    assert sk.default_model_path() == version
    monkeypatch.setenv("GPICL_MODEL", sk.TABULAR_MODEL_DIR)   # a model directory: its newest
    newest = max((v for v in os.listdir(sk.TABULAR_MODEL_DIR) if v.isdigit()), key=int)
    assert sk.default_model_path() == os.path.join(sk.TABULAR_MODEL_DIR, newest)


def test_version_comes_from_the_package():
    import gpicl_tf

    assert isinstance(gpicl_tf.__version__, str) and gpicl_tf.__version__[0].isdigit()
