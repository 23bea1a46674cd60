"""What both servers (REST and gRPC) accept: their bounds (`Limits`, `body_limit`)
and the check of a columnar request against the served model (`validate`)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from gpicl_tf.errors import InvalidInputError
from gpicl_tf.export.saved_model import INPUT_NAMES
from gpicl_tf.serving.repository import BadRequest, LoadedVersion

MAX_BATCH = 64
BYTES_PER_NUMBER = 32   # a float32 as JSON text ("-0.12345678901234567, ") with room to spare
MAX_BODY_BYTES = 2 ** 31 - 1   # gRPC's message size limit is a 32-bit int


@dataclasses.dataclass(frozen=True)
class Limits:
    """Bounds of the REST (and gRPC) server.

    Attributes:
        max_batch: episodes per request.
        max_body_bytes: request body size; 0 derives it from the served model
            (`body_limit`).
        max_in_flight: predictions parsed or run at once.
        max_queued: requests waiting for a slot; beyond, 503 with Retry-After.
        retry_after_s: the Retry-After a 503 carries.
        body_timeout_s: seconds to receive a request body; beyond, 408.
    """

    max_batch: int = MAX_BATCH
    max_body_bytes: int = 0
    max_in_flight: int = 4
    max_queued: int = 16
    retry_after_s: int = 1
    body_timeout_s: float = 30.0

    def __post_init__(self):
        if not (math.isfinite(self.body_timeout_s) and self.body_timeout_s > 0):
            raise InvalidInputError(f"body_timeout_s={self.body_timeout_s} must be > 0")
        for key in ("max_batch", "max_in_flight", "retry_after_s"):
            if getattr(self, key) < 1:
                raise InvalidInputError(f"{key}={getattr(self, key)} must be >= 1")
        for key in ("max_body_bytes", "max_queued"):
            if getattr(self, key) < 0:
                raise InvalidInputError(f"{key}={getattr(self, key)} must be >= 0")
        if self.max_body_bytes > MAX_BODY_BYTES:
            raise InvalidInputError(f"max_body_bytes={self.max_body_bytes} must be at most "
                                    f"{MAX_BODY_BYTES} (2 GiB)")


def body_limit(model: LoadedVersion, limits: Limits) -> int:
    """The largest request body accepted: the configured limit, or one that fits
    the largest valid request (max_batch episodes of the model's maximum context
    and queries) as JSON numbers, plus 64 KiB, at most 2 GiB."""
    if limits.max_body_bytes:
        return limits.max_body_bytes
    d = model.input_size
    numbers = model.meta["max_context"] * (d + 1) + model.meta["max_queries"] * d
    return min(limits.max_batch * numbers * BYTES_PER_NUMBER + 64 * 1024, MAX_BODY_BYTES)


def _check_numbers(value, name: str, rank: int) -> None:
    """Every leaf of a nested list of depth `rank` must be a JSON number (not a
    string such as "1.5", not true/false); raises BadRequest naming `name`."""
    level = [value]
    for depth in range(rank):
        if not all(isinstance(v, list) for v in level):
            raise BadRequest(f"{name} must be a rank-{rank} nested list of numbers; found "
                             f"something else at depth {depth}")
        level = [x for v in level for x in v]
    for v in level:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise BadRequest(f"{name} must hold numbers only; found {v!r} "
                             f"({type(v).__name__})")


def _array(value, name: str, dtype, rank: int, allow_nan: bool = False) -> np.ndarray:
    if isinstance(value, np.ndarray):  # gRPC tensors arrive typed
        if value.dtype.kind not in "iuf":
            raise BadRequest(f"{name} has dtype {value.dtype}; it must hold numbers")
    else:
        _check_numbers(value, name, rank)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise BadRequest(f"{name} is not a rectangular array of numbers") from None
    if array.size == 0 and name.startswith("context"):
        raise BadRequest(f"the context is empty: {name} holds no example")
    if array.ndim != rank:
        raise BadRequest(f"{name} has rank {array.ndim} (shape {list(array.shape)}), "
                         f"expected rank {rank}")
    if np.any(np.isinf(array)) or (not allow_nan and np.any(np.isnan(array))):
        raise BadRequest(f"{name} contains {'Inf' if allow_nan else 'NaN or Inf'}")
    if dtype == np.int64:
        if not np.all(array == np.round(array)):
            raise BadRequest(f"{name} must hold integer class labels")
    return array.astype(dtype)


def validate(inputs: dict, model: LoadedVersion,
             max_batch: int = MAX_BATCH) -> dict[str, np.ndarray]:
    """Checks a columnar request against the model; returns numpy inputs."""
    if not isinstance(inputs, dict):
        raise BadRequest("'inputs' must be an object with context_x, context_y, query_x")
    missing = [k for k in INPUT_NAMES if k not in inputs]
    extra = [k for k in inputs if k not in INPUT_NAMES]
    if missing or extra:
        raise BadRequest(f"inputs must be exactly {list(INPUT_NAMES)}; missing {missing}, "
                         f"unknown {extra}")
    d, c = model.input_size, model.num_classes
    schema = model.meta["schema"]
    # a cell model reads any number of columns up to d, and NaN as a missing value
    variable, missing_ok = schema.get("variable_features", False), schema.get("missing_values",
                                                                              False)
    cx = _array(inputs["context_x"], "context_x", np.float32, 3, allow_nan=missing_ok)
    cy = _array(inputs["context_y"], "context_y", np.int64, 2)
    qx = _array(inputs["query_x"], "query_x", np.float32, 3, allow_nan=missing_ok)
    if cx.shape[1] == 0:
        raise BadRequest("the context is empty: context_x holds no example")
    for name, a in (("context_x", cx), ("query_x", qx)):
        if variable and not 1 <= a.shape[2] <= d:
            raise BadRequest(f"{name} has {a.shape[2]} feature columns, the model takes 1 to {d}")
        if not variable and a.shape[2] != d:
            raise BadRequest(f"{name} has feature size {a.shape[2]}, the model takes {d}")
    if variable and cx.shape[2] != qx.shape[2]:
        raise BadRequest(f"query_x has {qx.shape[2]} feature columns, context_x {cx.shape[2]}")
    if cy.shape != cx.shape[:2]:
        raise BadRequest(f"context_y has shape {list(cy.shape)}, context_x needs "
                         f"{list(cx.shape[:2])}")
    if qx.shape[0] != cx.shape[0]:
        raise BadRequest(f"query_x has batch {qx.shape[0]}, context_x has {cx.shape[0]}")
    if cx.shape[0] > max_batch:
        raise BadRequest(f"a batch of {cx.shape[0]} episodes exceeds this server's maximum "
                         f"{max_batch}; split the request")
    if qx.shape[1] == 0:
        raise BadRequest("query_x holds no query")
    if cx.shape[1] > model.meta["max_context"]:
        raise BadRequest(f"context of {cx.shape[1]} examples is longer than the model's "
                         f"maximum {model.meta['max_context']}")
    if qx.shape[1] > model.meta["max_queries"]:
        raise BadRequest(f"{qx.shape[1]} queries exceed the maximum {model.meta['max_queries']}")
    if cy.size and (cy.min() < 0 or cy.max() >= c):
        raise BadRequest(f"context_y labels span [{cy.min()}, {cy.max()}], outside [0, {c})")
    return {"context_x": cx, "context_y": cy, "query_x": qx}
