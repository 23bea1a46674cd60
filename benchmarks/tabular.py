"""GPICLClassifier against tuned classical learners on small real tables.

    python benchmarks/tabular.py [LABEL=]saved_models/tabular/1 [[LABEL=]OTHER_VERSION ...]
        [--rows 50,100,500] [--splits 10] [--datasets iris,wine,breast_cancer,digits]
        [--n_ensemble N] [--preprocessing auto|standard|quantile|power|mix]
        [--max_features auto|none|N] [--prior_correction] [--no_feature_selection]
        [--out runs/tabular]

Several exported versions (row or cell models; e.g. one per meta-training time)
are measured on the same splits beside the same baselines; the first is the one
the paired differences compare.

Datasets available offline: scikit-learn's iris, wine, breast_cancer, and digits
restricted to the `digits` source's test split (images no digits-trained model
meta-trained on); and, where Debian's r-cran-mlbench and pyreadr are installed,
nine real UCI tables of R's mlbench (`mlbench:NAME`, some with missing values). For each dataset and training size (where the table has the
rows plus a test set), `--splits` stratified random splits: the training rows,
and up to 500 of the rest for testing. Learners, fitted on the same rows:
the estimator (in context, no gradient step), LogisticRegressionCV, an RBF SVM
with C and gamma chosen by 5-fold CV, a random forest (500 trees), histogram
gradient boosting, and k-NN with k chosen by 5-fold CV (all on standardised
features). Prints and writes (--out: tabular.md, tabular.json, tabular.png)
per dataset and size: mean accuracy, ROC AUC and log loss (calibration), the estimator's paired
difference to each baseline with a 95% t-interval over splits, and the seconds
per fit+predict; then the means over the suite against the targets of issue 28
(at 100 rows: mean accuracy >= the mean of the best baseline per dataset, at or
above logistic regression on at least 10 of 13, ROC AUC and log loss at least as
good as logistic regression's; at 500 rows within 1 point of the best baseline).

With --out, each finished (dataset, rows) case is written at once, per learner,
to OUT/cases/LEARNER/DATASET@ROWS.json (atomically, with the settings it ran
under: a model's files and the estimator's code for a model, the splits for
the baselines); a re-run reads the cases that ran under the same settings
instead of running them again, so a killed run resumes where it stopped and a
new model costs only its own cases. Prints (and writes) the per-case tables, the
mean accuracy over the suite per training size of every learner, and issue 28's
targets for each model.
"""

import argparse
import hashlib
import inspect
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_iris, load_wine  # noqa: E402
from sklearn.calibration import CalibratedClassifierCV  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LogisticRegressionCV  # noqa: E402
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score  # noqa: E402
from sklearn.model_selection import GridSearchCV, StratifiedShuffleSplit  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

from gpicl_tf.config import DataConfig  # noqa: E402
from gpicl_tf.data import sources  # noqa: E402
from gpicl_tf.data.storage import atomic_path, sha256_file  # noqa: E402
from gpicl_tf import sklearn_cell, sklearn_row  # noqa: E402
from gpicl_tf.sklearn import GPICLClassifier  # noqa: E402

ESTIMATOR = "GPICL (in context)"
BASELINES_VERSION = 1     # bump when a baseline changes: their stored cases run again


def unseen_digits():
    split = sources.load_split("digits", "test", DataConfig())
    return split.x.astype(np.float64), split.y


DATASETS = {
    "iris": lambda: load_iris(return_X_y=True),
    "wine": lambda: load_wine(return_X_y=True),
    "breast_cancer": lambda: load_breast_cancer(return_X_y=True),
    "digits": unseen_digits,
}

# Real tables of R's mlbench (UCI data), shipped by Debian's r-cran-mlbench, read with
# pyreadr (needs pandas): `apt-get install r-cran-mlbench && pip install pyreadr pandas`.
# name -> (target column, columns left out). Factor features become their level codes
# (binary and ordinal ones here), missing values stay NaN. Tables with more than 10
# classes (Soybean, Vowel, LetterRecognition) exceed the model's head and are not listed.
MLBENCH_DIR = "/usr/lib/R/site-library/mlbench/data"
MLBENCH = {
    "BreastCancer": ("Class", ("Id",)),           # 699 rows, 9 ordinal, missing values
    "Glass": ("Type", ()),                        # 214 rows, 9 numeric, 6 classes
    "HouseVotes84": ("Class", ()),                # 435 rows, 16 binary votes, many missing
    "Ionosphere": ("Class", ()),                  # 351 rows, 34 features
    "PimaIndiansDiabetes2": ("diabetes", ()),     # 768 rows, 8 numeric, missing values
    "Sonar": ("Class", ()),                       # 208 rows, 60 numeric
    "Vehicle": ("Class", ()),                     # 846 rows, 18 numeric, 4 classes
    "Satellite": ("classes", ()),                 # 6,435 rows, 36 numeric, 6 classes
    "DNA": ("Class", ()),                         # 3,186 rows, 180 binary, 3 classes
}


def mlbench_table(name: str):
    """(x float64 [n, d] with NaN for missing, y [n]) of an mlbench table."""
    import pyreadr

    target, drop = MLBENCH[name]
    frame = pyreadr.read_r(os.path.join(MLBENCH_DIR, f"{name}.rda"))[name]
    y = np.asarray(frame[target].astype(str))
    columns = []
    for col in frame.columns:
        if col == target or col in drop:
            continue
        c = frame[col]
        if str(c.dtype) == "category":
            codes = c.cat.codes.to_numpy().astype(float)
            columns.append(np.where(codes < 0, np.nan, codes))
        else:
            columns.append(c.to_numpy(dtype=float, na_value=np.nan))
    return np.stack(columns, axis=1), y


def mlbench_available() -> bool:
    try:
        import pyreadr  # noqa: F401
    except ImportError:
        return False
    return os.path.isdir(MLBENCH_DIR)


if mlbench_available():
    for _name in MLBENCH:
        DATASETS[f"mlbench:{_name}"] = (lambda n: lambda: mlbench_table(n))(_name)


def cv_folds(y_train: np.ndarray) -> int:
    """Folds for the baselines' cross-validation: 5, fewer where the training rows are
    few (rows // 10) or a class has fewer rows than folds (at least 2)."""
    smallest = int(np.unique(y_train, return_counts=True)[1].min())
    return max(2, min(5, len(y_train) // 10, smallest))


def estimator(model_path: str, n_ensemble, seed: int, preprocessing: str = "auto",
              max_features="auto", prior_correction: bool = False,
              feature_selection: bool = True):
    return lambda: GPICLClassifier(model_path, n_ensemble=n_ensemble, random_state=seed,
                                   preprocessing=preprocessing, max_features=max_features,
                                   prior_correction=prior_correction,
                                   feature_selection=feature_selection)


def baselines(folds: int, seed: int) -> dict:
    return {
        "logistic regression (CV)": lambda: make_pipeline(
            _imputer(), StandardScaler(), LogisticRegressionCV(Cs=10, cv=folds, max_iter=2000)),
        # probabilities by Platt scaling on cross-validated decision values
        # (CalibratedClassifierCV, ensemble=False: what SVC(probability=True) did)
        "RBF SVM (CV)": lambda: make_pipeline(_imputer(), StandardScaler(), CalibratedClassifierCV(
            GridSearchCV(SVC(random_state=seed),
                         {"C": [0.1, 1, 10, 100], "gamma": ["scale", 0.01, 0.1]}, cv=folds),
            cv=folds, ensemble=False)),
        "random forest": lambda: make_pipeline(
            _imputer(), RandomForestClassifier(n_estimators=500, random_state=seed)),
        "gradient boosting": lambda: HistGradientBoostingClassifier(random_state=seed),
        "k-NN (CV)": lambda: make_pipeline(_imputer(), StandardScaler(), GridSearchCV(
            KNeighborsClassifier(), {"n_neighbors": [1, 3, 5, 9, 15]}, cv=folds)),
    }


def _imputer():
    """Missing values (mlbench tables) as the column mean plus an indicator column,
    as the estimator prepares them; gradient boosting takes NaN itself."""
    return SimpleImputer(strategy="mean", add_indicator=True, keep_empty_features=True)


def auc(y, proba, classes) -> float:
    if len(classes) == 2:
        return roc_auc_score(y, proba[:, 1])
    return roc_auc_score(y, proba, multi_class="ovr", labels=classes)


def run_case(x, y, rows: int, splits: int, make_learners) -> dict:
    """{learner: {acc, auc, log_loss, seconds: one per split}} for the learners that
    `make_learners(folds, split)` returns, fitted on the same splits."""
    test = min(500, len(y) - rows)
    sss = StratifiedShuffleSplit(n_splits=splits, train_size=rows, test_size=test, random_state=0)
    out = {}
    for k, (tr, te) in enumerate(sss.split(x, y)):
        for name, make in make_learners(cv_folds(y[tr]), k).items():
            t0 = time.perf_counter()
            model = make().fit(x[tr], y[tr])
            proba = model.predict_proba(x[te])
            seconds = time.perf_counter() - t0
            classes = np.unique(y[tr])
            pred = classes[np.argmax(proba, 1)]
            entry = out.setdefault(name, {"acc": [], "auc": [], "log_loss": [], "seconds": []})
            entry["acc"].append(accuracy_score(y[te], pred))
            entry["auc"].append(auc(y[te], proba, classes) if set(np.unique(y[te])) <= set(
                classes) else float("nan"))
            entry["log_loss"].append(log_loss(y[te], np.clip(proba, 1e-15, 1.0), labels=classes)
                                     if set(np.unique(y[te])) <= set(classes) else float("nan"))
            entry["seconds"].append(seconds)
    return out


def model_fingerprint(path: str) -> str:
    """sha256 over the files under the model path: a replaced model runs its cases again."""
    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            digest.update(os.path.relpath(os.path.join(root, name), path).encode())
            with open(os.path.join(root, name), "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def case_path(out: str, learner: str, dataset: str, rows: int) -> str:
    """OUT/cases/LEARNER/DATASET@ROWS.json (LEARNER: "baselines" or a model's label)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in learner)
    return os.path.join(out, "cases", safe, f"{dataset.replace(':', '_')}@{rows}.json")


def load_case(path: str, settings: dict):
    """The case stored at `path` if it ran under `settings`, else None."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        stored = json.load(f)
    if stored.get("settings") != settings:
        print(f"{path}: ran under {stored.get('settings')}, not {settings}; running it again")
        return None
    return stored["case"]


def save_case(path: str, settings: dict, case: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump({"settings": settings, "case": case}, f)


def interval(values) -> tuple[float, float]:
    v = np.asarray(values, float)
    if len(v) < 2:
        return float(v.mean()), 0.0
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def markdown(results: dict, main: str = ESTIMATOR) -> str:
    lines = []
    for (dataset, rows), case in results.items():
        lines += [f"### {dataset}, {rows} training rows", "",
                  f"| learner | accuracy | ROC AUC | log loss | {main} minus it (acc, 95% CI) "
                  "| s per fit+predict |",
                  "|---|---|---|---|---|---|"]
        mine = np.asarray(case[main]["acc"])
        for name, e in case.items():
            acc, ci = interval(e["acc"])
            diff = "" if name == main else "{:+.3f} ± {:.3f}".format(
                *interval(mine - np.asarray(e["acc"])))
            lines.append(f"| {name} | {acc:.3f} ± {ci:.3f} | {np.nanmean(e['auc']):.3f} | "
                         f"{np.nanmean(e['log_loss']):.3f} | {diff} | "
                         f"{np.mean(e['seconds']):.2f} |")
        lines.append("")
    return "\n".join(lines)


def targets(results: dict, models: list[str]) -> list[str]:
    """Issue 28's targets for each model: mean accuracy against the mean of the best
    baseline per table, tables at or above logistic regression, ROC AUC and log loss
    against logistic regression's, seconds per fit+predict."""
    out = []
    lr = "logistic regression (CV)"
    for rows in sorted({r for _, r in results}):
        cases = {d: c for (d, r), c in results.items() if r == rows}
        best = np.mean([max(np.mean(e["acc"]) for n, e in c.items() if n not in models)
                        for c in cases.values()])
        lr_auc = np.mean([np.nanmean(c[lr]["auc"]) for c in cases.values()])
        lr_loss = np.mean([np.nanmean(c[lr]["log_loss"]) for c in cases.values()])
        for model in models:
            mine = np.mean([np.mean(c[model]["acc"]) for c in cases.values()])
            at_lr = [d for d, c in cases.items()
                     if np.mean(c[model]["acc"]) >= np.mean(c[lr]["acc"])]
            m_auc = np.mean([np.nanmean(c[model]["auc"]) for c in cases.values()])
            m_loss = np.mean([np.nanmean(c[model]["log_loss"]) for c in cases.values()])
            sec = np.mean([np.mean(c[model]["seconds"]) for c in cases.values()])
            out.append(
                f"- {rows} rows ({len(cases)} datasets), {model}: mean accuracy {mine:.3f}, best "
                f"baseline per dataset {best:.3f} ({mine - best:+.3f}); at or above logistic "
                f"regression on {len(at_lr)} of {len(cases)}; ROC AUC {m_auc:.3f} vs {lr_auc:.3f},"
                f" log loss {m_loss:.3f} vs {lr_loss:.3f} (logistic regression); "
                f"{sec:.2f} s per fit+predict")
    return out


def summary_table(results: dict, models: list[str]) -> str:
    """Mean accuracy over the suite per training size: each model and each baseline."""
    sizes = sorted({r for _, r in results})
    names = list(dict.fromkeys(n for c in results.values() for n in c))
    lines = ["| learner | " + " | ".join(f"{r} rows" for r in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for name in names:
        cells = []
        for r in sizes:
            accs = [np.mean(c[name]["acc"]) for (d, rr), c in results.items()
                    if rr == r and name in c]
            cells.append(f"{np.mean(accs):.3f}" if accs else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    best = [np.mean([max(np.mean(e["acc"]) for n, e in c.items() if n not in models)
                     for (d, rr), c in results.items() if rr == r]) for r in sizes]
    lines.append("| best baseline per table | " + " | ".join(f"{b:.3f}" for b in best) + " |")
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({d for d, _ in results})
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 3.5), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        sizes = sorted(r for dd, r in results if dd == d)
        names = list(results[(d, sizes[0])])
        for name in names:
            ax.plot(sizes, [np.mean(results[(d, r)][name]["acc"]) for r in sizes], "o-",
                    label=name, lw=2.5 if name.startswith("GPICL") else 1)
        ax.set_xscale("log")
        ax.set_title(d)
        ax.set_xlabel("training rows")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cached(out: str, learner: str, dataset: str, rows: int, settings: dict, compute):
    """(case, stored): a case of one learner (or the baselines), read from OUT/cases if
    it ran under `settings`, else computed and stored."""
    path = case_path(out, learner, dataset, rows) if out else ""
    case = load_case(path, settings) if path else None
    if case is not None:
        return case, True
    case = compute()
    if path:
        save_case(path, settings, case)
    return case, False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_paths", nargs="+",
                        help="one or more exported versions, each PATH or LABEL=PATH; the "
                             "first is the one the paired differences compare")
    parser.add_argument("--rows", default="50,100,500")
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--n_ensemble", type=int, default=None,
                        help="the estimator's members (default: its own per backbone)")
    parser.add_argument("--preprocessing", default="auto",
                        help="the estimator's preprocessing: auto, standard, quantile, power, mix")
    parser.add_argument("--max_features", default="auto",
                        help="the estimator's max_features: auto, none or an integer")
    parser.add_argument("--prior_correction", action="store_true",
                        help="the estimator's prior_correction (class weights from the "
                             "training rows' out-of-fold predictions)")
    parser.add_argument("--no_feature_selection", action="store_true",
                        help="the estimator's feature_selection=False (a cell model reads a "
                             "random max_features columns of a wider table per member)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    unknown = [d for d in args.datasets.split(",") if d not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; known: {list(DATASETS)}")
    value = args.max_features.lower()
    if value not in ("auto", "none") and not value.isdigit():
        parser.error(f"--max_features {args.max_features!r}: auto, none or an integer")
    max_features = None if value == "none" else "auto" if value == "auto" else int(value)
    models = {}
    for item in args.model_paths:
        label, sep, path = item.rpartition("=")
        label = f"GPICL {label}" if sep else \
            f"GPICL {os.path.basename(os.path.dirname(os.path.abspath(path)))}/" \
            f"{os.path.basename(os.path.abspath(path))}"
        models[label] = path
    code = "".join(sha256_file(f) for f in (inspect.getfile(GPICLClassifier),
                                            inspect.getfile(sklearn_cell),
                                            inspect.getfile(sklearn_row)))
    base_settings = {"splits": args.splits, "baselines": BASELINES_VERSION}
    results = {}
    for dataset in args.datasets.split(","):
        x, y = DATASETS[dataset]()
        for rows in (int(r) for r in args.rows.split(",")):
            if rows + 20 > len(y) or rows < 2 * len(np.unique(y)):
                print(f"{dataset}: {len(y)} rows, too few for {rows} training rows; skipped")
                continue
            case, stored = {}, []
            for label, path in models.items():
                settings = {"model": model_fingerprint(path), "estimator": code,
                            "max_features": args.max_features, "splits": args.splits,
                            "n_ensemble": args.n_ensemble, "preprocessing": args.preprocessing,
                            **({"prior_correction": True} if args.prior_correction else {}),
                            **({"feature_selection": False} if args.no_feature_selection
                               else {})}
                def learners(folds, split, label=label, path=path):
                    return {label: estimator(path, args.n_ensemble, split, args.preprocessing,
                                             max_features, args.prior_correction,
                                             not args.no_feature_selection)}

                part, was = cached(args.out, label, dataset, rows, settings,
                                   lambda: run_case(x, y, rows, args.splits, learners))
                case.update(part)
                stored.append(was)
            part, was = cached(args.out, "baselines", dataset, rows, base_settings,
                               lambda: run_case(x, y, rows, args.splits, baselines))
            case.update(part)
            stored.append(was)
            results[(dataset, rows)] = case
            print(f"{dataset}, {rows} rows{' (stored)' if all(stored) else ''}: " + ", ".join(
                f"{n} {np.mean(e['acc']):.3f}" for n, e in case.items()), flush=True)
    first = next(iter(models))
    text = (markdown(results, first) + "\n" + summary_table(results, list(models)) + "\n\n" +
            "\n".join(targets(results, list(models))) + "\n")
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "tabular.md"), "w") as f:
            f.write(text)
        with open(os.path.join(args.out, "tabular.json"), "w") as f:
            json.dump({f"{d}@{r}": c for (d, r), c in results.items()}, f)
        plot(results, os.path.join(args.out, "tabular.png"))


if __name__ == "__main__":
    main()
