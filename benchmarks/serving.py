"""Local server latency and throughput, and the estimator's fit+predict time.

    python benchmarks/serving.py saved_models/gpicl [--requests 200]

Starts `pipelines.serve` on a free 127.0.0.1 port and measures, in one run:
p50/p99 latency of one `:predict` request (99 context examples, the cpu model's
maximum, or the model's maximum if smaller, and 10 queries) sent one after another; requests/s with 4 concurrent
clients; then GPICLClassifier fit+predict time for 500 rows x 64 features
(digits). About a minute here.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import requests  # noqa: E402

from gpicl_tf.runtime import free_ports  # noqa: E402


def _start(base: str, *extra: str):
    port = free_ports(1)[0]
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.serve", "--model_base_path", base,
                             "--port", str(port), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            if requests.get(f"{url}/v1/models/{os.path.basename(base)}", timeout=1).ok:
                return proc, url
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server did not start within 180 s: {proc.communicate()[0][-2000:]}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_base_path")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    name = os.path.basename(os.path.normpath(args.model_base_path))
    proc, url = _start(args.model_base_path)
    versions = sorted(int(v) for v in os.listdir(args.model_base_path) if v.isdigit())
    newest = os.path.join(args.model_base_path, str(versions[-1]))
    with open(os.path.join(newest, "gpicl_config.json")) as f:
        meta = json.load(f)
    d, n = meta["schema"]["input_size"], min(99, meta["max_context"])
    try:
        rng = np.random.default_rng(0)
        body = {"inputs": {"context_x": rng.standard_normal((1, n, d)).tolist(),
                           "context_y": rng.integers(0, 10, (1, n)).tolist(),
                           "query_x": rng.standard_normal((1, 10, d)).tolist()}}
        session = requests.Session()
        predict = f"{url}/v1/models/{name}:predict"
        for _ in range(10):
            session.post(predict, json=body).raise_for_status()
        latencies = []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            session.post(predict, json=body).raise_for_status()
            latencies.append(time.perf_counter() - t0)
        ms = np.array(latencies) * 1e3
        print(f"one request ({n} context examples, 10 queries, {d} features), sequential: "
              f"p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms, "
              f"{len(ms) / (ms.sum() / 1e3):.1f} requests/s")
        errors, count = [], [0]

        def client():
            s = requests.Session()
            for _ in range(args.requests // 4):
                r = s.post(predict, json=body)
                if r.ok:
                    count[0] += 1
                else:
                    errors.append(r.text)

        threads = [threading.Thread(target=client) for _ in range(4)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(f"4 concurrent clients: {count[0] / (time.perf_counter() - t0):.1f} requests/s, "
              f"{len(errors)} errors")
    finally:
        proc.terminate()
        proc.wait()

    from sklearn.datasets import load_digits

    from gpicl_tf.sklearn import GPICLClassifier

    X, y = load_digits(return_X_y=True)
    X, y = X[:500], y[:500]
    clf = GPICLClassifier(newest)
    clf.fit(X[:10], y[:10]).predict(X[:10])  # load the SavedModel once
    t0 = time.perf_counter()
    clf.fit(X, y).predict(X)
    print(f"GPICLClassifier (n_ensemble=8) fit+predict, 500 rows x 64 features: "
          f"{time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
