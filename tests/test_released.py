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
    from gpicl_tf import sklearn as sk

    assert sk.DEFAULT_MODEL_DIR == released.model_dir("general")   # the best on the benchmark
    assert sk.GENERAL_MODEL_DIR == released.model_dir("general")
    assert sk.TABULAR_MODEL_DIR == released.model_dir("tabular")
    version = os.path.join(sk.GENERAL_MODEL_DIR, "1")
    monkeypatch.setenv("GPICL_MODEL", version)             # the user's choice still wins
    assert sk.default_model_path() == version


def test_version_comes_from_the_package():
    import gpicl_tf

    assert isinstance(gpicl_tf.__version__, str) and gpicl_tf.__version__[0].isdigit()
