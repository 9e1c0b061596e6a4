"""Cold start: users with a few interactions, and segments as a prior for them (issue 16).

The research pieces, used by ``benchmarks/cold_start.py`` and by the flow's cold-start stage:

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

Shared by the benchmark and the stage: :func:`fit_cold_model` (a model on a cold train, early-stopped on a carve
of the other users' rows), :func:`place_users` (a new user's segment by the vote of its nearest labelled users),
:func:`warm_priors` and :func:`fit_prior_predictor`.

:func:`cold_start_users` is the flow's ``cold-start`` stage (its rating half on explicit ratings only): per ``k`` of
``predictor.cold_start.ks`` it simulates new users inside train, fits the run's global model, the all-users prior
and the segment prior, and keeps a prior only where the gate (paired user-bootstrap intervals, Bonferroni over
the ks) says it helps; the result, a :class:`ColdStart`, predicts the run's sparse users (at most the largest
kept k train ratings) with the kept prior and everyone else exactly as the global model does
(:class:`ColdStartPredictor`). Its ranking half gates the run's primary ranker blended with overall or segment
popularity on the same simulated users (NDCG@10) and hands the rank stage what it kept
(:class:`~segmentation.rank.cold.ColdStartLists`). The evaluate stage scores both on test
(:func:`segmentation.evaluate.evaluate_cold_start`).
"""

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from embeddings.encoder import Embeddings
from embeddings.index import VectorIndex
from segmentation._errors import ConfigError, DataError
from segmentation._metrics import bootstrap_ci, ndcg_from_hits, paired_bootstrap_ci, rmse
from segmentation._predict_global import GlobalPredictor, fit_global_predictor
from segmentation._predict_mf import MFParams
from segmentation.cluster import Segmentation, assign_by_neighbours
from segmentation.config import IndexConfig, PredictorConfig, RankerConfig, RepresentConfig
from segmentation.data import Split
from segmentation.planted import NOISE_LABEL, PlantedBehaviour, planted_behaviour
from segmentation.predict import random_partition
from segmentation.rank.base import _VALID_K
from segmentation.rank.cold import ColdStartLists, batch_size, blend, segment_counts, unwrap
from segmentation.rank.factory import choose_rankers, make_ranker
from segmentation.represent import DEFAULT_METHOD, vectors_as_configured

__all__ = [
    "ColdSplit",
    "ColdStart",
    "ColdStartPredictor",
    "SegmentPriorPredictor",
    "cold_start_split",
    "cold_start_users",
    "fit_cold_model",
    "fit_prior_predictor",
    "mean_diff_ci",
    "ndcg_per_user",
    "pick_new_users",
    "planted_segment_behaviour",
    "segment_popularity_scores",
    "segment_priors",
    "place_users",
    "warm_priors",
]

logger = logging.getLogger(__name__)

#: ``cold_start.rating_skipped`` on implicit feedback (the ranking half runs).
IMPLICIT_NO_PRIOR = ("implicit feedback: there are no ratings to predict, so no rating prior was tried; the "
                     "ranking half (popularity blends for sparse users' top-k lists) runs")  # fmt: skip


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


def fit_cold_model(train: pl.DataFrame, new_users: list[str], config: PredictorConfig, *,
                   item_embeddings: Embeddings | None = None, seed: int = 0, carve: float = 0.1) -> GlobalPredictor:  # fmt: skip
    """A global model on a cold train, early-stopped on a seeded ``carve`` of the rows of the users not in
    ``new_users`` (the new users' few rows all stay in train)."""
    warm = ~train["user_id"].is_in(list(new_users)).to_numpy()
    idx = np.flatnonzero(warm)
    pick = np.zeros(train.height, bool)
    pick[np.random.default_rng(seed).choice(idx, int(round(carve * len(idx))), replace=False)] = True
    m = pl.Series(pick)
    split = Split(train=train.filter(~m), valid=train.filter(m), test=train.head(0), method="cold")
    return fit_global_predictor(split, config, item_embeddings=item_embeddings, seed=seed)


def place_users(vectors: Embeddings, labels: dict[str, int], new_users: list[str] | set[str], *, k: int = 15,
                index: IndexConfig | None = None) -> dict[str, int]:  # fmt: skip
    """Segment of each of ``new_users`` that has a vector, by the similarity-weighted vote of its ``k`` nearest
    labelled users that are not new (:func:`segmentation.cluster.assign_by_neighbours`).

    Args:
        vectors: user vectors (ids, L2-normalised rows), the new users' built from their few rows.
        labels: the voters' segments (user id -> segment id, never noise).
        new_users: the users to place (never voters).
        k: voters per new user.
        index: the FAISS settings (exact search up to ``approximate_above`` voters, HNSW above); None: exact.
    """
    ids = vectors.ids.astype(str)
    new = set(new_users)
    is_new = np.fromiter((u in new for u in ids), bool, len(ids))
    voters = ~is_new & np.fromiter((u in labels for u in ids), bool, len(ids))
    if not is_new.any() or not voters.any():
        return {}
    kind = "flat" if index is None else index.kind
    near = VectorIndex(kind, **({} if index is None else {"approximate_above": index.approximate_above,
                                                          "hnsw_m": index.hnsw_m}))  # fmt: skip
    near.fit(ids[voters], vectors.vectors[voters])
    frame = pl.DataFrame({"user_id": ids[voters].tolist(), "nearest_segment": [labels[u] for u in ids[voters]]})
    out = assign_by_neighbours(vectors.vectors[is_new], near, frame, k=min(k, int(voters.sum())))
    return dict(zip(ids[is_new].tolist(), (int(s) for s in out["segment_id"].to_list())))


def warm_priors(model: GlobalPredictor, labels: dict[str, int]) -> dict[int, np.ndarray]:
    """:func:`segment_priors` of the labelled users that ``model``'s MF knows (user id -> segment id)."""
    assert model.params_ is not None and model.user_vocab_ is not None
    ids = list(labels)
    nums = model.user_vocab_.lookup(pl.Series(ids, dtype=pl.String), missing=-1)
    ok = nums >= 0
    return segment_priors(model.params_, nums[ok], np.array([labels[u] for u in ids], dtype=np.int64)[ok])


def fit_prior_predictor(model: GlobalPredictor, rows: pl.DataFrame, priors: dict[int, np.ndarray],
                        place: dict[str, int] | None, reg: float) -> SegmentPriorPredictor:  # fmt: skip
    """A :class:`SegmentPriorPredictor` for the users of ``rows``, each pulled toward its segment's prior
    (``place``: user -> segment; a user placed nowhere, or in a segment without a prior, gets the all-users one)
    or, with ``place`` None, toward the all-users prior (``priors[-1]``)."""
    users = rows["user_id"].unique().to_list()
    if place is None:
        prior_of = {u: priors[-1] for u in users}
    else:
        prior_of = {u: priors.get(place.get(u, -1), priors[-1]) for u in users}
    return SegmentPriorPredictor(model, reg).fit(rows, prior_of)


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


# ------------------------------------------------------------------------------------------------ the flow's stage


class ColdStartPredictor:
    """The run's global model for everyone; for the sparse users the gate covers, the prior model it kept.

    Args:
        global_model: the run's global predictor (what every other user is predicted with, unchanged).
        parts: one fitted :class:`SegmentPriorPredictor` per kept k, each holding only that k's sparse users.
    """

    def __init__(self, global_model: GlobalPredictor, parts: list[SegmentPriorPredictor]) -> None:
        self.global_model = global_model
        self.parts = parts

    @property
    def users(self) -> set[str]:
        """The users predicted by a prior model."""
        return {u for p in self.parts for u in p.theta_}

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        out = np.asarray(self.global_model.predict(frame), dtype=np.float64).copy()
        users = frame["user_id"].cast(pl.String)
        for part in self.parts:
            rows = np.flatnonzero(users.is_in(list(part.theta_)).to_numpy())
            if len(rows):
                out[rows] = part.predict(frame[rows])
        return out


@dataclass(frozen=True)
class ColdStart:
    """What the cold-start stage decided (``report``: JSON-ready, ``metrics.json`` → ``cold_start``) and, when a
    prior was kept for some k and the run has sparse users under it, the predictor that uses it (and, when a
    popularity blend was kept, the lists' plan the rank stage uses, ``lists``)."""

    report: dict
    predictor: ColdStartPredictor | None = field(default=None, repr=False)  # repr: a cache key part (no address)
    sparse: dict[str, int] = field(default_factory=dict)  # sparse user -> the k it falls under
    lists: ColdStartLists | None = None  # the ranking half's kept blends, for the rank stage


def _change(d: float, lo: float, hi: float) -> dict:
    ok = all(np.isfinite(x) for x in (d, lo, hi))
    return {"rmse_change": float(d) if np.isfinite(d) else None, "ci": [float(lo), float(hi)] if ok else None}


def _placement_method(method: str) -> str:
    """The run's representation, rebuilt from a cold train; one that needs behaviour-profile embeddings (an
    encoder) places users with the default representation instead."""
    return DEFAULT_METHOD if "profile" in method.split("+") else method


def _gain(a: np.ndarray, b: np.ndarray, cfg, seed: int, level: float) -> dict:
    """Mean per-user NDCG@10 change ``b - a`` and its paired user-bootstrap interval (:func:`mean_diff_ci`)."""
    d, lo, hi = mean_diff_ci(a, b, n_boot=cfg.gate_bootstrap, seed=seed, level=level)
    ok = all(np.isfinite(x) for x in (d, lo, hi))
    return {"ndcg_change": float(d) if np.isfinite(d) else None, "ci": [float(lo), float(hi)] if ok else None}


def _ranking_gate(cold: ColdSplit, sim: list[str], place: dict[str, int], place_ctl: dict[str, int],
                  warm_labels: dict[str, int], ctl_labels: dict[str, int], primary: str, ranker: RankerConfig,
                  items: pl.DataFrame, item_vectors: Embeddings, implicit: bool, relevance_threshold: float | None,
                  level: float, cfg, seed: int) -> dict:  # fmt: skip
    """The ranking half of :func:`cold_start_users` for one k: ``primary`` fitted on the cold train; for each
    simulated new user with a relevant held-out item, NDCG@10 (:func:`ndcg_per_user`) of (a) its scores, (b) their
    blend with overall popularity, (c) with its segment's popularity (:func:`segment_popularity_scores` over the
    warm users of the segment ``place`` gives it; placed nowhere: overall) and, as the control, (c) over the random
    partition; each blend's weight is the best of ``cfg.blend_weights`` on these users. (c) is used when its
    paired interval is above zero against (a) and (b); else (b) when above zero against (a); else (a).

    Cost: one fit of the primary ranker, then its scores of the simulated users in batches (at most the cells of a
    batch of :meth:`MatrixRanker.recommend`), linear in users.
    """
    model = unwrap(make_ranker(primary, ranker).fit(cold.train, items=items, item_embeddings=item_vectors, seed=seed,
                                                    implicit=implicit))  # fmt: skip
    held = (
        cold.held_out if relevance_threshold is None else cold.held_out.filter(pl.col("rating") >= relevance_threshold)
    )
    r = model.users_.lookup(held["user_id"].cast(pl.String), missing=-1)
    c = model.items_.lookup(held["item_id"].cast(pl.String), missing=-1)
    ok = (r >= 0) & (c >= 0)
    rel = sp.csr_matrix((np.ones(int(ok.sum())), (r[ok], c[ok])), shape=model.data_.x.shape)
    rel.sum_duplicates()
    rel.data[:] = 1.0
    rel = (rel - rel.multiply(model.data_.x)).tocsr()  # an item among the user's k rows is never ranked
    rel.eliminate_zeros()
    rows = model.users_.lookup(pl.Series(sim, dtype=pl.String), missing=-1)
    has = np.zeros(len(sim), bool)
    has[rows >= 0] = np.diff(rel.indptr)[rows[rows >= 0]] > 0
    users = [u for u, h in zip(sim, has) if h]
    rows = rows[has]
    weights = [float(w) for w in cfg.blend_weights]
    out: dict = {"k": cold.k, "used": "primary", "n_users": len(users), "ranker": primary}
    if len(users) < cfg.min_users:
        out["note"] = (f"only {len(users)} simulated new users have a relevant held-out item, fewer than "
                       f"predictor.cold_start.min_users = {cfg.min_users}: the {primary} ranker is used")  # fmt: skip
        return out
    overall = model.popularity_.astype(np.float64)
    counts = {"segment": segment_counts(model, warm_labels), "random_partition": segment_counts(model, ctl_labels)}
    segs = {"segment": np.array([place.get(u, -1) for u in users]),
            "random_partition": np.array([place_ctl.get(u, -1) for u in users])}  # fmt: skip
    n = len(users)
    nd = {"primary": np.empty(n), **{b: np.empty((len(weights), n)) for b in ("popularity", "segment",
                                                                            "random_partition")}}  # fmt: skip
    overall_row = np.log1p(overall)[None, :]
    for start in range(0, n, batch_size(len(model.items_), tables=6)):
        sl = slice(start, start + batch_size(len(model.items_), tables=6))
        scores = model._scores(rows[sl])
        seen = model.data_.x[rows[sl]].toarray() > 0
        relevant = rel[rows[sl]].toarray() > 0
        nd["primary"][sl] = ndcg_per_user(scores, seen, relevant)
        pops = {"popularity": overall_row,
                **{b: segment_popularity_scores(segs[b][sl], counts[b], overall) for b in counts}}  # fmt: skip
        for b, pop in pops.items():
            for j, w in enumerate(weights):
                nd[b][j, sl] = ndcg_per_user(blend(scores, pop, w), seen, relevant)
    best = {b: int(np.argmax(nd[b].mean(axis=1))) for b in ("popularity", "segment", "random_partition")}
    a = nd["primary"]
    pop_nd, seg_nd, ctl_nd = (nd[b][best[b]] for b in ("popularity", "segment", "random_partition"))
    seg_p, seg_pop = _gain(a, seg_nd, cfg, seed, level), _gain(pop_nd, seg_nd, cfg, seed, level)
    pop_p = _gain(a, pop_nd, cfg, seed, level)
    above = lambda g: g["ci"] is not None and g["ci"][0] > 0  # noqa: E731
    used = "segment" if above(seg_p) and above(seg_pop) else "popularity" if above(pop_p) else "primary"
    per_segment = {}
    for s in sorted(set(segs["segment"].tolist())):
        m = segs["segment"] == s
        g = (_gain(a[m], seg_nd[m], cfg, seed, cfg.gate_level) if m.sum() >= cfg.min_users
             else {"ndcg_change": float(np.mean(seg_nd[m] - a[m])), "ci": None})  # fmt: skip
        per_segment[str(s)] = {"n_users": int(m.sum()), **g, "used": used == "segment"}
    out.update({
        "used": used, "weight": {b: weights[best[b]] for b in best},
        "ndcg": {"primary": float(a.mean()), "popularity": float(pop_nd.mean()), "segment": float(seg_nd.mean()),
                 "random_partition": float(ctl_nd.mean())},
        "segment_vs_primary": seg_p, "segment_vs_popularity": seg_pop, "popularity_vs_primary": pop_p,
        "random_partition_vs_popularity": _gain(pop_nd, ctl_nd, cfg, seed, level), "per_segment": per_segment,
    })  # fmt: skip
    logger.info("cold start k=%d, top-%d lists: %d simulated new users; NDCG@%d %s %.4f, popularity blend %.4f, "
                "segment blend %.4f; used: %s", cold.k, _VALID_K, n, _VALID_K, primary, out["ndcg"]["primary"],
                out["ndcg"]["popularity"], out["ndcg"]["segment"], used)  # fmt: skip
    return out


def cold_start_users(split: Split, items: pl.DataFrame, item_vectors: Embeddings, segmentation: Segmentation,
                     global_model: GlobalPredictor | None, config: PredictorConfig, represent: RepresentConfig,
                     index: IndexConfig, seed: int, ranker: RankerConfig | None = None,
                     relevance_threshold: float | None = 4.0, implicit: bool = False,
                     user_vectors: Embeddings | None = None) -> ColdStart:  # fmt: skip
    """The flow's cold-start stage: gate a segment prior and an all-users prior for sparse users on simulated
    new users (validation inside train, never test), and fit what the gate kept for the run's sparse users.

    For each ``k`` of ``config.cold_start.ks``: a seeded ``new_fraction`` of the users with more than the
    largest k train rows (train + validation rows of ``split``) is cut to its first k rows
    (:func:`cold_start_split`); on that cold train the run's global model is fitted (:func:`fit_cold_model`),
    and the simulated users' other rows are predicted (a) by it, (b) with their MF bias and factors re-solved
    toward the mean of all warm users and (c) toward the mean of their segment (placed by :func:`place_users`
    from a vector of their k rows); the pull is chosen from ``config.cold_start.regs`` on the same users. The
    segment prior is kept for k only when its RMSE change has a paired user-bootstrap interval below zero
    against both (a) and (b); else the all-users prior when its interval against (a) is below zero; else
    nothing. Intervals at level ``1 - (1 - gate_level) / len(ks)`` (Bonferroni). The same prior on a random
    partition of the warm users is reported as the control. Cost: a few model fits per k, linear in users.

    The ranking half (with ``ranker``; also on implicit feedback, where ``global_model`` is None and the rating half
    is skipped) is :func:`_ranking_gate`: on the same simulated users and cold train, the run's primary ranker
    against its blend with overall popularity and with the popularity among the warm users of the user's segment
    (placed as above), blend weight from ``cold_start.blend_weights``, gated the same way on the per-user NDCG@10
    gain; the kept blend lists the run's sparse users' top-k items in the rank stage (:class:`ColdStartLists`).

    Args:
        split: the run's split (only train and validation rows are read).
        items: the catalogue (categories for the placement vectors).
        item_vectors: item embeddings (the placement vectors, the global model's side features).
        segmentation: the run's segments (each warm user's ``nearest_segment``).
        global_model: the run's global model (sparse users the gate does not cover keep its predictions); None
            (implicit feedback) skips the rating half.
        config: the predictor section (``cold_start`` holds the stage's settings; the rest fits the models).
        represent: the run's ``represent`` section: placement vectors are built as the run's user vectors are
            (with the default method where the run's needs behaviour profiles).
        index: the run's FAISS settings for the placement vote.
        seed: the run's seed.
        ranker: the run's ranker section (its primary ranker is gated); None skips the ranking half.
        relevance_threshold: held-out ratings at or above it are relevant for the ranking half (the run's
            ``evaluate.relevance_threshold``); None (implicit feedback): every held-out interaction is.
        implicit: the interactions are implicit feedback (as the rankers are given it).
        user_vectors: the run's user vectors (the represent stage's, built from the same train rows): when the
            placement uses the run's representation, the run's sparse users are placed with them instead of
            building every user's vector again (minutes at 100k users).
    """
    t0 = time.perf_counter()
    rated = global_model is not None
    cfg = config.cold_start
    ks = list(cfg.ks)
    kmax = ks[-1]
    base = split.train_full
    counts = base.group_by("user_id").len()
    n_of = dict(zip(counts["user_id"].to_list(), counts["len"].to_list()))
    warm = sorted(u for u, n in n_of.items() if n > kmax)
    sparse = {u: next(k for k in ks if n <= k) for u, n in n_of.items() if n <= kmax}
    a = segmentation.assignments
    labels = {
        u: int(s) for u, s in zip(a["user_id"].to_list(), a["nearest_segment"].to_list()) if s is not None and s >= 0
    }
    n_sim = int(round(cfg.new_fraction * min(len(warm), cfg.gate_max_users or len(warm))))
    head = {"ks": ks, "warm_users": len(warm), "sparse_users": len(sparse),
            "sparse_by_k": {str(k): sum(v == k for v in sparse.values()) for k in ks}}  # fmt: skip
    reason = None
    if not sparse:  # nothing this run predicts would change: the fits below would cost minutes for a report only
        reason = (f"no user has {kmax} or fewer train ratings, so no prediction would change "
                  f"in this run; the gate runs when some user has at most max(predictor.cold_start.ks) = {kmax}")  # fmt: skip
    elif n_sim < cfg.min_users:
        reason = (f"only {len(warm)} users have more than {kmax} train ratings, so {n_sim} would be simulated as "
                  f"new: fewer than predictor.cold_start.min_users = {cfg.min_users}")  # fmt: skip
    elif not rated and ranker is None:
        reason = IMPLICIT_NO_PRIOR
    elif not any(u in labels for u in warm):
        reason = f"none of the {len(warm)} users with more than {kmax} train ratings is in a segment"
    if reason is not None:
        logger.info("cold start skipped: %s", reason)
        return ColdStart({**head, "skipped": reason, "seconds": round(time.perf_counter() - t0, 3)})
    world = warm  # the gate's users: at most gate_max_users of them, so that its fits cost the same at any size
    if cfg.gate_max_users is not None and len(warm) > cfg.gate_max_users:
        world = sorted(pick_new_users(warm, cfg.gate_max_users / len(warm), seed=seed + 1))
        gate_base = base.filter(pl.col("user_id").is_in(pl.Series(world, dtype=pl.String).implode()))
        logger.info("cold start: the gate is judged on a seeded sample of %d of the %d users with more than %d "
                    "train ratings (predictor.cold_start.gate_max_users)", len(world), len(warm), kmax)  # fmt: skip
    else:
        gate_base = base
    sim = pick_new_users(world, cfg.new_fraction, seed=seed)
    sim_set = set(sim)
    warm_labels = {u: labels[u] for u in world if u in labels and u not in sim_set}
    shuffled = random_partition(pl.DataFrame({"user_id": list(warm_labels), "segment_id": list(warm_labels.values())},
                                             schema={"user_id": pl.String, "segment_id": pl.Int64}), seed)  # fmt: skip
    ctl_labels = dict(zip(shuffled["user_id"].to_list(), (int(s) for s in shuffled["segment_id"].to_list())))
    level = 1.0 - (1.0 - cfg.gate_level) / len(ks)
    mf_config = config if config.model == "mf" else config.model_copy(update={"model": "mf"})
    placement = _placement_method(represent.method)
    by_k: dict[str, dict] = {}
    rank_by_k: dict[str, dict] = {}
    primary = None
    if ranker is not None:
        primary = choose_rankers(ranker, len(n_of), base["item_id"].n_unique()).names[-1]
    for k in ks:
        cold = cold_start_split(gate_base, sim, k)
        vectors = vectors_as_configured(cold.train, item_vectors, represent, items=items, seed=seed, method=placement)
        place = place_users(vectors, warm_labels, sim_set, k=cfg.neighbours, index=index)
        place_ctl = place_users(vectors, ctl_labels, sim_set, k=cfg.neighbours, index=index)
        if ranker is not None and primary is not None:
            t1 = time.perf_counter()
            rank_by_k[str(k)] = _ranking_gate(cold, sim, place, place_ctl, warm_labels, ctl_labels, primary, ranker,
                                              items, item_vectors, implicit, relevance_threshold, level, cfg,
                                              seed)  # fmt: skip
            rank_by_k[str(k)]["seconds"] = round(time.perf_counter() - t1, 3)
        if not rated:
            continue
        model = fit_cold_model(cold.train, sim, config, item_embeddings=item_vectors, seed=seed)
        mf = model if model.params_ is not None else fit_cold_model(cold.train, sim, mf_config,
                                                                    item_embeddings=item_vectors, seed=seed)  # fmt: skip
        scored = cold.held_out
        y, groups = scored["rating"].to_numpy(), scored["user_id"].to_numpy()
        new_rows = cold.train.filter(pl.col("user_id").is_in(sim))
        priors, priors_ctl = warm_priors(mf, warm_labels), warm_priors(mf, ctl_labels)

        def best(where: dict[str, int] | None, pri: dict[int, np.ndarray], mf=mf, new_rows=new_rows, scored=scored,
                 y=y) -> tuple[float, np.ndarray]:  # fmt: skip
            preds = {r: fit_prior_predictor(mf, new_rows, pri, where, r).predict(scored) for r in cfg.regs}
            reg = min(preds, key=lambda r: rmse(y, preds[r]))
            return reg, preds[reg]

        p_global = model.predict(scored)
        reg_all, p_all = best(None, priors)
        reg_seg, p_seg = best(place, priors)
        reg_ctl, p_ctl = best(place_ctl, priors_ctl)

        def ci(p_a: np.ndarray, p_b: np.ndarray, y=y, groups=groups, lvl: float = level) -> dict:
            return _change(*paired_bootstrap_ci(y, p_a, p_b, groups, n_boot=cfg.gate_bootstrap, seed=seed, level=lvl))

        seg_g, seg_all, all_g = ci(p_global, p_seg), ci(p_all, p_seg), ci(p_global, p_all)
        below = lambda c: c["ci"] is not None and c["ci"][1] < 0  # noqa: E731
        used = "segment" if below(seg_g) and below(seg_all) else "all-users" if below(all_g) else "global"
        seg_of_row = np.array([place.get(u, -1) for u in groups.tolist()])
        per_segment = {}
        for s in sorted(set(seg_of_row.tolist())):
            m = seg_of_row == s
            n_users = len(set(groups[m].tolist()))
            c = (ci(p_global[m], p_seg[m], y=y[m], groups=groups[m], lvl=cfg.gate_level) if n_users >= cfg.min_users
                 else {"rmse_change": rmse(y[m], p_seg[m]) - rmse(y[m], p_global[m]), "ci": None})  # fmt: skip
            per_segment[str(s)] = {"n_users": n_users, "n_rows": int(m.sum()), **c, "used": used == "segment"}
        by_k[str(k)] = {
            "k": k, "used": used, "n_users": len(sim), "n_rows": int(len(y)),
            "reg": {"all_users": reg_all, "segment": reg_seg, "random_partition": reg_ctl},
            "rmse": {"global": rmse(y, p_global), "all_users": rmse(y, p_all), "segment": rmse(y, p_seg),
                     "random_partition": rmse(y, p_ctl)},
            "segment_vs_global": seg_g, "segment_vs_all_users": seg_all, "all_users_vs_global": all_g,
            "random_partition_vs_all_users": ci(p_all, p_ctl), "per_segment": per_segment,
        }  # fmt: skip
        logger.info("cold start k=%d: %d simulated new users; RMSE global %.4f, all-users prior %.4f, segment prior "
                    "%.4f; used: %s", k, len(sim), by_k[str(k)]["rmse"]["global"], by_k[str(k)]["rmse"]["all_users"],
                    by_k[str(k)]["rmse"]["segment"], used)  # fmt: skip
    report = {**head, "gate_users": len(world), "simulated_users": len(sim), "gate_level": level, "per_segment_level": cfg.gate_level,
              "placement": placement}  # fmt: skip
    if global_model is not None:  # rated
        report["prior_model"] = ("the global model's MF" if global_model.params_ is not None
                                 else "an MF fitted for the priors")  # fmt: skip
        report["by_k"] = by_k
    else:
        report["rating_skipped"] = IMPLICIT_NO_PRIOR
    kept = {int(k): d for k, d in by_k.items() if d["used"] != "global"}
    covered = {u: k for u, k in sparse.items() if k in kept}
    rank_kept = {int(k): (d["used"], float(d["weight"][d["used"]])) for k, d in rank_by_k.items()
                 if d["used"] != "primary"}  # fmt: skip
    rank_covered = {u: k for u, k in sparse.items() if k in rank_kept}
    run_warm = {u: labels[u] for u in warm if u in labels}
    to_place = {u for u, k in covered.items() if kept[k]["used"] == "segment"}
    to_place |= {u for u, k in rank_covered.items() if rank_kept[k][0] == "segment"}
    place = {}
    if to_place:  # the run's sparse users under a kept segment prior or blend, from a vector of all their rows
        vectors = (
            user_vectors
            if user_vectors is not None and placement == represent.method
            else vectors_as_configured(base, item_vectors, represent, items=items, seed=seed, method=placement)
        )
        place = place_users(vectors, run_warm, to_place, k=cfg.neighbours, index=index)
    predictor = None
    if covered:
        assert global_model is not None
        prior_model = global_model if global_model.params_ is not None else fit_global_predictor(
            split, mf_config, item_embeddings=item_vectors, seed=seed)  # fmt: skip
        priors = warm_priors(prior_model, run_warm)
        parts = []
        for k, d in kept.items():
            rows = base.filter(pl.col("user_id").is_in([u for u, b in covered.items() if b == k]))
            if rows.height:
                seg = d["used"] == "segment"
                reg = d["reg"]["segment" if seg else "all_users"]
                parts.append(fit_prior_predictor(prior_model, rows, priors, place if seg else None, reg))
        predictor = ColdStartPredictor(global_model, parts)
    lists = None
    if primary is not None:
        report["ranking"] = {"primary": primary, "k": _VALID_K, "weights": list(cfg.blend_weights),
                             "relevance": ("every held-out interaction" if relevance_threshold is None
                                           else f"rating >= {relevance_threshold:g}"),
                             "gate_level": level, "per_segment_level": cfg.gate_level, "by_k": rank_by_k,
                             "covered_users": len(rank_covered)}  # fmt: skip
        if rank_covered:
            seg_users = {u for u, k in rank_covered.items() if rank_kept[k][0] == "segment"}
            lists = ColdStartLists(primary, rank_kept, rank_covered, {u: place[u] for u in seg_users if u in place},
                                   run_warm if seg_users else {})  # fmt: skip
    report["covered_users"] = len(covered)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return ColdStart(report, predictor, sparse, lists)
