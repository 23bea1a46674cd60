"""Episodes/s delivered by the tf.data service against the in-process pipeline.

    python benchmarks/data_service.py [--batches 200] [--sources digits,fashion_mnist_idx]

In one run, per source (digits: 64 inputs; FashionMNIST: 784 pixels, each task a
784x64 projection): the in-process pipeline's rate, then the rate through a local
dispatcher with 1 and with 2 worker processes (pipelines.data_service), each
iterating the same number of batches of 64 training episodes, with the ratio to
in-process. All processes share this machine's cores: on one host the service
moves work, it adds no cores; its point is workers on other machines.
"""

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from gpicl_tf.config import get_preset  # noqa: E402
from gpicl_tf.data import episodes as episodes_lib, pipeline, service  # noqa: E402
from gpicl_tf.runtime import free_ports  # noqa: E402


def rate(eps, batches: int, address: str = "") -> float:
    ds = pipeline.make_dataset(eps, "train", 64, bias=pipeline.make_bias_variable(0.0),
                               service=address)
    it = iter(ds)
    for _ in range(10):  # warm-up (the service starts its job)
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * 64 / (time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--sources", default="digits,fashion_mnist_idx")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="service-bench-")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    for source in args.sources.split(","):
        data = dataclasses.replace(get_preset("cpu").data, source=source, train_episodes=16_384,
                                   test_episodes=64, episodes_per_shard=2_048)
        out = os.path.join(root, source)
        episodes_lib.write_episodes(data, out)
        eps = pipeline.open_episodes(out)
        base = rate(eps, args.batches)
        print(f"{source}: in-process {base:,.0f} episodes/s", flush=True)
        for workers in (1, 2):
            dispatcher = service.start_dispatcher(free_ports(1)[0])
            address = dispatcher.target.split("://")[-1]
            procs = [subprocess.Popen([sys.executable, "-m", "pipelines.data_service",
                                       "--worker", "--dispatcher", address], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for _ in range(workers)]
            try:
                time.sleep(5)
                r = rate(eps, args.batches, dispatcher.target)
                print(f"{source}: tf.data service, {workers} worker(s): {r:,.0f} episodes/s "
                      f"({r / base:.2f}x in-process)", flush=True)
            finally:
                for p in procs:
                    p.kill()
                    p.wait()
                dispatcher.stop()


if __name__ == "__main__":
    main()
