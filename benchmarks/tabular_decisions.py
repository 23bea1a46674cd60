"""Why the cell model's accuracy lags its ROC AUC: its decisions against corrected ones.

    python benchmarks/tabular_decisions.py gpicl_tf/released/tabular/2 [--rows 100]
        [--splits 5] [--folds 3] [--datasets ...] [--out runs/tabular_decisions]

On the same tables and splits as benchmarks/tabular.py, the estimator's test-row
probabilities p (default ensemble) are turned into decisions four ways:
- argmax: the estimator's own prediction;
- prior matched: p rescaled per class so that the mean predicted class distribution
  over the test rows equals the training rows' class frequencies (no labels used);
- fitted weights: per-class weights w on p (argmax p * w), fitted to maximise the
  accuracy of out-of-fold predictions on the training rows (`--folds` folds: the
  estimator fitted on the rest of the training rows predicts each fold), then applied
  to the test rows: an honest per-table threshold / prior correction;
- out-of-fold prior: per-class weights w = (training class frequency) / (mean
  out-of-fold probability of the class), from the same out-of-fold predictions: the
  prior shift the model shows on its training rows, undone on the test rows
  (inductive: no test row is used, so each row's decision stands alone);
- oracle weights: the same weights fitted on the test rows' own labels: an upper bound
  on what any per-table threshold or prior correction could give.
If the oracle is close to argmax, the gap to the tuned baselines is not in the
decisions (calibration, class priors, thresholds) but in the ranking itself, table by
table. Prints per table (classes, columns): accuracy of each decision, ROC AUC and the
mean test-row probability of the true class; then the means grouped by number of
classes and by width. About 2 s per fit+predict here: 13 tables x 5 splits x 4 fits
is about 9 minutes alone.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
from sklearn.metrics import accuracy_score
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tabular  # noqa: E402  (the benchmark's tables, splits and estimator)

from gpicl_tf.data.storage import atomic_path  # noqa: E402

GRID = np.linspace(-3.0, 3.0, 61)   # log-weights searched per class


def fit_weights(proba: np.ndarray, y_idx: np.ndarray, sweeps: int = 3) -> np.ndarray:
    """Per-class weights w (k,) maximising the accuracy of argmax(proba * w).

    Coordinate search over log-weights on `GRID`, class by class, `sweeps` times;
    ties keep the weight nearest 1 (log-weight 0), so that no evidence means no change.

    Args:
        proba: (n, k) probabilities.
        y_idx: (n,) true class indices in [0, k).
    """
    k = proba.shape[1]
    logw = np.zeros(k)
    logp = np.log(np.clip(proba, 1e-12, 1.0))
    for _ in range(sweeps):
        for c in range(k):
            scores = []
            for g in GRID:
                trial = logw.copy()
                trial[c] = g
                scores.append(np.mean(np.argmax(logp + trial, 1) == y_idx))
            scores = np.asarray(scores)
            best = np.flatnonzero(scores == scores.max())
            logw[c] = GRID[best[np.argmin(np.abs(GRID[best]))]]
    return np.exp(logw)


def prior_matched(proba: np.ndarray, train_freq: np.ndarray) -> np.ndarray:
    """proba rescaled per class so that its mean over the rows equals `train_freq`."""
    mean = np.clip(proba.mean(0), 1e-12, None)
    out = proba * (train_freq / mean)
    return out / out.sum(1, keepdims=True)


def out_of_fold_prior(oof: np.ndarray, train_freq: np.ndarray) -> np.ndarray:
    """Per-class weights that undo the prior shift of the out-of-fold probabilities
    `oof`: the training class frequency over the mean out-of-fold probability."""
    return train_freq / np.clip(oof.mean(0), 1e-12, None)


def out_of_fold(make, x: np.ndarray, y: np.ndarray, classes: np.ndarray, folds: int,
                seed: int) -> np.ndarray:
    """(n, k) probabilities of each training row, predicted by the estimator fitted on
    the other folds (columns in the order of `classes`; a class absent from the other
    folds gets 0)."""
    proba = np.zeros((len(y), len(classes)))
    for fit_idx, pred_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        model = make().fit(x[fit_idx], y[fit_idx])
        part = model.predict_proba(x[pred_idx])
        cols = np.searchsorted(classes, model.classes_)
        proba[np.ix_(pred_idx, cols)] = part
    return proba


def run_table(make, x, y, rows: int, splits: int, folds: int) -> dict:
    """Per-split accuracy of each decision rule, AUC and true-class probability."""
    test = min(500, len(y) - rows)
    sss = StratifiedShuffleSplit(n_splits=splits, train_size=rows, test_size=test, random_state=0)
    out = {k: [] for k in (*RULES, "auc", "p_true", "seconds")}
    for k, (tr, te) in enumerate(sss.split(x, y)):
        t0 = time.perf_counter()
        model = make(k)().fit(x[tr], y[tr])
        proba = model.predict_proba(x[te])
        out["seconds"].append(time.perf_counter() - t0)
        classes = model.classes_
        y_te = np.searchsorted(classes, y[te])
        y_tr = np.searchsorted(classes, y[tr])
        freq = np.bincount(y_tr, minlength=len(classes)) / len(y_tr)
        oof = out_of_fold(make(k), x[tr], y[tr], classes, folds, seed=k)
        w = fit_weights(oof, y_tr)
        out["argmax"].append(accuracy_score(y_te, proba.argmax(1)))
        out["prior matched"].append(accuracy_score(y_te, prior_matched(proba, freq).argmax(1)))
        out["fitted weights"].append(accuracy_score(y_te, (proba * w).argmax(1)))
        shift = out_of_fold_prior(oof, freq)
        out["out-of-fold prior"].append(accuracy_score(y_te, (proba * shift).argmax(1)))
        out["oracle weights"].append(accuracy_score(
            y_te, (proba * fit_weights(proba, y_te)).argmax(1)))
        out["auc"].append(tabular.auc(y[te], proba, classes))
        out["p_true"].append(float(proba[np.arange(len(y_te)), y_te].mean()))
    return out


RULES = ("argmax", "prior matched", "fitted weights", "out-of-fold prior", "oracle weights")


def report(results: dict) -> str:
    lines = ["| table | classes | columns | " + " | ".join(RULES) +
             " | ROC AUC | mean p(true class) |", "|---|---|---|" + "---|" * (len(RULES) + 2)]
    for name, r in results.items():
        lines.append(f"| {name} | {r['classes']} | {r['columns']} | " + " | ".join(
            f"{np.mean(r[k]):.3f}" for k in RULES) +
            f" | {np.mean(r['auc']):.3f} | {np.mean(r['p_true']):.3f} |")
    lines.append("| **mean** | | | " + " | ".join(
        f"**{np.mean([np.mean(r[k]) for r in results.values()]):.3f}**" for k in RULES) + " | | |")
    lines += ["", "| group | tables | " + " | ".join(RULES) + " |", "|---|---|" + "---|" * len(RULES)]
    groups = {"2 classes": lambda r: r["classes"] == 2,
              "3-10 classes": lambda r: r["classes"] > 2,
              "up to 20 columns": lambda r: r["columns"] <= 20,
              "over 20 columns": lambda r: r["columns"] > 20}
    for label, keep in groups.items():
        chosen = [r for r in results.values() if keep(r)]
        if chosen:
            lines.append(f"| {label} | {len(chosen)} | " + " | ".join(
                f"{np.mean([np.mean(r[k]) for r in chosen]):.3f}" for k in RULES) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_path")
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--datasets", default=",".join(tabular.DATASETS))
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    unknown = [d for d in args.datasets.split(",") if d not in tabular.DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; known: {list(tabular.DATASETS)}")
    if args.folds < 2:
        parser.error(f"--folds {args.folds}: at least 2")
    results = {}
    for name in args.datasets.split(","):
        x, y = tabular.DATASETS[name]()
        if args.rows + 20 > len(y):
            print(f"{name}: {len(y)} rows, too few for {args.rows}; skipped")
            continue
        r = run_table(lambda k: tabular.estimator(args.model_path, None, k), x, y, args.rows,
                      args.splits, args.folds)
        r.update(classes=int(len(np.unique(y))), columns=int(x.shape[1]))
        results[name] = r
        print(f"{name}: " + ", ".join(f"{k} {np.mean(r[k]):.3f}" for k in RULES), flush=True)
    text = report(results)
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        for fname, body in (("decisions.md", text + "\n"), ("decisions.json", json.dumps(results))):
            with atomic_path(os.path.join(args.out, fname)) as tmp:
                with open(tmp, "w") as f:
                    f.write(body)


if __name__ == "__main__":
    main()
