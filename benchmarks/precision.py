"""float32 against mixed bfloat16 on this CPU: matmuls and each preset's train step.

    python benchmarks/precision.py [--presets cpu,paper] [--repeats 5] [--steps 20]

In one run: the 2048^3 matmul rate in float32 and bfloat16, with and without XLA
(each the median of `--repeats` timings); then for each preset's Transformer the
train step in `fit` (synthetic tensors of the preset's shape) and in the custom
loop (`train.loop=custom`'s compiled step), for each precision (Keras' dtype
policy: "float32" or "mixed_bfloat16", whose variables, logits and losses stay
float32) with XLA on and off: ms per step (median of `--repeats` windows of
`--steps` steps after a warm-up), analytic FLOP/s, its ratio to that
precision's own matmul rate (with the same XLA setting), and its speed-up over
the preset's default (float32, XLA). The paper preset skips the custom loop
(`fit` and the loop run the same compiled step; its 2-second steps make a grid
of four long). About 10 minutes here.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from train_step import matmul_rate, synthetic_batch, transformer_flops  # noqa: E402

from gpicl_tf.config import get_preset, override  # noqa: E402
from gpicl_tf.data.schema import EpisodeSchema  # noqa: E402
from gpicl_tf.training.train import compile_model  # noqa: E402

PRECISIONS = ("float32", "mixed_bfloat16")
WARMUP_STEPS = 4


def median_matmul_rate(dtype, jit: bool, repeats: int) -> float:
    """The median of `repeats` 2048^3 matmul rates (train_step.matmul_rate) in `dtype`."""
    return statistics.median(matmul_rate(reps=10, dtype=dtype, jit=jit) for _ in range(repeats))


class _StepClock(keras.callbacks.Callback):
    """The time at the start of every batch and at the end of training."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self.times.append(time.perf_counter())

    def on_train_end(self, logs=None):
        self.times.append(time.perf_counter())


def _windows(times: list[float], warmup: int, steps: int, repeats: int) -> float:
    """Median over `repeats` windows of `steps` steps (after `warmup`) of s/step."""
    t = times[warmup:]
    return statistics.median((t[(i + 1) * steps] - t[i * steps]) / steps
                             for i in range(repeats))


def step_seconds(config, precision: str, jit: bool, loop: str, steps: int,
                 repeats: int) -> float:
    """Seconds per train step of the preset's model under `precision` and `jit`."""
    d = config.data
    schema = EpisodeSchema(d.episode_length, d.input_size, d.num_classes)
    keras.utils.set_random_seed(0)
    config = override(config, [f"train.precision={precision}"])   # compile_model builds in it
    model = compile_model(config, schema, jit=jit)
    x, y = synthetic_batch(config, schema)
    total = WARMUP_STEPS + steps * repeats
    if loop == "fit":
        clock = _StepClock()
        ds = tf.data.Dataset.from_tensors((x, y)).repeat()
        model.fit(ds, steps_per_epoch=total, epochs=1, verbose=0, callbacks=[clock])
        return _windows(clock.times, WARMUP_STEPS, steps, repeats)
    from gpicl_tf.training import loop as loop_lib, objectives

    strategy = tf.distribute.get_strategy()
    spec = loop_lib.LoopSpec(
        steps=total, steps_per_epoch=total, global_batch=config.train.batch_size,
        val_steps=0, objective=objectives.of(schema), window=min(10, d.episode_length),
        jit=jit, checkpoint_dir="/nonexistent", builder=None)
    step = loop_lib.Steps(model, strategy, spec)
    it = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    for _ in range(WARMUP_STEPS):
        step.train(it)[0].numpy()
    times = [time.perf_counter()]
    for _ in range(steps * repeats):
        step.train(it)[0].numpy()
        times.append(time.perf_counter())
    return _windows(times, 0, steps, repeats)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", default="cpu,paper")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    peak = {}
    for precision, dtype in zip(PRECISIONS, (tf.float32, tf.bfloat16)):
        for jit in (True, False):
            peak[precision, jit] = median_matmul_rate(dtype, jit, args.repeats)
            print(f"matmul 2048^3 {dtype.name:8s} XLA {'on ' if jit else 'off'}: "
                  f"{peak[precision, jit] / 1e9:6.1f} GFLOP/s", flush=True)
    print(f"bfloat16 / float32 matmul: {peak['mixed_bfloat16', False] / peak['float32', False]:.2f}x"
          f" without XLA, {peak['mixed_bfloat16', True] / peak['float32', True]:.2f}x with")
    for name in args.presets.split(","):
        config = get_preset(name)
        d, m = config.data, config.model
        flops = transformer_flops(m, EpisodeSchema(d.episode_length, d.input_size,
                                                   d.num_classes),
                                  config.train.batch_size, d.episode_length)
        steps = args.steps if name != "paper" else max(2, args.steps // 5)
        loops = ("fit", "custom") if name != "paper" else ("fit",)
        print(f"{name}: {m.layout} {m.model_size}x{m.num_layers}L, batch "
              f"{config.train.batch_size} x {d.episode_length}, {flops / 1e9:.1f} GFLOP/step; "
              f"median of {args.repeats} windows of {steps} steps", flush=True)
        base = None
        for loop in loops:
            for precision in PRECISIONS:
                for jit in (True, False):
                    sec = step_seconds(config, precision, jit, loop, steps, args.repeats)
                    base = sec if base is None else base   # float32 + XLA in fit comes first
                    rate = flops / sec
                    print(f"{name}: {loop:6s} {precision:14s} XLA {'on ' if jit else 'off'}: "
                          f"{sec * 1e3:7.0f} ms/step  {rate / 1e9:6.1f} GFLOP/s = "
                          f"{rate / peak[precision, jit]:4.0%} of its matmul rate  "
                          f"{base / sec:.2f}x float32+XLA fit", flush=True)


if __name__ == "__main__":
    main()
