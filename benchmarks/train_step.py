"""Train-step throughput against the machine's measured fp32 matmul rate.

    python benchmarks/train_step.py [--steps 60] [--presets cpu,paper]

In one run: the fp32 matmul rate (a 2048x2048 matmul, XLA, measured now), then
for each preset's model the train step's achieved rate (analytic FLOPs per
step / measured time), its ratio to the matmul rate, tokens/s and episodes/s;
the same step in `fit` on real episodes (the input pipeline with the curriculum's
bias variable) as a ratio to the synthetic step, and in `train.run` end to end
(validation and checkpoints between epochs); the host pipeline's episodes/s
built on the host and with device-side construction (records only), as a ratio
to what the trainer consumes; and for the paper preset, the episodes/s one H100
would consume (analytic FLOPs per step at a stated utilisation of its dense bf16
rate) against what this host delivers. About 12 minutes here.
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
from gpicl_tf.training.train import compile_model  # noqa: E402


def matmul_rate(m=2048, k=2048, n=2048, reps=20, dtype=tf.float32, jit=True) -> float:
    """FLOP/s of a [m, k] x [k, n] matmul in `dtype` (XLA unless `jit` is False),
    measured now."""
    a = tf.cast(tf.random.normal([m, k]), dtype)
    b = tf.cast(tf.random.normal([k, n]), dtype)
    f = tf.function(lambda a, b: tf.matmul(a, b), jit_compile=jit)
    f(a, b).numpy()
    t0 = time.perf_counter()
    for _ in range(reps):
        out = f(a, b)
    out.numpy()
    return 2 * m * k * n * reps / (time.perf_counter() - t0)


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
                               test_episodes=4 * config.train.batch_size,
                               episodes_per_shard=2048)
    if data.source == "mnist":
        import tensorflow_datasets as tfds

        with tfds.testing.mock_data(num_examples=2_000):
            episodes.write_episodes(dataclasses.replace(data, data_dir="/nonexistent"), tmp)
    else:
        episodes.write_episodes(data, tmp)
    return tmp


def shape_rate(config) -> float:
    """The fp32 rate (XLA) of the model's own largest matmul, its MLP's
    [batch x tokens, d] x [d, 4d]: the ceiling its layers' shapes allow here."""
    d, tokens = config.model.model_size, config.train.batch_size * config.data.episode_length
    tokens *= 2 if config.model.layout == "pfn" else 1
    return matmul_rate(tokens, d, config.model.mlp_ratio * d)


def _rates(config, schema, sec: float, model) -> dict:
    b, t = config.train.batch_size, config.data.episode_length
    flops = transformer_flops(config.model, schema, b, t)
    return {"sec_per_step": sec, "flops": flops / sec, "tokens": b * t / sec,
            "episodes": b / sec, "params": model.count_params()}


def synthetic_batch(config, schema: EpisodeSchema) -> tuple[dict, tf.Tensor]:
    """(features, targets) of one batch of the preset's shape: random inputs and labels."""
    rng = np.random.default_rng(0)
    b, t = config.train.batch_size, schema.episode_length
    x = {"inputs": tf.constant(rng.standard_normal((b, t, schema.input_size)), tf.float32),
         "labels": tf.constant(rng.integers(0, schema.num_classes, (b, t)), tf.int32)}
    return x, x["labels"]


def step_rate(config, steps: int, episodes_dir: str | None = None,
              run_callbacks: bool = False) -> dict:
    """The train step in `fit`: on synthetic tensors, or (episodes_dir) on real
    episodes through the input pipeline with the curriculum's bias variable, and
    (run_callbacks) with the callbacks `train.run` gives `fit` (curriculum, guards,
    checkpoints, TensorBoard, CSV log) and its progress log (verbose=2)."""
    d = config.data
    schema = EpisodeSchema(d.episode_length, d.input_size, d.num_classes)
    model = compile_model(config, schema, jit=True)   # as training builds it
    b = config.train.batch_size
    ds = tf.data.Dataset.from_tensors(synthetic_batch(config, schema)).repeat()
    callbacks, verbose = [], 0
    from gpicl_tf.data import pipeline

    bias = pipeline.make_bias_variable(config.train.bias_fraction)
    if episodes_dir:
        ds = pipeline.make_dataset(pipeline.open_episodes(episodes_dir), "train", b, bias=bias)
    with tempfile.TemporaryDirectory() as workdir:
        if run_callbacks:
            from gpicl_tf.training import train

            callbacks, verbose = train.run_callbacks(config, workdir, bias, "val_loss",
                                                     True, "keras", True), 2
        timer = _Timer(WARMUP_STEPS)
        model.fit(ds, steps_per_epoch=WARMUP_STEPS + steps, epochs=1, verbose=verbose,
                  callbacks=[timer, *callbacks])
    return _rates(config, schema, timer.seconds / steps, model)


def run_step_seconds(config, episodes_dir: str, steps_per_epoch: int, epochs: int = 4) -> float:
    """Seconds per step of `train.run` itself, end to end: epochs of `steps_per_epoch`
    steps, each followed by the meta-validation pass (4 batches), checkpoints, the
    backup, TensorBoard and CSV logs. Two runs, 1 epoch and `epochs` epochs: their
    difference per extra step, so compilation, start-up and the final save cancel
    and what happens between epochs counts (the stall of issue 15's re-measure
    showed only from the second epoch on)."""
    from gpicl_tf.config import override
    from gpicl_tf.training import train

    seconds = {}
    for e in (1, epochs):
        cfg = override(config, [f"train.steps={e * steps_per_epoch}",
                                f"train.steps_per_epoch={steps_per_epoch}"])
        with tempfile.TemporaryDirectory() as workdir:
            t0 = time.perf_counter()
            train.run(cfg, workdir, episodes_dir, verbose=0)
            seconds[e] = time.perf_counter() - t0
    return (seconds[epochs] - seconds[1]) / ((epochs - 1) * steps_per_epoch)


WARMUP_STEPS = 5   # compilation and the input pipeline's start (shuffle buffer) are not timed


class _Timer(keras.callbacks.Callback):
    """Seconds from the start of batch `warmup` to the end of training (the run's
    last step finished: fit reads its logs back at the epoch's end), so one `fit`
    call, one input iterator, is timed after its start-up."""

    def __init__(self, warmup: int):
        super().__init__()
        self.warmup, self.start, self.seconds = warmup, None, None

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.warmup:
            self.start = time.perf_counter()

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self.start


def loop_step_rate(config, steps: int, episodes_dir: str, on_device: bool) -> dict:
    """The custom loop's step (`train.loop=custom`) on real episodes, built on the host
    by the input pipeline or (on_device) in the step from records
    (`train.episodes_on_device`)."""
    from gpicl_tf.data import device_episodes, pipeline
    from gpicl_tf.training import loop as loop_lib, objectives, train

    eps = pipeline.open_episodes(episodes_dir)
    tcfg = dataclasses.replace(config.train, episodes_on_device=on_device)
    make_train, _ = train.dataset_makers(eps, tcfg, pipeline.make_bias_variable(0.5))
    strategy = tf.distribute.get_strategy()
    model = compile_model(config, eps.schema, jit=True)
    with tempfile.TemporaryDirectory() as tmp:
        spec = loop_lib.LoopSpec(
            steps=steps, steps_per_epoch=steps, global_batch=tcfg.batch_size, val_steps=0,
            objective=objectives.of(eps.schema), window=min(10, config.data.episode_length),
            jit=True, checkpoint_dir=tmp, builder=device_episodes.EpisodeBuilder(
                eps, "train", tcfg.bias_mode) if on_device else None)
        step = loop_lib.Steps(model, strategy, spec)
        it = iter(strategy.distribute_datasets_from_function(make_train))
        for _ in range(WARMUP_STEPS):
            step.train(it)[0].numpy()   # compile, start the input pipeline
        t0 = time.perf_counter()
        for _ in range(steps):
            loss, _ = step.train(it)
        loss.numpy()
        sec = (time.perf_counter() - t0) / steps
    return _rates(config, eps.schema, sec, model)


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
        ceiling = shape_rate(config)
        print(f"{name}: its MLP's matmul shape alone (XLA) {ceiling / 1e9:.1f} GFLOP/s = "
              f"{ceiling / peak:.0%} of the 2048^3 rate; the step reaches "
              f"{r['flops'] / ceiling:.0%} of that")
        with tempfile.TemporaryDirectory() as tmp:
            eps_dir = _episodes_for(config, tmp, 3 * steps + 30)
            real = step_rate(config, steps, eps_dir)
            print(f"{name}: in fit with real episodes {real['sec_per_step'] * 1e3:.0f} ms/step "
                  f"= {real['sec_per_step'] / r['sec_per_step']:.2f}x the synthetic step, "
                  f"{real['flops'] / peak:.0%} of matmul")
            run = step_rate(config, steps, eps_dir, run_callbacks=True)
            print(f"{name}: in fit as train.run drives it (real episodes, the run's callbacks, "
                  f"verbose=2) {run['sec_per_step'] * 1e3:.0f} ms/step = "
                  f"{run['sec_per_step'] / r['sec_per_step']:.2f}x the synthetic step")
            per_epoch = max(2, steps // 3)
            whole = run_step_seconds(config, eps_dir, per_epoch)
            between = (whole - run["sec_per_step"]) * per_epoch
            preset_epoch = config.train.steps_per_epoch * run["sec_per_step"]
            print(f"{name}: train.run end to end (epochs of {per_epoch} steps, each with "
                  f"validation and checkpoints) {whole * 1e3:.0f} ms/step = "
                  f"{whole / r['sec_per_step']:.2f}x the synthetic step: {between:.1f} s "
                  f"between epochs, {between / preset_epoch:.1%} of the preset's epoch of "
                  f"{config.train.steps_per_epoch} steps")
            for on_device in (False, True):
                custom = loop_step_rate(config, steps, eps_dir, on_device)
                where = "built in the step from records" if on_device else "built on the host"
                print(f"{name}: custom loop, episodes {where}: "
                      f"{custom['sec_per_step'] * 1e3:.0f} ms/step = "
                      f"{custom['sec_per_step'] / r['sec_per_step']:.2f}x the synthetic step")
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
