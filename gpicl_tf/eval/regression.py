"""Function-regression meta-test: the learner and honest baselines, MSE against
the number of context points, on the same episodes.

Example:
    >>> report = evaluate_functions("runs/f/transformer/model.keras",
    ...     {"mlp (held-out tasks)": ("runs/f/episodes/functions-mlp", "test")},
    ...     tuning=("runs/f/episodes/functions-mlp", "train"),
    ...     config=get_preset("functions_cpu").eval)                  # doctest: +SKIP

At c context points every method sees the same c (the first c non-query points
of an episode, in stored order) and predicts the same M queries. The learner
gets them as one sequence [c context points, M queries]; its mask makes each
query see exactly those c points. Baselines (scikit-learn) are fitted per
episode; their settings (k, alpha, degree, GP kernel) are chosen per c on
meta-TRAINING episodes, never on the test episodes. MSE is against the observed
(noisy) y; `clean_mse` against the noise-free f(x) (their difference is the
noise variance). Means come with 95% CIs over episodes.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import warnings

import keras
import numpy as np
from absl import logging

import gpicl_tf.models  # noqa: F401  (registers the layers for loading)
import gpicl_tf.training.metrics  # noqa: F401
from gpicl_tf.config import EvalConfig
from gpicl_tf.data import pipeline
from gpicl_tf.data.schema import INPUTS, QUERY, VALUES
from gpicl_tf.errors import InvalidInputError
from gpicl_tf.eval.evaluate import resolve_positions

LEARNER = "GPICL Transformer"


@dataclasses.dataclass(frozen=True)
class Episodes:
    """Function episodes split into context and queries (context in stored order).

    cx [E, C, d], cy [E, C], qx [E, M, d], qy [E, M] observed, qclean [E, M]
    noise-free, task_id [E].
    """

    cx: np.ndarray
    cy: np.ndarray
    qx: np.ndarray
    qy: np.ndarray
    qclean: np.ndarray
    task_id: np.ndarray

    def __len__(self) -> int:
        return len(self.cy)

    @property
    def max_context(self) -> int:
        return self.cy.shape[1]


def load_episodes(episodes: pipeline.EpisodeSet, split: str, limit: int) -> Episodes:
    """The first `limit` episodes of a split of a function-regression set."""
    schema = episodes.schema
    if schema.task != "regression":
        raise InvalidInputError(
            f"{episodes.directory} holds {schema.task} episodes, not function "
            "regression")
    records = pipeline.read_records(episodes, split)[:limit]
    if not records:
        raise InvalidInputError(f"split {split!r} of {episodes.directory} holds no episodes")
    n, d = schema.episode_length, schema.input_size
    x = np.stack([r["x"].reshape(n, d) for r in records]).astype(np.float64)
    y = np.stack([r["y"] for r in records]).astype(np.float64)
    clean = np.stack([r["clean"] for r in records]).astype(np.float64)
    query = np.stack([r["query"] for r in records]).astype(bool)
    order = np.argsort(query, axis=1, kind="stable")          # context first, stored order
    c = n - schema.num_queries

    def take(a):
        idx = order if a.ndim == 2 else order[..., None]
        return np.take_along_axis(a, idx, axis=1)

    x, y, clean = take(x), take(y), take(clean)
    return Episodes(cx=x[:, :c], cy=y[:, :c], qx=x[:, c:], qy=y[:, c:], qclean=clean[:, c:],
                    task_id=np.array([int(r["task_id"]) for r in records]))


# ---------------------------------------------------------------------- learner

def learner_inputs(cx, cy, qx) -> dict:
    """One sequence per episode: the context points, then the queries (values 0)."""
    e, c = cy.shape
    m = qx.shape[1]
    return {INPUTS: np.concatenate([cx, qx], 1).astype(np.float32),
            VALUES: np.concatenate([cy, np.zeros((e, m))], 1).astype(np.float32),
            QUERY: np.concatenate([np.zeros((e, c)), np.ones((e, m))], 1).astype(np.float32)}


def learner_predict(model: keras.Model, cx, cy, qx, batch_size: int = 128) -> np.ndarray:
    """Predictions [E, M] for the queries qx given the context (cx, cy)."""
    out = model.predict(learner_inputs(cx, cy, qx), batch_size=batch_size, verbose=0)
    return np.asarray(out)[:, cy.shape[1]:].astype(np.float64)


# ---------------------------------------------------------------------- baselines

def predict_mean(cx, cy, qx, setting=None):
    return np.full(len(qx), cy.mean())


def predict_least_squares(cx, cy, qx, setting=None):
    """Ordinary least squares with an intercept (minimum-norm when underdetermined)."""
    a = np.concatenate([cx, np.ones((len(cx), 1))], 1)
    w = np.linalg.lstsq(a, cy, rcond=None)[0]
    return np.concatenate([qx, np.ones((len(qx), 1))], 1) @ w


def predict_ridge(cx, cy, qx, alpha):
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha).fit(cx, cy).predict(qx)


def predict_polynomial(cx, cy, qx, degree):
    """Least-squares polynomial of `degree` (capped at c - 1), all monomials of x."""
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import PolynomialFeatures

    degree = max(0, min(degree, len(cy) - 1))
    if degree == 0:
        return predict_mean(cx, cy, qx)
    features = PolynomialFeatures(degree, include_bias=False)
    model = LinearRegression().fit(features.fit_transform(cx), cy)
    return model.predict(features.transform(qx))


def predict_knn(cx, cy, qx, k):
    from sklearn.neighbors import KNeighborsRegressor

    return KNeighborsRegressor(n_neighbors=min(k, len(cy))).fit(cx, cy).predict(qx)


def predict_gp(cx, cy, qx, setting):
    """GP regression, RBF kernel (length, signal variance) + noise, fixed hyperparameters."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel

    length, variance, noise = setting
    kernel = ConstantKernel(variance, "fixed") * RBF(length, "fixed")
    gp = GaussianProcessRegressor(kernel, alpha=noise, optimizer=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # near-duplicate points: sklearn warns, still fits
        return gp.fit(cx, cy).predict(qx)


BASELINES = {
    # name: (predict, settings searched on meta-training episodes)
    "mean of context": (predict_mean, (None,)),
    "least squares": (predict_least_squares, (None,)),
    "ridge (tuned)": (predict_ridge, (1e-3, 1e-2, 0.1, 1.0, 10.0)),
    "polynomial (tuned degree)": (predict_polynomial, (1, 2, 3, 4, 5, 7)),
    "k-NN (tuned k)": (predict_knn, (1, 2, 3, 5, 8, 13)),
    "GP (RBF, tuned)": (predict_gp, tuple(itertools.product(
        (0.1, 0.2, 0.4, 0.8), (0.3, 1.0), (0.01, 0.03)))),
}


def baseline_predictions(predict, setting, eps: Episodes, c: int) -> np.ndarray:
    """Predictions [E, M] of one baseline fitted per episode on its first c context points."""
    return np.stack([predict(eps.cx[i, :c], eps.cy[i, :c], eps.qx[i], setting)
                     for i in range(len(eps))])


def baseline_errors(predict, setting, eps: Episodes, c: int) -> np.ndarray:
    """Per-episode MSE [E] of one baseline fitted on the first c context points."""
    return np.mean((baseline_predictions(predict, setting, eps, c) - eps.qy) ** 2, 1)


def tune_baselines(eps: Episodes, counts) -> dict:
    """{baseline: {c: setting}} minimising MSE on (meta-training) episodes."""
    chosen = {}
    for name, (predict, settings) in BASELINES.items():
        chosen[name] = {}
        for c in counts:
            if len(settings) == 1:
                chosen[name][c] = settings[0]
                continue
            scores = [baseline_errors(predict, s, eps, c).mean() for s in settings]
            chosen[name][c] = settings[int(np.argmin(scores))]
    return chosen


# ---------------------------------------------------------------------- evaluation

BOOTSTRAP_RESAMPLES = 2000


def bootstrap_ci(values: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile-bootstrap interval (low [K], high [K]) of the mean over
    episodes of values [E, K]. Squared errors are heavy-tailed, so a normal
    interval would be too narrow on the high side; resampling episodes is not."""
    e = values.shape[0]
    if e < 2:
        return values.mean(0), values.mean(0)
    idx = np.random.default_rng(seed).integers(0, e, size=(resamples, e))
    means = values[idx].mean(1)                                     # [resamples, K]
    return np.percentile(means, 2.5, axis=0), np.percentile(means, 97.5, axis=0)


def summarize(errors: np.ndarray, clean: np.ndarray, counts) -> dict:
    """errors, clean [E, K]: mean MSE per context count with its 95% bootstrap
    interval (`ci_low`, `ci_high`) and, for plots, `ci95` = half its width."""
    low, high = bootstrap_ci(errors)
    return {"counts": [int(c) for c in counts], "mse": errors.mean(0).tolist(),
            "ci_low": low.tolist(), "ci_high": high.tolist(),
            "ci95": ((high - low) / 2).tolist(), "clean_mse": clean.mean(0).tolist()}


def paired(learner: np.ndarray, others: dict[str, np.ndarray], counts) -> dict:
    """The learner's per-episode MSE minus each baseline's [E, K], paired over the
    same episodes: {baseline: {"counts", "diff", "ci_low", "ci_high"}} (bootstrap)."""
    out = {}
    for name, errors in others.items():
        d = learner - errors
        low, high = bootstrap_ci(d)
        out[name] = {"counts": [int(c) for c in counts], "diff": d.mean(0).tolist(),
                     "ci_low": low.tolist(), "ci_high": high.tolist()}
    return out


def evaluate_set(model: keras.Model, eps: Episodes, counts, chosen: dict) -> tuple[dict,
                                                                                   dict]:
    """Per method the MSE summary over context counts; and the learner minus
    each baseline, paired over the episodes."""
    methods, errors = {}, {}
    shape = (len(eps), len(counts))
    err, clean = np.empty(shape), np.empty(shape)
    for k, c in enumerate(counts):
        pred = learner_predict(model, eps.cx[:, :c], eps.cy[:, :c], eps.qx)
        err[:, k] = np.mean((pred - eps.qy) ** 2, 1)
        clean[:, k] = np.mean((pred - eps.qclean) ** 2, 1)
    methods[LEARNER] = summarize(err, clean, counts)
    learner_err = err.copy()
    for name, (predict, _) in BASELINES.items():
        t0 = time.perf_counter()
        err, clean = np.empty(shape), np.empty(shape)
        for k, c in enumerate(counts):
            pred = baseline_predictions(predict, chosen[name][c], eps, c)
            err[:, k] = np.mean((pred - eps.qy) ** 2, 1)
            clean[:, k] = np.mean((pred - eps.qclean) ** 2, 1)
        methods[name] = summarize(err, clean, counts)
        errors[name] = err
        logging.info("baseline %s: %.1f s", name, time.perf_counter() - t0)
    return methods, {LEARNER: paired(learner_err, errors, counts)}


def evaluate_functions(model_path: str, eval_sets: dict[str, tuple[str, str]],
                       tuning: tuple[str, str], config: EvalConfig) -> dict:
    """Evaluates a saved function learner and the baselines on every set.

    Args:
        eval_sets: display name -> (episode directory, split).
        tuning: (episode directory, split) of meta-TRAINING episodes on which the
            baselines' settings are chosen.
    """
    model = keras.models.load_model(model_path, compile=False)
    tune_set = pipeline.open_episodes(tuning[0])
    schema = tune_set.schema
    tune_eps = load_episodes(tune_set, tuning[1], config.sgd_tuning_episodes)
    counts = resolve_positions(config, tune_eps.max_context)  # context counts
    t0 = time.perf_counter()
    chosen = tune_baselines(tune_eps, counts)
    logging.info("baselines tuned on %d meta-training episodes in %.1f s", len(tune_eps),
                 time.perf_counter() - t0)
    report = {"task": "regression", "counts": list(counts),
              "tuned_on": f"{tuning[0]}:{tuning[1]} ({len(tune_eps)} episodes)",
              "baseline_settings": {n: {str(c): s for c, s in v.items()}
                                    for n, v in chosen.items()},
              "noise_std": float(tune_set.manifest["functions"]["noise_std"]),
              "meta_training_tasks": tune_set.manifest["splits"]["train"].get("distinct_tasks"),
              "datasets": {}}
    expect = {"input_size": schema.input_size, "episode_length": schema.episode_length}
    for name, (directory, split) in eval_sets.items():
        eset = pipeline.open_episodes(directory, expect=expect)
        if eset.schema.num_queries != schema.num_queries:
            raise InvalidInputError(
                f"{directory} has num_queries={eset.schema.num_queries}, the "
                f"training episodes {schema.num_queries}")
        eps = load_episodes(eset, split, config.episodes)
        t0 = time.perf_counter()
        methods, paired_diffs = evaluate_set(model, eps, counts, chosen)
        plot_count = min(counts, key=lambda c: abs(c - 10))
        report["datasets"][name] = {
            "curves": task_curves(model, eset, eps, chosen, plot_count),
            "source": eset.manifest["source"]["name"],
            "family": eset.manifest["source"]["family"], "split": split,
            "directory": directory, "episodes": len(eps), "methods": methods,
            "paired": paired_diffs, "seconds": round(time.perf_counter() - t0, 1)}
        at = counts.index(min(counts, key=lambda c: abs(c - 20)))
        logging.info("evaluated %s at %d context points: %s", name, counts[at],
                     {m: round(v["mse"][at], 4) for m, v in methods.items()})
    return report


def task_curves(model: keras.Model, eset: pipeline.EpisodeSet, eps: Episodes, chosen: dict,
                count: int, num_tasks: int = 3, grid_points: int = 200) -> list[dict] | None:
    """Curves for plots (1-D x only, else None): for the first `num_tasks`
    episodes, the task's true function on a grid (re-created from its task id),
    the `count` context points, and the learner's and baselines' predictions."""
    from gpicl_tf.config import FunctionConfig
    from gpicl_tf.data import functions

    if eset.schema.input_size != 1:
        return None
    family = eset.manifest["source"]["family"]
    seed = int(eset.manifest["config"]["seed"])
    fcfg = FunctionConfig(**eset.manifest["functions"])
    grid = np.linspace(-1.0, 1.0, grid_points)[:, None]
    curves = []
    for i in range(min(num_tasks, len(eps))):
        f = functions.task_function(family, seed, int(eps.task_id[i]), 1, fcfg)
        cx, cy = eps.cx[i, :count], eps.cy[i, :count]
        preds = {LEARNER: learner_predict(model, cx[None], cy[None], grid[None])[0]}
        for name in ("GP (RBF, tuned)", "k-NN (tuned k)", "least squares",
                     "polynomial (tuned degree)"):
            predict, _ = BASELINES[name]
            preds[name] = predict(cx, cy, grid, chosen[name][count])
        curves.append({"task_id": int(eps.task_id[i]), "count": int(count),
                       "grid": grid[:, 0].round(4).tolist(), "truth": f(grid).round(4).tolist(),
                       "context_x": cx[:, 0].round(4).tolist(), "context_y": cy.round(4).tolist(),
                       "predictions": {k: np.round(v, 4).tolist() for k, v in preds.items()}})
    return curves
