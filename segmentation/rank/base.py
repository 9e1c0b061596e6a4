"""What every ranker shares: the :class:`Ranker` protocol and :class:`MatrixRanker`, the plumbing under them.

:class:`MatrixRanker` turns train interactions into sparse matrices over fixed vocabularies
(:class:`TrainMatrices`), carves a validation part of train to choose hyper-parameters (NDCG@10,
:func:`validation_ndcg`), and recommends from the dense scores a subclass computes, unknown users getting
the most popular items. A family of rankers subclasses it with ``_fit_model`` and ``_scores``.
"""

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self, TypeAlias

import numpy as np
import polars as pl
import scipy.sparse as sp

from embeddings.encoder import Embeddings
from embeddings.partitions import Partitions, in_process
from segmentation._errors import ConfigError, DataError, check_is_fitted
from segmentation.config import RankerConfig
from segmentation.data.contracts import Vocab

__all__ = [
    "RECOMMENDATIONS",
    "Candidates",
    "Carve",
    "MatrixRanker",
    "Ranker",
    "RankingSample",
    "Rankings",
    "TrainMatrices",
    "carve_mask",
    "dense_mib",
    "top_k",
    "lists_ndcg",
    "recommend_in_partitions",
    "train_matrices",
    "validation_ndcg",
    "zscore",
]

logger = logging.getLogger(__name__)

#: Output of :meth:`Ranker.recommend`: one row per (user, list position).
RECOMMENDATIONS = pl.Schema({"user_id": pl.String, "item_id": pl.String, "rank": pl.Int32, "score": pl.Float64})
#: A list of item ids allowed for every user, or a (user_id, item_id) frame of per-user candidates.
Candidates: TypeAlias = Sequence[str] | pl.DataFrame | None

_CHUNK = 1024
_CHUNK_CELLS = 1 << 24  # scores held at once while recommending (128 MiB of float64); wide catalogues: fewer users
_VALID_K = 10
#: n_items x n_items float64 tables a dense ranker holds at its peak (EASE: Gram, eigenvectors or inverse, weights,
#: product; the segflow ranker: Gram, two cross products, inverse, weights, content similarity).
DENSE_TABLES = 6


def dense_mib(n_items: int) -> float:
    """Estimated peak MiB of a dense items x items ranker over ``n_items`` items (``DENSE_TABLES`` float64 tables)."""
    return DENSE_TABLES * 8.0 * n_items * n_items / 2**20


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
class TrainMatrices:
    """Train interactions as matrices over fixed vocabularies.

    Attributes:
        x: (n_users, n_items) CSR float64, 1 where the user interacted with the item.
        r: same pattern, holding the rating (the latest one when a pair repeats).
        liked: same pattern, 1 where the rating is at or above the like threshold.
    """

    x: sp.csr_matrix
    r: sp.csr_matrix
    liked: sp.csr_matrix


def train_matrices(
    frame: pl.DataFrame, users: Vocab, items: Vocab, like_threshold: float, implicit: bool = False
) -> TrainMatrices:
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
    return TrainMatrices(x, r, liked)


def top_k(scores: np.ndarray, k: int) -> list[np.ndarray]:
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


def zscore(m: np.ndarray) -> np.ndarray:
    """Standardise each row (mean 0, sd 1); constant rows become 0."""
    sd = m.std(axis=1, keepdims=True)
    return (m - m.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)


def validation_ndcg(scores: np.ndarray, seen: sp.csr_matrix, relevant: sp.csr_matrix, k: int = _VALID_K) -> float:
    """Mean binary NDCG@k of dense ``scores`` rows, seen items excluded (every row has a relevant item)."""
    s = scores.copy()
    r_idx, c_idx = seen.nonzero()
    s[r_idx, c_idx] = -np.inf
    return lists_ndcg(top_k(s, k), relevant, k)


def lists_ndcg(tops: Sequence[np.ndarray], relevant: sp.csr_matrix, k: int = _VALID_K) -> float:
    """Mean binary NDCG@k of top-k lists (item indices, best first; one per row of ``relevant``, which has an item)."""
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    lens = np.array([len(t) for t in tops])
    rows = np.repeat(np.arange(len(tops)), lens)
    hits = np.asarray(relevant.tocsr()[rows, np.concatenate(tops) if len(tops) else rows]).ravel() > 0
    pos = np.concatenate([np.arange(n) for n in lens]) if len(tops) else rows
    dcg = np.bincount(rows, weights=hits * disc[pos], minlength=len(tops))
    n_rel = np.minimum(np.diff(relevant.tocsr().indptr), k)
    idcg = np.cumsum(disc)[np.maximum(n_rel, 1) - 1]
    return float(np.mean(dcg / idcg)) if len(tops) else 0.0


def carve_mask(n_rows: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The rows of train a validation carve holds out: ``round(n_rows * fraction)`` of them, drawn by ``rng``."""
    mask = np.zeros(n_rows, dtype=bool)
    mask[rng.permutation(n_rows)[: int(round(n_rows * fraction))]] = True
    return mask


@dataclass(frozen=True)
class Carve:
    """A validation carve: fit matrices, the scored users' rows, their seen and relevant items."""

    fit: TrainMatrices
    users: np.ndarray
    relevant: sp.csr_matrix


class MatrixRanker:
    """Shared plumbing of the rankers: vocabularies, matrices, validation carve, scoring and top-k.

    Subclasses implement ``_fit_model(data, items, item_embeddings, rng)`` and ``_scores(rows)``
    (dense ``(len(rows), n_items)`` float64 scores for known users' rows).
    """

    config: RankerConfig
    #: The hyper-parameters fitted or chosen on validation (numbers and names, as metrics.json records them).
    params_: dict[str, Any]
    #: Holds items x items (or users x items) dense tables: capped by ``max_items``, bound by ``dense_budget_mib``.
    dense: ClassVar[bool] = True

    def __init__(self, config: RankerConfig | None = None) -> None:
        """Every ranker is built from its settings alone (:func:`segmentation.rank.factory.make_ranker`)."""
        self.config = config or RankerConfig()

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
        n_dense = min(len(item_ids), self.config.max_items)
        over = self.dense and dense_mib(n_dense) > self.config.dense_budget_mib and self._over_budget(n_dense)
        if self.dense and not over and len(item_ids) > self.config.max_items:
            top = counts.sort(["len", "item_id"], descending=[True, False]).head(self.config.max_items)
            logger.warning("%s keeps the %d most popular of %d items (ranker.max_items)", type(self).__name__,
                           self.config.max_items, len(item_ids))  # fmt: skip
            item_ids = top["item_id"].to_list()
        self.items_ = Vocab.from_ids(_id_order(item_ids))
        self.users_ = Vocab.from_ids(_id_order(train["user_id"].to_list()))
        self.implicit_ = implicit
        self.data_ = train_matrices(train, self.users_, self.items_, self.config.like_threshold, implicit)
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

    def _over_budget(self, n_items: int) -> bool:
        """A dense ranker over more items than ``dense_budget_mib`` allows: refuse, or (the segflow ranker) return
        True after arranging to fit without dense tables (then ``max_items`` does not cut the catalogue)."""
        raise ConfigError(f"{type(self).__name__}: {n_items} items need about {dense_mib(n_items):,.0f} MiB of dense "
                          f"items x items tables, over ranker.dense_budget_mib = {self.config.dense_budget_mib}; use "
                          "the 'als' ranker in ranker.rankers, or raise the budget")  # fmt: skip

    def _fit_model(self, data: TrainMatrices, items: pl.DataFrame | None, emb: Embeddings | None, seed: int) -> None:
        raise NotImplementedError

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # -- validation -------------------------------------------------------------------------------

    def _carve(self, seed: int, max_users: int | None = None) -> Carve:
        """Carve ``valid_fraction`` of train rows; keep users with a liked carved item (at most max_valid_users).

        With ``max_users`` (0 or None: no cap) below the number of train users, the carve is that of a seeded uniform
        sample of ``max_users`` users: ``fit`` holds their rows only (in user order), ``users`` are rows of it, and
        the users scored are drawn among them. Without a cap, or within it, the carve is the one of every user.
        """
        rng = np.random.default_rng(seed)
        train = self._train
        m = pl.Series(carve_mask(train.height, self.config.valid_fraction, rng))
        fit = train_matrices(train.filter(~m), self.users_, self.items_, self.config.like_threshold, self.implicit_)
        valid = train_matrices(train.filter(m), self.users_, self.items_, self.config.like_threshold, self.implicit_)
        liked = valid.liked - valid.liked.multiply(fit.x)  # a carved pair also left in the fit part is not held out
        liked.eliminate_zeros()
        n_users = len(self.users_)
        if max_users and n_users > max_users:
            sample = np.sort(rng.choice(n_users, max_users, replace=False))
            nnz = fit.x.nnz
            fit = TrainMatrices(fit.x[sample], fit.r[sample], fit.liked[sample])
            liked = liked[sample]
            logger.info("%s: validation grid on a seeded uniform sample of %s of the %s train users (%s of the carve's "
                        "%s fit interactions), over ranker.grid_max_users = %s; the final fit on every user",
                        type(self).__name__, f"{max_users:,}", f"{n_users:,}", f"{fit.x.nnz:,}", f"{nnz:,}",
                        f"{max_users:,}")  # fmt: skip
        users = np.flatnonzero(np.diff(liked.indptr) > 0)
        if len(users) > self.config.max_valid_users:
            users = np.sort(rng.choice(users, self.config.max_valid_users, replace=False))
        if len(users) == 0:
            raise DataError(f"{type(self).__name__}: the validation carve holds no liked item; give more data or "
                            "fix the hyper-parameters in the ranker config")  # fmt: skip
        return Carve(fit, users, liked[users])

    def _select(self, grid: list[dict], score: Callable[[Carve, dict], np.ndarray], seed: int) -> dict:
        """The grid point with the best validation NDCG@10 (the first one on ties)."""
        if len(grid) == 1:
            return grid[0]
        carve = self._carve(seed)
        seen = carve.fit.x[carve.users]
        results = [(validation_ndcg(score(carve, params), seen, carve.relevant), params) for params in grid]
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
        step = max(1, min(_CHUNK, _CHUNK_CELLS // max(len(self.items_), 1)))
        for start in range(0, len(users), step):
            chunk = users[start : start + step]
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
            for u, idx, row in zip(chunk, top_k(scores, k), scores):
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


def _recommend_block(users: list[str], ranker: Ranker, k: int, exclude_seen: bool) -> pl.DataFrame:
    """One partition of :func:`recommend_in_partitions`: a block of users' lists."""
    return ranker.recommend(users, k, exclude_seen=exclude_seen)


def recommend_in_partitions(ranker: Ranker, user_ids: Sequence[str], k: int = 10, *, exclude_seen: bool = True,
                            partitions: Partitions | None = None) -> pl.DataFrame:  # fmt: skip
    """``ranker.recommend(user_ids, k)``, scored and cut to top-k in blocks of users where ``partitions`` runs them.

    A user's list depends on that user's row alone, and a block of ``partitions.rows`` users (a multiple of the
    rankers' own batches of 1,024 users where the catalogue allows) is scored in the same batches as one call,
    so the lists are those of one call. The fitted ranker goes to each executor once. Without ``partitions``
    this is one call.
    """
    if partitions is None:
        return ranker.recommend(user_ids, k, exclude_seen=exclude_seen)
    users = list(dict.fromkeys(str(u) for u in user_ids))
    blocks = [users[lo:hi] for lo, hi in in_process(partitions).blocks(len(users))]
    done = list(partitions.map(_recommend_block, blocks, ranker, k, exclude_seen))
    return pl.concat(done, how="vertical") if done else pl.DataFrame(schema=RECOMMENDATIONS)


@dataclass(frozen=True)
class RankingSample:
    """The test users the top-k lists were made for: every one, or a seeded uniform sample of ``max_users``.

    Attributes:
        users: the users listed (sorted).
        n_test_users: test users there were.
        max_users: the cap (``evaluate.ranking_max_users``; None or 0: none).
    """

    users: tuple[str, ...]
    n_test_users: int
    max_users: int | None

    @property
    def sampled(self) -> bool:
        """Whether the lists cover fewer users than the test split holds."""
        return len(self.users) < self.n_test_users

    def summary(self) -> dict[str, Any]:
        """What ``metrics.json`` says under ``ranking_sample``."""
        note = (f"ranking and beyond-accuracy figures are over a uniform sample of {len(self.users):,} of the "
                f"{self.n_test_users:,} test users drawn with the run's seed (evaluate.ranking_max_users = "
                f"{self.max_users:,}); their confidence intervals are bootstrapped over the sampled users"
                if self.sampled else "ranking and beyond-accuracy figures are over every test user")  # fmt: skip
        return {"sampled": self.sampled, "n_users": len(self.users), "n_test_users": self.n_test_users,
                "max_users": self.max_users or None, "note": note}  # fmt: skip


@dataclass(frozen=True)
class Rankings:
    """Top-k lists of every ranker for the test users, and what to recommend to each segment.

    ``by_segment``: segment id -> (item id, title, share of the segment's members whose list holds it), best first.
    ``sample``: the test users the lists were made for (None: every test user).
    ``cold_start``: the lists of the sparse test users that the cold-start stage's ranking gate covers, from the
    blend it kept (``segmentation.rank.cold.ColdStartLists``); None when it kept none. ``recs`` hold every ranker's
    own lists; :meth:`served` the lists the run gives.
    """

    recs: dict[str, pl.DataFrame]
    by_segment: dict[int, list[tuple[str, str, float]]] = field(default_factory=dict)
    primary: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    sample: RankingSample | None = None
    cold_start: pl.DataFrame | None = None

    def served(self) -> pl.DataFrame:
        """The primary ranker's lists, those of the users in ``cold_start`` replaced by their cold-start lists."""
        own = self.recs[self.primary]
        if self.cold_start is None or self.cold_start.height == 0:
            return own
        users = self.cold_start["user_id"].unique().implode()
        return pl.concat([own.filter(~pl.col("user_id").is_in(users)), self.cold_start])
