"""The cell learner exported in TF Serving's layout: files, the served answer against the
in-memory model, variable columns, missing values, the checks, warm start from a version,
the REST server and the estimator over it."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from gpicl_tf.config import override
from gpicl_tf.config.cell import get_cell_preset
from gpicl_tf.errors import InvalidInputError, MissingFileError
from gpicl_tf.export import saved_model
from gpicl_tf.training import cell_train

# trains and exports a model: not in the fast loop
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("cell_run"))
    cell_train.run(override(get_cell_preset("cell_smoke"), ["train.keep_every=2"]), workdir)
    base = str(tmp_path_factory.mktemp("saved_models"))
    path = saved_model.export_run(workdir, base, "tabular", max_context=40, max_queries=6)
    model = keras.models.load_model(os.path.join(workdir, cell_train.MODEL_FILE), compile=False)
    return path, model, base, workdir


def _request(b=2, n=9, q=4, c=5, seed=1):
    rng = np.random.default_rng(seed)
    return {"context_x": rng.standard_normal((b, n, c)).astype(np.float32),
            "context_y": (np.arange(n) % 3)[None].repeat(b, 0).astype(np.int64),
            "query_x": rng.standard_normal((b, q, c)).astype(np.float32)}


def test_layout_on_disk(exported):
    path, _, base, _ = exported
    assert os.path.basename(path) == "1"
    for name in ("saved_model.pb", "variables", saved_model.CONFIG_FILE, saved_model.WARMUP_FILE,
                 cell_train.RELEASED_KERAS):
        assert os.path.exists(os.path.join(path, name)), name
    meta = json.load(open(os.path.join(path, saved_model.CONFIG_FILE)))
    assert meta["backbone"] == "cell" and meta["schema"]["variable_features"]
    assert meta["schema"]["input_size"] == 16 and meta["max_context"] == 40
    assert 'name: "tabular"' in open(os.path.join(base, "models.config")).read()


@pytest.mark.parametrize("c", [1, 5, 16])
def test_served_probabilities_are_the_models(exported, c):
    path, model, _, _ = exported
    fn = tf.saved_model.load(path).signatures[saved_model.SIGNATURE]
    req = _request(c=c)
    req["context_x"][0, 2, 0] = np.nan                    # a missing value
    out = fn(**{k: tf.constant(v) for k, v in req.items()})
    logits = np.asarray(model({**req, "context_y": req["context_y"].astype(np.int32)}))
    expected = tf.nn.softmax(logits).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    assert np.all(out["probabilities"].numpy()[..., 3:] == 0)       # classes not in context
    np.testing.assert_array_equal(out["classes"].numpy(), expected.argmax(-1))


@pytest.mark.parametrize("change, match", [
    (lambda r: r.update(context_x=np.zeros((2, 9, 17), np.float32),
                        query_x=np.zeros((2, 4, 17), np.float32)), "more than 16 feature"),
    (lambda r: r.update(query_x=np.zeros((2, 4, 4), np.float32)), "differ in columns"),
    (lambda r: r.update(context_x=np.zeros((2, 41, 5), np.float32),
                        context_y=np.zeros((2, 41), np.int64)), "context longer than 40"),
    (lambda r: r.update(query_x=np.zeros((2, 7, 5), np.float32)), "more than 6 queries"),
    (lambda r: r["query_x"].__setitem__((0, 0, 0), np.inf), "query_x has Inf"),
    (lambda r: r["context_y"].__setitem__((0, 0), 10), "context label >= num_classes=10"),
])
def test_bad_requests_are_refused_naming_the_problem(exported, change, match):
    path = exported[0]
    fn = tf.saved_model.load(path).signatures[saved_model.SIGNATURE]
    req = _request()
    change(req)
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        fn(**{k: tf.constant(v) for k, v in req.items()})


def test_export_refuses_bad_sizes_and_missing_runs(exported, tmp_path):
    _, model, base, workdir = exported
    with pytest.raises(InvalidInputError, match="max_context=-1"):
        saved_model.export_model(model, {}, str(tmp_path), "x", max_context=-1)
    with pytest.raises(InvalidInputError, match="max_queries=2000000000"):
        saved_model.export_model(model, {}, str(tmp_path), "x", max_queries=2_000_000_000)
    # the row models' bound on one request's numbers (saved_model.check_request_sizes)
    with pytest.raises(InvalidInputError, match="max_context=3000000 and max_queries=1024 "
                                                "with 16 features make one episode"):
        saved_model.export_model(model, {}, str(tmp_path), "x", max_context=3_000_000)
    with pytest.raises(InvalidInputError, match="max_context=True must be a whole number"):
        saved_model.export_model(model, {}, str(tmp_path), "x", max_context=True)
    with pytest.raises(InvalidInputError, match="max_queries=-3 must be a whole number"):
        saved_model.export_model(model, {}, str(tmp_path), "x", max_queries=-3)
    assert not os.path.exists(tmp_path / "x")
    with pytest.raises(MissingFileError, match="no finished training run"):
        saved_model.export_run(str(tmp_path), str(tmp_path), "x")
    with pytest.raises(MissingFileError, match="kept no weights of step 3"):
        saved_model.export_run(workdir, str(tmp_path), "x", step=3)
    assert os.path.basename(saved_model.export_run(workdir, str(tmp_path), "x", step=2)) == "1"


def test_the_one_export_takes_a_cell_model_with_its_default_bounds(exported, tmp_path):
    _, model, _, _ = exported
    path = saved_model.export_model(model, {"tables": {"max_rows": 24}}, str(tmp_path), "d",
                                    extra={"steps": 4})
    meta = json.load(open(os.path.join(path, saved_model.CONFIG_FILE)))
    assert (meta["backbone"], meta["max_context"], meta["max_queries"]) == ("cell", 1024, 1024)
    assert meta["trained_context"] == 24 and meta["training"] == {"steps": 4}
    assert os.path.exists(os.path.join(path, cell_train.RELEASED_KERAS))


def test_warm_start_from_a_released_version(exported):
    path, model, _, _ = exported
    warm = cell_train.load_warm_start(path)
    for u, v in zip(warm.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(u, v)


def test_the_estimator_over_a_cell_model(exported):
    from gpicl_tf.sklearn import GPICLClassifier

    path = exported[0]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 20))                     # wider than the model's 16 columns
    X[::4, 2] = np.nan
    y = np.array(["a", "b", "c"])[rng.integers(0, 3, 30)]
    clf = GPICLClassifier(path).fit(X, y)
    assert clf.backbone_ == "cell" and clf.n_ensemble_ == 4 and clf.preprocessing_ == "mix"
    assert clf.max_features_ == 8                         # the smoke prior's widest tables
    proba = clf.predict_proba(X[:5])
    assert proba.shape == (5, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(proba, GPICLClassifier(path).fit(X, y).predict_proba(X[:5]))
    for preprocessing in ("standard", "quantile", "power"):
        p = GPICLClassifier(path, n_ensemble=1, preprocessing=preprocessing,
                            calibrate=False).fit(X, y).predict_proba(X[:5])
        assert p.shape == (5, 3) and np.all(np.isfinite(p))
    cats = np.c_[rng.integers(0, 3, 30).astype(float), X[:, :3]]
    assert GPICLClassifier(path, categorical_features=[0]).fit(cats, y).predict(
        cats[:3]).shape == (3,)


def test_the_server_checks_and_serves_a_cell_model_with_any_column_count(exported):
    from gpicl_tf.serving.repository import BadRequest, LoadedVersion
    from gpicl_tf.serving.server import validate

    path, model, _, _ = exported
    version = LoadedVersion(path)
    req = _request(b=1, c=3)
    req["query_x"][0, 1, 2] = np.nan                      # missing: allowed for a cell model
    inputs = validate({k: v.tolist() for k, v in req.items()}, version)
    out = version.predict(inputs)
    logits = np.asarray(model({**req, "context_y": req["context_y"].astype(np.int32)}))
    np.testing.assert_allclose(out["probabilities"], tf.nn.softmax(logits).numpy(), atol=1e-5)
    with pytest.raises(BadRequest, match="query_x has 4 feature columns, context_x 3"):
        validate(dict(inputs, query_x=np.zeros((1, 4, 4)).tolist()), version)
    with pytest.raises(BadRequest, match="17 feature columns, the model takes 1 to 16"):
        validate(dict(inputs, context_x=np.zeros((1, 9, 17)).tolist()), version)
    with pytest.raises(BadRequest, match="contains Inf"):
        validate(dict(inputs, context_x=np.full((1, 9, 3), np.inf).tolist()), version)
