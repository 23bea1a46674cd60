"""Train-step throughput against the machine's measured fp32 matmul rate.

    python benchmarks/train_step.py [--steps 60] [--presets cpu,paper]

In one run: the fp32 matmul rate (a 2048x2048 matmul, XLA, measured now), then
for each preset's model the train step's achieved rate (analytic FLOPs per
step / measured time), its ratio to the matmul rate, tokens/s and episodes/s;
and the input pipeline's rate for the same batches, as a ratio to what the
trainer consumes. About 2-3 minutes here.
"""

import argparse
import dataclasses
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gpicl_tf.config import get_preset  # noqa: E402
from gpicl_tf.data.schema import EpisodeSchema  # noqa: E402
from gpicl_tf.models import build_model  # noqa: E402
from gpicl_tf.training.metrics import sequence_metrics  # noqa: E402
from gpicl_tf.training.train import make_optimizer  # noqa: E402


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


def step_rate(config, steps: int) -> dict:
    d = config.data
    schema = EpisodeSchema(d.episode_length, d.input_size, d.num_classes)
    model = build_model(config.model, schema)
    model.compile(optimizer=make_optimizer(config.train),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=sequence_metrics(), jit_compile=True)
    b, t = config.train.batch_size, d.episode_length
    rng = np.random.default_rng(0)
    x = {"inputs": tf.constant(rng.standard_normal((b, t, schema.input_size)), tf.float32),
         "labels": tf.constant(rng.integers(0, d.num_classes, (b, t)), tf.int32)}
    y = x["labels"]
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # compile
    t0 = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    sec = (time.perf_counter() - t0) / steps
    flops = transformer_flops(config.model, schema, b, t)
    return {"sec_per_step": sec, "flops": flops / sec, "tokens": b * t / sec,
            "episodes": b / sec, "params": model.count_params()}


def reader_rate(config, batches=100) -> float:
    """Episodes/s the input pipeline delivers for this preset (input_pipeline.measure)."""
    from input_pipeline import measure  # benchmarks/ is on sys.path when run as a script

    with tempfile.TemporaryDirectory() as tmp:
        data = dataclasses.replace(config.data, train_episodes=8192, test_episodes=64)
        return measure(data, tmp, config.train.batch_size, batches)["read_eps_per_s"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--presets", default="cpu,paper")
    args = parser.parse_args()
    peak = matmul_rate()
    print(f"fp32 matmul (2048^3, XLA): {peak / 1e9:.1f} GFLOP/s")
    for name in args.presets.split(","):
        config = get_preset(name)
        r = step_rate(config, args.steps if name != "paper" else max(3, args.steps // 4))
        m = config.model
        print(f"{name}: transformer ({m.layout}) {m.model_size}x{m.num_layers}L {m.num_heads}h "
              f"k{m.key_size}, "
              f"batch {config.train.batch_size} x {config.data.episode_length} tokens, "
              f"{r['params']:,} params: {r['sec_per_step'] * 1e3:.0f} ms/step, "
              f"{r['flops'] / 1e9:.1f} GFLOP/s = {r['flops'] / peak:.0%} of matmul, "
              f"{r['tokens']:,.0f} tokens/s, {r['episodes']:,.0f} episodes/s")
        if name == "cpu":
            read = reader_rate(config)
            print(f"cpu input pipeline: {read:,.0f} episodes/s = "
                  f"{read / r['episodes']:.1f}x what the cpu trainer consumes")


if __name__ == "__main__":
    main()
