"""How `GPICLClassifier` feeds a cell model (`gpicl_tf.models.cell`, backbone "cell").

A cell model reads raw columns (it standardises each with the context rows
itself) and missing values as NaN, so no projection, imputation or indicator
column is needed. Each ensemble member differs by:
- the order of the columns (the model's fixed column identities follow the
  order, so each order is another view of the table);
- the slots of the model's head that the classes take (a random permutation);
- its preprocessing: the raw values ("standard"), normal scores through the
  context rows' quantiles ("quantile") or a Yeo-Johnson power transform fitted
  on the context rows ("power"); "mix" cycles through the three;
- a random subset of `max_features` columns when the table is wider, and of
  `max_context` rows when the context is longer.
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


def power_transform(fit_x: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Yeo-Johnson per column fitted on `fit_x` (NaN ignored and kept), its output
    standardised with `fit_x`'s transformed statistics; a column the transform
    cannot fit, or that it sends beyond +-1e6 standard deviations, stays as it is
    (a large fitted lambda can send a far query value past float32's range)."""
    import warnings

    from sklearn.preprocessing import PowerTransformer

    out = x.copy()
    for j in range(x.shape[1]):
        ref = fit_x[~np.isnan(fit_x[:, j]), j]
        if len(ref) < 2 or np.ptp(ref) == 0:
            continue
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            pt = PowerTransformer(standardize=True).fit(ref[:, None])
            col = x[:, j]
            ok = ~np.isnan(col)
            values = pt.transform(col[ok][:, None])[:, 0]
        if np.all(np.isfinite(values)) and np.all(np.abs(values) < 1e6):
            out[ok, j] = values
    return out


def prepare_member(member: int, rng: np.random.Generator, preprocessing: str,
                   fit_x: np.ndarray, x: np.ndarray, max_features: int, to_normal_scores):
    """(context [N, C], rows [Q, C]) of one member: column subset and order,
    then its preprocessing with statistics of the context rows `fit_x`."""
    d = fit_x.shape[1]
    columns = rng.permutation(d)[:max_features] if d > max_features else rng.permutation(d)
    fit_x, x = fit_x[:, columns], x[:, columns]
    kind = member_preprocessing(preprocessing, member)
    if kind == "quantile":
        return to_normal_scores(fit_x, fit_x), to_normal_scores(fit_x, x)
    if kind == "power":
        return power_transform(fit_x, fit_x), power_transform(fit_x, x)
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
                   num_classes: int, max_features: int, to_normal_scores,
                   on_call=None) -> np.ndarray:
    """Class probabilities [Q, num_classes] of the rows `queries` given the
    context (train_x, train_y), averaged over `n_ensemble` members (batched: one
    model call per chunk of queries, `on_call()` after each)."""
    slots = int(meta["schema"]["num_classes"])
    max_context, step = int(meta["max_context"]), int(meta["max_queries"])
    contexts, rows, labels, perms = [], [], [], []
    for m in range(n_ensemble):
        rng = np.random.default_rng([random_state, m, 28])
        perm = rng.permutation(slots)
        n = len(train_y)
        keep = np.sort(rng.choice(n, max_context, replace=False)) if n > max_context \
            else np.arange(n)
        context, mine = to_model(*prepare_member(m, rng, preprocessing, train_x[keep],
                                                 queries, max_features, to_normal_scores))
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
