"""RP3beta: a three-step random walk on the user-item graph with popularity damped."""

import numpy as np
import polars as pl
import scipy.sparse as sp

from embeddings.encoder import Embeddings
from segmentation.config import RankerConfig
from segmentation.rank.base import Carve, MatrixRanker, TrainMatrices

__all__ = ["RP3beta"]


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


class RP3beta(MatrixRanker):
    """RP3beta (Paudel et al., "Updatable, accurate, diverse, and scalable recommendations", TiiS 2016).

    A 3-step random walk user→item→user→item with transition probabilities raised to ``α``
    and the destination's popularity damped by ``deg^β``; ``α`` and ``β`` are the best pair of
    ``rp3_alpha_grid`` × ``rp3_beta_grid`` on the validation carve.

    Args:
        config: ranker settings (``rp3_alpha_grid``, ``rp3_beta_grid``).
    """

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()

    def _fit_model(self, data: TrainMatrices, items: pl.DataFrame | None, emb: Embeddings | None, seed: int) -> None:
        grid = [{"alpha": a, "beta": b} for a in self.config.rp3_alpha_grid for b in self.config.rp3_beta_grid]

        def score(carve: Carve, p: dict) -> np.ndarray:
            return np.asarray(carve.fit.x[carve.users] @ _rp3_weights(carve.fit.x, p["alpha"], p["beta"]))

        self.params_ = self._select(grid, score, seed)
        self.w_ = _rp3_weights(data.x, self.params_["alpha"], self.params_["beta"])

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.data_.x[rows] @ self.w_)
