"""Does VSML (or the LSTM) learn in context? Meta-train it on a small task family, test
on unseen tasks.

    nice -n 19 python benchmarks/vsml_learns.py [--arch vsml|lstm] [--classes 2] [--inputs 8]
        [--length 24] [--state 16] [--batch 128] [--learning_rate 1e-2] [--seconds 200] [--steps 5000]
        [--episodes 1024] [--window 4] [--seed 0] [--curriculum_steps 0]

The task family is the project's own (gpicl_tf.data.augment), made small: the first
`--classes` digits of scikit-learn's 8x8 digits (source "digits", normalised with its
training split's mean and std), each task a random projection of the 64 pixels to
`--inputs` inputs (`task_projection`, A_ij ~ N(0, 1/64)) and a permutation of the
labels (`task_permutation`); an episode is `--length` examples drawn uniformly from
the split. Meta-training draws tasks 0 .. 2^16 - 1 and examples of the training
split; meta-testing draws `--episodes` episodes of unseen tasks (ids from
`UNSEEN_TASK_OFFSET`) and of the test split. The learner is the project's VSML
(`build_model`, arch "vsml", `--state` its `vsml_state`) or LSTM (`--arch lstm`,
`--state` its units), meta-trained with the authors' recipe (Adam,
gradients clipped at a global norm of 25, 128 episodes a step, the loss averaged
over every prediction of the episode) for `--seconds` of training or `--steps`
steps, whichever comes first. The learning rate is 1e-2 by default, not the
authors' 1e-3: measured here, 1e-2 leaves the loss plateau (ln 2) after about 300
steps, 1e-3 after about 2,000 (170 s, too close to the budget to rely on).

`--curriculum_steps K` meta-trains on a class curriculum: the episodes of step s hold
examples of the first min(classes, 2 + s // K) classes only (their labels permuted
among all `--classes` slots), so the learner meets the few-class tasks it leaves the
loss plateau on before the many-class ones; meta-testing is always on every class.

Prints the meta-test accuracy over the first and the last `--window` positions and
the within-sequence improvement (last minus first, per episode), each with a 95%
interval over episodes (1.96 standard errors), before and after meta-training.
Improvement clear of zero after, and not before, is in-context learning. About
4 minutes here with the defaults (2 CPU cores shared with another run).
"""

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from gpicl_tf.config import DataConfig, ModelConfig
from gpicl_tf.data import augment, sources
from gpicl_tf.data.schema import EpisodeSchema
from gpicl_tf.models import build_model
from gpicl_tf.training.metrics import EpisodeCrossEntropy

TRAIN_TASKS = 2**16
SEED = 0


def class_pool(split: str, classes: int, stats=None):
    """The digits of the first `classes` classes of `split`, normalised: x (n, 64), y (n,)."""
    data = sources.load_split("digits", split, DataConfig(source="digits"))
    keep = data.y < classes
    x, y = data.x[keep].astype(np.float64), data.y[keep].astype(np.int64)
    mean, std = stats or sources.normalization_stats(x)
    return ((x - mean) / std).astype(np.float32), y, (mean, std)


def tasks(ids: np.ndarray, inputs: int, classes: int):
    """Projections (T, 64, inputs) and label permutations (T, classes) of task `ids`."""
    @tf.function
    def draw(ids):
        proj = tf.map_fn(lambda t: augment.task_projection(SEED, t, 64, inputs), ids,
                         fn_output_signature=tf.float32)
        perm = tf.map_fn(lambda t: augment.task_permutation(SEED, t, classes), ids,
                         fn_output_signature=tf.int32)
        return proj, perm

    proj, perm = draw(tf.constant(ids, tf.int64))
    return proj.numpy(), perm.numpy()


def episodes(rng, pool, proj, perm, count: int, length: int, below: int = 0):
    """`count` episodes of tasks drawn from (proj, perm): inputs (B, N, d), labels (B, N);
    `below` > 0: of the examples of the first `below` classes only (their labels still
    permuted among all the head's classes)."""
    x, y = pool
    task = rng.integers(0, len(proj), count)
    rows = np.flatnonzero(y < below) if below else np.arange(len(y))
    idx = rows[rng.integers(0, len(rows), (count, length))]
    inputs = np.einsum("bnp,bpd->bnd", x[idx], proj[task]).astype(np.float32)
    labels = np.take_along_axis(perm[task], y[idx], axis=1).astype(np.int32)
    return inputs, labels


def accuracy_report(model, inputs, labels, window: int) -> dict:
    """Accuracy over the first and last `window` positions and their difference,
    each a mean over episodes with a 95% interval (1.96 standard errors)."""
    logits = np.concatenate([np.asarray(model({"inputs": inputs[i:i + 256],
                                               "labels": labels[i:i + 256]}))
                             for i in range(0, len(labels), 256)])
    hits = (logits.argmax(-1) == labels).astype(np.float64)                 # (B, N)
    parts = {"first": hits[:, :window].mean(1), "last": hits[:, -window:].mean(1)}
    parts["improvement"] = parts["last"] - parts["first"]
    return {k: (float(v.mean()), float(1.96 * v.std(ddof=1) / np.sqrt(len(v))))
            for k, v in parts.items()}


def _line(name: str, report: dict, window: int) -> str:
    f, la, imp = (report[k] for k in ("first", "last", "improvement"))
    return (f"{name}: accuracy first {window} {f[0]:.3f} +- {f[1]:.3f}, last {window} "
            f"{la[0]:.3f} +- {la[1]:.3f}, improvement {imp[0]:+.3f} +- {imp[1]:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=("vsml", "lstm"), default="vsml")
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--inputs", type=int, default=8)
    p.add_argument("--length", type=int, default=24)
    p.add_argument("--state", type=int, default=16)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--learning_rate", type=float, default=1e-2)
    p.add_argument("--seconds", type=float, default=200.0)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--episodes", type=int, default=1024)
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--curriculum_steps", type=int, default=0,
                   help="a class curriculum: meta-training episodes hold the first "
                        "2 + step // this classes (up to --classes); 0 = all from the start")
    args = p.parse_args()
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    # ------------------------------------------------------------------ tasks
    train_pool = class_pool("train", args.classes)
    test_pool = class_pool("test", args.classes, train_pool[2])
    train_tasks = tasks(np.arange(TRAIN_TASKS), args.inputs, args.classes)
    unseen = augment.UNSEEN_TASK_OFFSET + np.arange(args.episodes)
    test_x, test_y = episodes(np.random.default_rng(12345), test_pool[:2],
                              *tasks(unseen, args.inputs, args.classes),
                              args.episodes, args.length)

    # ------------------------------------------------------------------ model
    config = ModelConfig(arch=args.arch, layout="paper",
                         **({"vsml_state": args.state} if args.arch == "vsml"
                            else {"lstm_units": args.state}))
    model = build_model(config, EpisodeSchema(args.length, args.inputs, args.classes))
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate, global_clipnorm=25.0),
                  loss=EpisodeCrossEntropy())
    before = accuracy_report(model, test_x, test_y, args.window)
    print(_line("before meta-training", before, args.window), flush=True)

    # ------------------------------------------------------------------ meta-training
    t0, step, losses = time.perf_counter(), 0, []
    while step < args.steps and time.perf_counter() - t0 < args.seconds:
        below = min(args.classes, 2 + step // args.curriculum_steps) \
            if args.curriculum_steps else 0
        x, y = episodes(rng, train_pool[:2], *train_tasks, args.batch, args.length, below)
        losses.append(float(model.train_on_batch({"inputs": x, "labels": y}, y)))
        step += 1
        if step % 100 == 0:
            print(f"step {step}: loss {np.mean(losses[-100:]):.4f} "
                  f"({time.perf_counter() - t0:.0f} s{f', {below} classes' if below else ''})",
                  flush=True)
    seconds = time.perf_counter() - t0

    # ------------------------------------------------------------------ meta-test
    after = accuracy_report(model, test_x, test_y, args.window)
    print(f"{args.arch} (state {args.state}): {step} steps of {args.batch} episodes in {seconds:.0f} s; {args.episodes} "
          f"unseen-task episodes of {args.length} examples, {args.classes} classes, "
          f"{args.inputs} inputs (chance {1 / args.classes:.3f})")
    print(_line("before meta-training", before, args.window))
    print(_line("after meta-training", after, args.window))


if __name__ == "__main__":
    main()
