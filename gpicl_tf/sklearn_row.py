"""How `GPICLClassifier` feeds a row model (backbone "row": one token per example,
`gpicl_tf.models.sequence_models`), its strategy `RowFeed`.

A row model reads a fixed number of inputs, so each ensemble member prepares the
encoded table (numeric columns, categorical ones one-hot, a missing-value
indicator per column that had missing values in the training rows): its
preprocessing with the context rows' statistics (standardised, or normal scores
through the context's quantiles), clipped, reduced to the leading principal
components of the context rows when wider than `max_features_`, then randomly
projected to the model's input size; the classes take a random permutation of
the model's class slots, and a context longer than the model's is subsampled.
Each member is one model call per chunk of queries.
"""

from __future__ import annotations

import numpy as np

from gpicl_tf.data import prior
from gpicl_tf.eval.ensemble import classes_of_member
from gpicl_tf.sklearn_cell import power_transforms, to_normal_scores


class RowFeed:
    """The row backbone's side of the estimator: its defaults, its encoding and its
    ensemble. Methods read the fitted estimator `est` (`random_state_`,
    `preprocessing_`, `clip_`, `max_features_`, `categories_`, `missing_columns_`)."""

    backbone = "row"
    n_ensemble = 8              # measured with 8 members of standard preprocessing
    preprocessing = "standard"

    def auto_max_features(self, meta: dict) -> int | None:
        """max_features="auto": the prior's widest tables where the model was
        meta-trained on the prior (alone or in a mixture), else no reduction."""
        from gpicl_tf.config import DataConfig
        from gpicl_tf.data.episodes import parse_mixture

        data = meta["config"].get("data", {})
        sources = [data.get("source")] + ([s for s, _ in parse_mixture(DataConfig(
            mixture=tuple(data["mixture"])))] if data.get("mixture") else [])
        return meta["config"].get("prior", {}).get("max_features") \
            if "prior" in sources else None

    def unbounded_max_features(self, meta: dict) -> int | None:
        """max_features=None: never reduce."""
        return None

    def encode(self, est, X: np.ndarray) -> np.ndarray:
        """Numeric columns as they are, categorical ones one-hot, and a missing-value
        indicator per column that had missing values in the training rows."""
        numeric = [j for j in range(X.shape[1]) if j not in est.categories_]
        parts = [X[:, numeric]]
        for j, cats in est.categories_.items():
            parts.append((X[:, [j]] == cats[None]).astype(float))
        parts.append(np.isnan(X[:, est.missing_columns_]).astype(float))
        return np.concatenate(parts, axis=1)

    def calls(self, chunks: int, n_ensemble: int) -> int:
        """Model calls of a predict of `chunks` chunks of queries: one per member each."""
        return chunks * n_ensemble

    def width(self, est) -> int:
        """Columns each member projects: the encoded width, or max_features_ below it."""
        d = est.train_x_.shape[1]
        return d if est.max_features_ is None else min(d, est.max_features_)

    def prepare(self, est, member: int, fit_x: np.ndarray,
                x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(context rows `fit_x`, rows `x`) prepared as member `member` prepares them,
        every statistic (quantiles, scales, principal directions) from `fit_x`."""
        kind = est.preprocessing_
        if kind == "mix":
            kind = ("standard", "quantile")[member % 2]
        if kind == "quantile":
            fit_x, x = to_normal_scores(fit_x, fit_x), to_normal_scores(fit_x, x)
        elif kind == "power":
            fit_x, x = power_transforms(fit_x, fit_x, x)
        fit_z, z = (prior.prepare_table(fit_x, rows, est.clip_) for rows in (fit_x, x))
        k = self.width(est)
        if k == z.shape[1]:
            return fit_z, z
        # the leading k principal directions of the context rows
        _, _, vt = np.linalg.svd(fit_z - fit_z.mean(0), full_matrices=False)
        basis = np.zeros((z.shape[1], k))                    # [d, k]; fewer context rows
        basis[:, :min(k, len(vt))] = vt[:k].T               # than k: zero columns
        fit_s, s = fit_z @ basis, z @ basis
        scale = np.sqrt(max(float(fit_s.var(0).sum()) / k, 1e-12))   # the columns' mean
        return (np.clip(fit_s / scale, -est.clip_, est.clip_),         # variance 1, kept
                np.clip(s / scale, -est.clip_, est.clip_))             # ratios

    def member(self, est, m: int, meta: dict, n: int | None = None):
        """(projection [width, inputs], class slot permutation, kept context rows) of
        member `m` over a context of `n` rows (None: the training rows)."""
        rng = np.random.default_rng([est.random_state_, m])
        d = self.width(est)
        n_x = meta["schema"]["input_size"]
        projection = rng.standard_normal((d, n_x)) / np.sqrt(d)
        permutation = rng.permutation(meta["schema"]["num_classes"])
        n = len(est.context_y_) if n is None else n
        keep = np.sort(rng.choice(n, meta["max_context"], replace=False)) \
            if n > meta["max_context"] else np.arange(n)
        return projection, permutation, keep

    def ensemble_proba(self, est, fn, meta: dict, train_x: np.ndarray, train_y: np.ndarray,
                       queries_raw: np.ndarray, k: int, on_call) -> np.ndarray:
        """Class probabilities [Q, k], averaged over `est.n_ensemble_` members."""
        step = int(meta["max_queries"])
        total = np.zeros((len(queries_raw), k))
        for m in range(est.n_ensemble_):
            projection, permutation, keep = self.member(est, m, meta, len(train_y))
            fit_x = train_x[keep]
            context, queries = self.prepare(est, m, fit_x, queries_raw)
            context_x = (context @ projection)[None].astype(np.float32)
            queries = queries @ projection
            context_y = permutation[train_y[keep]][None].astype(np.int64)
            for start in range(0, len(queries), step):
                q = queries[start:start + step][None].astype(np.float32)
                probs = fn(context_x=context_x, context_y=context_y,
                           query_x=q)["probabilities"].numpy()[0]     # [Q, C]
                total[start:start + step] += classes_of_member(probs, permutation, k)
                on_call()
        return total / est.n_ensemble_
