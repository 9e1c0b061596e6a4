"""Top-k rankers: most-popular, item-kNN, EASE and RP3beta over the implicit train matrix.

Every ranker has the same small contract: ``fit(train, *, items=None, item_embeddings=None,
seed=0) -> self`` and ``recommend(user_ids, k, *, exclude_seen=True) -> frame`` with
columns user_id, item_id, rank (1-based), score; ties break by smaller item id.
"""

import logging
from collections.abc import Sequence
from typing import Protocol, Self

import numpy as np
import polars as pl
import scipy.sparse as sp

from embeddings.encoder import Embeddings
from segmentation._errors import check_is_fitted
from segmentation.config import RankerConfig

__all__ = ["EASE", "RANKERS", "ItemKNN", "MostPopular", "RP3beta", "Ranker", "make_ranker"]

logger = logging.getLogger(__name__)

RECS = pl.Schema({"user_id": pl.String, "item_id": pl.String, "rank": pl.Int32, "score": pl.Float64})


class Ranker(Protocol):
    def fit(self, train: pl.DataFrame, *, items: pl.DataFrame | None = None,
            item_embeddings: Embeddings | None = None, seed: int = 0) -> Self: ...  # fmt: skip

    def recommend(self, user_ids: Sequence[str], k: int = 10, *, exclude_seen: bool = True) -> pl.DataFrame: ...


def _id_order(ids: list[str]) -> list[str]:
    try:
        return sorted(ids, key=int)
    except ValueError:
        return sorted(ids)


class _MatrixRanker:
    """Shared plumbing: vocabularies, the binary user-item matrix, scoring and top-k."""

    def _prepare(self, train: pl.DataFrame) -> sp.csr_matrix:
        self.item_ids_ = np.asarray(_id_order(train["item_id"].unique().to_list()), dtype=object)
        self.user_ids_ = np.asarray(_id_order(train["user_id"].unique().to_list()), dtype=object)
        self._ipos = {s: i for i, s in enumerate(self.item_ids_)}
        self._upos = {s: i for i, s in enumerate(self.user_ids_)}
        rows = np.fromiter((self._upos[u] for u in train["user_id"]), np.int64, train.height)
        cols = np.fromiter((self._ipos[i] for i in train["item_id"]), np.int64, train.height)
        x = sp.csr_matrix((np.ones(train.height, np.float32), (rows, cols)), shape=(len(self.user_ids_), len(self.item_ids_)))
        x.data[:] = 1.0
        self.x_ = x
        return x

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def recommend(self, user_ids: Sequence[str], k: int = 10, *, exclude_seen: bool = True) -> pl.DataFrame:
        """Top-``k`` items per user; unknown users get the most popular items."""
        check_is_fitted(self, "x_")
        out_u, out_i, out_r, out_s = [], [], [], []
        pop = np.asarray(self.x_.sum(axis=0)).ravel()
        users = list(user_ids)
        for start in range(0, len(users), 1024):
            chunk = users[start : start + 1024]
            rows = np.array([self._upos.get(u, -1) for u in chunk])
            known = rows >= 0
            scores = np.tile(pop.astype(np.float64), (len(chunk), 1))
            if known.any():
                scores[known] = self._scores(rows[known])
                if exclude_seen:
                    seen = self.x_[rows[known]]
                    s = scores[known]
                    s[seen.nonzero()] = -np.inf
                    scores[known] = s
            kk = min(k, scores.shape[1])
            # ties break by smaller item index (= smaller item id): stable sort on -score
            top = np.argsort(-scores, axis=1, kind="stable")[:, :kk]
            for u, idx, row in zip(chunk, top, scores):
                for r, j in enumerate(idx):
                    if np.isfinite(row[j]):
                        out_u.append(u)
                        out_i.append(self.item_ids_[j])
                        out_r.append(r + 1)
                        out_s.append(float(row[j]))
        return pl.DataFrame({"user_id": out_u, "item_id": out_i, "rank": out_r, "score": out_s}, schema=RECS)


class MostPopular(_MatrixRanker):
    """Items by how many train users chose them (the non-personalised floor)."""

    def fit(self, train, *, items=None, item_embeddings=None, seed=0) -> Self:
        x = self._prepare(train)
        self.pop_ = np.asarray(x.sum(axis=0)).ravel().astype(np.float64)
        return self

    def _scores(self, rows):
        return np.tile(self.pop_, (len(rows), 1))


class ItemKNN(_MatrixRanker):
    """Item-based kNN (Sarwar et al. 2001; Deshpande & Karypis 2004): cosine similarity, top-``n`` neighbours."""

    def __init__(self, neighbors: int = 50) -> None:
        self.neighbors = neighbors

    def fit(self, train, *, items=None, item_embeddings=None, seed=0) -> Self:
        x = self._prepare(train)
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        sim = (x.T @ x).toarray().astype(np.float64)
        sim /= np.maximum(np.outer(norms, norms), 1e-12)
        np.fill_diagonal(sim, 0.0)
        if self.neighbors < sim.shape[1]:
            cut = np.argpartition(-sim, self.neighbors, axis=1)[:, self.neighbors :]
            np.put_along_axis(sim, cut, 0.0, axis=1)
        self.sim_ = sim
        return self

    def _scores(self, rows):
        return np.asarray(self.x_[rows] @ self.sim_.T)


class EASE(_MatrixRanker):
    """EASE^R (Steck 2019): B = I - P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹, zero diagonal."""

    def __init__(self, reg: float = 300.0) -> None:
        self.reg = reg

    def fit(self, train, *, items=None, item_embeddings=None, seed=0) -> Self:
        x = self._prepare(train)
        g = (x.T @ x).toarray().astype(np.float64)
        g[np.diag_indices_from(g)] += self.reg
        p = np.linalg.inv(g)
        b = -p / np.diag(p)
        np.fill_diagonal(b, 0.0)
        self.b_ = b
        return self

    def _scores(self, rows):
        return np.asarray(self.x_[rows] @ self.b_)


class RP3beta(_MatrixRanker):
    """RP3beta (Paudel et al. 2016): 3-step random walk user→item→user→item, popularity damped by ``beta``."""

    def __init__(self, alpha: float = 0.8, beta: float = 0.6) -> None:
        self.alpha = alpha
        self.beta = beta

    def fit(self, train, *, items=None, item_embeddings=None, seed=0) -> Self:
        x = self._prepare(train)
        pui = sp.diags(1 / np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1)) @ x
        piu = sp.diags(1 / np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1)) @ x.T.tocsr()
        w = (piu.power(self.alpha) @ pui.power(self.alpha)).toarray()
        w /= np.power(np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1), self.beta)[None, :]
        np.fill_diagonal(w, 0.0)
        self.w_ = w
        return self

    def _scores(self, rows):
        return np.asarray(self.x_[rows] @ self.w_)


RANKERS = ("most-popular", "item-knn", "ease", "rp3beta")


def make_ranker(name: str, config: RankerConfig) -> Ranker:
    """Build a ranker by name (one of ``RANKERS``)."""
    if name == "most-popular":
        return MostPopular()
    if name == "item-knn":
        return ItemKNN(config.knn_neighbors)
    if name == "ease":
        return EASE()
    if name == "rp3beta":
        return RP3beta()
    raise ValueError(f"unknown ranker {name!r}; expected one of {', '.join(RANKERS)}")
