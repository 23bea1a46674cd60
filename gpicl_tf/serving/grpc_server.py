"""TF Serving's gRPC PredictionService.Predict and ModelService.GetModelStatus,
served from a `ModelRepository` (the local server's --grpc_port)."""

from __future__ import annotations

from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from gpicl_tf.export.saved_model import INPUT_NAMES, SIGNATURE
from gpicl_tf.serving.repository import BadRequest, ModelRepository, NotFound
from gpicl_tf.serving.validation import Limits, body_limit, validate


def _model(repo: ModelRepository, spec, context):
    version = spec.version.value if spec.HasField("version") else None
    try:
        return repo.get(spec.name, version)
    except NotFound as e:
        context.abort(grpc.StatusCode.NOT_FOUND, str(e))


# the numeric dtypes a request tensor may have: TensorProto field, numpy dtype
_DTYPES = {1: ("float_val", np.float32), 2: ("double_val", np.float64),
           3: ("int_val", np.int32), 9: ("int64_val", np.int64)}
_DTYPE_NAMES = "DT_FLOAT, DT_DOUBLE, DT_INT32 or DT_INT64"


def request_arrays(tensors, model, max_batch: int) -> dict[str, np.ndarray]:
    """The request's TensorProtos as numpy arrays, each checked before it is built:
    names, dtype, rank, every dimension against the model's and the server's
    bounds (so a few bytes of shape cannot ask for gigabytes), and the content
    size against the shape. Raises BadRequest naming the problem."""
    names = list(tensors.keys())
    missing = [k for k in INPUT_NAMES if k not in names]
    extra = [k for k in names if k not in INPUT_NAMES]
    if missing or extra:
        raise BadRequest(f"inputs must be exactly {list(INPUT_NAMES)}; missing {missing}, "
                         f"unknown {extra[:5]}")
    variable = model.meta["schema"].get("variable_features", False)
    d = model.input_size
    length = {"context_x": ("context examples", model.meta["max_context"]),
              "context_y": ("context examples", model.meta["max_context"]),
              "query_x": ("queries", model.meta["max_queries"])}
    arrays = {}
    for name in INPUT_NAMES:
        proto = tensors[name]
        if proto.dtype not in _DTYPES:
            raise BadRequest(f"{name} has dtype {_dtype_name(proto.dtype)}; it must be "
                             f"{_DTYPE_NAMES}")
        if proto.tensor_shape.unknown_rank:
            raise BadRequest(f"{name} has an unknown rank")
        shape = [dim.size for dim in proto.tensor_shape.dim]
        rank = 2 if name == "context_y" else 3
        if len(shape) != rank:
            raise BadRequest(f"{name} has rank {len(shape)} (shape {shape[:8]}), expected "
                             f"rank {rank}")
        if any(s < 0 for s in shape):
            raise BadRequest(f"{name} has a negative dimension (shape {shape})")
        what, most = length[name]
        if shape[0] > max_batch:
            raise BadRequest(f"a batch of {shape[0]} episodes exceeds this server's maximum "
                             f"{max_batch}; split the request")
        if shape[1] > most:
            raise BadRequest(f"{name} holds {shape[1]} {what}, more than the model's maximum "
                             f"{most}")
        if rank == 3 and (shape[2] > d or (not variable and shape[2] != d)):
            raise BadRequest(f"{name} has feature size {shape[2]}, the model takes "
                             f"{'1 to ' if variable else ''}{d}")
        field, dtype = _DTYPES[proto.dtype]
        n = int(np.prod(shape, dtype=np.int64))
        if proto.tensor_content:
            size, want = len(proto.tensor_content), n * np.dtype(dtype).itemsize
            if getattr(proto, field):
                raise BadRequest(f"{name} holds both tensor_content and {field}")
            if size != want:
                raise BadRequest(f"{name} has {size} bytes of tensor_content; its shape "
                                 f"{shape} needs {want}")
            array = np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
        else:
            count = len(getattr(proto, field))
            if count != n:
                raise BadRequest(f"{name} holds {count} values in {field}; its shape {shape} "
                                 f"needs {n}")
            array = np.asarray(getattr(proto, field), dtype=dtype).reshape(shape)
        arrays[name] = array
    return arrays


def _dtype_name(value: int) -> str:
    from tensorflow.core.framework import types_pb2

    try:
        return types_pb2.DataType.Name(value)
    except ValueError:
        return f"number {value}"


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, repo: ModelRepository, limits: Limits = Limits()):
        self.repo, self.limits = repo, limits

    def Predict(self, request, context):
        model = _model(self.repo, request.model_spec, context)
        if request.model_spec.signature_name not in ("", SIGNATURE):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"signature_name {request.model_spec.signature_name!r} is not served")
        try:
            inputs = validate(request_arrays(request.inputs, model, self.limits.max_batch),
                              model, self.limits.max_batch)
        except BadRequest as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = model.version
        response.model_spec.signature_name = SIGNATURE
        for key, value in model.predict(inputs).items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, repo: ModelRepository):
        self.repo = repo

    def GetModelStatus(self, request, context):
        spec = request.model_spec
        try:
            rows = self.repo.version_status(
                spec.name, spec.version.value if spec.HasField("version") else None)
        except NotFound as e:
            context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        response = get_model_status_pb2.GetModelStatusResponse()
        for row in rows:
            status = response.model_version_status.add()
            status.version = row["version"]
            status.state = get_model_status_pb2.ModelVersionStatus.State.Value(row["state"])
            if row["error_code"] != "OK":
                status.status.error_code = 2   # UNKNOWN
                status.status.error_message = row["error_message"]
        return response


def start_grpc(repo: ModelRepository, address: str, limits: Limits = Limits(),
               workers: int = 8) -> grpc.Server:
    """gRPC beside the REST server, with the same bounds: a message over the body
    limit of the model served at start is refused (RESOURCE_EXHAUSTED) before it is
    parsed, and at most `limits.max_in_flight` calls run at once."""
    limit = body_limit(repo.get(repo.name), limits)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=min(workers,
                                                                    limits.max_in_flight)),
                         maximum_concurrent_rpcs=limits.max_in_flight + limits.max_queued,
                         options=[("grpc.max_receive_message_length", limit)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(repo, limits), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(repo), server)
    server.add_insecure_port(address)
    server.start()
    return server
