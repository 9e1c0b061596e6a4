"""Top-k rankers: most-popular, item-kNN, EASE, RP3beta and segflow's own ranker.

Every ranker follows the small :class:`Ranker` protocol: ``fit(train, *, items=None,
item_embeddings=None, seed=0) -> self`` and ``recommend(user_ids, k=10, *, exclude_seen=True,
candidates=None) -> frame`` with schema ``RECOMMENDATIONS`` (user_id, item_id, rank 1-based,
score); within a list, ties break by the smaller item id (numerically when every id is an
integer). Users unknown at fit time get the most popular items, scored by their train
popularity.

Hyper-parameters that are not fixed in :class:`~segmentation.config.RankerConfig` are chosen on
a validation carve of ``train`` (``valid_fraction`` of its rows, drawn with ``seed``): the
ranker is fitted on the rest, scored by NDCG@10 on the carved rows rated at or above
``like_threshold``, and refitted on all of ``train`` with the winner.

segflow's ranker (:class:`SegflowRanker`) is a rating-aware EASE: liked items (rating >=
``like_threshold``) weigh more both as evidence and as targets (optionally with Steck's 2020
emphasised-denoising ridge), and the scores are blended with a similarity of the items'
description embeddings. On MovieLens 100k ``random90`` it beats EASE by about 0.02
NDCG@10 (docs/BENCHMARKS.md, "Top-10 ranking").

>>> import polars as pl
>>> train = pl.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["1", "2", "1"], "rating": [5.0, 4.0, 3.0]})
>>> MostPopular().fit(train).recommend(["b"], k=1)["item_id"].to_list()
['2']
"""

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Self, TypeAlias

import numpy as np
import polars as pl
import scipy.sparse as sp

from embeddings.encoder import Embeddings
from segmentation._errors import ConfigError, DataError, check_is_fitted
from segmentation.cluster import Segmentation
from segmentation.config import EvalConfig, RankerConfig
from segmentation.data import Dataset, Split, Vocab

__all__ = [
    "EASE",
    "RANKERS",
    "RECOMMENDATIONS",
    "SEGMENT_ITEMS",
    "ItemKNN",
    "MostPopular",
    "RP3beta",
    "Ranker",
    "SegflowRanker",
    "make_ranker",
    "Rankings",
    "rank_test_users",
    "recommend_for_segment",
    "segment_top_items",
]

logger = logging.getLogger(__name__)

#: Output of :meth:`Ranker.recommend`: one row per (user, list position).
RECOMMENDATIONS = pl.Schema({"user_id": pl.String, "item_id": pl.String, "rank": pl.Int32, "score": pl.Float64})
#: Output of :func:`segment_top_items`: what to recommend to each segment.
SEGMENT_ITEMS = pl.Schema({
    "segment_id": pl.Int32, "rank": pl.Int32, "item_id": pl.String, "title": pl.String, "rec_share": pl.Float64,
    "mean_score": pl.Float64, "liked_share": pl.Float64, "lift": pl.Float64,
})  # fmt: skip
#: Names accepted by :func:`make_ranker`.
RANKERS = ("most-popular", "item-knn", "ease", "rp3beta", "segflow")
#: A list of item ids allowed for every user, or a (user_id, item_id) frame of per-user candidates.
Candidates: TypeAlias = Sequence[str] | pl.DataFrame | None

_CHUNK = 1024
_VALID_K = 10


class Ranker(Protocol):
    """The contract of every top-k ranker."""

    def fit(self, train: pl.DataFrame, *, items: pl.DataFrame | None = None,
            item_embeddings: Embeddings | None = None, seed: int = 0, implicit: bool = False) -> Self:  # fmt: skip
        """Learn from ``train`` (user_id, item_id, rating); ``items`` widens the catalogue."""
        ...

    def recommend(self, user_ids: Sequence[str], k: int = 10, *, exclude_seen: bool = True,
                  candidates: Candidates = None) -> pl.DataFrame:  # fmt: skip
        """Top-``k`` items per user, schema ``RECOMMENDATIONS``."""
        ...


# ----------------------------------------------------------------------------- shared plumbing


def _id_order(ids: Sequence[str]) -> list[str]:
    """Distinct ids sorted numerically when all are integers, else as strings."""
    uniq = list(dict.fromkeys(ids))
    try:
        return sorted(uniq, key=int)
    except ValueError:
        return sorted(uniq)


@dataclass(frozen=True)
class _Data:
    """Train interactions as matrices over fixed vocabularies.

    Attributes:
        x: (n_users, n_items) CSR float64, 1 where the user interacted with the item.
        r: same pattern, holding the rating (the latest one when a pair repeats).
        liked: same pattern, 1 where the rating is at or above the like threshold.
    """

    x: sp.csr_matrix
    r: sp.csr_matrix
    liked: sp.csr_matrix


def _matrices(frame: pl.DataFrame, users: Vocab, items: Vocab, like_threshold: float, implicit: bool = False) -> _Data:
    """Train matrices; with ``implicit`` every interaction is liked and ``r`` holds the confidence ``log1p(weight)``
    (plays or purchase counts weigh in, damped, and a log without weights gives one constant)."""
    f = frame.filter(pl.col("item_id").is_in(pl.Series(items.ids.tolist(), dtype=pl.String).implode()))
    rows = users.lookup(f["user_id"])
    cols = items.lookup(f["item_id"])
    ratings = f["rating"].to_numpy().astype(np.float64) if "rating" in f.columns else np.ones(f.height)
    shape = (len(users), len(items))
    # duplicates: keep the last rating of a pair (csr sums duplicates, so deduplicate first)
    key = rows * shape[1] + cols
    _, last = np.unique(key[::-1], return_index=True)
    keep = len(key) - 1 - last
    rows, cols, ratings = rows[keep], cols[keep], ratings[keep]
    if implicit:
        ratings = np.log1p(np.maximum(ratings, 0.0))
    x = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)
    r = sp.csr_matrix((ratings, (rows, cols)), shape=shape)
    liked_mask = np.ones(len(ratings), dtype=bool) if implicit else ratings >= like_threshold
    if not liked_mask.any():
        liked_mask[:] = True  # implicit data (or no high ratings): every interaction counts as liked
    liked = sp.csr_matrix((liked_mask.astype(np.float64), (rows, cols)), shape=shape)
    liked.eliminate_zeros()
    return _Data(x, r, liked)


def _top_k(scores: np.ndarray, k: int) -> list[np.ndarray]:
    """Per row, the indices of the ``k`` best finite scores, best first; ties go to the smaller index.

    Vectorised (partition, then sort the k by score and index); rows whose k-th value is tied
    with entries outside the partition, or that hold too few finite scores, are redone exactly.
    """
    n_rows, n_items = scores.shape
    if k >= n_items:
        order = np.argsort(-scores, axis=1, kind="stable")
        return [idx[np.isfinite(row[idx])] for row, idx in zip(scores, order)]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    top = np.take_along_axis(part, np.lexsort((part, -vals), axis=1), axis=1)
    kth = vals.min(axis=1)
    redo = ~np.isfinite(kth) | ((scores >= kth[:, None]).sum(axis=1) > k)
    out = list(top)
    for i in np.flatnonzero(redo):
        row = scores[i]
        cand = np.flatnonzero(row >= kth[i]) if np.isfinite(kth[i]) else np.flatnonzero(np.isfinite(row))
        out[i] = cand[np.lexsort((cand, -row[cand]))][:k]
    return out


def _zscore(m: np.ndarray) -> np.ndarray:
    """Standardise each row (mean 0, sd 1); constant rows become 0."""
    sd = m.std(axis=1, keepdims=True)
    return (m - m.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)


def _validation_ndcg(scores: np.ndarray, seen: sp.csr_matrix, relevant: sp.csr_matrix, k: int = _VALID_K) -> float:
    """Mean binary NDCG@k of dense ``scores`` rows, seen items excluded (every row has a relevant item)."""
    s = scores.copy()
    r_idx, c_idx = seen.nonzero()
    s[r_idx, c_idx] = -np.inf
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    tops = _top_k(s, k)
    lens = np.array([len(t) for t in tops])
    rows = np.repeat(np.arange(len(tops)), lens)
    hits = np.asarray(relevant.tocsr()[rows, np.concatenate(tops) if len(tops) else rows]).ravel() > 0
    pos = np.concatenate([np.arange(n) for n in lens]) if len(tops) else rows
    dcg = np.bincount(rows, weights=hits * disc[pos], minlength=len(tops))
    n_rel = np.minimum(np.diff(relevant.tocsr().indptr), k)
    idcg = np.cumsum(disc)[np.maximum(n_rel, 1) - 1]
    return float(np.mean(dcg / idcg)) if len(tops) else 0.0


@dataclass(frozen=True)
class _Carve:
    """A validation carve: fit matrices, the scored users' rows, their seen and relevant items."""

    fit: _Data
    users: np.ndarray
    relevant: sp.csr_matrix


class _MatrixRanker:
    """Shared plumbing of the rankers: vocabularies, matrices, validation carve, scoring and top-k.

    Subclasses implement ``_fit_model(data, items, item_embeddings, rng)`` and ``_scores(rows)``
    (dense ``(len(rows), n_items)`` float64 scores for known users' rows).
    """

    config: RankerConfig

    def fit(self, train: pl.DataFrame, *, items: pl.DataFrame | None = None,
            item_embeddings: Embeddings | None = None, seed: int = 0, implicit: bool = False) -> Self:  # fmt: skip
        """Fit on ``train`` (user_id, item_id, rating); hyper-parameters left open are chosen on validation.

        Args:
            train: interactions (schema ``segmentation.data.INTERACTIONS``; ``rating`` optional).
            items: the catalogue; its items become rankable even with no train interaction.
            item_embeddings: item description vectors (used by the segflow ranker only).
            seed: seeds the validation carve.
            implicit: ``rating`` holds implicit weights (counts, or 1.0): every interaction is liked, the
                weight only scales confidence (``log1p``), and validation relevance is every carved item.

        Returns:
            self, fitted.

        Raises:
            DataError: ``train`` lacks ``user_id``/``item_id`` or is empty.
        """
        t0 = time.perf_counter()
        missing = [c for c in ("user_id", "item_id") if c not in train.columns]
        if missing or train.height == 0:
            raise DataError(f"{type(self).__name__}.fit: train needs user_id and item_id columns and at least one "
                            f"row (given columns {train.columns}, {train.height} rows)")  # fmt: skip
        train = train.with_columns(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String))
        counts = train.unique(["user_id", "item_id"]).group_by("item_id").len()
        item_ids = counts["item_id"].to_list()
        if items is not None:
            item_ids = list(dict.fromkeys([*item_ids, *items["item_id"].cast(pl.String).to_list()]))
        if len(item_ids) > self.config.max_items:
            top = counts.sort(["len", "item_id"], descending=[True, False]).head(self.config.max_items)
            logger.warning("%s keeps the %d most popular of %d items (ranker.max_items)", type(self).__name__,
                           self.config.max_items, len(item_ids))  # fmt: skip
            item_ids = top["item_id"].to_list()
        self.items_ = Vocab.from_ids(_id_order(item_ids))
        self.users_ = Vocab.from_ids(_id_order(train["user_id"].to_list()))
        self.implicit_ = implicit
        self.data_ = _matrices(train, self.users_, self.items_, self.config.like_threshold, implicit)
        self.popularity_ = np.asarray(self.data_.x.sum(axis=0)).ravel()
        self.seed_ = seed
        self._train = train
        try:
            self._fit_model(self.data_, items, item_embeddings, seed)
        finally:
            del self._train
        self.fit_seconds_ = time.perf_counter() - t0
        logger.info("fitted %s on %d users x %d items (%d interactions) in %.2fs", type(self).__name__,
                    len(self.users_), len(self.items_), self.data_.x.nnz, self.fit_seconds_)  # fmt: skip
        return self

    def _fit_model(self, data: _Data, items: pl.DataFrame | None, emb: Embeddings | None, seed: int) -> None:
        raise NotImplementedError

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # -- validation -------------------------------------------------------------------------------

    def _carve(self, seed: int) -> _Carve:
        """Carve ``valid_fraction`` of train rows; keep users with a liked carved item (at most max_valid_users)."""
        rng = np.random.default_rng(seed)
        train = self._train
        mask = np.zeros(train.height, dtype=bool)
        mask[rng.permutation(train.height)[: int(round(train.height * self.config.valid_fraction))]] = True
        m = pl.Series(mask)
        fit = _matrices(train.filter(~m), self.users_, self.items_, self.config.like_threshold, self.implicit_)
        valid = _matrices(train.filter(m), self.users_, self.items_, self.config.like_threshold, self.implicit_)
        liked = valid.liked - valid.liked.multiply(fit.x)  # a carved pair also left in the fit part is not held out
        liked.eliminate_zeros()
        users = np.flatnonzero(np.diff(liked.indptr) > 0)
        if len(users) > self.config.max_valid_users:
            users = np.sort(rng.choice(users, self.config.max_valid_users, replace=False))
        if len(users) == 0:
            raise DataError(f"{type(self).__name__}: the validation carve holds no liked item; give more data or "
                            "fix the hyper-parameters in the ranker config")  # fmt: skip
        return _Carve(fit, users, liked[users])

    def _select(self, grid: list[dict], score: Callable[[_Carve, dict], np.ndarray], seed: int) -> dict:
        """The grid point with the best validation NDCG@10 (the first one on ties)."""
        if len(grid) == 1:
            return grid[0]
        carve = self._carve(seed)
        seen = carve.fit.x[carve.users]
        results = [(_validation_ndcg(score(carve, params), seen, carve.relevant), params) for params in grid]
        return self._record(results, len(carve.users))

    def _record(self, results: list[tuple[float, dict]], n_users: int) -> dict:
        """Keep the validation table in ``validation_``, log the winner and return its parameters."""
        best = max(results, key=lambda t: t[0])
        self.validation_ = [{**p, "ndcg@10": round(v, 5)} for v, p in results]
        logger.info("%s: validation NDCG@10 %.4f with %s (%d candidates, %d users)", type(self).__name__, best[0],
                    best[1], len(results), n_users)  # fmt: skip
        return dict(best[1])

    # -- recommending -----------------------------------------------------------------------------

    def recommend(self, user_ids: Sequence[str], k: int = 10, *, exclude_seen: bool = True,
                  candidates: Candidates = None) -> pl.DataFrame:  # fmt: skip
        """Top-``k`` items for each user, best first.

        Args:
            user_ids: users to recommend to (duplicates are listed once); unknown users get the
                most popular items, scored by train popularity.
            k: list length; a list is shorter when fewer items are allowed.
            exclude_seen: leave out the items the user interacted with in train.
            candidates: None (every catalogue item), a list of item ids allowed for every user,
                or a ``user_id``/``item_id`` frame of per-user candidates (users not in it get
                no list). Ids outside the fitted catalogue are ignored.

        Returns:
            Frame with schema ``RECOMMENDATIONS``, in the order of ``user_ids`` then rank.

        Raises:
            NotFittedError: before ``fit``.
            ValueError: ``k`` < 1.
        """
        check_is_fitted(self, "data_")
        if k < 1:
            raise ValueError(f"k must be >= 1 (given: {k})")
        users = list(dict.fromkeys(str(u) for u in user_ids))
        allowed = self._candidate_mask(users, candidates)
        parts = []
        for start in range(0, len(users), _CHUNK):
            chunk = users[start : start + _CHUNK]
            rows = self.users_.lookup(chunk, missing=-1)
            known = rows >= 0
            scores = np.tile(self.popularity_.astype(np.float64), (len(chunk), 1))
            if known.any():
                scores[known] = self._scores(rows[known])
                if exclude_seen:
                    seen = self.data_.x[rows[known]].tocoo()
                    scores[np.flatnonzero(known)[seen.row], seen.col] = -np.inf
            if np.isnan(scores).any():
                raise RuntimeError(f"{type(self).__name__} produced NaN scores; this is a bug")
            if allowed is not None:
                mask = allowed[start : start + len(chunk)]
                scores[~mask] = -np.inf
            for u, idx, row in zip(chunk, _top_k(scores, k), scores):
                idx = idx[np.isfinite(row[idx])]
                parts.append((u, idx, row[idx]))
        n = sum(len(p[1]) for p in parts)
        return pl.DataFrame({
            "user_id": np.repeat([p[0] for p in parts], [len(p[1]) for p in parts]).astype(object) if n else [],
            "item_id": self.items_.ids[np.concatenate([p[1] for p in parts])] if n else [],
            "rank": np.concatenate([np.arange(1, len(p[1]) + 1) for p in parts]) if n else [],
            "score": np.concatenate([p[2] for p in parts]) if n else [],
        }, schema=RECOMMENDATIONS)  # fmt: skip

    def _candidate_mask(self, users: list[str], candidates: Candidates) -> np.ndarray | None:
        if candidates is None:
            return None
        n_items = len(self.items_)
        if isinstance(candidates, pl.DataFrame):
            if not {"user_id", "item_id"} <= set(candidates.columns):
                raise ValueError(f"a candidates frame needs user_id and item_id (given: {candidates.columns})")
            upos = {u: i for i, u in enumerate(users)}
            c = candidates.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String))
            r = np.fromiter((upos.get(u, -1) for u in c["user_id"]), np.int64, c.height)
            j = self.items_.lookup(c["item_id"], missing=-1)
            ok = (r >= 0) & (j >= 0)
            mask = np.zeros((len(users), n_items), dtype=bool)
            mask[r[ok], j[ok]] = True
            return mask
        j = self.items_.lookup([str(i) for i in candidates], missing=-1)
        if (j < 0).any():
            logger.warning("%d candidate items are not in the fitted catalogue and are ignored", int((j < 0).sum()))
        row = np.zeros(n_items, dtype=bool)
        row[j[j >= 0]] = True
        return np.broadcast_to(row, (len(users), n_items))


# ----------------------------------------------------------------------------- rankers


class MostPopular(_MatrixRanker):
    """Items by how many train users chose them: the non-personalised floor.

    Args:
        config: ranker settings (only ``max_items`` and ``like_threshold`` matter).
    """

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()

    def _fit_model(self, data: _Data, items: pl.DataFrame | None, emb: Embeddings | None, seed: int) -> None:
        self.params_: dict = {}

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.tile(self.popularity_.astype(np.float64), (len(rows), 1))


def _knn_similarity(r: sp.csr_matrix, neighbors: int) -> np.ndarray:
    """Cosine similarity of item rating columns, top-``neighbors`` per item (row), zero diagonal."""
    norms = np.sqrt(np.asarray(r.multiply(r).sum(axis=0)).ravel())
    sim = (r.T @ r).toarray()
    sim /= np.maximum(np.outer(norms, norms), 1e-12)
    np.fill_diagonal(sim, 0.0)
    if neighbors < sim.shape[1]:
        cut = np.argpartition(-sim, neighbors, axis=1)[:, neighbors:]
        np.put_along_axis(sim, cut, 0.0, axis=1)
    return sim


class ItemKNN(_MatrixRanker):
    """Item-based kNN, rating-weighted (Sarwar et al. 2001; Deshpande & Karypis 2004).

    ``s(i, j)`` = cosine of the items' rating columns, kept for the ``knn_neighbors`` most
    similar items ``i`` of each target ``j``; ``score(u, j) = Σ_{i ∈ I_u} r_ui · s(j, i)``.

    Args:
        config: ranker settings (``knn_neighbors``).
    """

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()

    def _fit_model(self, data: _Data, items: pl.DataFrame | None, emb: Embeddings | None, seed: int) -> None:
        self.params_ = {"neighbors": self.config.knn_neighbors}
        self.sim_ = _knn_similarity(data.r, self.config.knn_neighbors)

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.data_.r[rows] @ self.sim_.T)


def _ease_weights(x_in: sp.csr_matrix, reg: float, *, dropout: float = 0.0,
                  target: sp.csr_matrix | None = None) -> np.ndarray:  # fmt: skip
    """EASE item-item weights with a zero diagonal.

    ``min ||Y - X B||² + ||Λ^{1/2} B||²`` s.t. ``diag(B) = 0`` with ``Λ = reg·I + p/(1-p)·diag(XᵀX)``
    has ``B = P XᵀY - P diag(μ)``, ``P = (XᵀX + Λ)⁻¹``, ``μ_j = (P XᵀY)_jj / P_jj``. With
    ``Y = X`` this is ``B = I - P diag(1/diag P)`` (Steck 2019; the dropout term is Steck's
    emphasised denoising, NeurIPS 2020).
    """
    g = (x_in.T @ x_in).toarray()
    d = np.diag(g).copy()
    g[np.diag_indices_from(g)] += reg + (dropout / (1.0 - dropout)) * d if dropout else reg
    p = np.linalg.inv(g)
    if target is None:
        b = -p / np.diag(p)[None, :]
        np.fill_diagonal(b, 0.0)
        return b
    c = p @ (x_in.T @ target).toarray()
    b = c - p * (np.diag(c) / np.diag(p))[None, :]
    np.fill_diagonal(b, 0.0)
    return b


class EASE(_MatrixRanker):
    """EASE^R on the binary matrix (Steck, "Embarrassingly shallow autoencoders", WWW 2019).

    ``B = I - P·diag(1/diag P)``, ``P = (XᵀX + λI)⁻¹``; ``score(u) = x_u B``. λ is
    ``ease_reg``, or the best of ``ease_reg_grid`` on the validation carve.

    Args:
        config: ranker settings (``ease_reg``, ``ease_reg_grid``).
    """

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()

    def _fit_model(self, data: _Data, items: pl.DataFrame | None, emb: Embeddings | None, seed: int) -> None:
        grid = (
            [{"reg": self.config.ease_reg}] if self.config.ease_reg else [{"reg": r} for r in self.config.ease_reg_grid]
        )

        def score(carve: _Carve, p: dict) -> np.ndarray:
            return np.asarray(carve.fit.x[carve.users] @ _ease_weights(carve.fit.x, p["reg"]))

        self.params_ = self._select(grid, score, seed)
        self.b_ = _ease_weights(data.x, self.params_["reg"])

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.data_.x[rows] @ self.b_)


def _rp3_weights(x: sp.csr_matrix, alpha: float, beta: float) -> np.ndarray:
    """RP3beta: ``W = (P_iu)^α (P_ui)^α`` divided column-wise by ``deg(j)^β``, zero diagonal."""
    deg_u = np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1.0)
    deg_i = np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1.0)
    pui = (sp.diags(1.0 / deg_u) @ x).power(alpha)
    piu = (sp.diags(1.0 / deg_i) @ x.T.tocsr()).power(alpha)
    w = (piu @ pui).toarray()
    w /= np.power(deg_i, beta)[None, :]
    np.fill_diagonal(w, 0.0)
    return w


class RP3beta(_MatrixRanker):
    """RP3beta (Paudel et al., "Updatable, accurate, diverse, and scalable recommendations", TiiS 2016).

    A 3-step random walk user→item→user→item with transition probabilities raised to ``α``
    and the destination's popularity damped by ``deg^β``; ``α`` and ``β`` are the best pair of
    ``rp3_alpha_grid`` × ``rp3_beta_grid`` on the validation carve.

    Args:
        config: ranker settings (``rp3_alpha_grid``, ``rp3_beta_grid``).
    """

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()

    def _fit_model(self, data: _Data, items: pl.DataFrame | None, emb: Embeddings | None, seed: int) -> None:
        grid = [{"alpha": a, "beta": b} for a in self.config.rp3_alpha_grid for b in self.config.rp3_beta_grid]

        def score(carve: _Carve, p: dict) -> np.ndarray:
            return np.asarray(carve.fit.x[carve.users] @ _rp3_weights(carve.fit.x, p["alpha"], p["beta"]))

        self.params_ = self._select(grid, score, seed)
        self.w_ = _rp3_weights(data.x, self.params_["alpha"], self.params_["beta"])

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.data_.x[rows] @ self.w_)


def _content_similarity(items: Vocab, emb: Embeddings, neighbors: int) -> np.ndarray:
    """Cosine similarity of item description embeddings, top-``neighbors`` per item, zero diagonal.

    Items without an embedding get an all-zero row and column.
    """
    pos = emb.index_of()
    vec = np.zeros((len(items), emb.dim), dtype=np.float64)
    have = np.array([i in pos for i in items.ids])
    if have.any():
        vec[have] = emb.vectors[[pos[i] for i in items.ids[have]]]
    vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
    sim = vec @ vec.T
    np.fill_diagonal(sim, 0.0)
    if neighbors < sim.shape[1]:
        cut = np.argpartition(-sim, neighbors, axis=1)[:, neighbors:]
        np.put_along_axis(sim, cut, 0.0, axis=1)
    return sim


class SegflowRanker(_MatrixRanker):
    """segflow's ranker: rating-aware EASE blended with item-description similarity.

    Relevance is "will rate it at or above ``like_threshold``", so a liked item is stronger
    evidence and a better target than one merely watched. With ``L`` the liked indicator:

    - input ``X_a = X + a·L`` and target ``Y = X + w·L`` (:func:`_ease_weights`, asymmetric
      EASE with a zero diagonal), ridge ``λ·mean(X_a²) + p/(1-p)·diag(X_aᵀX_a)``;
    - content: ``C = X_a S``, ``S`` the top-``content_neighbors`` cosine similarity of the
      items' description embeddings (:class:`~embeddings.encoder.Embeddings`);
    - ``score(u) = z(x_a,u B) + β·z(c_u)``, ``z`` standardising each user's row.

    ``a``, ``w``, ``λ``, ``p`` and ``β`` are the best point of their ``segflow_*`` grids on the
    validation carve (NDCG@10). Without embeddings ``β`` is 0. With no rating at or above the
    threshold (implicit data) every interaction counts as liked and it reduces to EASE.

    Args:
        config: ranker settings (``like_threshold`` and the ``segflow_*`` grids).
    """

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()
        bad = [p for p in self.config.segflow_dropouts if not 0.0 <= p < 1.0]
        if bad:
            raise ConfigError(f"ranker.segflow_dropouts must lie in [0, 1) (given: {bad})")

    def _fit_model(self, data: _Data, items: pl.DataFrame | None, emb: Embeddings | None, seed: int) -> None:
        cfg = self.config
        self.content_ = _content_similarity(self.items_, emb, cfg.content_neighbors) if emb is not None else None
        if self.content_ is None:
            logger.info("SegflowRanker: no item embeddings given; the content blend is off")
        betas = cfg.segflow_content_weights if self.content_ is not None else [0.0]
        like_weights, target_weights = cfg.segflow_like_weights, cfg.segflow_target_weights
        if (data.liked != data.x).nnz == 0:
            # every interaction liked (implicit data): X + a·L and X + w·L are multiples of X, and the scores are
            # standardised per user with a scale-free ridge, so a and w change nothing: try one of each
            like_weights, target_weights = like_weights[:1], target_weights[:1]
            logger.info("SegflowRanker: every interaction counts as liked; the like and target weights are not "
                        "searched (%d candidates instead of %d)", len(cfg.segflow_reg_grid) * len(cfg.segflow_dropouts)
                        * len(betas), len(cfg.segflow_like_weights) * len(cfg.segflow_target_weights)
                        * len(cfg.segflow_reg_grid) * len(cfg.segflow_dropouts) * len(betas))  # fmt: skip
        grid = [{"a": a, "reg": lam, "dropout": p, "w": w, "beta": b}
                for a in like_weights for lam in cfg.segflow_reg_grid for p in cfg.segflow_dropouts
                for w in target_weights for b in betas]  # fmt: skip
        self.params_ = grid[0] if len(grid) == 1 else self._validate(grid, seed)
        p = self.params_
        parts = _LikedEase(data, p["a"])
        b0, bl = parts.weights(p["reg"], p["dropout"])
        self.b_ = b0 + p["w"] * bl
        self._x_in = parts.x_in

    def _validate(self, grid: list[dict], seed: int) -> dict:
        """Score every grid point on the validation carve, sharing work between neighbours of the grid."""
        carve = self._carve(seed)
        seen = carve.fit.x[carve.users]
        results: list[tuple[float, dict]] = []
        for a in dict.fromkeys(g["a"] for g in grid):
            parts = _LikedEase(carve.fit, a)
            rows = parts.x_in[carve.users]
            content = _zscore(np.asarray(rows @ self.content_.T)) if self.content_ is not None else None
            sub = [g for g in grid if g["a"] == a]
            for reg, drop in dict.fromkeys((g["reg"], g["dropout"]) for g in sub):
                b0, bl = parts.weights(reg, drop)
                for w in dict.fromkeys(g["w"] for g in sub if (g["reg"], g["dropout"]) == (reg, drop)):
                    base = _zscore(np.asarray(rows @ (b0 + w * bl)))
                    for g in sub:
                        if (g["reg"], g["dropout"], g["w"]) == (reg, drop, w):
                            s = base + g["beta"] * content if g["beta"] and content is not None else base
                            results.append((_validation_ndcg(s, seen, carve.relevant), g))
        return self._record(results, len(carve.users))

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        x = self._x_in[rows]
        out = _zscore(np.asarray(x @ self.b_))
        if self.params_["beta"] and self.content_ is not None:
            out += self.params_["beta"] * _zscore(np.asarray(x @ self.content_.T))
        return out


class _LikedEase:
    """The parts of rating-aware EASE that do not depend on the ridge or the target weight.

    With ``X_a = X + a·L`` and target ``Y_w = X + w·L``: ``B_w = B_0 + w·B_L`` where ``B_0`` and
    ``B_L`` solve the zero-diagonal problem for targets ``X`` and ``L`` (the constraint's
    multipliers are linear in the target too).
    """

    def __init__(self, data: _Data, a: float) -> None:
        self.x_in = (data.x + a * data.liked).tocsr()
        xt = self.x_in.T.tocsr()
        self.gram = (xt @ self.x_in).toarray()
        self.xy0 = (xt @ data.x).toarray()
        self.xyl = (xt @ data.liked).toarray()
        self.scale = float(self.x_in.power(2).sum() / max(data.x.nnz, 1))  # mean squared input weight

    def weights(self, reg: float, dropout: float) -> tuple[np.ndarray, np.ndarray]:
        """``(B_0, B_L)`` for ridge ``reg·scale + dropout/(1-dropout)·diag(X_aᵀX_a)``."""
        g = self.gram.copy()
        d = np.diag(self.gram)
        g[np.diag_indices_from(g)] += reg * self.scale + (dropout / (1.0 - dropout)) * d
        p = np.linalg.inv(g)
        dp = np.diag(p)
        out = []
        for xy in (self.xy0, self.xyl):
            c = p @ xy
            b = c - p * (np.diag(c) / dp)[None, :]
            np.fill_diagonal(b, 0.0)
            out.append(b)
        return out[0], out[1]


# ----------------------------------------------------------------------------- factory and segments


def make_ranker(name: str, config: RankerConfig | None = None) -> Ranker:
    """Build an unfitted ranker by name.

    Args:
        name: one of ``RANKERS``: most-popular, item-knn, ease, rp3beta, segflow.
        config: ranker settings; defaults when None.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid ones).
    """
    config = config or RankerConfig()
    classes: dict[str, type[_MatrixRanker]] = {
        "most-popular": MostPopular, "item-knn": ItemKNN, "ease": EASE, "rp3beta": RP3beta, "segflow": SegflowRanker,
    }  # fmt: skip
    if name not in classes:
        raise ValueError(f"unknown ranker {name!r}; expected one of: {', '.join(RANKERS)}")
    return classes[name](config)  # type: ignore[return-value]


def segment_top_items(recs: pl.DataFrame, assignments: pl.DataFrame, *, train: pl.DataFrame | None = None,
                      items: pl.DataFrame | None = None, n: int = 10, like_threshold: float = 4.0) -> pl.DataFrame:  # fmt: skip
    """What to recommend to each segment: the items most often in its members' top-k lists.

    ``rec_share`` = share of the segment's members whose list holds the item (ties: higher
    ``liked_share``, then smaller item id). ``liked_share`` = share of the members who rated
    the item at or above ``like_threshold`` in ``train``; ``lift`` = that share over the share
    among all users in ``train`` (both null without ``train``).

    Args:
        recs: recommendations of the segment members (schema ``RECOMMENDATIONS``).
        assignments: ``user_id`` and ``segment_id`` of every user (noise -1 is a segment here too).
        train: train ratings, for ``liked_share`` and ``lift``.
        items: the catalogue, for ``title``.
        n: items per segment.
        like_threshold: train ratings at or above it are likes.

    Returns:
        Frame with schema ``SEGMENT_ITEMS``, by segment then rank.
    """
    a = assignments.select(pl.col("user_id").cast(pl.String), pl.col("segment_id").cast(pl.Int32))
    sizes = a.group_by("segment_id").len().rename({"len": "size"})
    joined = recs.join(a, on="user_id", how="inner")
    agg = (joined.group_by("segment_id", "item_id")
           .agg(pl.col("user_id").n_unique().alias("n_rec"), pl.col("score").mean().alias("mean_score"))
           .join(sizes, on="segment_id").with_columns((pl.col("n_rec") / pl.col("size")).alias("rec_share")))  # fmt: skip
    if train is not None:
        liked = train.filter(pl.col("rating") >= like_threshold).select(
            pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String)).unique()  # fmt: skip
        n_all = max(train["user_id"].n_unique(), 1)
        overall = liked.group_by("item_id").len().with_columns((pl.col("len") / n_all).alias("base")).drop("len")
        seg_liked = (liked.join(a, on="user_id").group_by("segment_id", "item_id").len()
                     .rename({"len": "n_liked"}))  # fmt: skip
        agg = (agg.join(seg_liked, on=["segment_id", "item_id"], how="left")
               .join(overall, on="item_id", how="left")
               .with_columns((pl.col("n_liked").fill_null(0) / pl.col("size")).alias("liked_share"))
               .with_columns(pl.when(pl.col("base") > 0).then(pl.col("liked_share") / pl.col("base"))
                             .otherwise(None).alias("lift")))  # fmt: skip
    else:
        agg = agg.with_columns(pl.lit(None, pl.Float64).alias("liked_share"), pl.lit(None, pl.Float64).alias("lift"))
    key = agg["item_id"].cast(pl.Int64, strict=False)
    agg = agg.with_columns((key if key.null_count() == 0 else agg["item_id"].rank("dense")).alias("_key"))
    agg = (agg.sort(["segment_id", "rec_share", "liked_share", "_key"], descending=[False, True, True, False],
                    nulls_last=True)
           .group_by("segment_id", maintain_order=True).head(n)
           .with_columns(pl.int_range(1, pl.len() + 1).over("segment_id").cast(pl.Int32).alias("rank")))  # fmt: skip
    if items is not None and "title" in items.columns:
        titles = items.select(pl.col("item_id").cast(pl.String), pl.col("title").cast(pl.String))
        agg = agg.join(titles, on="item_id", how="left")
    else:
        agg = agg.with_columns(pl.lit(None, pl.String).alias("title"))
    return agg.select([pl.col(c).cast(t) for c, t in SEGMENT_ITEMS.items()]).sort(["segment_id", "rank"])


def recommend_for_segment(ranker: Ranker, user_ids: Sequence[str], *, n: int = 10, k: int = 10,
                          train: pl.DataFrame | None = None, items: pl.DataFrame | None = None,
                          like_threshold: float = 4.0) -> pl.DataFrame:  # fmt: skip
    """Items to recommend to one segment: its members' top-``k`` lists, aggregated.

    Args:
        ranker: a fitted ranker.
        user_ids: the segment's members.
        n: items returned.
        k: list length per member.
        train, items, like_threshold: as in :func:`segment_top_items`.

    Returns:
        Frame with schema ``SEGMENT_ITEMS`` (``segment_id`` 0).
    """
    members = list(dict.fromkeys(str(u) for u in user_ids))
    recs = ranker.recommend(members, k, exclude_seen=True)
    assignments = pl.DataFrame({"user_id": members, "segment_id": [0] * len(members)},
                               schema={"user_id": pl.String, "segment_id": pl.Int32})  # fmt: skip
    return segment_top_items(recs, assignments, train=train, items=items, n=n, like_threshold=like_threshold)


@dataclass(frozen=True)
class Rankings:
    """Top-k lists of every ranker for the test users, and what to recommend to each segment.

    ``by_segment``: segment id -> (item id, title, share of the segment's members whose list holds it), best first.
    """

    recs: dict[str, pl.DataFrame]
    by_segment: dict[int, list[tuple[str, str, float]]] = field(default_factory=dict)
    primary: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


def rank_test_users(split: Split, dataset: Dataset, items: Embeddings, segmentation: Segmentation,
                    config: RankerConfig, evaluation: EvalConfig, seed: int) -> Rankings:  # fmt: skip
    """The flow's rank stage: fit each configured ranker on train and list top-k unseen items for every test user;
    with the last (primary) ranker, what to recommend to each segment (:func:`segment_top_items` of every member's
    list, as ``Rankings.by_segment``)."""
    train = split.train_full
    test_users = split.test["user_id"].unique().sort().to_list()
    primary = config.rankers[-1]
    recs, seconds, by_segment = {}, {}, {}
    for name in config.rankers:
        t0 = time.perf_counter()
        ranker = make_ranker(name, config).fit(train, items=dataset.items, item_embeddings=items, seed=seed,
                                               implicit=dataset.implicit)  # fmt: skip
        recs[name] = ranker.recommend(test_users, evaluation.k, exclude_seen=True)
        if name == primary:  # what to recommend to each segment, from every member's list
            everyone = ranker.recommend(segmentation.assignments["user_id"].to_list(), evaluation.k, exclude_seen=True)
            by_segment = _segment_lists(segment_top_items(everyone, segmentation.assignments, items=dataset.items,
                                                          n=evaluation.k))  # fmt: skip
        seconds[name] = round(time.perf_counter() - t0, 3)
    return Rankings(recs, by_segment, primary, seconds)


def _segment_lists(top: pl.DataFrame) -> dict[int, list[tuple[str, str, float]]]:
    """``SEGMENT_ITEMS`` rows as segment id -> (item id, title (the id where the catalogue has none), rec_share)."""
    out: dict[int, list[tuple[str, str, float]]] = {}
    for sid, iid, title, share in top.select("segment_id", "item_id", "title", "rec_share").iter_rows():
        out.setdefault(int(sid), []).append((iid, iid if title is None else title, round(share, 4)))
    return out
