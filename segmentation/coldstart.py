"""Cold start: users with a few interactions, and segments as a prior for them (issue 16, research part).

Three pieces, used by ``benchmarks/cold_start.py`` (not yet by the flow or the report):

* :func:`cold_start_split` — the protocol: a seeded share of the users is "new"; each keeps only its
  first ``k`` interactions (by timestamp, then item id) in train, and the rest are held out to score.
  Every other user keeps all its rows.
* :class:`SegmentPriorPredictor` — ratings for new users from a fitted biased MF: the user's bias and
  factors are re-solved in closed form from its few ratings with a ridge penalty that pulls them toward a
  *prior* ``[b, p]``: the mean of the warm users of the user's segment (or, as controls, of all warm
  users, or of a random partition). The pull ``reg`` is a count of pseudo-ratings, so the user's own
  evidence wins as it grows (``theta = (X'X + reg I)^-1 (X'y + reg prior)``).
  :func:`segment_popularity_scores` blends a segment's item popularity into a ranker's scores.
* :func:`planted_segment_behaviour` — planted ratings where segments differ in rating style (scale of
  their ratings around their mean) and in taste for single items beyond the categories (a random
  segment-by-item offset), to check that per-segment fine-tuning finds and keeps such segments.

Choices (``reg``, the blend weight) are made on validation users simulated inside train, never on test.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl

from segmentation._errors import ConfigError, DataError
from segmentation._metrics import bootstrap_ci, ndcg_from_hits
from segmentation._predict_global import GlobalPredictor
from segmentation._predict_mf import MFParams
from segmentation.planted import NOISE_LABEL, PlantedBehaviour, planted_behaviour

__all__ = [
    "ColdSplit",
    "SegmentPriorPredictor",
    "cold_start_split",
    "mean_diff_ci",
    "ndcg_per_user",
    "pick_new_users",
    "planted_segment_behaviour",
    "segment_popularity_scores",
    "segment_priors",
]


@dataclass(frozen=True)
class ColdSplit:
    """Interactions with some users cut down to their first ``k`` rows.

    Attributes:
        train: every row of the other users plus the first ``k`` rows of each new user.
        held_out: the new users' other rows (what is scored).
        new_users: sorted ids of the new users.
        k: rows kept per new user.
    """

    train: pl.DataFrame
    held_out: pl.DataFrame
    new_users: list[str]
    k: int


def pick_new_users(user_ids: list[str] | pl.Series, fraction: float, *, seed: int) -> list[str]:
    """A seeded ``fraction`` of the distinct ``user_ids`` (at least one), sorted.

    Raises:
        ConfigError: ``fraction`` is not in (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"cold start: the share of new users must be between 0 and 1 (given {fraction})")
    ids = sorted(set(str(u) for u in user_ids))
    n = max(1, int(round(fraction * len(ids))))
    pick = np.random.default_rng(seed).choice(len(ids), n, replace=False)
    return sorted(ids[i] for i in pick)


def cold_start_split(interactions: pl.DataFrame, new_users: list[str], k: int) -> ColdSplit:
    """Keep only the first ``k`` interactions of each of ``new_users`` (by timestamp, then item id).

    Args:
        interactions: ``user_id``, ``item_id``, ``rating``, ``timestamp`` rows (train rows only).
        new_users: ids of the users to cut down (e.g. from :func:`pick_new_users`).
        k: rows kept per new user.

    Raises:
        ConfigError: ``k`` < 1.
        DataError: ``interactions`` lacks ``timestamp``.
    """
    if k < 1:
        raise ConfigError(f"cold start: k, the interactions kept per new user, must be at least 1 (given {k})")
    if "timestamp" not in interactions.columns:
        raise DataError("cold start: the interactions have no 'timestamp' column, so a new user's first "
                        f"interactions are undefined (columns: {interactions.columns})")  # fmt: skip
    is_new = pl.col("user_id").is_in(list(new_users))
    ordered = (
        interactions.with_row_index("_row")
        .sort(["user_id", "timestamp", "item_id"], maintain_order=True)
        .with_columns(pl.int_range(pl.len()).over("user_id").alias("_pos"))
    )
    keep = ~is_new | (pl.col("_pos") < k)
    train = ordered.filter(keep).sort("_row").drop("_row", "_pos")
    held = ordered.filter(~keep).sort("_row").drop("_row", "_pos")
    return ColdSplit(train, held, sorted(new_users), k)


# ------------------------------------------------------------------------------------------------ ratings


def segment_priors(params: MFParams, user_nums: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Mean ``[bias, factors...]`` of the given users per label, and of all of them under key ``-1``.

    Args:
        params: a fitted MF.
        user_nums: (n,) user numbers of warm users in ``params``.
        labels: (n,) their segment (noise users, label -1, count only toward the overall mean).
    """
    theta = np.hstack([params.user_bias[user_nums, None], params.user_factors[user_nums]]).astype(np.float64)
    out = {-1: theta.mean(axis=0)}
    for s in np.unique(labels):
        if s >= 0:
            out[int(s)] = theta[labels == s].mean(axis=0)
    return out


class SegmentPriorPredictor:
    """A global MF for everyone, with new users' bias and factors re-solved toward a prior.

    Args:
        model: a fitted :class:`GlobalPredictor` with an MF component (``model = "mf"``).
        reg: strength of the pull toward the prior, in pseudo-ratings.
    """

    def __init__(self, model: GlobalPredictor, reg: float) -> None:
        if model.params_ is None:
            raise ValueError("SegmentPriorPredictor needs a global model with an MF component")
        self.model = model
        self.reg = float(reg)
        self.theta_: dict[str, np.ndarray] = {}

    def fit(self, rows: pl.DataFrame, priors: dict[str, np.ndarray]) -> "SegmentPriorPredictor":
        """Solve each user's ``[b_u, p_u]`` from its ``rows`` (ridge toward ``priors[user]``)."""
        params = self.model.params_
        assert params is not None and self.model.item_vocab_ is not None
        items = self.model.item_vocab_.lookup(rows["item_id"], missing=-1)
        users = rows["user_id"].to_numpy()
        r = rows["rating"].to_numpy().astype(np.float64)
        d = params.user_factors.shape[1] + 1
        order = np.argsort(users, kind="stable")
        bounds = np.flatnonzero(np.r_[True, users[order][1:] != users[order][:-1], True])
        self.theta_ = {}
        for a, b in zip(bounds[:-1], bounds[1:]):
            idx = order[a:b]
            u = str(users[idx[0]])
            if u not in priors:
                continue
            i = items[idx]
            ok = i >= 0
            x = np.hstack([np.ones((int(ok.sum()), 1)), params.item_factors[i[ok]].astype(np.float64)])
            y = r[idx][ok] - params.mu - params.item_bias[i[ok]].astype(np.float64)
            lhs = x.T @ x + self.reg * np.eye(d)
            self.theta_[u] = np.linalg.solve(lhs, x.T @ y + self.reg * priors[u])
        return self

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Clipped predictions: fitted users from their solved parameters, everyone else from the model."""
        out = self.model.predict(frame)
        params = self.model.params_
        assert params is not None and self.model.item_vocab_ is not None
        users = frame["user_id"].to_list()
        rows = np.array([j for j, u in enumerate(users) if u in self.theta_], dtype=np.int64)
        if len(rows) == 0:
            return out
        theta = np.stack([self.theta_[users[j]] for j in rows])
        items = self.model.item_vocab_.lookup(frame["item_id"][rows], missing=-1)
        known = items >= 0
        i = np.maximum(items, 0)
        pred = params.mu + theta[:, 0]
        pred += np.where(known, params.item_bias[i] + np.einsum("nk,nk->n", theta[:, 1:], params.item_factors[i]), 0.0)
        out[rows] = np.clip(pred, *self.model.rating_range_)
        return out


# ------------------------------------------------------------------------------------------------ ranking


def segment_popularity_scores(user_segments: np.ndarray, segment_counts: dict[int, np.ndarray],
                              fallback: np.ndarray) -> np.ndarray:  # fmt: skip
    """(n_users, n_items) ``log1p`` item counts among the warm users of each user's segment.

    Args:
        user_segments: (n_users,) segment of each user.
        segment_counts: segment -> (n_items,) interaction counts of its warm users.
        fallback: (n_items,) counts for users whose segment is not in ``segment_counts`` (e.g. all warm users).
    """
    return np.log1p(np.stack([segment_counts.get(int(s), fallback) for s in user_segments]).astype(np.float64))


def ndcg_per_user(scores: np.ndarray, seen: np.ndarray, relevant: np.ndarray, k: int = 10) -> np.ndarray:
    """Binary NDCG@k per row; seen items are never ranked; ties go to the smaller column.

    Args:
        scores: (n, m) float.
        seen: (n, m) bool, items in the user's train rows.
        relevant: (n, m) bool, held-out relevant items (rows without any give NaN).
    """
    s = np.where(seen, -np.inf, scores)
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return ndcg_from_hits(np.take_along_axis(relevant, top, axis=1), relevant.sum(axis=1))


def mean_diff_ci(a: np.ndarray, b: np.ndarray, *, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:  # fmt: skip
    """Mean of ``b - a`` over paired per-user values with a percentile bootstrap interval (:func:`bootstrap_ci`)."""
    d = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return float("nan"), float("nan"), float("nan")
    if np.allclose(d, d[0]):
        return float(d[0]), float(d[0]), float(d[0])
    lo, hi = bootstrap_ci(d, n_boot=n_boot, seed=seed, level=level)
    return float(d.mean()), lo, hi


# ------------------------------------------------------------------------------------------------ planted


def planted_segment_behaviour(items: pl.DataFrame, n_users: int, *, rng: np.random.Generator, k: int = 12,
                              taste: float = 0.7, stretch: tuple[float, float] = (0.6, 1.4),
                              **kwargs: object) -> tuple[PlantedBehaviour, dict]:  # fmt: skip
    """:func:`planted_behaviour` with behaviour that differs by segment beyond the categories.

    On top of the planted ratings (before rounding is redone), each segment ``s``

    * rates in its own *style*: deviations from the segment's mean are scaled by ``stretch_s ~ U(stretch)``
      (some segments use the whole scale, others stay near their mean);
    * has its own *taste* for single items: ``delta[s, i] ~ N(0, taste)``, independent of the categories
      and of every other segment, added to its ratings of item ``i``.

    Noise users are unchanged. Ratings are rounded and clipped to 1-5 again.

    Returns:
        The :class:`PlantedBehaviour` (its ``styles`` are the base generator's) and a dict with the planted
        ``stretch`` (k,) and ``taste`` (k, n_items) arrays.
    """
    base = planted_behaviour(items, n_users, k=k, rng=rng, **kwargs)  # type: ignore[arg-type]
    n_items = items.height
    stretches = rng.uniform(*stretch, k)
    delta = rng.normal(0.0, taste, (k, n_items))
    pos = {str(i): j for j, i in enumerate(items["item_id"].to_list())}
    labels = base.labels_for(base.interactions["user_id"].to_numpy())
    item_pos = np.array([pos[i] for i in base.interactions["item_id"].to_list()])
    r = base.interactions["rating"].to_numpy().astype(np.float64)
    out = r.copy()
    for s in range(k):
        m = labels == s
        if not m.any():
            continue
        centre = r[m].mean()
        out[m] = centre + stretches[s] * (r[m] - centre) + delta[s, item_pos[m]]
    out = np.where(labels == NOISE_LABEL, r, np.clip(np.rint(out), 1, 5))
    interactions = base.interactions.with_columns(pl.Series("rating", out, dtype=pl.Float64))
    return PlantedBehaviour(interactions, base.truth, base.styles), {"stretch": stretches, "taste": delta}
