"""How `GPICLClassifier` feeds a cell model (`gpicl_tf.models.cell`, backbone "cell"),
its strategy `CellFeed` (the row model's: `gpicl_tf.sklearn_row.RowFeed`).

A cell model reads raw columns (it standardises each with the context rows
itself) and missing values as NaN, so no projection, imputation or indicator
column is needed. Each ensemble member differs by:
- the order of the columns (the model's fixed column identities follow the
  order, so each order is another view of the table);
- the slots of the model's head that the classes take (a random permutation);
- its preprocessing: the raw values ("standard"), normal scores through the
  context rows' quantiles ("quantile") or a Yeo-Johnson power transform fitted
  on the context rows ("power"); "mix" cycles through the three;
- a random subset of `max_context` rows when the context is longer.
A table wider than `max_features` columns is read either through the `select`
columns most related to the label on the context rows (`relevance`: the one-way
ANOVA F statistic of each column; every member reads the same columns in its own
order), or, without `select`, through a random subset of `max_features` columns
per member.
All members go to the model in one batched call when their shapes agree.
"""

from __future__ import annotations

import numpy as np

from gpicl_tf.data import prior
from gpicl_tf.eval.ensemble import classes_of_member

MEMBER_PREPROCESSINGS = ("standard", "quantile", "power")


def encode(X: np.ndarray, categories: dict[int, np.ndarray]) -> np.ndarray:
    """Numeric columns as they are; a categorical column as the index of its
    value among the training categories (unseen or missing: NaN)."""
    out = X.astype(np.float64, copy=True)
    for j, cats in categories.items():
        col = X[:, j]
        idx = np.searchsorted(cats, col)
        known = (idx < len(cats)) & (cats[np.minimum(idx, len(cats) - 1)] == col)
        out[:, j] = np.where(known, idx, np.nan)
    return out


def member_preprocessing(preprocessing: str, member: int) -> str:
    return MEMBER_PREPROCESSINGS[member % 3] if preprocessing == "mix" else preprocessing


def yeo_johnson(x: np.ndarray, lmbda: float) -> np.ndarray:
    """The Yeo-Johnson transform of `x` with parameter `lmbda` (scipy's formulas:
    expm1/log1p, the limits at lambda 0 and 2)."""
    eps = np.finfo(np.float64).eps
    out = np.empty_like(x, dtype=np.float64)
    pos = x >= 0
    out[pos] = np.log1p(x[pos]) if abs(lmbda) < eps else \
        np.expm1(lmbda * np.log1p(x[pos])) / lmbda
    out[~pos] = -np.log1p(-x[~pos]) if abs(lmbda - 2) < eps else \
        -np.expm1((2 - lmbda) * np.log1p(-x[~pos])) / (2 - lmbda)
    return out


def yeo_johnson_lambda(x: np.ndarray) -> float:
    """The maximum-likelihood Yeo-Johnson parameter of the finite values `x`: the
    optimisation of `scipy.stats.yeojohnson_normmax` (fminbound between the
    bounds that keep the transform inside float64, tolerance 1.48e-8) on the same
    log-likelihood, computed here without scipy's per-call array dispatch (which
    took 0.7 ms of each of the ~18 evaluations per column)."""
    from scipy import optimize

    if np.all(x == 0):
        return 1.0
    n = len(x)
    signed_log = float(np.sum(np.sign(x) * np.log1p(np.abs(x))))
    smallest = np.finfo(np.float64).smallest_normal

    def neg_llf(lmbda):
        var = np.var(yeo_johnson(x, lmbda))
        if not var >= smallest:          # a variance that underflows (or NaN): rejected
            return np.inf
        return -(-n / 2 * np.log(var) + (lmbda - 1) * signed_log)

    finfo = np.finfo(np.float64)
    log1p_max_x = np.log1p(20 * np.max(np.abs(x)))
    log_eps = np.log(finfo.eps)
    lb = (np.log(finfo.tiny) - log_eps) / 2 / log1p_max_x
    ub = (np.log(finfo.max) + log_eps) / 2 / log1p_max_x
    if np.all(x < 0):
        lb, ub = 2 - ub, 2 - lb
    elif np.any(x < 0):
        lb, ub = max(2 - ub, lb), min(2 - lb, ub)
    return float(optimize.fminbound(neg_llf, lb, ub, xtol=1.48e-08))


def _near_constant(x: np.ndarray) -> bool:
    """scikit-learn's test of a column indistinguishable from a constant (the error
    bound of the two-pass variance, `preprocessing._data._is_constant_feature`)."""
    n, eps, var, mean = len(x), np.finfo(np.float64).eps, x.var(), x.mean()
    return bool(var <= n * eps * var + (n * mean * eps) ** 2)


def power_transforms(fit_x: np.ndarray, *xs: np.ndarray) -> list[np.ndarray]:
    """Each of `xs` through the Yeo-Johnson transform per column fitted on `fit_x`
    (NaN ignored and kept), standardised with `fit_x`'s transformed statistics, as
    scikit-learn's `PowerTransformer()` does (each column fitted once for all of
    `xs`; lambda 1, the identity, for a column scikit-learn deems constant); a column
    the transform cannot fit (fewer than 2 values, constant), or that it sends beyond
    +-1e6 standard deviations, stays as it is (a large fitted lambda can send a far
    query value past float32's range)."""
    outs = [x.copy() for x in xs]
    with np.errstate(all="ignore"):
        for j in range(fit_x.shape[1]):
            ref = fit_x[~np.isnan(fit_x[:, j]), j]
            if len(ref) < 2 or np.ptp(ref) == 0:
                continue
            lmbda = 1.0 if _near_constant(ref) else yeo_johnson_lambda(ref)
            t = yeo_johnson(ref, lmbda)
            mean, std = t.mean(), np.sqrt(t.var())
            std = 1.0 if _near_constant(t) else std
            for x, out in zip(xs, outs):
                ok = ~np.isnan(x[:, j])
                values = (yeo_johnson(x[ok, j], lmbda) - mean) / std
                if np.all(np.isfinite(values)) and np.all(np.abs(values) < 1e6):
                    out[ok, j] = values
    return outs


def power_transform(fit_x: np.ndarray, x: np.ndarray) -> np.ndarray:
    """`x` through the Yeo-Johnson transform fitted on `fit_x` (`power_transforms`)."""
    return power_transforms(fit_x, x)[0]


def to_normal_scores(fit_x: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Each column of `x` through the empirical distribution of `fit_x`'s column
    (ties averaged, NaN ignored and kept) to standard-normal scores."""
    from scipy.special import ndtri

    out = np.full(x.shape, np.nan)
    for j in range(x.shape[1]):
        ref = np.sort(fit_x[~np.isnan(fit_x[:, j]), j])
        if not len(ref):
            continue
        col = x[:, j]
        ok = ~np.isnan(col)
        lo = np.searchsorted(ref, col[ok], side="left")
        hi = np.searchsorted(ref, col[ok], side="right")
        out[ok, j] = ndtri((lo + hi + 1) / (2 * len(ref) + 2))
    return out


def relevance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per column of `x` [n, d] (NaN: the column's mean), the one-way ANOVA F
    statistic of its values grouped by the labels `y`: between-class over
    within-class variance. A column that is constant within every class scores
    +inf if its class means differ, else 0 (constant, or no value)."""
    x = np.asarray(x, np.float64)
    with np.errstate(all="ignore"):
        mean = np.nanmean(x, 0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    x = np.where(np.isnan(x), mean, x)
    classes, y = np.unique(y, return_inverse=True)
    k, n = len(classes), len(y)
    if k < 2 or n <= k:
        return np.zeros(x.shape[1])
    counts = np.bincount(y, minlength=k).astype(np.float64)
    class_means = np.stack([x[y == c].mean(0) for c in range(k)])          # [k, d]
    between = (counts[:, None] * (class_means - x.mean(0)) ** 2).sum(0) / (k - 1)
    within = ((x - class_means[y]) ** 2).sum(0) / (n - k)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = between / within
    constant = np.ptp(x, 0) == 0
    f = np.where(within > 0, f, np.inf)         # within == 0: the classes separate exactly
    return np.where(constant, 0.0, np.where(np.isnan(f), 0.0, f))


def top_columns(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """The `k` columns of `x` with the largest `relevance` to `y`, in column order
    (ties: the earlier column)."""
    return np.sort(np.argsort(-relevance(x, y), kind="stable")[:k])


def prepare_member(member: int, rng: np.random.Generator, preprocessing: str,
                   fit_x: np.ndarray, x: np.ndarray, max_features: int,
                   columns: np.ndarray | None = None):
    """(context [N, C], rows [Q, C]) of one member: column subset and order (of
    `columns` when given, else a random `max_features` of a wider table), then its
    preprocessing with statistics of the context rows `fit_x`."""
    d = fit_x.shape[1]
    if columns is not None:
        columns = rng.permutation(columns)
    else:
        columns = rng.permutation(d)[:max_features] if d > max_features else \
            rng.permutation(d)
    fit_x, x = fit_x[:, columns], x[:, columns]
    kind = member_preprocessing(preprocessing, member)
    if kind == "quantile":
        return to_normal_scores(fit_x, fit_x), to_normal_scores(fit_x, x)
    if kind == "power":
        return tuple(power_transforms(fit_x, fit_x, x))
    return fit_x, x


def _float32(x: np.ndarray) -> np.ndarray:
    """float32 values, finite ones clipped into float32's range (NaN stays missing)."""
    with np.errstate(invalid="ignore"):
        return np.clip(x, -1e30, 1e30).astype(np.float32)


def to_model(context: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(context, rows) as the model reads them: float32, each column divided by the
    power of two at or below the context's largest magnitude in it
    (`prior.column_units`). The model standardises a column with the context's
    statistics, so an exact division changes nothing it computes, but a column of
    1e-170 or 1e20 reaches it inside float32's range (not as zeros, nor with a
    variance that overflows float32)."""
    unit = prior.column_units(context)
    with np.errstate(over="ignore"):
        return _float32(context / unit), _float32(rows / unit)


def ensemble_proba(fn, meta: dict, n_ensemble: int, random_state: int, preprocessing: str,
                   train_x: np.ndarray, train_y: np.ndarray, queries: np.ndarray,
                   num_classes: int, max_features: int, on_call=None,
                   select: int | None = None) -> np.ndarray:
    """Class probabilities [Q, num_classes] of the rows `queries` given the
    context (train_x, train_y), averaged over `n_ensemble` members (batched: one
    model call per chunk of queries, `on_call()` after each). `select`: a table
    wider than that reads its `top_columns` on this context (see the module doc)."""
    slots = int(meta["schema"]["num_classes"])
    chosen = top_columns(train_x, train_y, select) \
        if select and train_x.shape[1] > select else None
    max_context, step = int(meta["max_context"]), int(meta["max_queries"])
    contexts, rows, labels, perms = [], [], [], []
    for m in range(n_ensemble):
        rng = np.random.default_rng([random_state, m, 28])
        perm = rng.permutation(slots)
        n = len(train_y)
        keep = np.sort(rng.choice(n, max_context, replace=False)) if n > max_context \
            else np.arange(n)
        context, mine = to_model(*prepare_member(m, rng, preprocessing, train_x[keep],
                                                 queries, max_features, chosen))
        contexts.append(context)
        rows.append(mine)
        labels.append(perm[train_y[keep]].astype(np.int64))
        perms.append(perm)
    total = np.zeros((len(queries), num_classes))
    for start in range(0, len(queries), step):
        q = np.stack([r[start:start + step] for r in rows])              # [M, Q', C]
        probs = fn(context_x=np.stack(contexts), context_y=np.stack(labels),
                   query_x=q)["probabilities"].numpy()                   # [M, Q', K]
        for m, perm in enumerate(perms):
            total[start:start + step] += classes_of_member(probs[m], perm, num_classes)
        if on_call is not None:
            on_call()
    return total / n_ensemble


class CellFeed:
    """The cell backbone's side of the estimator: its defaults, its encoding and its
    ensemble (all members in one batched call per chunk of queries). Methods read
    the fitted estimator `est` (`random_state_`, `preprocessing_`, `max_features_`,
    `categories_`, `n_ensemble_`)."""

    backbone = "cell"
    n_ensemble = 4              # measured with 4 members cycling the three preprocessings
    preprocessing = "mix"

    def auto_max_features(self, meta: dict) -> int:
        """max_features="auto": the widest tables of the model's prior."""
        return int(meta["config"]["prior"]["max_features"])

    def unbounded_max_features(self, meta: dict) -> int:
        """max_features=None: the most columns the model reads."""
        return int(meta["schema"]["input_size"])

    def encode(self, est, X: np.ndarray) -> np.ndarray:
        return encode(X, est.categories_)

    def calls(self, chunks: int, n_ensemble: int) -> int:
        """Model calls of a predict of `chunks` chunks of queries: the members batched."""
        return chunks

    def ensemble_proba(self, est, fn, meta: dict, train_x: np.ndarray, train_y: np.ndarray,
                       queries: np.ndarray, k: int, on_call) -> np.ndarray:
        return ensemble_proba(fn, meta, est.n_ensemble_, est.random_state_, est.preprocessing_,
                              train_x, train_y, queries, k, est.max_features_,
                              on_call=on_call, select=est.selected_features_)

