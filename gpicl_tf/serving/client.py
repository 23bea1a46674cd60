"""Clients for TF Serving's REST and gRPC APIs (and the local server's REST API).

Example:
    >>> client = RestClient("http://127.0.0.1:8501", "gpicl")             # doctest: +SKIP
    >>> client.predict(context_x, context_y, query_x)["classes"]          # doctest: +SKIP
"""

from __future__ import annotations

import json

import numpy as np

from gpicl_tf.errors import GpiclError, InvalidInputError


class ServingError(GpiclError, RuntimeError):
    """The server answered with an error; `status` is the HTTP (or gRPC) code."""

    def __init__(self, status, message: str):
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


def _columns(context_x, context_y, query_x) -> dict:
    return {"context_x": np.asarray(context_x, np.float32),
            "context_y": np.asarray(context_y, np.int64),
            "query_x": np.asarray(query_x, np.float32)}


class RestClient:
    """TF Serving's REST API: status, metadata and :predict (columnar or row form)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8501", model: str = "gpicl",
                 timeout: float = 60.0):
        import requests

        self.base_url, self.model, self.timeout = base_url.rstrip("/"), model, timeout
        self._session = requests.Session()

    def _url(self, version: int | None, suffix: str = "") -> str:
        v = f"/versions/{version}" if version is not None else ""
        return f"{self.base_url}/v1/models/{self.model}{v}{suffix}"

    def _send(self, method: str, url: str, body=None) -> dict:
        data = None if body is None else json.dumps(body)
        response = self._session.request(method, url, data=data, timeout=self.timeout)
        try:
            payload = response.json()
        except ValueError:
            raise ServingError(response.status_code, response.text[:500]) from None
        if response.status_code != 200 or "error" in payload:
            raise ServingError(response.status_code, payload.get("error", response.text[:500]))
        return payload

    def status(self, version: int | None = None) -> dict:
        return self._send("GET", self._url(version))

    def metadata(self, version: int | None = None) -> dict:
        return self._send("GET", self._url(version, "/metadata"))

    def predict(self, context_x, context_y, query_x, *, version: int | None = None,
                form: str = "inputs") -> dict[str, np.ndarray]:
        """probabilities [B, Q, C] and classes [B, Q] for a batch of episodes."""
        cols = _columns(context_x, context_y, query_x)
        if form == "inputs":
            body = {"inputs": {k: v.tolist() for k, v in cols.items()}}
            out = self._send("POST", self._url(version, ":predict"), body)["outputs"]
            return {k: np.asarray(v) for k, v in out.items()}
        if form == "instances":
            rows = [{k: v[i].tolist() for k, v in cols.items()}
                    for i in range(len(cols["context_x"]))]
            preds = self._send("POST", self._url(version, ":predict"),
                               {"instances": rows})["predictions"]
            return {k: np.asarray([p[k] for p in preds]) for k in preds[0]}
        raise InvalidInputError(f"form={form!r} is not 'inputs' or 'instances'")


class GrpcClient:
    """TF Serving's gRPC API through tensorflow-serving-api's stubs."""

    def __init__(self, target: str = "127.0.0.1:8500", model: str = "gpicl",
                 timeout: float = 60.0):
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.model, self.timeout = model, timeout
        self._channel = grpc.insecure_channel(target)
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def _spec(self, spec, version: int | None):
        spec.name = self.model
        spec.signature_name = "serving_default"
        if version is not None:
            spec.version.value = version

    def _call(self, method, request):
        import grpc

        try:
            return method(request, self.timeout)
        except grpc.RpcError as e:
            raise ServingError(e.code().name, e.details()) from None

    def status(self, version: int | None = None) -> list[dict]:
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model
        if version is not None:
            request.model_spec.version.value = version
        response = self._call(self._models.GetModelStatus, request)
        return [{"version": s.version,
                 "state": get_model_status_pb2.ModelVersionStatus.State.Name(s.state)}
                for s in response.model_version_status]

    def predict(self, context_x, context_y, query_x, *,
                version: int | None = None) -> dict[str, np.ndarray]:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, version)
        for key, value in _columns(context_x, context_y, query_x).items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        response = self._call(self._predict.Predict, request)
        return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

    def close(self) -> None:
        self._channel.close()
