"""EASE, the closed-form item-item autoencoder (Steck 2019), and its weights with emphasised denoising."""

import numpy as np
import polars as pl
import scipy.sparse as sp

from embeddings.encoder import Embeddings
from segmentation.config import RankerConfig
from segmentation.rank.base import Carve, MatrixRanker, TrainMatrices

__all__ = ["EASE", "ease_weights"]


def ease_weights(x_in: sp.csr_matrix, reg: float, *, dropout: float = 0.0,
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


class EASE(MatrixRanker):
    """EASE^R on the binary matrix (Steck, "Embarrassingly shallow autoencoders", WWW 2019).

    ``B = I - P·diag(1/diag P)``, ``P = (XᵀX + λI)⁻¹``; ``score(u) = x_u B``. λ is
    ``ease_reg``, or the best of ``ease_reg_grid`` on the validation carve.

    Args:
        config: ranker settings (``ease_reg``, ``ease_reg_grid``).
    """

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()

    def _fit_model(self, data: TrainMatrices, items: pl.DataFrame | None, emb: Embeddings | None, seed: int) -> None:
        grid = (
            [{"reg": self.config.ease_reg}] if self.config.ease_reg else [{"reg": r} for r in self.config.ease_reg_grid]
        )

        def score(carve: Carve, p: dict) -> np.ndarray:
            return np.asarray(carve.fit.x[carve.users] @ ease_weights(carve.fit.x, p["reg"]))

        self.params_ = self._select(grid, score, seed)
        self.b_ = ease_weights(data.x, self.params_["reg"])

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.data_.x[rows] @ self.b_)
