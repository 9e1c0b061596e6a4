"""Item-based k-nearest neighbours over the items' rating columns."""

import numpy as np
import polars as pl
import scipy.sparse as sp

from embeddings.encoder import Embeddings
from segmentation.config import RankerConfig
from segmentation.rank.base import MatrixRanker, TrainMatrices

__all__ = ["ItemKNN"]


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


class ItemKNN(MatrixRanker):
    """Item-based kNN, rating-weighted (Sarwar et al. 2001; Deshpande & Karypis 2004).

    ``s(i, j)`` = cosine of the items' rating columns, kept for the ``knn_neighbors`` most
    similar items ``i`` of each target ``j``; ``score(u, j) = Σ_{i ∈ I_u} r_ui · s(j, i)``.

    Args:
        config: ranker settings (``knn_neighbors``).
    """

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()

    def _fit_model(self, data: TrainMatrices, items: pl.DataFrame | None, emb: Embeddings | None, seed: int) -> None:
        self.params_ = {"neighbors": self.config.knn_neighbors}
        self.sim_ = _knn_similarity(data.r, self.config.knn_neighbors)

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.data_.r[rows] @ self.sim_.T)
