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
    the released `tabular` model (the cell learner of the cell_recipe and cell_mixed presets,
    its model card's sizes) and answers exactly as with that path given."""
    import json

    import numpy as np
    from sklearn.datasets import load_iris

    from gpicl_tf import sklearn as sk

    monkeypatch.delenv("GPICL_MODEL", raising=False)
    path = sk.default_model_path()
    versions = [v for v in os.listdir(released.model_dir("tabular")) if v.isdigit()]
    assert path == os.path.join(released.model_dir("tabular"), max(versions, key=int))
    with open(os.path.join(path, "gpicl_config.json")) as f:
        meta = json.load(f)
    model = meta["config"]["model"]
    assert meta["backbone"] == "cell"
    assert (model["model_size"], model["num_layers"], model["decoder"], model["thinking_rows"],
            tuple(model["feature_groups"])) == (96, 3, "mean", 16, (1, 3, 7, 15))
    assert meta["max_context"] == 1024 and model["num_classes"] == 10
    X, y = load_iris(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:60], order[60:90]
    default = sk.GPICLClassifier(n_ensemble=2).fit(X[train], y[train])
    explicit = sk.GPICLClassifier(path, n_ensemble=2).fit(X[train], y[train])
    assert default.model_path_ == path and default.backbone_ == "cell"
    np.testing.assert_array_equal(default.predict_proba(X[test]),
                                  explicit.predict_proba(X[test]))
    assert default.score(X[test], y[test]) > 0.8           # iris: chance is 1/3
    version = os.path.join(sk.GENERAL_MODEL_DIR, "1")
    monkeypatch.setenv("GPICL_MODEL", version)             # the user's choice still wins
    assert sk.default_model_path() == version
    monkeypatch.setenv("GPICL_MODEL", sk.GENERAL_MODEL_DIR)   # a model directory: its newest
    newest = max((v for v in os.listdir(sk.GENERAL_MODEL_DIR) if v.isdigit()), key=int)
    assert sk.default_model_path() == os.path.join(sk.GENERAL_MODEL_DIR, newest)


def test_version_comes_from_the_package():
    import gpicl_tf

    assert isinstance(gpicl_tf.__version__, str) and gpicl_tf.__version__[0].isdigit()


RELEASED = ("general/1", "tabular/1", "tabular/2", "tabular/3", "tabular/4")
ANSWERS_FILE = os.path.join(os.path.dirname(__file__), "released_answers.json")


def released_answers() -> dict:
    """Each released version's answers to fixed requests: its serving signature's
    probabilities (a seeded context of 20 rows, 3 classes, 5 queries, at the model's
    input width) and the estimator's predict_proba (iris, 60 training rows, 2 members)."""
    import numpy as np
    from sklearn.datasets import load_iris

    from gpicl_tf import sklearn as sk

    X, y = load_iris(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:60], order[60:70]
    out = {}
    for name in RELEASED:
        path = os.path.join(released.model_dir(name.split("/")[0]), name.split("/")[1])
        fn, meta = sk._load(path)
        rng = np.random.default_rng(1)
        width = int(meta["schema"]["input_size"])
        if meta.get("backbone", "row") == "cell":
            width = 4
        served = fn(context_x=rng.standard_normal((1, 20, width)).astype(np.float32),
                    context_y=(np.arange(20) % 3)[None].astype(np.int64),
                    query_x=rng.standard_normal((1, 5, width)).astype(np.float32))
        out[name] = {"served": served["probabilities"].numpy()[0].tolist(),
                     "estimator": sk.GPICLClassifier(path, n_ensemble=2).fit(
                         X[train], y[train]).predict_proba(X[test]).tolist()}
    return out


@pytest.mark.slow
def test_released_models_serve_their_stored_answers():
    """Every released version answers as it did when the answers were stored
    (`python tests/test_released.py` writes them): its SavedModel and the
    estimator's preparation, ensemble and calibration over it."""
    import json

    import numpy as np

    with open(ANSWERS_FILE) as f:
        stored = json.load(f)
    assert sorted(stored) == sorted(RELEASED)
    now = released_answers()
    for name in RELEASED:
        for part in ("served", "estimator"):
            np.testing.assert_allclose(now[name][part], stored[name][part], rtol=1e-5,
                                       atol=1e-7, err_msg=f"{name} {part}")


if __name__ == "__main__":
    import json

    with open(ANSWERS_FILE, "w") as f:
        json.dump(released_answers(), f, indent=1)
    print("wrote", ANSWERS_FILE)
