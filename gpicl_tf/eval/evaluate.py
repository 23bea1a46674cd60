"""Per-position meta-test accuracy of learners and baselines on the same episodes.

Example:
    >>> report = evaluate({"GPICL Transformer": "runs/cpu/transformer/model.keras"},
    ...                   {"digits (unseen tasks)": ("runs/cpu/episodes/digits", "test")},
    ...                   tuning=("runs/cpu/episodes/digits", "train"),
    ...                   config=get_preset("cpu").eval)  # doctest: +SKIP

Every evaluation set is an episode directory and split written by the same
pipeline; learners are scored at every position 1..N, baselines at
`config.positions`. Means come with 95% confidence intervals over episodes
(normal approximation, 1.96 standard errors).
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
from absl import logging

import gpicl_tf.models  # noqa: F401  (registers the layers for loading)
import gpicl_tf.training.metrics  # noqa: F401
from gpicl_tf.config import EvalConfig
from gpicl_tf.data import pipeline
from gpicl_tf.errors import InvalidInputError
from gpicl_tf.eval import baselines
from gpicl_tf.eval.ensemble import classes_of_member
from gpicl_tf.eval.report import ensemble_name

WINDOW = 10


def episode_arrays(episodes: pipeline.EpisodeSet, split: str, limit: int):
    """The first `limit` episodes of a split: inputs [E, N, N_x], labels [E, N]."""
    count = min(limit, episodes.num_episodes(split))
    ds = pipeline.make_dataset(episodes, split, batch_size=count, shuffle=False, repeat=False,
                               drop_remainder=False)
    features, _ = next(iter(ds))
    return features["inputs"].numpy(), features["labels"].numpy()


def ensemble_probabilities(model: keras.Model, inputs, labels, num_classes: int,
                           members: int = 1, seed: int = 0, rotate: bool = True,
                           batch_size: int = 64) -> np.ndarray:
    """Class probabilities [E, N, C] of a sequence learner at every position, the
    mean over `members` views of each episode. Member 0 is the episode itself;
    each other relabels the classes by a random permutation (its answers are
    mapped back) and, with `rotate`, turns the inputs by a random orthogonal
    matrix: a task that is a random projection of a dataset is as likely as its
    rotation, so every view is an equally valid task of the meta-training
    distribution, and the learner's answers to them differ. One view per member
    for all episodes (seeded), so the result is deterministic."""
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise InvalidInputError(f"ensemble members={members!r} must be an integer >= 1")
    rng = np.random.default_rng(seed)
    total = 0.0
    for m in range(members):
        x, y, perm = inputs, labels, np.arange(num_classes)
        if m:
            perm = rng.permutation(num_classes)
            y = perm[labels].astype(labels.dtype)
            if rotate:
                q, r = np.linalg.qr(rng.standard_normal((inputs.shape[-1],) * 2))
                x = (inputs @ (q * np.sign(np.diag(r)))).astype(inputs.dtype)
        logits = model.predict({"inputs": x, "labels": y}, batch_size=batch_size, verbose=0)
        z = logits.astype(np.float64)[..., :num_classes]
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        total = total + classes_of_member(p, perm, num_classes, renormalize=False)
    return total / members


def learner_correct(model: keras.Model, inputs, labels, batch_size: int = 64,
                    members: int = 1, num_classes: int | None = None) -> np.ndarray:
    """Correctness float [E, N] of a sequence learner at every position (with
    `members` > 1, of its ensemble over views: `ensemble_probabilities`)."""
    if members > 1:
        probs = ensemble_probabilities(model, inputs, labels, num_classes, members,
                                       batch_size=batch_size)
        return (np.argmax(probs, -1) == labels).astype(np.float64)
    logits = model.predict({"inputs": inputs, "labels": labels}, batch_size=batch_size,
                           verbose=0)
    return (np.argmax(logits, -1) == labels).astype(np.float64)


def summarize(correct: np.ndarray, positions) -> dict:
    """Mean and 95% CI half-width per position of correctness [E, P]."""
    e = correct.shape[0]
    sd = correct.std(axis=0, ddof=1) if e > 1 else np.zeros(correct.shape[1])
    return {"positions": [int(p) for p in positions],
            "mean": correct.mean(0).round(5).tolist(),
            "ci95": (1.96 * sd / np.sqrt(e)).round(5).tolist(),
            "last": float(correct[:, -1].mean())}


def _ci95(values: np.ndarray) -> float:
    """1.96 standard errors of the mean of `values` (0 for a single value)."""
    return float(1.96 * values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def learner_summary(correct: np.ndarray) -> dict:
    """Per-position summary of correctness [E, N], and the means over the first and
    last 10 positions, their difference (the within-sequence improvement) and 95%
    intervals of the last-10 mean and of the improvement."""
    n = correct.shape[1]
    w = min(WINDOW, n)
    first, last = correct[:, :w].mean(1), correct[:, -w:].mean(1)
    out = summarize(correct, range(1, n + 1))
    out.update(first10=float(first.mean()), last10=float(last.mean()),
               last10_ci95=_ci95(last), improvement=float((last - first).mean()),
               improvement_ci95=_ci95(last - first))
    return out


def across_seeds(entries: list[dict]) -> dict:
    """One learner entry from the same learner meta-trained with several seeds:
    per position the mean over seeds, and as "ci95" the half-width of the 95%
    t-interval ACROSS seeds (the spread of training, not of episodes)."""
    from scipy import stats

    n = len(entries)
    if n < 2:
        raise InvalidInputError(f"across_seeds needs at least two seeds, got {n}")
    t = float(stats.t.ppf(0.975, n - 1))
    curves = np.array([e["mean"] for e in entries])                   # [S, P]
    out = {"positions": entries[0]["positions"], "seeds": n,
           "mean": curves.mean(0).round(5).tolist(),
           "ci95": (t * curves.std(0, ddof=1) / np.sqrt(n)).round(5).tolist()}
    for key in ("last", "first10", "last10", "improvement"):
        values = np.array([e[key] for e in entries])
        out[key] = float(values.mean())
        out[f"{key}_per_seed"] = [round(float(v), 5) for v in values]
        out[f"{key}_sd"] = float(values.std(ddof=1))
    out["improvement_ci95"] = t * out["improvement_sd"] / np.sqrt(n)
    return out


def paired_differences(learner_last: dict[str, np.ndarray],
                       baseline_last: dict[str, np.ndarray]) -> dict:
    """Each learner minus each baseline at the last position, paired over episodes.

    Both score the same episodes, so the per-episode differences give a much
    tighter 95% CI than the two methods' own intervals: the honest test of a
    claim such as "3 points above tuned SGD".

    Args:
        learner_last, baseline_last: method name -> correctness [E] at the last
            position, every array over the same E episodes.
    Returns:
        {learner: {baseline: {"diff": mean difference, "ci95": half-width}}}.
    """
    out = {}
    for lname, lc in learner_last.items():
        out[lname] = {}
        for bname, bc in baseline_last.items():
            if lc.shape != bc.shape:
                raise InvalidInputError(
                    f"paired comparison of '{lname}' and '{bname}' needs the same "
                    f"episodes; got {lc.shape[0]} and {bc.shape[0]}")
            d = lc - bc
            ci = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
            out[lname][bname] = {"diff": round(float(d.mean()), 5), "ci95": round(float(ci), 5)}
    return out


def resolve_positions(config: EvalConfig, length: int) -> tuple[int, ...]:
    """eval.positions within an episode of `length` examples, and the last one."""
    return tuple(sorted({p for p in config.positions if 1 <= p <= length} | {length}))


@dataclasses.dataclass(frozen=True)
class TunedBaselines:
    """Settings of the tuned baselines, chosen on meta-training episodes."""

    lr_c: float
    sgd: baselines.SGDSettings
    svm: baselines.SVMSettings


def tune_baselines(inputs, labels, num_classes: int, tuned_on: str) -> tuple[TunedBaselines,
                                                                            dict]:
    """Tunes logistic regression's C, SGD's learning rate and steps and the SVM's C
    and gamma on meta-TRAINING episodes, each at the last position; returns the
    settings and, per baseline, what was chosen, every score, the widenings of
    the grid and the stability of the choice (for the report)."""
    lr_c, lr = baselines.tune_logistic_regression(inputs, labels)
    sgd_settings, sgd = baselines.tune_sgd(inputs, labels, num_classes)
    svm_settings, svm = baselines.tune_svm(inputs, labels)
    info = {}
    for name, chosen, result in (("logistic_regression", {"C": lr_c}, lr),
                                 ("sgd", {"learning_rate": sgd_settings.learning_rate,
                                          "steps": sgd_settings.steps}, sgd),
                                 ("svm", dataclasses.asdict(svm_settings), svm)):
        info[name] = {"chosen": chosen, "tuned_on": tuned_on, "position": int(inputs.shape[1]),
                      "scores": result.scores, "widened": result.widened,
                      "stability": result.stability}
        logging.info("%s tuned on %s: %s (chosen in %.0f%% of bootstrap resamples)", name,
                     tuned_on, chosen, 100 * result.stability)
    return TunedBaselines(lr_c, sgd_settings, svm_settings), info


TRANSFORMER_MODEL = "gpicl_transformer"   # the Keras name `models` gives the Transformer


def evaluate_set(learners: dict, inputs, labels, num_classes: int, positions,
                 tuned: TunedBaselines, ensemble: int = 1) -> dict:
    """Every learner (and, with `ensemble` > 1, each Transformer's ensemble of
    that many views) and every baseline on one set of episodes."""
    methods, learner_last, baseline_last = {}, {}, {}
    for name, model in learners.items():
        correct = learner_correct(model, inputs, labels)
        methods[name] = learner_summary(correct)
        learner_last[name] = correct[:, -1]
        if ensemble > 1 and model.name == TRANSFORMER_MODEL:
            correct = learner_correct(model, inputs, labels, members=ensemble,
                                      num_classes=num_classes)
            methods[ensemble_name(name, ensemble)] = learner_summary(correct)
            learner_last[ensemble_name(name, ensemble)] = correct[:, -1]
    runs = {
        "logistic regression (tuned)": lambda: baselines.logistic_regression(
            inputs, labels, positions, c=tuned.lr_c),
        "1-NN": lambda: baselines.knn(inputs, labels, positions, k=1),
        "SGD (tuned)": lambda: baselines.sgd(inputs, labels, positions, num_classes,
                                             tuned.sgd),
        "SVM (RBF, tuned)": lambda: baselines.svm(inputs, labels, positions, tuned.svm),
        "chance": lambda: baselines.chance(labels, positions, num_classes),
    }
    for name, fn in runs.items():
        t0 = time.perf_counter()
        correct = fn()
        methods[name] = summarize(correct, positions)
        baseline_last[name] = correct[:, -1]
        logging.info("baseline %s: %.1f s", name, time.perf_counter() - t0)
    return methods, paired_differences(learner_last, baseline_last)


def evaluate(models: dict[str, str], eval_sets: dict[str, tuple[str, str]],
             tuning: tuple[str, str], config: EvalConfig) -> dict:
    """Evaluates saved learners and the baselines on every evaluation set.

    Args:
        models: display name -> path of a saved `.keras` learner.
        eval_sets: display name -> (episode directory, split).
        tuning: (episode directory, split) of meta-TRAINING episodes on which
            the SGD baseline's settings are chosen.
    """
    learners = {name: keras.models.load_model(path, compile=False)
                for name, path in models.items()}
    tune_eps = pipeline.open_episodes(tuning[0])
    schema = tune_eps.schema
    t_in, t_lab = episode_arrays(tune_eps, tuning[1], config.sgd_tuning_episodes)
    tuned_on = f"{tuning[0]}:{tuning[1]} ({len(t_in)} episodes)"
    tuned, tuning_info = tune_baselines(t_in, t_lab, schema.num_classes, tuned_on)
    report = {**tuning_info,
              "meta_training_tasks": tune_eps.manifest["splits"]["train"].get("distinct_tasks"),
              "datasets": {}}
    expect = {"input_size": schema.input_size, "num_classes": schema.num_classes}
    for name, (directory, split) in eval_sets.items():
        eps = pipeline.open_episodes(directory, expect=expect)
        inputs, labels = episode_arrays(eps, split, config.episodes)
        positions = resolve_positions(config, inputs.shape[1])
        t0 = time.perf_counter()
        methods, paired = evaluate_set(learners, inputs, labels, schema.num_classes, positions,
                                       tuned, config.ensemble)
        report["datasets"][name] = {"source": eps.manifest["source"]["name"], "split": split,
                                    "directory": directory, "episodes": int(len(inputs)),
                                    "length": int(inputs.shape[1]), "methods": methods,
                                    "paired": paired,
                                    "seconds": round(time.perf_counter() - t0, 1)}
        logging.info("evaluated %s: %s", name,
                     {m: round(v["last"], 3) for m, v in methods.items()})
    return report
