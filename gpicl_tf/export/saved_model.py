"""SavedModel export in TF Serving's layout: BASE/NAME/VERSION/, for every backbone.

Example:
    >>> path = export_run("runs/cpu/transformer", "saved_models", "gpicl")  # doctest: +SKIP
    saved_models/gpicl/1

One `export_model` takes a row learner or a cell learner; the backbone supplies
its endpoint, warm-up request and metadata (`RowExport`, `CellExport`), and both
meet the same request checks (`request_checks`) and bounds
(`check_request_sizes`). The `serving_default` signature takes a labelled
context and queries:

    context_x float32 [B, N, d]   context_y int64 [B, N]   query_x float32 [B, Q, d]
    -> probabilities float32 [B, Q, C], classes int64 [B, Q]

Every query sees the whole context and no other query: its answer is the
model's prediction for it appended as example N + 1. A PFN-layout Transformer
computes all queries in one pass of N + Q tokens; other row models run each
query as its own sequence of N + 1 examples; N is at most the model's maximum
context (training episode length - 1) and Q at most `max_queries`. A cell
model reads any number of columns d up to its `max_features` (NaN = missing)
and gives probability 0 to classes absent from the context.

A version is written under a hidden temporary name and renamed to its number
only when complete (config JSON and warm-up requests included), so TF Serving
never sees a half-written version.
"""

from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np
import tensorflow as tf

import gpicl_tf.training.metrics  # noqa: F401
from gpicl_tf import tasks
from gpicl_tf import io as files
from gpicl_tf.data.schema import EpisodeSchema
from gpicl_tf.errors import InvalidInputError, MissingFileError
from gpicl_tf.models import query_logits  # (importing models registers its layers)
from gpicl_tf.models.cell import CellTransformer
from gpicl_tf.training import train
from gpicl_tf.training.callbacks import first_non_finite_weight

SIGNATURE = "serving_default"
CONFIG_FILE = "gpicl_config.json"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
INPUT_NAMES = ("context_x", "context_y", "query_x")
# the most numbers one episode at a model's maximum sizes may hold: about 1 GiB of
# JSON, so the server's derived body limit keeps refusing oversize requests
MAX_EPISODE_NUMBERS = 2 ** 25


def check_request_sizes(max_context, max_queries, input_size) -> None:
    """Raises InvalidInputError unless a server can take requests of these sizes:
    max_context and max_queries whole numbers >= 1, and one episode at both
    maxima at most MAX_EPISODE_NUMBERS numbers. Checked at export and again when
    the server loads a version."""
    for key, value in (("max_context", max_context), ("max_queries", max_queries)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{key}={value!r} must be a whole number >= 1")
    numbers = max_context * (int(input_size) + 1) + max_queries * int(input_size)
    if numbers > MAX_EPISODE_NUMBERS:
        raise InvalidInputError(
            f"max_context={max_context} and max_queries={max_queries} with {input_size} "
            f"features make one episode of {numbers:,} numbers, more than the "
            f"{MAX_EPISODE_NUMBERS:,} a request may carry (about 1 GiB of JSON); export "
            "smaller bounds")


def request_checks(context_x, context_y, query_x, num_classes: int, max_context: int,
                   max_queries: int, max_features: int | None = None) -> list:
    """The checks every request meets before any model op (both backbones, the same
    bounds): shapes that agree, 1 .. max_context context rows, 1 .. max_queries
    queries, labels in [0, num_classes), and values that are finite. With
    `max_features` (a model that reads any number of columns, NaN as missing):
    1 .. max_features columns, the same in context and queries, and no Inf (NaN
    allowed); without it the columns are fixed by the signature and NaN is refused."""
    b, n, q = tf.shape(context_x)[0], tf.shape(context_x)[1], tf.shape(query_x)[1]
    shape = "[B, N, d]" if max_features is None else "[B, N, C]"
    checks = [
        tf.debugging.assert_equal(tf.shape(context_y), tf.shape(context_x)[:2],
                                  message=f"context_y must be [B, N] for context_x {shape}"),
        tf.debugging.assert_equal(tf.shape(query_x)[0], b,
                                  message="query_x and context_x differ in batch size"),
    ]
    if max_features is not None:
        c = tf.shape(context_x)[2]
        checks += [
            tf.debugging.assert_equal(tf.shape(query_x)[2], c,
                                      message="query_x and context_x differ in columns"),
            tf.debugging.assert_greater(c, 0, message="no feature columns"),
            tf.debugging.assert_less_equal(c, max_features,
                                           message=f"more than {max_features} feature columns"),
        ]
    checks += [
        tf.debugging.assert_greater(n, 0, message="the context is empty"),
        tf.debugging.assert_less_equal(n, max_context, message=f"context longer than {max_context}"),
        tf.debugging.assert_greater(q, 0, message="no queries"),
        tf.debugging.assert_less_equal(q, max_queries, message=f"more than {max_queries} queries"),
        tf.debugging.assert_non_negative(context_y, message="negative context label"),
        tf.debugging.assert_less(context_y, tf.constant(num_classes, tf.int64),
                                 message=f"context label >= num_classes={num_classes}"),
    ]
    if max_features is None:
        checks += [tf.debugging.assert_all_finite(context_x, "context_x has NaN or Inf"),
                   tf.debugging.assert_all_finite(query_x, "query_x has NaN or Inf")]
    else:
        checks += [tf.debugging.assert_equal(tf.reduce_any(tf.math.is_inf(x)), False,
                                             message=f"{name} has Inf")
                   for name, x in (("context_x", context_x), ("query_x", query_x))]
    return checks


def gated_inputs(checks: list, context_x, context_y, query_x):
    """The request's tensors (labels as int32) behind every check: no model op can
    run before them, so a bad request is named by its check, not met first by a
    model op's graph error."""
    with tf.control_dependencies(checks):
        return tf.identity(context_x), tf.cast(context_y, tf.int32), tf.identity(query_x)


def endpoint(logits_of, checks_of, width: int | None):
    """(serve, input signature) of a `serving_default` endpoint: the request's
    `checks_of(context_x, context_y, query_x)` gate every model op
    (`gated_inputs`), then `logits_of` answers [B, Q, C] and the endpoint returns
    their softmax and argmax. `width`: the feature columns (None: any number)."""

    def serve(context_x, context_y, query_x):
        checks = checks_of(context_x, context_y, query_x)
        context_x, context_y, query_x = gated_inputs(checks, context_x, context_y, query_x)
        logits = logits_of(context_x, context_y, query_x)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32))
        return {"probabilities": probabilities,
                "classes": tf.argmax(probabilities, axis=-1, output_type=tf.int64)}

    signature = [tf.TensorSpec([None, None, width], tf.float32, name="context_x"),
                 tf.TensorSpec([None, None], tf.int64, name="context_y"),
                 tf.TensorSpec([None, None, width], tf.float32, name="query_x")]
    return serve, signature


def serving_function(model: keras.Model, schema: EpisodeSchema, max_context: int,
                     max_queries: int):
    """The serving endpoint: (context_x, context_y, query_x) -> probabilities, classes.

    The model answers (`models.query_logits`: one pass over context and queries
    for a PFN-layout Transformer, a sequence per query otherwise).
    """
    d, c = schema.input_size, schema.num_classes

    def logits_of(context_x, context_y, query_x):
        b, q = tf.shape(context_x)[0], tf.shape(query_x)[1]
        logits = query_logits(model, context_x, context_y, query_x)       # [B, Q, C]
        return tf.reshape(tf.cast(logits, tf.float32), [b, q, c])

    return endpoint(logits_of, lambda *request: request_checks(*request, c, max_context,
                                                                max_queries), d)


def next_version(model_dir: str) -> int:
    versions = [int(v) for v in os.listdir(model_dir) if files.is_version_name(v)] \
        if os.path.isdir(model_dir) else []
    return max(versions, default=0) + 1


def warmup_example(schema: EpisodeSchema, context: int = 8, queries: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    return {"context_x": rng.standard_normal((1, context, schema.input_size)).astype(np.float32),
            "context_y": rng.integers(0, schema.num_classes, (1, context)).astype(np.int64),
            "query_x": rng.standard_normal((1, queries, schema.input_size)).astype(np.float32)}


def write_warmup(path: str, name: str, example: dict) -> None:
    """TF Serving warm-up requests (PredictionLog records) for `example`."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=name, signature_name=SIGNATURE))
    for key, value in example.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(log.SerializeToString())


def _has_complete_version(model_dir: str) -> bool:
    """A version is complete once renamed to its number (exports are atomic)."""
    return any(files.is_version_name(v) and
               os.path.exists(os.path.join(model_dir, v, "saved_model.pb"))
               for v in os.listdir(model_dir))


def write_models_config(base: str) -> str:
    """models.config for `tensorflow_model_server --model_config_file`, one entry
    per model under `base` that has a complete version, with base paths as
    mounted at /models in Docker."""
    names = sorted(n for n in os.listdir(base)
                   if os.path.isdir(os.path.join(base, n)) and not n.startswith(".")
                   and _has_complete_version(os.path.join(base, n)))
    entries = "".join(
        f'  config {{\n    name: "{n}"\n    base_path: "/models/{n}"\n'
        f'    model_platform: "tensorflow"\n  }}\n' for n in names)
    path = os.path.join(base, "models.config")
    with files.atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(f"model_config_list {{\n{entries}}}\n")
    return path


class RowExport:
    """The row learners' side of an export (`export_model`): the endpoint
    (`serving_function`), its warm-up request and its metadata. Refuses a learner
    whose source is not exported (regression, ...), a context bound below the
    meta-training context, or a longer one for a model other than a Transformer.

    max_context: 0 = the meta-training context (episode length - 1); a Transformer
    has no positional encoding, so a longer one is accepted (the model then reads
    more examples than it was meta-trained on: measure before relying on it)."""

    backbone = "row"
    default_max_queries = 256

    def __init__(self, model: keras.Model, config: dict, max_context: int, max_queries: int):
        data = config["data"]
        task = tasks.for_source(str(data.get("source", "")))
        if not task.exportable:
            raise InvalidInputError(
                f"data.source={data['source']!r}: {task.name} learners are not exported; the "
                "serving signature maps labelled context to class probabilities")
        self.schema = EpisodeSchema(data["episode_length"], data["input_size"],
                                    data["num_classes"])
        self.trained = trained = self.schema.episode_length - 1
        arch = config.get("model", {}).get("arch")
        if isinstance(max_context, bool) or not isinstance(max_context, int) or \
                max_context < 0 or (max_context and max_context < trained):
            raise InvalidInputError(
                f"max_context={max_context!r} must be 0 (the meta-training context, {trained}) "
                f"or at least {trained}")
        if max_context > trained and arch != "transformer":
            raise InvalidInputError(
                f"max_context={max_context} beyond the meta-training context ({trained}) needs "
                f"a Transformer; this model is {arch!r}")
        self.model, self.config = model, config
        self.max_context, self.max_queries = max_context or trained, max_queries
        self.input_size = self.schema.input_size

    def endpoint(self):
        return serving_function(self.model, self.schema, self.max_context, self.max_queries)

    def warmup(self) -> dict:
        return warmup_example(self.schema)

    def write_files(self, tmp: str) -> None:
        """Nothing beside the SavedModel: a row run's Keras model stays in its workdir."""

    def metadata(self) -> dict:
        d, c = self.schema.input_size, self.schema.num_classes
        return {"config": self.config, "schema": self.schema.to_dict(),
                "max_context": self.max_context, "trained_context": self.trained,
                "max_queries": self.max_queries, "signature": SIGNATURE,
                "inputs": {"context_x": [None, None, d], "context_y": [None, None],
                           "query_x": [None, None, d]},
                "outputs": {"probabilities": [None, None, c], "classes": [None, None]}}


def cell_serving_function(model: CellTransformer, max_context: int, max_queries: int):
    """(serve, input signature) of the cell model's endpoint: any number of feature
    columns up to the model's `max_features` (context and queries alike), missing
    values as NaN; probabilities 0 for classes absent from the context."""
    k, max_features = model.num_classes, model.max_features

    def logits_of(context_x, context_y, query_x):                    # [B, Q, K]
        return model({"context_x": context_x, "context_y": context_y, "query_x": query_x},
                     training=False)

    return endpoint(logits_of, lambda *request: request_checks(
        *request, k, max_context, max_queries, max_features=max_features), None)


class CellExport:
    """The cell learner's side of an export (`export_model`; `gpicl_tf.models.cell`):
    no random projection (the model standardises each column with the context
    rows itself), and the version also holds the Keras model
    (`assets.extra/cell_model.keras`), so training can continue from a released
    model (`cell_train.run(..., warm_start=VERSION_DIR)`).

    max_context: 0 = 1,024 rows (the model reads any length; meta-training used at
    most `tables.max_rows` rows)."""

    backbone = "cell"
    default_max_queries = 1024

    def __init__(self, model: CellTransformer, config: dict, max_context: int,
                 max_queries: int, extra: dict | None = None):
        self.model, self.config, self.extra = model, config, extra
        self.max_context, self.max_queries = max_context or 1024, max_queries
        self.input_size = model.max_features

    def endpoint(self):
        return cell_serving_function(self.model, self.max_context, self.max_queries)

    def warmup(self, seed: int = 0) -> dict:
        rng = np.random.default_rng(seed)
        c = min(4, self.model.max_features)
        return {"context_x": rng.standard_normal((1, 8, c)).astype(np.float32),
                "context_y": (np.arange(8) % 2)[None].astype(np.int64),
                "query_x": rng.standard_normal((1, 2, c)).astype(np.float32)}

    def write_files(self, tmp: str) -> None:
        self.model.save(os.path.join(tmp, files.RELEASED_KERAS))

    def metadata(self) -> dict:
        f_max, k = self.model.max_features, self.model.num_classes
        return {"backbone": self.backbone, "config": self.config,
                "schema": {"input_size": f_max, "num_classes": k, "variable_features": True,
                           "missing_values": True},
                "max_context": self.max_context, "max_queries": self.max_queries,
                "trained_context": int(self.config.get("tables", {}).get("max_rows", 0)),
                "signature": SIGNATURE, **({"training": self.extra} if self.extra else {}),
                "inputs": {"context_x": [None, None, None], "context_y": [None, None],
                           "query_x": [None, None, None]},
                "outputs": {"probabilities": [None, None, k], "classes": [None, None]}}


def export_model(model: keras.Model, config: dict, base: str, name: str,
                 max_context: int = 0, max_queries: int = 0,
                 extra: dict | None = None) -> str:
    """Exports `model`, a row learner or a cell learner (`CellTransformer`), as the
    next version of BASE/NAME; returns the version path.

    The backbone supplies its endpoint, warm-up request and metadata (`RowExport`,
    `CellExport`); both meet the same request checks and the same bounds
    (`check_request_sizes`). max_context: the longest context a request may carry,
    0 = the backbone's default (see its class); max_queries: the most queries,
    0 = the backbone's default (row 256, cell 1,024); `extra`: stored in a cell
    version's metadata (e.g. the run's summary)."""
    if isinstance(model, CellTransformer):
        spec = CellExport(model, config, max_context,
                          max_queries if max_queries != 0 else CellExport.default_max_queries,
                          extra)
    else:
        if extra:
            raise InvalidInputError("extra metadata is stored for cell models only")
        spec = RowExport(model, config, max_context,
                         max_queries if max_queries != 0 else RowExport.default_max_queries)
    check_request_sizes(spec.max_context, spec.max_queries, spec.input_size)
    bad = first_non_finite_weight(model)
    if bad:
        raise InvalidInputError(
            f"model weight {bad!r} holds NaN or Inf: refusing to export a model "
            "that would serve garbage")

    def write(tmp: str) -> None:
        serve, signature = spec.endpoint()
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(name=SIGNATURE, fn=serve, input_signature=signature)
        archive.write_out(tmp, verbose=False)
        write_warmup(os.path.join(tmp, WARMUP_FILE), name, spec.warmup())
        spec.write_files(tmp)
        with open(os.path.join(tmp, CONFIG_FILE), "w") as f:
            json.dump(spec.metadata(), f, indent=2, sort_keys=True)

    return write_version(base, name, write)


def write_version(base: str, name: str, write) -> str:
    """Writes the next version of BASE/NAME through `write(tmp_dir)` in a hidden
    temporary folder, renamed to its number only when complete; returns its path
    and rewrites BASE/models.config."""
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise InvalidInputError(f"model name {name!r} must be letters, digits, '-' or '_'")
    inside = os.path.abspath(base)
    while True:   # TF Serving would read an export inside a version as part of it
        if os.path.exists(os.path.join(inside, "saved_model.pb")):
            raise InvalidInputError(f"export base {base!r} is inside the model version "
                                    f"{inside!r}; choose a folder outside it")
        if os.path.dirname(inside) == inside:
            break
        inside = os.path.dirname(inside)
    model_dir = os.path.join(base, name)
    os.makedirs(model_dir, exist_ok=True)
    files.remove_stale_temporaries(model_dir)
    tmp = os.path.join(model_dir, f".tmp-export-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        while True:  # another exporter may take a number first: then take the next
            version = os.path.join(model_dir, str(next_version(model_dir)))
            try:
                os.rename(tmp, version)
                break
            except OSError:
                if not os.path.exists(version):
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_models_config(base)
    return version


def export_run(workdir: str, base: str, name: str = "gpicl", *, max_context: int = 0,
               max_queries: int = 0, step: int = 0, redraw_column_ids: bool = False) -> str:
    """Exports the finished training run in `workdir` (model.keras, config.json,
    summary.json) of either backbone as the next version of BASE/NAME
    (`export_model`; 0 = the backbone's default bound). A cell run's summary goes
    into the version's metadata. Cell runs only: `step` exports the weights the
    run kept at that step (`train.keep_every`) instead of its finished model, e.g.
    for a curve of benchmark accuracy against meta-training time;
    `redraw_column_ids` redraws the model's column-identity table
    (`CellTransformer.redraw_column_ids`)."""
    config_path = os.path.join(workdir, train.CONFIG_FILE)
    summary_path = os.path.join(workdir, train.SUMMARY_FILE)
    if step and not os.path.exists(config_path):
        raise MissingFileError(f"{workdir!r} holds no training run ({config_path} missing)")
    if not step and not os.path.exists(summary_path):
        raise MissingFileError(f"{workdir!r} holds no finished training run "
                               f"({train.SUMMARY_FILE} missing)")
    with open(config_path) as f:
        config = json.load(f)["config"]
    if step:
        if "tables" not in config:
            raise InvalidInputError(f"step={step}: only a cell run keeps the weights of its "
                                    f"steps (train.keep_every); {workdir!r} is a row run")
        path = os.path.join(workdir, "weights", f"step-{step}.weights.h5")
        if not os.path.exists(path):
            raise MissingFileError(f"{workdir!r} kept no weights of step {step} ({path} "
                                   "missing; train.keep_every sets which are kept)")
        from gpicl_tf.config.cell import CellRunConfig
        from gpicl_tf.training import cell_train

        model = cell_train.build_model(CellRunConfig.from_dict(config))
        model.load_weights(path)
        extra = {"steps": step, "weights": os.path.basename(path)}
    else:
        model = keras.models.load_model(os.path.join(workdir, train.MODEL_FILE), compile=False)
        extra = None
        if isinstance(model, CellTransformer):
            with open(summary_path) as f:
                extra = json.load(f)
    if redraw_column_ids:
        if not isinstance(model, CellTransformer):
            raise InvalidInputError("redraw_column_ids is for cell runs; "
                                    f"{workdir!r} is a row run")
        model.redraw_column_ids()
        extra = {**extra, "column_ids": "redrawn N(0, 1) at export"}
    return export_model(model, config, base, name, max_context, max_queries, extra)
