"""Batches of prior tables for the cell learner, drawn on the fly.

Batch `step` of a run is a pure function of (seed, step): its shape (rows R,
training rows N, columns C, tables B; see `TableConfig`) and its tables (a
fresh task of the prior per table, `gpicl_tf.data.prior`) come from numpy's
generator seeded by (seed, "tables", step), so a resumed run reads the same
batches, and the validation set is batch "steps" of another stream.

Values are raw (unstandardised, NaN = missing): the model standardises each
column with its training rows. Each table's classes are mapped to a random
subset of the head's classes in random order (label permutation), and test
rows whose class never occurs in the training rows get weight 0 (nothing can
predict them).

Example:
    >>> from gpicl_tf.config.cell import get_cell_preset
    >>> batch = table_batch(get_cell_preset("cell_smoke"), step=0)
    >>> sorted(batch)
    ['column_ids', 'context_x', 'context_y', 'query_weight', 'query_x', 'query_y']
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import zlib

import numpy as np

from gpicl_tf.config.cell import CellRunConfig
from gpicl_tf.data import prior

_STREAM = zlib.crc32(b"tables")
_VALIDATION = zlib.crc32(b"validation")


def batch_shape(cfg: CellRunConfig, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(B tables, R rows, N training rows, C columns) of one batch."""
    t, p = cfg.tables, cfg.prior
    rows = int(rng.integers(t.min_rows, t.max_rows + 1))
    train = int(round(rows * rng.uniform(t.min_train_fraction, t.max_train_fraction)))
    train = min(max(train, 2), rows - 1)
    columns = int(np.exp(rng.uniform(np.log(p.min_features), np.log(p.max_features + 1))))
    columns = min(max(columns, p.min_features), p.max_features)
    tables = int(np.clip(t.cells_per_step // (rows * (columns + 1)), t.min_batch, t.max_batch))
    return tables, rows, train, columns


def draw_batch(cfg: CellRunConfig, rng: np.random.Generator, shape=None) -> dict[str, np.ndarray]:
    """One batch of `shape` (default: drawn) from `rng`: context_x float32 [B, N, C],
    context_y int32 [B, N], query_x float32 [B, Q, C], query_y int32 [B, Q],
    query_weight float32 [B, Q], column_ids float32 [B, C, id_size] (each table's
    random column identities)."""
    b, r, n, c = shape or batch_shape(cfg, rng)
    fixed = dataclasses.replace(cfg.prior, min_features=c, max_features=c)
    k_head = cfg.model.num_classes
    xs, ys = np.zeros((b, r, c), np.float32), np.zeros((b, r), np.int32)
    for i in range(b):
        task = prior.sample_task(rng, fixed, k_head)
        x, y = task.sample(rng, r, train=n)   # train: only with classes_on_both_sides
        with np.errstate(over="ignore", invalid="ignore"):
            xs[i] = np.clip(x, -1e30, 1e30)          # float32 range; NaN stays NaN
        ys[i] = rng.permutation(k_head)[y]           # classes on random head slots
    weight = (ys[:, n:, None] == ys[:, None, :n]).any(-1).astype(np.float32)
    ids = rng.standard_normal((b, c, cfg.model.id_size)).astype(np.float32)
    return {"context_x": xs[:, :n], "context_y": ys[:, :n], "query_x": xs[:, n:],
            "query_y": ys[:, n:], "query_weight": weight, "column_ids": ids}


def table_batch(cfg: CellRunConfig, step: int) -> dict[str, np.ndarray]:
    """Training batch `step` (a pure function of cfg.train.seed and step)."""
    return draw_batch(cfg, np.random.default_rng([cfg.train.seed, _STREAM, int(step)]))


def validation_batches(cfg: CellRunConfig, per_batch: int = 16) -> list[dict[str, np.ndarray]]:
    """The fixed validation set: `tables.validation_tables` tables of 128 rows
    (half training rows), batched by shape in groups of columns."""
    rng = np.random.default_rng([cfg.train.seed, _VALIDATION])
    out, left = [], cfg.tables.validation_tables
    rows = min(max(cfg.tables.max_rows, 8), 128)
    while left > 0:
        b = min(per_batch, left)
        c = int(rng.integers(cfg.prior.min_features, cfg.prior.max_features + 1))
        out.append(draw_batch(cfg, rng, (b, rows, rows // 2, c)))
        left -= b
    return out


class Prefetcher:
    """Training batches start..stop-1 made in a background thread, `depth` ahead.

    Iterate it; `close()` stops the thread. A batch that fails to build re-raises
    in the consumer."""

    def __init__(self, cfg: CellRunConfig, start: int, stop: int, depth: int = 4):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(cfg, start, stop), daemon=True)
        self._thread.start()

    def _run(self, cfg, start, stop):
        for step in list(range(start, stop)) + [None]:   # None: the end
            try:
                item = (step, None if step is None else table_batch(cfg, step), None)
            except Exception as e:          # handed to the consumer, raised there
                item = (step, None, e)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.5)
                    break
                except queue.Full:
                    continue
            if self._stop.is_set() or item[2] is not None:
                return

    def __iter__(self):
        while True:
            step, batch, error = self._queue.get()
            if error is not None:
                raise error
            if step is None:
                return
            yield step, batch

    def close(self):
        self._stop.set()
