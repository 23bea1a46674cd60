"""Seconds of the cell backbone's attention: Keras' MultiHeadAttention call against
`gpicl_tf.models.cell_layers.attend` (the same weights, heads moved into the batch,
plain batched matmuls), at the shapes of a predict of the default ensemble on the
digits table (4 members, 16 thinking + 100 training + 350 test rows, 64 columns).

    python benchmarks/cell_attention.py [--repeats 5] [--width 96] [--heads 4]

Prints per attention (across a row's 65 tokens; across a column's 466 rows reading
116) the best of `--repeats` calls of each, compiled with tf.function, their ratio,
and the largest difference of their outputs.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from gpicl_tf.models.cell_layers import attend  # noqa: E402


def best_seconds(fn, args, repeats: int) -> tuple[float, np.ndarray]:
    out = fn(*args).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args).numpy()
        best = min(best, time.perf_counter() - start)
    return best, out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--heads", type=int, default=4)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    members, rows, context, tokens = 4, 466, 116, 65
    cases = {"across a row's tokens": (members * rows, tokens, tokens),
             "across a column's rows": (members * tokens, rows, context)}
    print("| attention | shape | Keras s | attend s | Keras / attend | max difference |")
    print("|---|---|---|---|---|---|")
    for name, (batch, length, keys) in cases.items():
        layer = keras.layers.MultiHeadAttention(args.heads, args.width // args.heads)
        x = tf.constant(rng.standard_normal((batch, length, args.width)), tf.float32)
        layer(x, x[:, :keys])
        keras_fn = tf.function(lambda x: layer(x, x[:, :keys]))
        attend_fn = tf.function(lambda x: attend(layer, x, x[:, :keys]))
        t_keras, a = best_seconds(keras_fn, (x,), args.repeats)
        t_attend, b = best_seconds(attend_fn, (x,), args.repeats)
        print(f"| {name} | {batch}x{length} reading {keys} | {t_keras:.4f} | {t_attend:.4f} | "
              f"{t_keras / t_attend:.2f} | {np.abs(a - b).max():.1e} |")


if __name__ == "__main__":
    main()
