"""Train-step throughput against the machine's measured fp32 matmul rate.

    python benchmarks/train_step.py [--steps 60] [--presets cpu,paper]

In one run: the fp32 matmul rate (a 2048x2048 matmul, XLA, measured now), then
for each preset's model the train step's achieved rate (analytic FLOPs per
step / measured time), its ratio to the matmul rate, tokens/s and episodes/s;
the same step in `fit` on real episodes (the input pipeline with the curriculum's
bias variable) as a ratio to the synthetic step; the host pipeline's episodes/s
built on the host and with device-side construction (records only), as a ratio
to what the trainer consumes; and for the paper preset, the episodes/s one H100
would consume (analytic FLOPs per step at a stated utilisation of its dense bf16
rate) against what this host delivers. About 5 minutes here.
"""

import argparse
import dataclasses
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gpicl_tf.config import get_preset  # noqa: E402
from gpicl_tf.data.schema import EpisodeSchema  # noqa: E402
from gpicl_tf.training.train import compile_model  # noqa: E402


def matmul_rate(n=2048, reps=20) -> float:
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    f = tf.function(lambda a, b: tf.matmul(a, b), jit_compile=True)
    f(a, b).numpy()
    t0 = time.perf_counter()
    for _ in range(reps):
        out = f(a, b)
    out.numpy()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def transformer_flops(cfg, schema: EpisodeSchema, batch: int, length: int) -> float:
    """Analytic FLOPs of one train step (forward + backward = 3x forward)."""
    length = 2 * length if cfg.layout == "pfn" else length  # context + query tokens
    d, hk = cfg.model_size, cfg.num_heads * cfg.key_size
    per_token = 2 * schema.token_size * d + 2 * d * schema.num_classes
    per_layer = 2 * d * 3 * hk + 2 * hk * d + 2 * 2 * d * cfg.mlp_ratio * d
    per_layer += 2 * 2 * length * hk  # scores and weighted values (full, as computed)
    per_token += cfg.num_layers * per_layer
    return 3.0 * per_token * length * batch


H100_BF16_DENSE = 989e12   # FLOP/s, NVIDIA H100 SXM, dense bf16 (no sparsity)
H100_UTILISATION = 0.4     # a stated, typical model-FLOPs utilisation for a small Transformer


def _episodes_for(config, tmp: str, batches: int) -> str:
    """A small episode set of the preset's shape (MNIST-size presets: TFDS mock data)."""
    from gpicl_tf.data import episodes

    data = dataclasses.replace(config.data, train_episodes=max(4096, batches * 64),
                               test_episodes=64, episodes_per_shard=2048)
    if data.source == "mnist":
        import tensorflow_datasets as tfds

        with tfds.testing.mock_data(num_examples=2_000):
            episodes.write_episodes(dataclasses.replace(data, data_dir="/nonexistent"), tmp)
    else:
        episodes.write_episodes(data, tmp)
    return tmp


def step_rate(config, steps: int, episodes_dir: str | None = None) -> dict:
    """The train step in `fit`: on synthetic tensors, or (episodes_dir) on real
    episodes through the input pipeline with the curriculum's bias variable."""
    d = config.data
    schema = EpisodeSchema(d.episode_length, d.input_size, d.num_classes)
    model = compile_model(config, schema, jit=True)   # as training builds it
    b, t = config.train.batch_size, d.episode_length
    rng = np.random.default_rng(0)
    x = {"inputs": tf.constant(rng.standard_normal((b, t, schema.input_size)), tf.float32),
         "labels": tf.constant(rng.integers(0, d.num_classes, (b, t)), tf.int32)}
    y = x["labels"]
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    if episodes_dir:
        from gpicl_tf.data import pipeline

        ds = pipeline.make_dataset(pipeline.open_episodes(episodes_dir), "train", b,
                                   bias=pipeline.make_bias_variable(0.0))
    model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # compile
    t0 = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    sec = (time.perf_counter() - t0) / steps
    flops = transformer_flops(config.model, schema, b, t)
    return {"sec_per_step": sec, "flops": flops / sec, "tokens": b * t / sec,
            "episodes": b / sec, "params": model.count_params()}


def reader_rates(config, episodes_dir: str, batches=50) -> tuple[float, float]:
    """Episodes/s the host delivers for this preset: built on the host, and (device-side
    construction) records and bias flags only (input_pipeline.device_side_rates)."""
    from input_pipeline import device_side_rates  # benchmarks/ is on sys.path as a script

    from gpicl_tf.data import pipeline

    eps = pipeline.open_episodes(episodes_dir)
    it = iter(pipeline.make_dataset(eps, "train", 64, bias=pipeline.make_bias_variable(0.5)))
    for _ in range(3):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
    batch[1].numpy()
    host = batches * 64 / (time.perf_counter() - t0)
    records, _ = device_side_rates(eps, 64, batches)
    return host, records


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--presets", default="cpu,paper")
    args = parser.parse_args()
    peak = matmul_rate()
    print(f"fp32 matmul (2048^3, XLA): {peak / 1e9:.1f} GFLOP/s")
    for name in args.presets.split(","):
        config = get_preset(name)
        steps = args.steps if name != "paper" else max(3, args.steps // 4)
        r = step_rate(config, steps)
        m = config.model
        print(f"{name}: transformer ({m.layout}) {m.model_size}x{m.num_layers}L {m.num_heads}h "
              f"k{m.key_size}, "
              f"batch {config.train.batch_size} x {config.data.episode_length} tokens, "
              f"{r['params']:,} params: {r['sec_per_step'] * 1e3:.0f} ms/step, "
              f"{r['flops'] / 1e9:.1f} GFLOP/s = {r['flops'] / peak:.0%} of matmul, "
              f"{r['tokens']:,.0f} tokens/s, {r['episodes']:,.0f} episodes/s (synthetic tensors)")
        with tempfile.TemporaryDirectory() as tmp:
            eps_dir = _episodes_for(config, tmp, steps + 10)
            real = step_rate(config, steps, eps_dir)
            print(f"{name}: in fit with real episodes {real['sec_per_step'] * 1e3:.0f} ms/step "
                  f"= {real['sec_per_step'] / r['sec_per_step']:.2f}x the synthetic step, "
                  f"{real['flops'] / peak:.0%} of matmul")
            host, records = reader_rates(config, eps_dir)
        print(f"{name}: host pipeline {host:,.0f} episodes/s built on the host "
              f"({host / real['episodes']:.1f}x what this CPU's trainer consumes); "
              f"{records:,.0f} episodes/s with device-side construction (records only)")
        if name == "paper":
            flops = transformer_flops(config.model, EpisodeSchema(
                config.data.episode_length, config.data.input_size, config.data.num_classes),
                config.train.batch_size, config.data.episode_length)
            h100 = config.train.batch_size * H100_BF16_DENSE * H100_UTILISATION / flops
            print(f"paper on one H100 (analytic: {flops / 1e12:.2f} TFLOP per step at "
                  f"{H100_UTILISATION:.0%} of {H100_BF16_DENSE / 1e12:.0f} TFLOP/s dense bf16): "
                  f"{h100:,.0f} episodes/s consumed; the host here delivers "
                  f"{host / h100:.3f}x that built on the host, {records / h100:.2f}x as records")

if __name__ == "__main__":
    main()
