"""Input-pipeline throughput: episodes/s written and read, bytes per episode.

    python benchmarks/input_pipeline.py [--consume_eps_per_s X]

Measured in one run: digits-size episodes (64 inputs, 100 examples, real
digits) and MNIST-size episodes (784 inputs, TFDS mock MNIST data), each also with
device-side construction (train.episodes_on_device): the rate at which the host
ships record batches, and the builder's own rate on this CPU. With
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
import tensorflow as tf  # noqa: E402

from gpicl_tf.data import device_episodes, episodes, pipeline  # noqa: E402


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
    records, build = device_side_rates(eps, batch_size, batches)
    return {"write_eps_per_s": total / write_s, "read_eps_per_s": batches * batch_size / read_s,
            "bytes_per_episode": size / n, "records_eps_per_s": records,
            "build_eps_per_s": build}


def device_side_rates(eps, batch_size, batches):
    """Episodes/s of the host part of device-side construction (records and bias
    flags only, batches of 1,024), and of the builder itself run here on the CPU."""
    bias = pipeline.make_bias_variable(0.5)
    big = 1024
    it = iter(device_episodes.record_dataset(eps, "train", big, bias=bias))
    for _ in range(3):
        next(it)
    n = max(batches * batch_size // big, 100)   # at least 102,400 episodes: about a second
    t0 = time.perf_counter()
    for _ in range(n):
        rec = next(it)
    rec["indices"].numpy()
    records = n * big / (time.perf_counter() - t0)
    small = iter(device_episodes.record_dataset(eps, "train", batch_size, bias=bias))
    build = tf.function(device_episodes.EpisodeBuilder(eps, "train"))
    batch = next(small)
    build(batch)[1].numpy()
    t0 = time.perf_counter()
    for _ in range(batches):
        out = build(batch)
    out[1].numpy()
    return records, batches * batch_size / (time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--consume_eps_per_s", type=float, default=None)
    args = parser.parse_args()
    base = get_preset("cpu").data
    cases = {
        "digits (64 inputs, N=100)": dataclasses.replace(base, train_episodes=20_000),
        # As many episodes and shard files as the digits case: the record reader's
        # rate depends on how many files it interleaves, not on the input size.
        "mnist-size (784 inputs, N=100, mock)": dataclasses.replace(
            base, source="mnist", input_size=784, train_episodes=20_000, data_dir="/nonexistent"),
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
        print(f"  device-side construction: the host ships records at "
              f"{r['records_eps_per_s']:,.0f} episodes/s "
              f"({r['records_eps_per_s'] / r['read_eps_per_s']:.1f}x host-built episodes); "
              f"the builder itself, run on this CPU, {r['build_eps_per_s']:,.0f} episodes/s")
    if args.consume_eps_per_s:
        digits = results["digits (64 inputs, N=100)"]["read_eps_per_s"]
        print(f"reader / cpu-preset trainer consumption: {digits / args.consume_eps_per_s:.1f}x")


if __name__ == "__main__":
    main()
