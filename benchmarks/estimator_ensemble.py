"""Accuracy gain of GPICLClassifier's ensemble on scikit-learn's digits.

    python benchmarks/estimator_ensemble.py saved_models/gpicl/1 [--repeats 20]

Each repeat draws 99 training and 200 test digits (a new random split), fits
the estimator (in context) with n_ensemble 1 and 8, and logistic regression
for reference; prints mean accuracies and the ensemble's gain. About a minute
here.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from gpicl_tf.sklearn import GPICLClassifier  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_path")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    X, y = load_digits(return_X_y=True)
    scores = {"GPICL n_ensemble=1": [], "GPICL n_ensemble=8": [], "logistic regression": []}
    for r in range(args.repeats):
        idx = np.random.default_rng(r).permutation(len(y))
        tr, te = idx[:99], idx[99:299]
        for n in (1, 8):
            clf = GPICLClassifier(args.model_path, n_ensemble=n, random_state=r).fit(X[tr], y[tr])
            scores[f"GPICL n_ensemble={n}"].append(clf.score(X[te], y[te]))
        lr = LogisticRegression(max_iter=1000).fit(X[tr], y[tr])
        scores["logistic regression"].append(lr.score(X[te], y[te]))
    for name, s in scores.items():
        print(f"{name}: {np.mean(s):.3f} (± {1.96 * np.std(s) / np.sqrt(len(s)):.3f})")
    gain = np.mean(scores["GPICL n_ensemble=8"]) - np.mean(scores["GPICL n_ensemble=1"])
    print(f"ensemble gain (8 vs 1): {gain:+.3f}")


if __name__ == "__main__":
    main()
