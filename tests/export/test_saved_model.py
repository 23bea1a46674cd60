import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from gpicl_tf.config import override
from gpicl_tf.export import saved_model
from gpicl_tf.training import train

# starts a server process or trains and exports a model: not in the fast loop
pytestmark = pytest.mark.slow

CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


@pytest.fixture(scope="module", params=["paper", "pfn"])
def exported(request, smoke_config, smoke_episodes, tmp_path_factory):
    cfg = override(smoke_config, [f"model.layout={request.param}", "train.steps=10"])
    workdir = str(tmp_path_factory.mktemp(f"run_{request.param}"))
    train.run(cfg, workdir, smoke_episodes, verbose=0)
    base = str(tmp_path_factory.mktemp("saved_models"))
    path = saved_model.export_run(workdir, base, "gpicl")
    model = keras.models.load_model(os.path.join(workdir, train.MODEL_FILE), compile=False)
    return path, model, base


def _request(b=2, n=7, q=3, d=16, seed=1):
    rng = np.random.default_rng(seed)
    return {"context_x": rng.standard_normal((b, n, d)).astype(np.float32),
            "context_y": rng.integers(0, 10, (b, n)).astype(np.int64),
            "query_x": rng.standard_normal((b, q, d)).astype(np.float32)}


def _expected(model, req):
    """Each query run alone as the next token after the context, its softmax over the
    classes the context names (the others get 0)."""
    b, q = req["query_x"].shape[:2]
    out = np.zeros((b, q, 10), np.float32)
    for i in range(b):
        for j in range(q):
            inputs = np.concatenate([req["context_x"][i], req["query_x"][i, j:j + 1]])[None]
            labels = np.concatenate([req["context_y"][i], [0]])[None].astype(np.int32)
            logits = np.asarray(model({"inputs": inputs, "labels": labels}))[0, -1]
            present = np.isin(np.arange(10), req["context_y"][i])
            out[i, j] = np.where(present, tf.nn.softmax(logits[present]).numpy()[
                np.cumsum(present) - 1], 0.0)
    return out


def test_layout_on_disk(exported):
    path, _, base = exported
    assert os.path.basename(path) == "1"
    for name in ("saved_model.pb", "variables", saved_model.CONFIG_FILE, saved_model.WARMUP_FILE):
        assert os.path.exists(os.path.join(path, name)), name
    meta = json.load(open(os.path.join(path, saved_model.CONFIG_FILE)))
    assert meta["max_context"] == 11 and meta["config"]["data"]["input_size"] == 16
    config = open(os.path.join(base, "models.config")).read()
    assert 'name: "gpicl"' in config and 'base_path: "/models/gpicl"' in config
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".")]


def test_warmup_request_is_a_valid_prediction_log(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(exported[0], saved_model.WARMUP_FILE)
    records = list(tf.data.TFRecordDataset(path))
    log = prediction_log_pb2.PredictionLog.FromString(records[0].numpy())
    assert log.predict_log.request.model_spec.signature_name == "serving_default"
    assert set(log.predict_log.request.inputs) == {"context_x", "context_y", "query_x"}


def test_reload_matches_each_query_appended_as_next_token(exported):
    path, model, _ = exported
    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["serving_default"]
    for b, n, q in [(2, 7, 3), (1, 1, 1), (3, 11, 5)]:
        req = _request(b, n, q)
        out = fn(**{k: tf.constant(v) for k, v in req.items()})
        want = _expected(model, req)
        assert np.abs(out["probabilities"].numpy() - want).max() <= 1e-5
        np.testing.assert_array_equal(out["classes"].numpy(), want.argmax(-1))


def _serve(fn, req) -> np.ndarray:
    return fn(**{k: tf.constant(v) for k, v in req.items()})["probabilities"].numpy()


def test_queries_do_not_see_each_other(exported):
    """Each query's answer is unchanged when every other query of the request changes,
    and the others' answers do change. A real property of the PFN layout, which
    answers all queries in one pass under a mask; the paper layout runs a sequence
    per query."""
    fn = tf.saved_model.load(exported[0]).signatures["serving_default"]
    req = _request(2, 6, 4)
    base = _serve(fn, req)
    rng = np.random.default_rng(5)
    for j in range(4):
        others = [i for i in range(4) if i != j]
        changed = {k: v.copy() for k, v in req.items()}
        changed["query_x"][:, others] = rng.standard_normal((2, 3, 16))
        out = _serve(fn, changed)
        np.testing.assert_allclose(out[:, j], base[:, j], atol=1e-6)
        assert not np.allclose(out[:, others], base[:, others], atol=1e-4), j


def test_a_served_answer_does_not_depend_on_later_examples(exported):
    """Example k+1 served after the first k examples gets the model's output at
    position k+1 of the whole episode, later examples and labels included (over the
    classes of the first k): no output reads a later token (paper layout: the causal
    mask over the sequence; pfn: a query sees only earlier context)."""
    path, model, _ = exported
    fn = tf.saved_model.load(path).signatures["serving_default"]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 9, 16)).astype(np.float32)
    y = rng.integers(0, 10, (2, 9))
    whole = np.asarray(model({"inputs": x, "labels": y.astype(np.int32)}), np.float64)
    for k in range(1, 9):
        served = _serve(fn, {"context_x": x[:, :k], "context_y": y[:, :k],
                             "query_x": x[:, k:k + 1]})[:, 0]
        for i in range(2):
            present = np.isin(np.arange(10), y[i, :k])
            z = np.where(present, whole[i, k], -np.inf)
            want = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            np.testing.assert_allclose(served[i], want, atol=1e-5, err_msg=f"k={k}")


def test_export_flags_are_named_as_in_run_and_train_cell(trained_run, tmp_path):
    """--export_dir/--export_name, as `run` and `train-cell` name them; the old --out
    and --name still export, with a warning; an old and a new name together: exit 2."""
    base = str(tmp_path / "saved")
    env = {**os.environ, "GPICL_TCMALLOC": "0"}

    def export(*flags):
        return subprocess.run([sys.executable, "-m", "pipelines.export", "--workdir",
                               trained_run, *flags], capture_output=True, text=True,
                              timeout=300, env=env)

    new = export("--export_dir", base, "--export_name", "m")
    assert new.returncode == 0, new.stderr[-2000:]
    assert new.stdout.strip().endswith(os.path.join(base, "m", "1"))
    assert "deprecated" not in new.stderr
    old = export("--out", base, "--name", "m")
    assert old.returncode == 0, old.stderr[-2000:]
    assert old.stdout.strip().endswith(os.path.join(base, "m", "2"))
    assert "--out is deprecated: use --export_dir" in old.stderr
    assert "--name is deprecated: use --export_name" in old.stderr
    both = export("--out", base, "--export_dir", str(tmp_path / "other"))
    assert both.returncode == 2 and "Traceback" not in both.stderr
    assert f"--out={base!r} and --export_dir=" in both.stderr and "both given" in both.stderr
    assert sorted(os.listdir(os.path.join(base, "m"))) == ["1", "2"]


@pytest.mark.parametrize("change,message", [
    (lambda r: r.update(context_y=r["context_y"] + 10), "context label >= num_classes=10"),
    (lambda r: r.update(context_x=np.zeros((2, 12, 16), np.float32),
                        context_y=np.zeros((2, 12), np.int64)), "context longer than 11"),
    (lambda r: r["query_x"].__setitem__((0, 0, 0), np.nan), "query_x has NaN or Inf"),
    (lambda r: r.update(context_x=np.zeros((2, 0, 16), np.float32),
                        context_y=np.zeros((2, 0), np.int64)), "the context is empty"),
])
def test_bad_requests_fail_with_a_named_problem(exported, change, message):
    fn = tf.saved_model.load(exported[0]).signatures["serving_default"]
    req = _request()
    change(req)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        fn(**{k: tf.constant(v) for k, v in req.items()})


@pytest.mark.slow
def test_saved_model_cli_show_and_run_match_the_model(exported, tmp_path):
    path, model, _ = exported
    show = subprocess.run([CLI, "show", "--dir", path, "--all"], capture_output=True, text=True)
    assert show.returncode == 0, show.stderr[-2000:]
    for name in ("serving_default", "context_x", "context_y", "query_x", "probabilities",
                 "classes"):
        assert name in show.stdout
    req = _request()
    args = []
    for key, value in req.items():
        np.save(tmp_path / f"{key}.npy", value)
        args.append(f"{key}={tmp_path / key}.npy")
    outdir = tmp_path / "out"
    run = subprocess.run([CLI, "run", "--dir", path, "--tag_set", "serve", "--signature_def",
                          "serving_default", "--inputs", ";".join(args), "--outdir",
                          str(outdir)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    probabilities = np.load(outdir / "probabilities.npy")
    assert np.abs(probabilities - _expected(model, req)).max() <= 1e-5


def test_versions_increase_and_names_are_checked(exported, tmp_path):
    _, model, _ = exported
    config = {"data": {"episode_length": 12, "input_size": 16, "num_classes": 10}}
    base = str(tmp_path)
    os.makedirs(os.path.join(base, "m", "7"))
    assert saved_model.export_model(model, config, base, "m").endswith(os.path.join("m", "8"))
    with pytest.raises(ValueError, match="'a/b'"):
        saved_model.export_model(model, config, base, "a/b")


def test_export_refuses_non_finite_weights(exported, tmp_path):
    _, model, _ = exported
    config = json.load(open(os.path.join(exported[0], saved_model.CONFIG_FILE)))["config"]
    broken = keras.models.clone_model(model)
    broken.set_weights(model.get_weights())
    w = broken.weights[0]
    w.assign(np.full(w.shape, np.nan, w.dtype))
    with pytest.raises(ValueError, match=f"weight '{w.path}' holds NaN or Inf"):
        saved_model.export_model(broken, config, str(tmp_path), "gpicl")
    assert not os.path.exists(tmp_path / "gpicl" / "1")


def test_models_config_lists_only_models_with_a_complete_version(exported, tmp_path):
    path, model, _ = exported
    config = json.load(open(os.path.join(path, saved_model.CONFIG_FILE)))["config"]
    base = tmp_path / "base"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (base / "killed" / f".tmp-export-{dead}").mkdir(parents=True)   # a killed export
    (base / "gpicl" / f".tmp-export-{dead}").mkdir(parents=True)
    saved_model.export_model(model, config, str(base), "gpicl")
    text = open(base / "models.config").read()
    assert 'name: "gpicl"' in text and "killed" not in text
    assert os.listdir(base / "gpicl") == ["1"]                      # the leftover is gone


def test_a_longer_context_can_be_exported_for_a_transformer(exported, tmp_path):
    _, model, _ = exported
    config = json.load(open(os.path.join(exported[0], saved_model.CONFIG_FILE)))["config"]
    path = saved_model.export_model(model, config, str(tmp_path), "long", max_context=40)
    meta = json.load(open(os.path.join(path, saved_model.CONFIG_FILE)))
    assert meta["max_context"] == 40 and meta["trained_context"] == 11
    fn = tf.saved_model.load(path).signatures[saved_model.SIGNATURE]
    req = _request(n=30)
    probabilities = fn(**{k: tf.constant(v) for k, v in req.items()})["probabilities"].numpy()
    np.testing.assert_allclose(probabilities, _expected(model, req), atol=1e-5)
    with pytest.raises(ValueError, match="max_context=5 must be 0 .* or at least 11"):
        saved_model.export_model(model, config, str(tmp_path), "short", max_context=5)
    lstm = {**config, "model": {**config["model"], "arch": "lstm"}}
    with pytest.raises(ValueError, match="needs a Transformer; this model is 'lstm'"):
        saved_model.export_model(model, lstm, str(tmp_path), "lstm", max_context=40)


@pytest.mark.parametrize("sizes, message", [
    ({"max_queries": -5}, "max_queries=-5 must be"),
    ({"max_context": 2_000_000_000}, "one episode of 34,000,004,096 numbers, more than"),
    ({"max_queries": 10 ** 7}, "more than the 33,554,432"),
    ({"extra": {"steps": 3}}, "extra metadata is stored for cell models only"),
])
def test_export_refuses_sizes_a_server_cannot_take(exported, tmp_path, sizes, message):
    path, model, _ = exported
    config = json.load(open(os.path.join(path, saved_model.CONFIG_FILE)))["config"]
    with pytest.raises(ValueError, match=message):
        saved_model.export_model(model, config, str(tmp_path), "gpicl", **sizes)
    assert not os.path.exists(tmp_path / "gpicl" / "1")


def test_cell_only_export_options_are_refused_for_a_row_run(trained_run, tmp_path):
    with pytest.raises(ValueError, match="step=2: only a cell run keeps the weights"):
        saved_model.export_run(trained_run, str(tmp_path), "gpicl", step=2)
    with pytest.raises(ValueError, match="redraw_column_ids is for cell runs"):
        saved_model.export_run(trained_run, str(tmp_path), "gpicl", redraw_column_ids=True)
    assert not os.path.exists(tmp_path / "gpicl")


def test_export_refuses_a_base_inside_a_model_version(exported):
    path, model, _ = exported
    config = json.load(open(os.path.join(path, saved_model.CONFIG_FILE)))["config"]
    with pytest.raises(ValueError, match="is inside the model version"):
        saved_model.export_model(model, config, os.path.join(path, "assets"), "gpicl")
    assert not os.path.exists(os.path.join(path, "assets", "gpicl"))
