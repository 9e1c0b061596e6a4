"""EASE, the closed-form item-item autoencoder (Steck 2019), and its weights with emphasised denoising."""

import numpy as np
import polars as pl
import scipy.sparse as sp

from embeddings.encoder import Embeddings
from segmentation.config import RankerConfig
from segmentation.rank.base import Carve, MatrixRanker, TrainMatrices

__all__ = ["EASE", "EIGH_FROM", "EaseSpectrum", "ease_weights"]

#: Grids of at least this many lambdas share one eigendecomposition (:class:`EaseSpectrum`); shorter ones invert per
#: lambda. Measured on a synthetic 6,000 x 2,993 log on 2 shared cores (docs/BENCHMARKS.md, "Rankers at scale"): the
#: whole fit took 69 s by one eigh against 38 s by inverses with 6 lambdas, 121 s against 158 s with 24; about 2.9 s
#: per extra lambda against 6.7 s, so the shared decomposition pays from about 14 lambdas. The default grid has 6.
EIGH_FROM = 16


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


class EaseSpectrum:
    """One eigendecomposition of the Gram matrix that serves every EASE ridge: ``G = V diag(w) Vᵀ``, so
    ``P = (G + λI)⁻¹ = V diag(1/(w+λ)) Vᵀ`` costs one matrix product per λ instead of an inverse.

    ``weights(reg)`` equals ``ease_weights(x_in, reg)`` (no dropout, no target) to rounding;
    ``scores(rows, reg)`` equals ``rows @ weights(reg)`` without forming ``B`` when there are fewer
    rows than items (``diag P = (V∘V)(1/(w+λ))``, ``rows·P = ((rows·V)/(w+λ))·Vᵀ``).
    """

    def __init__(self, x_in: sp.csr_matrix) -> None:
        self.w, self.v = np.linalg.eigh((x_in.T @ x_in).toarray())
        self._rows: tuple[sp.csr_matrix, np.ndarray] | None = None

    def weights(self, reg: float) -> np.ndarray:
        """EASE weights ``B = -P diag(1/diag P)`` with a zero diagonal, for ridge ``reg``."""
        p = (self.v * (1.0 / (self.w + reg))[None, :]) @ self.v.T
        b = -p / np.diag(p)[None, :]
        np.fill_diagonal(b, 0.0)
        return b

    def scores(self, rows: sp.csr_matrix, reg: float) -> np.ndarray:
        """``rows @ weights(reg)``: with ``B = I - P diag(1/diag P)``, ``rows·B = rows - (rows·P) / diag P``."""
        if rows.shape[0] >= rows.shape[1]:
            return np.asarray(rows @ self.weights(reg))
        if self._rows is None or self._rows[0] is not rows:
            self._rows = (rows, np.asarray(rows @ self.v))  # rows·V once for every ridge
        d = 1.0 / (self.w + reg)
        rp = (self._rows[1] * d[None, :]) @ self.v.T
        return rows.toarray() - rp / ((self.v * self.v) @ d)[None, :]


class EASE(MatrixRanker):
    """EASE^R on the binary matrix (Steck, "Embarrassingly shallow autoencoders", WWW 2019).

    ``B = I - P·diag(1/diag P)``, ``P = (XᵀX + λI)⁻¹``; ``score(u) = x_u B``. λ is
    ``ease_reg``, or the best of ``ease_reg_grid`` on the validation carve: one inverse per λ, or,
    for grids of ``EIGH_FROM`` λ or more, one eigendecomposition of the carve's Gram matrix
    (:class:`EaseSpectrum`) for all of them; the final fit is one inverse. Dense: above
    ``dense_budget_mib`` it refuses to fit (use ``als``).

    Args:
        config: ranker settings (``ease_reg``, ``ease_reg_grid``).
    """

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()

    def _fit_model(self, data: TrainMatrices, items: pl.DataFrame | None, emb: Embeddings | None, seed: int) -> None:
        grid = (
            [{"reg": self.config.ease_reg}] if self.config.ease_reg else [{"reg": r} for r in self.config.ease_reg_grid]
        )

        spectra: dict[int, EaseSpectrum] = {}
        rows: dict[int, sp.csr_matrix] = {}

        def score(carve: Carve, p: dict) -> np.ndarray:
            if len(grid) < EIGH_FROM:
                return np.asarray(carve.fit.x[carve.users] @ ease_weights(carve.fit.x, p["reg"]))
            if id(carve) not in spectra:  # one carve per fit: one eigendecomposition for the whole grid
                spectra[id(carve)] = EaseSpectrum(carve.fit.x)
            return spectra[id(carve)].scores(rows.setdefault(id(carve), carve.fit.x[carve.users]), p["reg"])

        self.params_ = self._select(grid, score, seed)
        spectra.clear()
        rows.clear()
        self.b_ = ease_weights(data.x, self.params_["reg"])

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.data_.x[rows] @ self.b_)
