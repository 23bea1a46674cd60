"""Export of a cell learner's run (`gpicl_tf.training.cell_train`) in TF Serving's
layout, through the one `saved_model.export_model` (`saved_model.CellExport` says
what a cell version holds and serves).

Example:
    >>> export_cell_run("runs/cell_cpu", "saved_models", "tabular")   # doctest: +SKIP
    'saved_models/tabular/1'
"""

from __future__ import annotations

import json
import os

import keras

from gpicl_tf.errors import MissingFileError
from gpicl_tf.export.saved_model import export_model
from gpicl_tf.training import cell_train


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
    return export_model(model, config, base, name, max_context, max_queries, summary)


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
    return export_model(model, config, base, name, max_context, max_queries, extra)
