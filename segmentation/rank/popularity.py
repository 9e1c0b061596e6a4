"""Most-popular: the non-personalised floor."""

import numpy as np
import polars as pl

from embeddings.encoder import Embeddings
from segmentation.config import RankerConfig
from segmentation.rank.base import MatrixRanker, TrainMatrices

__all__ = ["MostPopular"]


class MostPopular(MatrixRanker):
    """Items by how many train users chose them: the non-personalised floor.

    Args:
        config: ranker settings (only ``max_items`` and ``like_threshold`` matter).
    """

    dense = False  # one popularity vector: neither capped by max_items nor bound by dense_budget_mib

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()

    def _fit_model(self, data: TrainMatrices, items: pl.DataFrame | None, emb: Embeddings | None, seed: int) -> None:
        self.params_: dict = {}

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.tile(self.popularity_.astype(np.float64), (len(rows), 1))
