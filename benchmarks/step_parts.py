"""Where a Transformer train step's time goes on this CPU: each part timed alone.

    python benchmarks/step_parts.py [--preset cpu] [--repeats 5] [--steps 10]

For the preset's Transformer (its batch, tokens, width, heads and depth) this
times, in one run, forward + backward (XLA, float32) of:
  step        the whole train step (`compile_model` + `train_on_batch`, synthetic
              tensors of the preset's shape, the optimizer update included)
  attention   the layers' multi-head attention (Keras `MultiHeadAttention`, the
              projections included) under the layout's mask
  core        the attention core alone (scores, mask, softmax, weighted values)
  mlp         the layers' feed-forward (Dense 4N_M, GELU, Dense N_M)
  norms       the layers' two LayerNorms each, and the final one
  pfn_split   (PFN layout) the core computed against the N context keys plus
              each query's own key, instead of all 2N tokens under a mask that
              hides the queries from everyone: the same answer, half the scores
Each figure is the median of `--repeats` windows of `--steps` calls after a
warm-up; each part's share is of the whole step. The parts leave out the token
embedding, logits, loss and the optimizer's update (the step's remainder).
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from train_step import synthetic_batch  # noqa: E402

from gpicl_tf.config import get_preset  # noqa: E402
from gpicl_tf.data.schema import EpisodeSchema  # noqa: E402
from gpicl_tf.models.layers import attention_mask  # noqa: E402
from gpicl_tf.training.train import compile_model  # noqa: E402


def median_seconds(fn, steps: int, repeats: int, warmup: int = 3) -> float:
    """Median over `repeats` windows of `steps` calls of `fn()` (its result read)."""
    for _ in range(warmup):
        np.asarray(fn())
    windows = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            out = fn()
        np.asarray(out)
        windows.append((time.perf_counter() - t0) / steps)
    return statistics.median(windows)


def grad_fn(forward, variables, inputs):
    """A compiled forward + backward of `forward(*inputs)` with respect to
    `variables` and the float inputs; returns the sum of the gradients' means."""
    @tf.function(jit_compile=True)
    def run(*xs):
        with tf.GradientTape() as tape:
            tape.watch(xs)
            loss = tf.reduce_sum(tf.square(forward(*xs)))
        grads = tape.gradient(loss, [*variables, *xs])
        return tf.add_n([tf.reduce_mean(g) for g in grads if g is not None])
    return lambda: run(*inputs)


def core(q, k, v, mask):
    """Scores, mask, softmax and weighted values: q, k, v (B, H, T, d), mask (T, T)."""
    scores = tf.einsum("bhqd,bhkd->bhqk", q, k) / float(q.shape[-1]) ** 0.5
    scores = tf.where(mask[None, None], scores, -1e9)
    return tf.einsum("bhqk,bhkd->bhqd", tf.nn.softmax(scores, -1), v)


def pfn_split_core(q, k, v, n: int):
    """The PFN mask's answer without its hidden half: every token's scores against
    the N context keys (causal for context rows, "before j" for query j), plus
    query j's score against itself; softmax over both; the weighted values."""
    t = q.shape[2]
    i = tf.range(t)[:, None]
    j = tf.range(n)[None, :]
    visible = tf.where(i < n, j <= i, j < i - n)                          # (T, N)
    scores = tf.einsum("bhqd,bhkd->bhqk", q, k[:, :, :n]) / float(q.shape[-1]) ** 0.5
    scores = tf.where(visible[None, None], scores, -1e9)
    own = tf.reduce_sum(q * k, -1, keepdims=True) / float(q.shape[-1]) ** 0.5  # (B,H,T,1)
    own = tf.where((tf.range(t) >= n)[None, None, :, None], own, -1e9)    # queries only
    weights = tf.nn.softmax(tf.concat([scores, own], -1), -1)
    return tf.einsum("bhqk,bhkd->bhqd", weights[..., :n], v[:, :, :n]) + weights[..., n:] * v


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    config = get_preset(args.preset)
    m, d = config.model, config.data
    schema = EpisodeSchema(d.episode_length, d.input_size, d.num_classes)
    n = d.episode_length
    t = 2 * n if m.layout == "pfn" else n
    b, width, heads, hs = config.train.batch_size, m.model_size, m.num_heads, m.head_size
    rng = np.random.default_rng(0)
    h = tf.constant(rng.standard_normal((b, t, width)), tf.float32)
    mask = attention_mask(n, m.layout)                                     # (1, T, T)

    figures = {}
    model = compile_model(config, schema, jit=True)
    x, y = synthetic_batch(config, schema)
    figures["step"] = median_seconds(lambda: model.train_on_batch(x, y, return_dict=True)["loss"],
                                     args.steps, args.repeats)

    mha = keras.layers.MultiHeadAttention(heads, hs)
    mha.build(h.shape, h.shape)
    figures["attention"] = m.num_layers * median_seconds(grad_fn(
        lambda z: mha(z, z, attention_mask=mask), mha.trainable_variables, [h]),
        args.steps, args.repeats)
    qkv = [tf.constant(rng.standard_normal((b, heads, t, hs)), tf.float32) for _ in range(3)]
    figures["core"] = m.num_layers * median_seconds(grad_fn(
        lambda q, k, v: core(q, k, v, mask[0]), [], qkv), args.steps, args.repeats)
    up = keras.layers.Dense(m.mlp_ratio * width, activation="gelu")
    down = keras.layers.Dense(width)
    up.build(h.shape)
    down.build((b, t, m.mlp_ratio * width))
    figures["mlp"] = m.num_layers * median_seconds(grad_fn(
        lambda z: down(up(z)), [*up.trainable_variables, *down.trainable_variables], [h]),
        args.steps, args.repeats)
    norm = keras.layers.LayerNormalization(epsilon=1e-5)
    norm.build(h.shape)
    figures["norms"] = (2 * m.num_layers + 1) * median_seconds(grad_fn(
        norm, norm.trainable_variables, [h]), args.steps, args.repeats)
    if m.layout == "pfn":
        figures["pfn_split"] = m.num_layers * median_seconds(grad_fn(
            lambda q, k, v: pfn_split_core(q, k, v, n), [], qkv), args.steps, args.repeats)
        same = np.abs(np.asarray(core(*qkv, mask[0])) -
                      np.asarray(pfn_split_core(*qkv, n))).max()
        print(f"pfn_split against the masked core: largest difference {same:.2e}")

    step = figures["step"]
    print(f"preset {args.preset}: batch {b}, {t} tokens, width {width}, {heads} heads of {hs}, "
          f"{m.num_layers} layers; XLA, float32; median of {args.repeats} windows of "
          f"{args.steps}")
    print(f"{'part':<12}{'ms':>10}{'share of step':>16}")
    for name, sec in figures.items():
        print(f"{name:<12}{sec * 1e3:>10.3f}{sec / step:>15.0%}")
    rest = step - figures["attention"] - figures["mlp"] - figures["norms"]
    print(f"{'remainder':<12}{rest * 1e3:>10.3f}{rest / step:>15.0%}  (embedding, logits, "
          "loss, optimizer; step minus attention, mlp, norms)")
    if "pfn_split" in figures:
        print(f"pfn_split saves {(figures['core'] - figures['pfn_split']) * 1e3:.1f} ms "
              f"({figures['core'] / figures['pfn_split']:.2f}x the core, "
              f"{(figures['core'] - figures['pfn_split']) / step:.0%} of the step)")


if __name__ == "__main__":
    main()
