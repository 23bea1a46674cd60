"""GPICLClassifier against LogisticRegression on scikit-learn datasets, and the
accuracy gain of its ensemble.

    python benchmarks/estimator_ensemble.py saved_models/gpicl/2 [--repeats 10]

For digits, wine and breast_cancer, each repeat draws a random split of up to
99 training rows (the model's maximum context) and the rest (at most 200) for
testing, fits the estimator (in context) with n_ensemble 1 and 8 and
LogisticRegression on the same split; prints mean accuracies (95% CI) and the
ensemble's gain. Digits rows come from the test split only (the 450 images the
digits-trained models never saw in meta-training). About 2 minutes here.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_wine  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from gpicl_tf.config import DataConfig  # noqa: E402
from gpicl_tf.data import sources  # noqa: E402
from gpicl_tf.sklearn import GPICLClassifier  # noqa: E402


def load_unseen_digits(return_X_y=True):
    """Digits from the test split of the `digits` source: never meta-trained on."""
    split = sources.load_split("digits", "test", DataConfig())
    return split.x, split.y


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_path")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    for name, load in (("digits (test split)", load_unseen_digits), ("wine", load_wine),
                       ("breast_cancer", load_breast_cancer)):
        X, y = load(return_X_y=True)
        scores = {"GPICL n_ensemble=1": [], "GPICL n_ensemble=8": [], "logistic regression": []}
        for r in range(args.repeats):
            idx = np.random.default_rng(r).permutation(len(y))
            train = min(99, len(y) // 2)
            tr, te = idx[:train], idx[train:train + 200]
            for n in (1, 8):
                clf = GPICLClassifier(args.model_path, n_ensemble=n, random_state=r)
                scores[f"GPICL n_ensemble={n}"].append(clf.fit(X[tr], y[tr]).score(X[te], y[te]))
            lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            scores["logistic regression"].append(lr.fit(X[tr], y[tr]).score(X[te], y[te]))
        line = ", ".join(f"{k} {np.mean(v):.3f} (± {1.96 * np.std(v) / np.sqrt(len(v)):.3f})"
                         for k, v in scores.items())
        gain = np.mean(scores["GPICL n_ensemble=8"]) - np.mean(scores["GPICL n_ensemble=1"])
        print(f"{name} ({len(tr)} training rows): {line}; ensemble gain {gain:+.3f}")


if __name__ == "__main__":
    main()
