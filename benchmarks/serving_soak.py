"""Soak and fault benchmark of the local server: concurrent clients mixing valid,
oversize and malformed requests, beside slow clients that never finish their
bodies, while new versions are exported, an old one is deleted and then the
served one.

    python benchmarks/serving_soak.py runs/cpu/transformer [--clients 8] [--requests 400] \
        [--slow_clients 4]

Exports the finished training run as version 1 of a fresh model base, starts
`pipelines.serve` on it (default bounds), then runs CLIENTS threads that send
REQUESTS requests in all: 70% valid (a full context and 10 queries), 10% oversize
(a context of 200,000 examples, ~60 MB at 64 features), 20% malformed (bad JSON,
deep nesting, numeric strings, unknown keys, wrong feature size). Meanwhile
SLOW_CLIENTS sockets send a predict's headers and one byte of its body and wait
(as many as the server's prediction slots; the server runs with a 5 s body
deadline, so they get 408 and open again), and a thread exports versions 2 and
3, deletes version 1 once version 2 serves, and deletes version 3 once it serves
(the server must fall back to version 2).
A 503 is retried after its Retry-After (counted). Prints requests served,
responses by status code, latency p50/p99 of valid requests, and the server's
RSS at start, its peak (sampled every 50 ms) and at the end.
Targets: 0 failed valid requests; every bad request a 4xx.
"""

import argparse
import collections
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import requests  # noqa: E402

from benchmarks.serving import _start  # noqa: E402


def _bodies(d: int, n: int, seed: int = 0) -> dict:
    """Request bodies (bytes) by kind: "valid", "oversize" and the malformed ones."""
    rng = np.random.default_rng(seed)
    valid = {"inputs": {"context_x": rng.standard_normal((1, n, d)).round(4).tolist(),
                        "context_y": rng.integers(0, 10, (1, n)).tolist(),
                        "query_x": rng.standard_normal((1, 10, d)).round(4).tolist()}}
    big = {"inputs": {**valid["inputs"],
                      "context_x": rng.standard_normal((1, 200_000, d)).round(4).tolist(),
                      "context_y": [[0] * 200_000]}}
    strings = {"inputs": {**valid["inputs"],
                          "query_x": np.asarray(valid["inputs"]["query_x"]).astype(str).tolist()}}
    narrow = {"inputs": {**valid["inputs"],
                         "query_x": rng.standard_normal((1, 10, d + 1)).tolist()}}
    return {"valid": json.dumps(valid).encode(), "oversize": json.dumps(big).encode(),
            "bad json": b"{not json", "deep nesting": b"[" * 100_000 + b"]" * 100_000,
            "numeric strings": json.dumps(strings).encode(),
            "unknown key": json.dumps({**valid, "instance": []}).encode(),
            "wrong feature size": json.dumps(narrow).encode()}


def _schedule(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    bad = ["bad json", "deep nesting", "numeric strings", "unknown key", "wrong feature size"]
    kinds = []
    for u in rng.random(count):
        kinds.append("valid" if u < 0.7 else "oversize" if u < 0.8 else bad[int(u * 1e6) % 5])
    return kinds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run", help="a finished training run (e.g. runs/cpu/transformer)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--slow_clients", type=int, default=4)
    args = parser.parse_args()

    from gpicl_tf.export import saved_model

    tmp = tempfile.mkdtemp(prefix="soak-")
    base = os.path.join(tmp, "models")
    first = saved_model.export_run(args.run, base, "gpicl")
    with open(os.path.join(first, saved_model.CONFIG_FILE)) as f:
        meta = json.load(f)
    bodies = _bodies(meta["schema"]["input_size"], meta["max_context"])
    kinds = _schedule(args.requests)
    proc, url = _start(os.path.join(base, "gpicl"), "--body_timeout_s", "5")
    server = psutil.Process(proc.pid)
    rss = {"start": server.memory_info().rss, "peak": server.memory_info().rss}
    stop = threading.Event()

    def sample():
        while not stop.wait(0.05):
            rss["peak"] = max(rss["peak"], server.memory_info().rss)

    codes, valid_failures, latencies, retries = collections.Counter(), [], [], [0]
    lock = threading.Lock()
    queue = list(enumerate(kinds))

    def client():
        session = requests.Session()
        while True:
            with lock:
                if not queue:
                    return
                _, kind = queue.pop()
            while True:
                t0 = time.perf_counter()
                try:
                    r = session.post(f"{url}/v1/models/gpicl:predict", data=bodies[kind],
                                     headers={"Content-Type": "application/json"}, timeout=120)
                    code = r.status_code
                except requests.ConnectionError:
                    code = "connection error"
                    session = requests.Session()
                if code == 503:
                    with lock:
                        retries[0] += 1
                    time.sleep(float(r.headers.get("Retry-After", 1)))
                    continue
                break
            with lock:
                codes[(kind if kind in ("valid", "oversize") else "malformed", code)] += 1
                if kind == "valid":
                    if code == 200:
                        latencies.append(time.perf_counter() - t0)
                    else:
                        valid_failures.append(code)

    def served() -> str:
        return requests.get(f"{url}/v1/models/gpicl", timeout=30).json()[
            "model_version_status"][0]["version"]

    def wait_for(version: str) -> None:
        deadline = time.time() + 60
        while time.time() < deadline and served() != version:
            time.sleep(0.2)

    def versions():
        time.sleep(2)
        saved_model.export_run(args.run, base, "gpicl")              # version 2
        wait_for("2")
        shutil.rmtree(os.path.join(base, "gpicl", "1"))               # the old version goes
        saved_model.export_run(args.run, base, "gpicl")              # version 3
        wait_for("3")
        shutil.rmtree(os.path.join(base, "gpicl", "3"))               # then the served one

    slow = {"opened": 0, "408": 0}
    host, port = url.rsplit("//", 1)[1].split(":")

    def slow_client():
        while not stop.is_set():
            s = socket.create_connection((host, int(port)))
            s.sendall(b"POST /v1/models/gpicl:predict HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
            with lock:
                slow["opened"] += 1
            s.settimeout(0.5)
            answer = b""
            while not stop.is_set():
                try:
                    chunk = s.recv(4096)
                except socket.timeout:
                    continue
                if not chunk:
                    break
                answer += chunk
            s.close()
            if answer.startswith(b"HTTP/1.1 408"):
                with lock:
                    slow["408"] += 1

    sampler = threading.Thread(target=sample)
    sampler.start()
    exporter = threading.Thread(target=versions)
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    slow_threads = [threading.Thread(target=slow_client) for _ in range(args.slow_clients)]
    for t in slow_threads:
        t.start()
    time.sleep(0.5)                                 # the slow bodies are in before the rest
    t0 = time.perf_counter()
    exporter.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    exporter.join()
    elapsed = time.perf_counter() - t0
    wait_for("2")                                   # version 3 deleted: back to version 2
    ok = requests.post(f"{url}/v1/models/gpicl:predict", data=bodies["valid"], timeout=120)
    if ok.status_code != 200:
        valid_failures.append(ok.status_code)
    rss["end"] = server.memory_info().rss
    stop.set()
    sampler.join()
    for t in slow_threads:
        t.join()
    final = requests.get(f"{url}/v1/models/gpicl", timeout=30).json()
    proc.terminate()
    proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)

    ms = np.array(latencies) * 1e3
    print(f"{args.requests} requests from {args.clients} clients in {elapsed:.1f} s; "
          f"versions exported 2 and 3, version 1 deleted, then the served version 3; "
          f"serving version {final['model_version_status'][0]['version']} at the end")
    print(f"slow clients: {args.slow_clients} at a time, {slow['opened']} half-sent bodies, "
          f"{slow['408']} answered 408")
    for (kind, code), n in sorted(codes.items(), key=str):
        print(f"  {kind:9s} -> {code}: {n}")
    print(f"503 retried: {retries[0]}")
    print(f"valid requests: {len(latencies)} served, {len(valid_failures)} failed; latency "
          f"p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms")
    bad_ok = all(isinstance(code, int) and 400 <= code < 500
                 for (kind, code) in codes if kind != "valid")
    print(f"every bad request a 4xx: {bad_ok}")
    mb = {k: v / 2**20 for k, v in rss.items()}
    print(f"server RSS: start {mb['start']:.0f} MB, peak {mb['peak']:.0f} MB, end "
          f"{mb['end']:.0f} MB (growth at peak {mb['peak'] - mb['start']:.0f} MB)")


if __name__ == "__main__":
    main()
