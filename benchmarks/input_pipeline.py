"""Input-pipeline throughput: episodes/s written and read, bytes per episode.

    python benchmarks/input_pipeline.py [--consume_eps_per_s X]

Measured in one run: digits-size episodes (64 inputs, 100 examples, real
digits) and MNIST-size episodes (784 inputs, TFDS mock MNIST data). With
--consume_eps_per_s (the trainer's measured consumption, printed by
benchmarks/train_step.py) it also prints the reader/consumer ratio.
About 1 minute here.
"""

import argparse
import dataclasses
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from gpicl_tf.config import get_preset  # noqa: E402
from gpicl_tf.data import episodes, pipeline  # noqa: E402


def measure(cfg, out, batch_size, batches):
    t0 = time.perf_counter()
    manifest = episodes.write_episodes(cfg, out)
    write_s = time.perf_counter() - t0
    n = manifest["splits"]["train"]["episodes"]
    size = sum(s["bytes"] for s in manifest["splits"]["train"]["shards"])
    eps = pipeline.open_episodes(out)
    it = iter(pipeline.make_dataset(eps, "train", batch_size,
                                    bias=pipeline.make_bias_variable(0.5)))
    for _ in range(5):
        next(it)  # warm-up: tracing, first shuffle fill
    t0 = time.perf_counter()
    for _ in range(batches):
        features, _ = next(it)
    features["inputs"].numpy()
    read_s = time.perf_counter() - t0
    total = n + manifest["splits"]["test"]["episodes"]
    return {"write_eps_per_s": total / write_s, "read_eps_per_s": batches * batch_size / read_s,
            "bytes_per_episode": size / n}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--consume_eps_per_s", type=float, default=None)
    args = parser.parse_args()
    base = get_preset("cpu").data
    cases = {
        "digits (64 inputs, N=100)": dataclasses.replace(base, train_episodes=20_000),
        "mnist-size (784 inputs, N=100, mock)": dataclasses.replace(
            base, source="mnist", input_size=784, train_episodes=5_000, data_dir="/nonexistent"),
    }
    import tensorflow_datasets as tfds

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in cases.items():
            out = os.path.join(tmp, str(len(results)))
            if cfg.source == "mnist":
                with tfds.testing.mock_data(num_examples=2_000):
                    results[name] = measure(cfg, out, 64, 40)
            else:
                results[name] = measure(cfg, out, 64, 200)
    for name, r in results.items():
        print(f"{name}: write {r['write_eps_per_s']:,.0f} episodes/s, read into batches of 64 "
              f"{r['read_eps_per_s']:,.0f} episodes/s, {r['bytes_per_episode']:.0f} bytes/episode")
    if args.consume_eps_per_s:
        digits = results["digits (64 inputs, N=100)"]["read_eps_per_s"]
        print(f"reader / cpu-preset trainer consumption: {digits / args.consume_eps_per_s:.1f}x")


if __name__ == "__main__":
    main()
