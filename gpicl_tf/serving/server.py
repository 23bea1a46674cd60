"""A local server with TF Serving's REST API, for machines without TF Serving.

    python -m pipelines.serve --model_base_path saved_models/gpicl --port 8501

Paths and JSON as TF Serving's:
    GET  /v1/models/NAME[/versions/V]             model status
    GET  /v1/models/NAME[/versions/V]/metadata    signature metadata
    POST /v1/models/NAME[/versions/V]:predict     {"instances": [...]} -> {"predictions": [...]}
                                                  {"inputs": {...}}   -> {"outputs": {...}}
Errors are always {"error": message}: 400 for a bad request (naming the
problem), 404 for an unknown model, version or path (as TF Serving answers),
405 for a wrong method, 413 for a body over the size limit (refused from its
Content-Length before it is read, or as soon as a streamed body passes the
limit), 408 for a body not received within `body_timeout_s`, 503 with
Retry-After when `max_in_flight` predictions run and `max_queued` more wait (or
when `max_in_flight + max_queued` bodies are already being received). A
prediction slot is taken only once the body is read, so slow or half-sent
bodies never hold one; a client that disconnects mid-body is one log line.
Request bodies are parsed and checked on a worker thread, never on the event
loop; a batch holds at most `max_batch` episodes. Memory for request bodies is
so bounded by 2 x (max_in_flight + max_queued) x the body limit.
"""

from __future__ import annotations

import asyncio
import json

from absl import logging
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from gpicl_tf.export.saved_model import SIGNATURE
from gpicl_tf.data.storage import is_version_name
from gpicl_tf.serving.repository import BadRequest, LoadedVersion, ModelRepository, NotFound
from gpicl_tf.serving.validation import (BYTES_PER_NUMBER, MAX_BATCH, MAX_BODY_BYTES,  # noqa: F401
                                         Limits, body_limit, validate)

TOP_LEVEL_KEYS = ("signature_name", "instances", "inputs")


class PayloadTooLarge(Exception):
    """A request body over the limit (413)."""


class Overloaded(Exception):
    """Every prediction slot busy and the queue full (503)."""


class BodyTimeout(Exception):
    """A request body not received within the deadline (408)."""


class ClientGone(Exception):
    """The client disconnected before its request body was read."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with PayloadTooLarge as soon as it is known to pass
    `limit`: from Content-Length before anything is read, else while streaming."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise BadRequest(f"Content-Length {length[:40]!r} is not a number")
        if int(length) > limit:
            raise PayloadTooLarge(f"request body of {int(length):,} bytes exceeds the limit of "
                                  f"{limit:,} bytes")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


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


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def parse_request(raw: bytes, model: LoadedVersion, max_batch: int = MAX_BATCH):
    """Parses and checks a :predict body (on a worker thread); returns (rows, inputs)."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRequest(f"malformed JSON in request body: {e}") from None
    except RecursionError:
        raise BadRequest("the request body nests JSON too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    unknown = sorted(set(body) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise BadRequest(f"unknown top-level key(s) {unknown}; a request holds "
                         f"{list(TOP_LEVEL_KEYS)}")
    signature = body.get("signature_name", SIGNATURE) or SIGNATURE
    if signature != SIGNATURE:
        raise BadRequest(f"signature_name {signature!r} is not served; use {SIGNATURE!r}")
    if ("instances" in body) == ("inputs" in body):
        raise BadRequest("the request must hold exactly one of 'instances' or 'inputs'")
    rows = "instances" in body
    columns = rows_to_columns(body["instances"]) if rows else body["inputs"]
    return rows, validate(columns, model, max_batch)


class Admission:
    """The server's flow control: at most `max_in_flight + max_queued` bodies read at
    once, each within `body_timeout_s`; a prediction slot taken only once its body is
    read, at most `max_queued` waiting for one (503 + Retry-After beyond)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.slots = asyncio.Semaphore(limits.max_in_flight)
        self.waiting = self.reading = 0

    async def read(self, request: Request, limit: int) -> bytes:
        lim = self.limits
        if self.reading >= lim.max_in_flight + lim.max_queued:
            raise Overloaded(f"{self.reading} request bodies being received; retry after "
                             f"{lim.retry_after_s} s")
        self.reading += 1
        try:
            return await asyncio.wait_for(read_body(request, limit), lim.body_timeout_s)
        except asyncio.TimeoutError:
            raise BodyTimeout(f"the request body was not received within "
                              f"{lim.body_timeout_s:g} s") from None
        except ClientDisconnect:
            raise ClientGone() from None
        finally:
            self.reading -= 1

    async def run(self, fn, *args):
        """`fn(*args)` in the thread pool, holding a prediction slot."""
        if self.slots.locked() and self.waiting >= self.limits.max_queued:
            raise Overloaded(f"{self.limits.max_in_flight} predictions running and "
                             f"{self.waiting} waiting; retry after "
                             f"{self.limits.retry_after_s} s")
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
        try:
            return await run_in_threadpool(fn, *args)
        finally:
            self.slots.release()


def _predict_answer(raw: bytes, model, max_batch: int) -> dict:
    """Parses, predicts and lays out the answer as the request was laid out."""
    rows, inputs = parse_request(raw, model, max_batch)
    out = model.predict(inputs)
    if rows:
        return {"predictions": [{k: v[i].tolist() for k, v in out.items()}
                                for i in range(len(out["classes"]))]}
    return {"outputs": {k: v.tolist() for k, v in out.items()}}


def _version(value: str) -> int:
    if not is_version_name(value):
        raise BadRequest(f"version {value[:40]!r} is not a version number (1 to 18 ASCII "
                         "digits)")
    return int(value)


def create_app(repo: ModelRepository, limits: Limits = Limits()) -> FastAPI:
    """TF Serving's REST API over `repo`: status, metadata and predict, by name and by
    version, with `limits` on bodies, batch and concurrency."""
    app = FastAPI(title="gpicl_tf local model server (TF Serving REST API)")
    _install_error_handlers(app, limits)
    admission = Admission(limits)

    def status(name: str, version: int | None):
        if name.endswith(":predict"):
            raise MethodNotAllowed(f"{name!r}: predict takes POST with a JSON body, not GET")
        return {"model_version_status": [{
            "version": str(row["version"]), "state": row["state"],
            "status": {"error_code": row["error_code"], "error_message": row["error_message"]}}
            for row in repo.version_status(name, version)]}

    def metadata(name: str, version: int | None):
        model = repo.get(name, version)
        return {"model_spec": {"name": name, "signature_name": "", "version": str(model.version)},
                "metadata": {"signature_def": {"signature_def": model.signature_defs}}}

    async def predict(name: str, version: int | None, request: Request):
        model = repo.get(name, version)
        raw = await admission.read(request, body_limit(model, limits))
        return await admission.run(_predict_answer, raw, model, limits.max_batch)

    app.get("/v1/models/{name}")(lambda name: status(name, None))
    app.get("/v1/models/{name}/versions/{version}")(
        lambda name, version: status(name, _version(version)))
    app.get("/v1/models/{name}/metadata")(lambda name: metadata(name, None))
    app.get("/v1/models/{name}/versions/{version}/metadata")(
        lambda name, version: metadata(name, _version(version)))

    @app.post("/v1/models/{name}:predict")
    async def post_predict(name: str, request: Request):
        return await predict(name, None, request)

    @app.post("/v1/models/{name}/versions/{version}:predict")
    async def post_version_predict(name: str, version: str, request: Request):
        return await predict(name, _version(version), request)

    return app


def _answer_with(code: int, headers: dict | None):
    async def handler(_, exc):
        return _error(code, str(exc), headers)
    return handler


def _install_error_handlers(app: FastAPI, limits: Limits) -> None:
    """Every error answers TF Serving's `{"error": ...}` with its status and headers."""
    simple = {BadRequest: (400, None), NotFound: (404, None),
              PayloadTooLarge: (413, {"Connection": "close"}),
              Overloaded: (503, {"Retry-After": str(limits.retry_after_s)}),
              MethodNotAllowed: (405, {"Allow": "POST"})}
    for kind, (code, headers) in simple.items():
        app.add_exception_handler(kind, _answer_with(code, headers))

    @app.exception_handler(BodyTimeout)
    async def body_timeout(request, exc):
        logging.warning("client %s: %s", _peer(request), exc)
        return _error(408, str(exc), {"Connection": "close"})

    @app.exception_handler(ClientGone)
    async def client_gone(request, _):
        logging.warning("client %s disconnected before sending its whole request body "
                        "(%s %s)", _peer(request), request.method, request.url.path)
        return _error(400, "client disconnected", {"Connection": "close"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        if exc.status_code == 404:
            return _error(404, f"no such path: {request.method} {request.url.path}")
        if exc.status_code == 405:
            return _error(405, f"{request.method} is not allowed on {request.url.path}",
                          dict(exc.headers or {}))
        return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid(_, exc):
        return _error(400, f"bad request: {exc.errors()}")


def _peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "?"


class MethodNotAllowed(Exception):
    """A path that exists, asked with the wrong method (405)."""


def serve(base_path: str, name: str, host: str = "127.0.0.1", port: int = 8501,
          poll_seconds: float = 2.0, grpc_port: int = 0, limits: Limits = Limits()) -> None:
    """Serves REST on `port` and, when `grpc_port` is set, gRPC beside it."""
    import uvicorn

    repo = ModelRepository(base_path, name, poll_seconds)
    repo.start()
    grpc_server = None
    if grpc_port:
        from gpicl_tf.serving.grpc_server import start_grpc

        grpc_server = start_grpc(repo, f"{host}:{grpc_port}", limits)
    try:
        uvicorn.run(create_app(repo, limits), host=host, port=port, log_level="warning")
    finally:
        if grpc_server:
            grpc_server.stop(grace=5)
        repo.stop()
