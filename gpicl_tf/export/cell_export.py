"""SavedModel export of the cell learner, in TF Serving's layout (BASE/NAME/VERSION/).

Example:
    >>> export_cell_run("runs/cell_cpu", "saved_models", "tabular")   # doctest: +SKIP
    'saved_models/tabular/1'

Same `serving_default` signature as every gpicl_tf model, with any number of
feature columns up to the model's `max_features` (context and queries alike)
and missing values allowed as NaN:

    context_x float32 [B, N, C]   context_y int64 [B, N]   query_x float32 [B, Q, C]
    -> probabilities float32 [B, Q, K] (0 for classes absent from the context),
       classes int64 [B, Q]

No random projection: the model standardises each column with the context rows
itself. Queries never see each other. The version also holds the Keras model
(`assets.extra/cell_model.keras`), so training can continue from a released
model (`cell_train.run(..., warm_start=VERSION_DIR)`).
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import tensorflow as tf

from gpicl_tf import io as files
from gpicl_tf.errors import InvalidInputError, MissingFileError
from gpicl_tf.export.saved_model import (CONFIG_FILE, SIGNATURE, WARMUP_FILE,
                                         check_request_sizes, gated_inputs, request_checks,
                                         write_version, write_warmup)
from gpicl_tf.models.cell import CellTransformer
from gpicl_tf.training import cell_train
from gpicl_tf.training.callbacks import first_non_finite_weight

BACKBONE = "cell"


def cell_serving_function(model: CellTransformer, max_context: int, max_queries: int):
    """(serve, input signature) of the cell model's endpoint (see the module doc)."""
    k, max_features = model.num_classes, model.max_features

    def serve(context_x, context_y, query_x):
        checks = request_checks(context_x, context_y, query_x, k, max_context, max_queries,
                                max_features=max_features)
        context_x, context_y, query_x = gated_inputs(checks, context_x, context_y, query_x)
        logits = model({"context_x": context_x, "context_y": context_y, "query_x": query_x},
                       training=False)                                 # [B, Q, K]
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32))
        return {"probabilities": probabilities,
                "classes": tf.argmax(probabilities, axis=-1, output_type=tf.int64)}

    signature = [tf.TensorSpec([None, None, None], tf.float32, name="context_x"),
                 tf.TensorSpec([None, None], tf.int64, name="context_y"),
                 tf.TensorSpec([None, None, None], tf.float32, name="query_x")]
    return serve, signature


def warmup_example(model: CellTransformer, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    c = min(4, model.max_features)
    return {"context_x": rng.standard_normal((1, 8, c)).astype(np.float32),
            "context_y": (np.arange(8) % 2)[None].astype(np.int64),
            "query_x": rng.standard_normal((1, 2, c)).astype(np.float32)}


def export_cell_model(model: CellTransformer, config: dict, base: str, name: str,
                      max_context: int = 1024, max_queries: int = 1024,
                      extra: dict | None = None) -> str:
    """Exports `model` as the next version of BASE/NAME; returns the version path.

    max_context: the longest context a request may carry (the model reads any
    length; meta-training used at most `tables.max_rows` rows). `extra` is
    stored in the version's metadata (e.g. the run's summary)."""
    if not isinstance(model, CellTransformer):
        raise InvalidInputError(f"export_cell_model takes a CellTransformer, not "
                                f"{type(model).__name__}")
    check_request_sizes(max_context, max_queries, model.max_features)   # the row models' bounds
    bad = first_non_finite_weight(model)
    if bad:
        raise InvalidInputError(f"model weight {bad!r} holds NaN or Inf: refusing to export a "
                                "model that would serve garbage")

    def write(tmp: str) -> None:
        serve, signature = cell_serving_function(model, max_context, max_queries)
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(name=SIGNATURE, fn=serve, input_signature=signature)
        archive.write_out(tmp, verbose=False)
        write_warmup(os.path.join(tmp, WARMUP_FILE), name, warmup_example(model))
        model.save(os.path.join(tmp, files.RELEASED_KERAS))
        f_max, k = model.max_features, model.num_classes
        meta = {"backbone": BACKBONE, "config": config,
                "schema": {"input_size": f_max, "num_classes": k, "variable_features": True,
                           "missing_values": True},
                "max_context": max_context, "max_queries": max_queries,
                "trained_context": int(config.get("tables", {}).get("max_rows", 0)),
                "signature": SIGNATURE, **({"training": extra} if extra else {}),
                "inputs": {"context_x": [None, None, None], "context_y": [None, None],
                           "query_x": [None, None, None]},
                "outputs": {"probabilities": [None, None, k], "classes": [None, None]}}
        with open(os.path.join(tmp, CONFIG_FILE), "w") as f:
            json.dump(meta, f, indent=2, sort_keys=True)

    return write_version(base, name, write)


def export_cell_run(workdir: str, base: str, name: str = "tabular", max_context: int = 1024,
                    max_queries: int = 1024, redraw_column_ids: bool = False) -> str:
    """Exports the finished cell run in `workdir` (model.keras, config.json, summary.json);
    `redraw_column_ids`: see `CellTransformer.redraw_column_ids`."""
    summary_path = os.path.join(workdir, cell_train.SUMMARY_FILE)
    if not os.path.exists(summary_path):
        raise MissingFileError(f"{workdir!r} holds no finished cell run "
                               f"({cell_train.SUMMARY_FILE} missing)")
    with open(os.path.join(workdir, cell_train.CONFIG_FILE)) as f:
        config = json.load(f)["config"]
    with open(summary_path) as f:
        summary = json.load(f)
    model = keras.models.load_model(os.path.join(workdir, cell_train.MODEL_FILE), compile=False)
    if redraw_column_ids:
        model.redraw_column_ids()
        summary = {**summary, "column_ids": "redrawn N(0, 1) at export"}
    return export_cell_model(model, config, base, name, max_context, max_queries, summary)


def export_cell_step(workdir: str, step: int, base: str, name: str, max_context: int = 1024,
                     max_queries: int = 1024, redraw_column_ids: bool = False) -> str:
    """Exports the weights a cell run kept at `step` (`train.keep_every`), e.g. to
    measure benchmark accuracy against meta-training time."""
    path = os.path.join(workdir, "weights", f"step-{step}.weights.h5")
    if not os.path.exists(path):
        raise MissingFileError(f"{workdir!r} kept no weights of step {step} ({path} missing; "
                               "train.keep_every sets which are kept)")
    with open(os.path.join(workdir, cell_train.CONFIG_FILE)) as f:
        config = json.load(f)["config"]
    from gpicl_tf.config.cell import CellRunConfig

    model = cell_train.build_model(CellRunConfig.from_dict(config))
    model.load_weights(path)
    extra = {"steps": step, "weights": os.path.basename(path)}
    if redraw_column_ids:
        model.redraw_column_ids()
        extra["column_ids"] = "redrawn N(0, 1) at export"
    return export_cell_model(model, config, base, name, max_context, max_queries, extra)
