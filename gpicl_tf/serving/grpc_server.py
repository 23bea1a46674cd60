"""TF Serving's gRPC PredictionService.Predict and ModelService.GetModelStatus,
served from a `ModelRepository` (the local server's --grpc_port)."""

from __future__ import annotations

from concurrent import futures

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from gpicl_tf.export.saved_model import SIGNATURE
from gpicl_tf.serving.repository import BadRequest, ModelRepository, NotFound
from gpicl_tf.serving.validation import Limits, body_limit, validate


def _model(repo: ModelRepository, spec, context):
    version = spec.version.value if spec.HasField("version") else None
    try:
        return repo.get(spec.name, version)
    except NotFound as e:
        context.abort(grpc.StatusCode.NOT_FOUND, str(e))


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, repo: ModelRepository, limits: Limits = Limits()):
        self.repo, self.limits = repo, limits

    def Predict(self, request, context):
        model = _model(self.repo, request.model_spec, context)
        if request.model_spec.signature_name not in ("", SIGNATURE):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"signature_name {request.model_spec.signature_name!r} is not served")
        try:
            inputs = validate({k: tf.make_ndarray(v) for k, v in request.inputs.items()}, model,
                              self.limits.max_batch)
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
        model = _model(self.repo, request.model_spec, context)
        response = get_model_status_pb2.GetModelStatusResponse()
        status = response.model_version_status.add()
        status.version = model.version
        status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
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
