"""ALS, the matrix factorisation of implicit feedback (Hu, Koren and Volinsky 2008), through the ``implicit`` package.

Its cost grows with the interactions and the factors, not with items² or users x items: fitting is a
conjugate-gradient sweep over the non-zeros on ``ranker.threads`` threads, and top-k goes through
``implicit``'s batched ``recommend`` (already-seen items filtered there), so no users x items or
items x items table is ever built. It is the ranker that takes over above ``ranker.dense_budget_mib``
(:mod:`~segmentation.rank.sizing`).
"""

import logging
from collections.abc import Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from embeddings.encoder import Embeddings
from segmentation._errors import check_is_fitted
from segmentation.config import RankerConfig
from segmentation.rank.base import RECOMMENDATIONS, Candidates, MatrixRanker, TrainMatrices, lists_ndcg

__all__ = ["ALS"]

logger = logging.getLogger(__name__)

_BATCH = 4096  # users per call of implicit's recommend
_FILTERED = float(np.finfo(np.float32).min)  # implicit's score of a filtered item


class ALS(MatrixRanker):
    """Implicit-feedback ALS (Hu, Koren and Volinsky, ICDM 2008) from ``implicit``.

    Preference is 1 on an interaction and 0 elsewhere; the confidence of an interaction is
    ``als_alpha`` x its weight: on rated data the liked indicator (rating at or above
    ``like_threshold``, as every ranker here defines liked; a rating below it is a seen item, filtered
    from the lists, with no positive weight), on implicit data ``log1p`` of the count (as
    :func:`~segmentation.rank.base.train_matrices` defines it). Factors, regularisation and sweeps are
    the best point of ``als_factors_grid`` x ``als_reg_grid`` x ``als_iterations_grid`` on the
    validation carve (NDCG@10, the protocol of every ranker); one fit per (factors, regularisation)
    is scored after each listed sweep. Above ``grid_max_users`` train users the grid's fits see only a seeded
    uniform sample of that many users' rows (the carve's own draw, logged), since each candidate is a whole fit; the
    final fit with the chosen point sees every user. ``score(u, i) = p_u · q_i``.

    Args:
        config: ranker settings (``als_*`` grids, ``als_alpha``, ``threads``, ``like_threshold``, ``grid_max_users``).
    """

    dense = False

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()

    def _confidence(self, data: TrainMatrices) -> sp.csr_matrix:
        c = (data.r if self.implicit_ else data.liked).astype(np.float32).tocsr()
        c.eliminate_zeros()
        return c

    def _model(self, factors: int, reg: float, iterations: int, seed: int) -> AlternatingLeastSquares:
        with threadpool_limits(1, "blas"):  # implicit warns at construction when BLAS runs threads of its own
            return AlternatingLeastSquares(factors=factors, regularization=reg, alpha=self.config.als_alpha,
                                           iterations=iterations, num_threads=self.config.threads,
                                           random_state=seed)  # fmt: skip

    def _fit_model(self, data: TrainMatrices, items: pl.DataFrame | None, emb: Embeddings | None, seed: int) -> None:
        cfg = self.config
        sweeps = sorted(set(cfg.als_iterations_grid))
        pairs = [(f, r) for f in cfg.als_factors_grid for r in cfg.als_reg_grid]
        if len(pairs) == 1 and len(sweeps) == 1:
            self.params_ = {"factors": pairs[0][0], "reg": pairs[0][1], "iterations": sweeps[0]}
        else:
            carve = self._carve(seed, cfg.grid_max_users)  # above the cap, a sample of the users: the grid's fits
            seen = carve.fit.x[carve.users].tocsr()
            conf = self._confidence(carve.fit)
            results: list[tuple[float, dict]] = []
            for factors, reg in pairs:
                model = self._model(factors, reg, sweeps[-1], seed)

                def score(it: int, _seconds: float, _loss: object, model=model, factors=factors, reg=reg) -> None:
                    if it + 1 in sweeps:
                        ids, scores = model.recommend(carve.users, seen, N=10, filter_already_liked_items=True)
                        tops = [i[s > _FILTERED] for i, s in zip(ids, scores)]
                        results.append((lists_ndcg(tops, carve.relevant), {"factors": factors, "reg": reg,
                                                                            "iterations": it + 1}))  # fmt: skip

                with threadpool_limits(1, "blas"):  # implicit's advice: BLAS threads fight its own
                    model.fit(conf, show_progress=False, callback=score)
            self.params_ = self._record(results, len(carve.users))
        p = self.params_
        self.model_ = self._model(p["factors"], p["reg"], p["iterations"], seed)
        with threadpool_limits(1, "blas"):
            self.model_.fit(self._confidence(data), show_progress=False)

    def recommend(self, user_ids: Sequence[str], k: int = 10, *, exclude_seen: bool = True,
                  candidates: Candidates = None) -> pl.DataFrame:  # fmt: skip
        """Top-``k`` items per user, in batches through ``implicit``'s ``recommend`` (as :meth:`MatrixRanker.recommend`
        promises: unknown users get the most popular items, ties go to the smaller item id)."""
        check_is_fitted(self, "model_")
        if k < 1:
            raise ValueError(f"k must be >= 1 (given: {k})")
        users = list(dict.fromkeys(str(u) for u in user_ids))
        rows = self.users_.lookup(users, missing=-1)
        if isinstance(candidates, pl.DataFrame):
            return self._recommend_pairs(users, rows, k, exclude_seen, candidates)
        allowed = None
        if candidates is not None:
            j = self.items_.lookup([str(i) for i in candidates], missing=-1)
            if (j < 0).any():
                logger.warning("%d candidate items are not in the fitted catalogue and are ignored", int((j < 0).sum()))
            allowed = np.unique(j[j >= 0])
        lists: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        known = np.flatnonzero(rows >= 0)
        if allowed is None or len(allowed):
            for start in range(0, len(known), _BATCH):
                pos = known[start : start + _BATCH]
                ids, scores = self.model_.recommend(rows[pos], self.data_.x[rows[pos]].tocsr(),
                                                    N=min(k, len(self.items_)), filter_already_liked_items=exclude_seen,
                                                    items=allowed)  # fmt: skip
                for p, i, s in zip(pos, ids, scores):
                    i = i[s > _FILTERED].astype(np.int64)
                    # float64 scores of the pairs: the same whatever the batch (implicit's float32 GEMM is not)
                    s = self.model_.item_factors[i].astype(np.float64) @ self.model_.user_factors[rows[p]].astype(
                        np.float64)  # fmt: skip
                    order = np.lexsort((i, -s))
                    lists[p] = (i[order], s[order])
        unknown = np.flatnonzero(rows < 0)
        if len(unknown):
            pop = self.popularity_.astype(np.float64)
            idx = np.arange(len(pop)) if allowed is None else allowed
            best = idx[np.lexsort((idx, -pop[idx]))][:k]
            for p in unknown.tolist():
                lists[p] = (best, pop[best])
        return self._frame(users, [lists.get(p, (np.array([], np.int64), np.array([]))) for p in range(len(users))])

    def _recommend_pairs(self, users: list[str], rows: np.ndarray, k: int, exclude_seen: bool,
                         candidates: pl.DataFrame) -> pl.DataFrame:  # fmt: skip
        """Per-user candidates: score only the given (user, item) pairs."""
        if not {"user_id", "item_id"} <= set(candidates.columns):
            raise ValueError(f"a candidates frame needs user_id and item_id (given: {candidates.columns})")
        upos = {u: i for i, u in enumerate(users)}
        c = candidates.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String)).unique()
        p = np.fromiter((upos.get(u, -1) for u in c["user_id"]), np.int64, c.height)
        j = self.items_.lookup(c["item_id"], missing=-1)
        ok = (p >= 0) & (j >= 0)
        p, j = p[ok], j[ok]
        r = rows[p]
        if exclude_seen:
            seen = np.zeros(len(p), dtype=bool)
            known = r >= 0
            seen[known] = np.asarray(self.data_.x[r[known], j[known]]).ravel() > 0
            p, j, r = p[~seen], j[~seen], r[~seen]
        score = self.popularity_[j].astype(np.float64)
        known = r >= 0
        uf, itf = self.model_.user_factors, self.model_.item_factors
        score[known] = np.einsum("ij,ij->i", uf[r[known]].astype(np.float64), itf[j[known]].astype(np.float64))
        order = np.lexsort((j, -score, p))
        p, j, score = p[order], j[order], score[order]
        starts = np.searchsorted(p, np.arange(len(users)))
        ends = np.searchsorted(p, np.arange(len(users)), side="right")
        return self._frame(users, [(j[a : min(b, a + k)], score[a : min(b, a + k)]) for a, b in zip(starts, ends)])

    def _frame(self, users: list[str], lists: list[tuple[np.ndarray, np.ndarray]]) -> pl.DataFrame:
        lens = [len(i) for i, _ in lists]
        n = sum(lens)
        return pl.DataFrame({
            "user_id": np.repeat(np.array(users, dtype=object), lens) if n else [],
            "item_id": self.items_.ids[np.concatenate([i for i, _ in lists])] if n else [],
            "rank": np.concatenate([np.arange(1, m + 1) for m in lens]) if n else [],
            "score": np.concatenate([s for _, s in lists]).astype(np.float64) if n else [],
        }, schema=RECOMMENDATIONS)  # fmt: skip

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        """Dense scores of some users' rows (for callers of the :class:`MatrixRanker` plumbing; ``recommend`` never
        builds them)."""
        uf, itf = self.model_.user_factors, self.model_.item_factors
        return uf[rows].astype(np.float64) @ itf.T.astype(np.float64)
