import json
import os
import re
import threading
import time

import numpy as np
import pytest
import requests
import tensorflow as tf

from gpicl_tf.export import saved_model
from gpicl_tf.serving.client import GrpcClient, RestClient, ServingError

# starts a server process or trains and exports a model: not in the fast loop
pytestmark = pytest.mark.slow


def _request(b=2, n=6, q=3, d=16, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((b, n, d)).astype(np.float32),
            rng.integers(0, 10, (b, n)), rng.standard_normal((b, q, d)).astype(np.float32))


def _direct(base, cx, cy, qx, version=1):
    fn = tf.saved_model.load(os.path.join(base, "gpicl", str(version))).signatures[
        "serving_default"]
    return fn(context_x=tf.constant(cx), context_y=tf.constant(cy, tf.int64),
              query_x=tf.constant(qx))["probabilities"].numpy()


def test_status_and_metadata(server):
    client = RestClient(server["url"], "gpicl")
    status = client.status()["model_version_status"][0]
    assert status["state"] == "AVAILABLE" and status["status"]["error_code"] == "OK"
    assert client.status(version=int(status["version"]))["model_version_status"]
    sig = client.metadata()["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert set(sig["inputs"]) == {"context_x", "context_y", "query_x"}
    assert set(sig["outputs"]) == {"probabilities", "classes"}


@pytest.mark.parametrize("form", ["inputs", "instances"])
def test_predict_matches_the_savedmodel(server, form):
    cx, cy, qx = _request()
    out = RestClient(server["url"], "gpicl").predict(cx, cy, qx, form=form, version=1)
    want = _direct(server["base"], cx, cy, qx)
    assert out["probabilities"].shape == (2, 3, 10)
    assert np.abs(out["probabilities"] - want).max() < 1e-5
    np.testing.assert_array_equal(out["classes"], want.argmax(-1))


def test_grpc_client(server):
    cx, cy, qx = _request(seed=3)
    client = GrpcClient(server["grpc"], "gpicl")
    assert client.status()[0]["state"] == "AVAILABLE"
    out = client.predict(cx, cy, qx)
    assert np.abs(out["probabilities"] - _direct(server["base"], cx, cy, qx)).max() < 1e-5
    with pytest.raises(ServingError, match="INVALID_ARGUMENT.*feature size 4"):
        client.predict(cx[..., :4], cy, qx[..., :4])
    with pytest.raises(ServingError, match="NOT_FOUND"):
        GrpcClient(server["grpc"], "other").predict(cx, cy, qx)
    big_cx, big_cy, big_qx = _request(b=1, n=200_000)        # 13 MB: over the message limit
    with pytest.raises(ServingError, match="RESOURCE_EXHAUSTED"):
        client.predict(big_cx, big_cy, big_qx)
    client.close()


def _body(cx, cy, qx):
    return {"inputs": {"context_x": np.asarray(cx).tolist(), "context_y": np.asarray(cy).tolist(),
                       "query_x": np.asarray(qx).tolist()}}


BAD = {
    "wrong feature size": (lambda cx, cy, qx: _body(cx[..., :5], cy, qx[..., :5]),
                           "feature size 5, the model takes 16"),
    "non-integer labels": (lambda cx, cy, qx: _body(cx, cy + 0.5, qx), "integer class labels"),
    "out-of-range labels": (lambda cx, cy, qx: _body(cx, cy - 20, qx), "outside \\[0, 10\\)"),
    "negative labels": (lambda cx, cy, qx: _body(cx, -np.ones_like(cy), qx), "outside \\[0, 10\\)"),
    "empty context": (lambda cx, cy, qx: _body(np.zeros((2, 0, 16)), np.zeros((2, 0)), qx),
                      "the context is empty"),
    "too long context": (lambda cx, cy, qx: _body(np.zeros((2, 12, 16)), np.zeros((2, 12)), qx),
                         "longer than the model's maximum 11"),
    "missing input": (lambda cx, cy, qx: {"inputs": {"context_x": cx.tolist()}},
                      "missing \\['context_y', 'query_x'\\]"),
    "both forms": (lambda cx, cy, qx: {**_body(cx, cy, qx), "instances": []},
                   "exactly one of 'instances' or 'inputs'"),
    "ragged": (lambda cx, cy, qx: {"inputs": {**_body(cx, cy, qx)["inputs"],
                                              "query_x": [[[1.0]], [[1.0, 2.0]]]}},
               "not a rectangular array"),
    "numeric strings": (lambda cx, cy, qx: {"inputs": {
        **_body(cx, cy, qx)["inputs"], "query_x": np.asarray(qx).astype(str).tolist()}},
        "query_x must hold numbers only; found '"),
    "booleans": (lambda cx, cy, qx: {"inputs": {
        **_body(cx, cy, qx)["inputs"], "context_y": (np.asarray(cy) > 4).tolist()}},
        "context_y must hold numbers only; found (True|False) \\(bool\\)"),
    "unknown top-level key": (lambda cx, cy, qx: {**_body(cx, cy, qx), "instance": []},
                              "unknown top-level key\\(s\\) \\['instance'\\]"),
    "batch over the cap": (lambda cx, cy, qx: _body(np.zeros((65, 3, 16)), np.zeros((65, 3)),
                                                    np.zeros((65, 1, 16))),
                           "a batch of 65 episodes exceeds this server's maximum 64"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_requests_get_400_naming_the_problem(server, case):
    make, message = BAD[case]
    r = requests.post(f"{server['url']}/v1/models/gpicl:predict", json=make(*_request()),
                      timeout=30)
    assert r.status_code == 400, r.text
    assert re.search(message, r.json()["error"]), r.json()["error"]


def test_nan_and_malformed_json_get_400(server):
    cx, cy, qx = _request()
    cx[0, 0, 0] = np.nan
    text = json.dumps(_body(cx, cy, qx))  # Python writes NaN, as some clients do
    r = requests.post(f"{server['url']}/v1/models/gpicl:predict", data=text, timeout=30)
    assert r.status_code == 400 and "context_x contains NaN or Inf" in r.json()["error"]
    r = requests.post(f"{server['url']}/v1/models/gpicl:predict", data="{not json", timeout=30)
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]


def test_unknown_model_and_version_get_404(server):
    r = requests.get(f"{server['url']}/v1/models/other", timeout=30)
    assert r.status_code == 404 and "'other'" in r.json()["error"]
    r = requests.post(f"{server['url']}/v1/models/gpicl/versions/99:predict",
                      json=_body(*_request()), timeout=30)
    assert r.status_code == 404 and "version 99" in r.json()["error"]
    r = requests.get(f"{server['url']}/v1/models/gpicl/versions/x1", timeout=30)
    assert r.status_code == 400 and "'x1'" in r.json()["error"]


def test_every_error_is_json_with_the_right_code(server):
    url = server["url"]
    deep = "[" * 100_000 + "]" * 100_000
    cases = [
        ("get", "/v1/models/gpicl/versions/\u00b2", 400, "not a version number"),
        ("get", "/v1/models/gpicl/versions/" + "9" * 5000, 400, "not a version number"),
        ("post", "/v1/models/gpicl:predict", 400, "nests JSON too deeply"),
        ("get", "/v1/models/gpicl:predict", 405, "predict takes POST"),
        ("get", "/nowhere", 404, "no such path: GET /nowhere"),
        ("delete", "/v1/models/gpicl", 405, "DELETE is not allowed"),
    ]
    for method, path, code, message in cases:
        r = requests.request(method, url + path, data=deep if code == 400 and "predict" in path
                             else None, timeout=60)
        assert r.status_code == code, (path[:40], r.status_code, r.text[:200])
        assert message in r.json()["error"], (path[:40], r.json())


@pytest.mark.slow
def test_a_large_body_is_parsed_off_the_event_loop_and_a_busy_server_says_503(bounded_server):
    """While a ~60 MB body (200,000 context examples) is parsed and checked, which
    takes seconds, a status request is answered first; with the only prediction
    slot busy and no queue, a second prediction gets 503 with Retry-After."""
    server = bounded_server
    cx, cy, qx = _request(b=1, n=200_000)
    big = json.dumps(_body(cx, cy, qx))
    order = []

    def post():
        r = requests.post(f"{server['url']}/v1/models/gpicl:predict", data=big, timeout=120)
        assert r.status_code == 400 and "longer than the model's maximum" in r.json()["error"]
        order.append("predict")

    t = threading.Thread(target=post)
    t.start()
    time.sleep(0.3)   # the body is on its way
    assert requests.get(f"{server['url']}/v1/models/gpicl", timeout=60).status_code == 200
    order.append("status")
    # with one slot and no queue, a small prediction meanwhile gets 503: while the big
    # body is still being received (a body being read counts against the bound, CI's
    # loaded machine reached this) or once its prediction holds the slot
    deadline = time.time() + 60
    while True:
        busy = requests.post(f"{server['url']}/v1/models/gpicl:predict",
                             json=_body(*_request()), timeout=60)
        if busy.status_code != 200 or order or time.time() > deadline:
            break
        time.sleep(0.1)
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1", busy.text
    assert ("1 predictions running" in busy.json()["error"] or
            "1 request bodies being received" in busy.json()["error"]), busy.text
    t.join(timeout=120)
    assert order == ["status", "predict"], order


def test_oversize_bodies_get_413_before_they_are_read(server):
    cx, cy, qx = _request(b=1, n=200_000)
    big = json.dumps(_body(cx, cy, qx)).encode()
    r = requests.post(f"{server['url']}/v1/models/gpicl:predict", data=big, timeout=60)
    assert r.status_code == 413 and "exceeds the limit of" in r.json()["error"]

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for start in range(0, len(big), 1 << 20):
            yield big[start:start + (1 << 20)]

    r = requests.post(f"{server['url']}/v1/models/gpicl:predict", data=chunks(), timeout=60)
    assert r.status_code == 413 and "exceeds the limit of" in r.json()["error"]
    ok = requests.post(f"{server['url']}/v1/models/gpicl:predict", json=_body(*_request()),
                       timeout=60)
    assert ok.status_code == 200


@pytest.mark.slow
def test_load_and_new_version_without_dropped_requests(server, trained_run):
    """4 concurrent clients, 30 requests each, while a new version is exported."""
    errors, done = [], []
    cx, cy, qx = _request()

    def worker(i):
        client = RestClient(server["url"], "gpicl", timeout=60)
        for k in range(30):
            try:
                out = client.predict(cx, cy, qx, form="inputs" if (i + k) % 2 else "instances")
                assert out["probabilities"].shape == (2, 3, 10)
                done.append(1)
            except Exception as e:  # every failure is counted and reported
                errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    version = saved_model.export_run(trained_run, server["base"], "gpicl")
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[:3]
    assert len(done) == 120
    deadline = time.time() + 60
    client = RestClient(server["url"], "gpicl")
    while time.time() < deadline:
        if client.status()["model_version_status"][0]["version"] == os.path.basename(version):
            break
        time.sleep(0.5)
    else:
        pytest.fail("the server did not pick up the new version within 60 s")
    out = client.predict(cx, cy, qx, version=int(os.path.basename(version)))
    assert out["classes"].shape == (2, 3)


class _FakeModel:
    """What request_arrays reads of a LoadedVersion: the smoke model's sizes."""
    input_size = 16
    meta = {"max_context": 11, "max_queries": 5, "schema": {"input_size": 16}}


def _protos(**changes):
    cx, cy, qx = _request()
    protos = {"context_x": tf.make_tensor_proto(cx), "context_y": tf.make_tensor_proto(cy),
              "query_x": tf.make_tensor_proto(qx[:, :3])}
    for name, change in changes.items():
        change(protos[name])
    return protos


def _shape(*dims):
    def change(proto):
        proto.ClearField("tensor_content")
        proto.tensor_shape.ClearField("dim")
        for d in dims:
            proto.tensor_shape.dim.add().size = d
    return change


GRPC_BAD = {
    "huge feature size, no values": ({"query_x": _shape(1, 1, 50_000_000)},
                                     "feature size 50000000"),
    "2e9 features": ({"query_x": _shape(1, 1, 2_000_000_000)}, "feature size 2000000000"),
    "huge batch": ({"context_x": _shape(10 ** 12, 1, 16)}, "batch of 1000000000000"),
    "huge context": ({"context_y": _shape(2, 10 ** 9)}, "more than the model's maximum 11"),
    "negative dimension": ({"query_x": _shape(2, -3, 16)}, "negative dimension"),
    "content shorter than the shape": (
        {"query_x": lambda p: setattr(p, "tensor_content", p.tensor_content[:-4])},
        "bytes of tensor_content; its shape \\[2, 3, 16\\] needs 384"),
    "no values for a shape": ({"query_x": _shape(2, 3, 16)}, "holds 0 values in float_val"),
    "DT_INVALID": ({"context_y": lambda p: setattr(p, "dtype", 0)}, "dtype DT_INVALID"),
    "strings": ({"context_y": lambda p: setattr(p, "dtype", 7)}, "dtype DT_STRING"),
    "rank 1": ({"context_y": _shape(12)}, "rank 1"),
}


@pytest.mark.parametrize("case", sorted(GRPC_BAD))
def test_grpc_tensors_are_checked_before_they_are_built(case):
    from gpicl_tf.serving.grpc_server import request_arrays
    from gpicl_tf.serving.repository import BadRequest

    changes, message = GRPC_BAD[case]
    with pytest.raises(BadRequest, match=message):
        request_arrays(_protos(**changes), _FakeModel(), 64)
    good = request_arrays(_protos(), _FakeModel(), 64)
    assert good["query_x"].shape == (2, 3, 16)


def _rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS")).split()[1]) / 1024


def test_a_tiny_grpc_request_with_a_huge_shape_allocates_nothing(server):
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(server["grpc"])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    before = _rss_mb(server["pid"])
    for change, message in [(_shape(1, 1, 50_000_000), "feature size 50000000"),
                            (_shape(2, 3, 16), "holds 0 values"),
                            (lambda p: setattr(p, "dtype", 0), "DT_INVALID")]:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "gpicl"
        for name, proto in _protos(query_x=change).items():
            request.inputs[name].CopyFrom(proto)
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(request, 60)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
        assert message in e.value.details()
        assert _rss_mb(server["pid"]) - before < 100   # was 600 MB for the first
    channel.close()


def _half_sent(url, length=100_000):
    """A socket that sent a :predict's headers and one byte of its body."""
    import socket
    from urllib.parse import urlparse

    u = urlparse(url)
    s = socket.create_connection((u.hostname, u.port))
    s.sendall(f"POST /v1/models/gpicl:predict HTTP/1.1\r\nHost: x\r\nContent-Type: "
              f"application/json\r\nContent-Length: {length}\r\n\r\n{{".encode())
    return s


def test_half_sent_bodies_hold_no_prediction_slot_and_time_out(model_base):
    """Four sockets that send headers and one byte of body (the default four
    prediction slots) do not delay a valid request; they get 408 after the
    body deadline; a client that disconnects mid-body is one log line."""
    from tests.serving.conftest import start_server

    proc, server = start_server(model_base, "--body_timeout_s", "4")
    try:
        slow = [_half_sent(server["url"]) for _ in range(4)]
        time.sleep(0.5)
        r = requests.post(f"{server['url']}/v1/models/gpicl:predict", json=_body(*_request()),
                          timeout=10)
        assert r.status_code == 200, r.text
        for s in slow:
            s.settimeout(20)
            answer = b""
            while chunk := s.recv(4096):   # until the server closes the connection
                answer += chunk
            answer = answer.decode()
            assert answer.startswith("HTTP/1.1 408") and "not received within 4 s" in answer
            s.close()
        for _ in range(3):   # clients that give up mid-body
            _half_sent(server["url"]).close()
        time.sleep(1)
        r = requests.post(f"{server['url']}/v1/models/gpicl:predict", json=_body(*_request()),
                          timeout=10)
        assert r.status_code == 200, r.text
    finally:
        proc.terminate()
        log = proc.communicate(timeout=30)[0]
    assert "Traceback" not in log, log[-3000:]
    assert log.count("disconnected before sending its whole request body") == 3, log[-3000:]


def test_status_follows_versions_that_fail_or_go(model_base, tmp_path):
    """Over REST and gRPC: a broken newer version is reported END with its error
    (the older one served); deleting the served version serves the older one."""
    import shutil

    from tests.serving.conftest import start_server

    base = tmp_path / "models"
    shutil.copytree(os.path.join(model_base, "gpicl", "1"), base / "gpicl" / "1")
    shutil.copytree(base / "gpicl" / "1", base / "gpicl" / "2")
    (base / "gpicl" / "3").mkdir()                     # broken: no SavedModel
    proc, server = start_server(str(base))
    try:
        rest, grpc_client = RestClient(server["url"], "gpicl"), GrpcClient(server["grpc"],
                                                                            "gpicl")
        rows = rest.status()["model_version_status"]
        assert [(r["version"], r["state"]) for r in rows] == [("2", "AVAILABLE"), ("3", "END")]
        assert "failed to load" in rows[1]["status"]["error_message"]
        assert [(r["version"], r["state"]) for r in grpc_client.status()] == [
            (2, "AVAILABLE"), (3, "END")]
        shutil.rmtree(base / "gpicl" / "2")
        deadline = time.time() + 30
        while rest.status()["model_version_status"][0]["version"] != "1":
            assert time.time() < deadline, "version 2 still served after its deletion"
            time.sleep(0.3)
        r = requests.post(f"{server['url']}/v1/models/gpicl/versions/2:predict",
                          json=_body(*_request()), timeout=30)
        assert r.status_code == 404
        assert rest.predict(*_request(), version=1)["classes"].shape == (2, 3)
        grpc_client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
