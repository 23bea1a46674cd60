"""A local server with TF Serving's REST API, for machines without TF Serving.

    python -m pipelines.serve --model_base_path saved_models/gpicl --port 8501

Paths and JSON as TF Serving's:
    GET  /v1/models/NAME[/versions/V]             model status
    GET  /v1/models/NAME[/versions/V]/metadata    signature metadata
    POST /v1/models/NAME[/versions/V]:predict     {"instances": [...]} -> {"predictions": [...]}
                                                  {"inputs": {...}}   -> {"outputs": {...}}
Errors are {"error": message}: 400 for a bad request (naming the problem),
404 for an unknown model or version (as TF Serving answers).
"""

from __future__ import annotations

import json

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gpicl_tf.export.saved_model import INPUT_NAMES, SIGNATURE
from gpicl_tf.serving.repository import BadRequest, LoadedVersion, ModelRepository, NotFound


def _array(value, name: str, dtype, rank: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise BadRequest(f"{name} is not a rectangular array of numbers") from None
    if array.size == 0 and name.startswith("context"):
        raise BadRequest(f"the context is empty: {name} holds no example")
    if array.ndim != rank:
        raise BadRequest(f"{name} has rank {array.ndim} (shape {list(array.shape)}), "
                         f"expected rank {rank}")
    if not np.all(np.isfinite(array)):
        raise BadRequest(f"{name} contains NaN or Inf")
    if dtype == np.int64:
        if not np.all(array == np.round(array)):
            raise BadRequest(f"{name} must hold integer class labels")
    return array.astype(dtype)


def validate(inputs: dict, model: LoadedVersion) -> dict[str, np.ndarray]:
    """Checks a columnar request against the model; returns numpy inputs."""
    if not isinstance(inputs, dict):
        raise BadRequest("'inputs' must be an object with context_x, context_y, query_x")
    missing = [k for k in INPUT_NAMES if k not in inputs]
    extra = [k for k in inputs if k not in INPUT_NAMES]
    if missing or extra:
        raise BadRequest(f"inputs must be exactly {list(INPUT_NAMES)}; missing {missing}, "
                         f"unknown {extra}")
    d, c = model.input_size, model.num_classes
    cx = _array(inputs["context_x"], "context_x", np.float32, 3)
    cy = _array(inputs["context_y"], "context_y", np.int64, 2)
    qx = _array(inputs["query_x"], "query_x", np.float32, 3)
    if cx.shape[1] == 0:
        raise BadRequest("the context is empty: context_x holds no example")
    for name, a in (("context_x", cx), ("query_x", qx)):
        if a.shape[2] != d:
            raise BadRequest(f"{name} has feature size {a.shape[2]}, the model takes {d}")
    if cy.shape != cx.shape[:2]:
        raise BadRequest(f"context_y has shape {list(cy.shape)}, context_x needs "
                         f"{list(cx.shape[:2])}")
    if qx.shape[0] != cx.shape[0]:
        raise BadRequest(f"query_x has batch {qx.shape[0]}, context_x has {cx.shape[0]}")
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


def rows_to_columns(instances) -> dict:
    """Row format: a list of per-example objects, batched like TF Serving does."""
    if not isinstance(instances, list) or not instances:
        raise BadRequest("'instances' must be a non-empty list")
    if not all(isinstance(i, dict) for i in instances):
        raise BadRequest("every instance must be an object with context_x, context_y, query_x")
    keys = set(instances[0])
    if any(set(i) != keys for i in instances):
        raise BadRequest("all instances must have the same named inputs")
    return {k: [i[k] for i in instances] for k in keys}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(repo: ModelRepository) -> FastAPI:
    app = FastAPI(title="gpicl_tf local model server (TF Serving REST API)")

    def status(name: str, version: int | None):
        model = repo.get(name, version)
        return {"model_version_status": [{
            "version": str(model.version), "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]}

    def metadata(name: str, version: int | None):
        model = repo.get(name, version)
        return {"model_spec": {"name": name, "signature_name": "", "version": str(model.version)},
                "metadata": {"signature_def": {"signature_def": model.signature_defs}}}

    async def predict(name: str, version: int | None, request: Request):
        model = repo.get(name, version)
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadRequest(f"malformed JSON in request body: {e}") from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        signature = body.get("signature_name", SIGNATURE) or SIGNATURE
        if signature != SIGNATURE:
            raise BadRequest(f"signature_name {signature!r} is not served; use {SIGNATURE!r}")
        if ("instances" in body) == ("inputs" in body):
            raise BadRequest("the request must hold exactly one of 'instances' or 'inputs'")
        rows = "instances" in body
        columns = rows_to_columns(body["instances"]) if rows else body["inputs"]
        out = await run_in_threadpool(model.predict, validate(columns, model))
        if rows:
            n = len(out["classes"])
            return {"predictions": [{k: v[i].tolist() for k, v in out.items()}
                                    for i in range(n)]}
        return {"outputs": {k: v.tolist() for k, v in out.items()}}

    def _version(value: str) -> int:
        if not value.isdigit():
            raise BadRequest(f"version {value!r} is not a number")
        return int(value)

    @app.exception_handler(BadRequest)
    async def bad_request(_, exc):
        return _error(400, str(exc))

    @app.exception_handler(NotFound)
    async def not_found(_, exc):
        return _error(404, str(exc))

    @app.get("/v1/models/{name}")
    def get_status(name: str):
        return status(name, None)

    @app.get("/v1/models/{name}/versions/{version}")
    def get_version_status(name: str, version: str):
        return status(name, _version(version))

    @app.get("/v1/models/{name}/metadata")
    def get_metadata(name: str):
        return metadata(name, None)

    @app.get("/v1/models/{name}/versions/{version}/metadata")
    def get_version_metadata(name: str, version: str):
        return metadata(name, _version(version))

    @app.post("/v1/models/{name}:predict")
    async def post_predict(name: str, request: Request):
        return await predict(name, None, request)

    @app.post("/v1/models/{name}/versions/{version}:predict")
    async def post_version_predict(name: str, version: str, request: Request):
        return await predict(name, _version(version), request)

    return app


def serve(base_path: str, name: str, host: str = "127.0.0.1", port: int = 8501,
          poll_seconds: float = 2.0, grpc_port: int = 0) -> None:
    """Serves REST on `port` and, when `grpc_port` is set, gRPC beside it."""
    import uvicorn

    repo = ModelRepository(base_path, name, poll_seconds)
    repo.start()
    grpc_server = None
    if grpc_port:
        from gpicl_tf.serving.grpc_server import start_grpc

        grpc_server = start_grpc(repo, f"{host}:{grpc_port}")
    try:
        uvicorn.run(create_app(repo), host=host, port=port, log_level="warning")
    finally:
        if grpc_server:
            grpc_server.stop(grace=5)
        repo.stop()
