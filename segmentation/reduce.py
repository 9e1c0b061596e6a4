"""UMAP reduction of user vectors, fitted on a sample past ``sample_size`` users.

UMAP is imported on first fit, not at module import: its numba compilation costs
35-55 s per process, and a run whose reduction is cached never pays it.
"""

import logging
import time
import warnings

import numpy as np

from segmentation._errors import DataError, check_is_fitted

__all__ = ["IdentityReducer", "Reducer"]

logger = logging.getLogger(__name__)


class Reducer:
    """UMAP with sklearn-style ``fit``/``transform``; large inputs are fitted on a sample.

    Args:
        n_components: output dimensions.
        n_neighbors: UMAP's local neighbourhood size.
        min_dist: UMAP's minimum distance (0 packs clusters tightly, good for clustering).
        metric: UMAP metric.
        sample_size: above this many rows, fit on a uniform sample and ``transform`` the rest.
        random_state: seed; a seeded UMAP is reproducible (and single-threaded).

    Attributes:
        embedding_: (n, n_components) float32 coordinates of the rows given to ``fit``.
        sample_: indices of the rows UMAP was fitted on (all rows below ``sample_size``).
    """

    def __init__(self, n_components: int = 5, *, n_neighbors: int = 15, min_dist: float = 0.0,
                 metric: str = "cosine", sample_size: int = 50_000, random_state: int | None = None) -> None:  # fmt: skip
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.sample_size = sample_size
        self.random_state = random_state
        self.umap_ = None
        self.embedding_: np.ndarray | None = None
        self.sample_: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> "Reducer":
        """Fit on ``x`` ((n, d) float32) and keep the coordinates of every row in ``embedding_``."""
        n = len(x)
        if n <= self.n_components + 1:
            raise DataError(
                f"reduce: {n} users are too few for a {self.n_components}-d UMAP; need at least {self.n_components + 2}"
            )
        if not np.isfinite(x).all():
            raise DataError("reduce: input vectors contain NaN or infinity")
        t0 = time.perf_counter()
        import umap

        t1 = time.perf_counter()
        n_neighbors = min(self.n_neighbors, n - 1)
        self.umap_ = umap.UMAP(n_components=self.n_components, n_neighbors=n_neighbors, min_dist=self.min_dist,
                               metric=self.metric, random_state=self.random_state,
                               init="spectral" if n > self.n_components + 10 else "random")  # fmt: skip
        with warnings.catch_warnings():
            # a seeded UMAP runs single-threaded by design (reproducibility); UMAP warns about it every fit
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            emb = self._fit_embed(x, n)
        self.embedding_ = emb.astype(np.float32)
        logger.info("UMAP %d-d on %d users (fitted on %d) in %.1fs (+%.1fs import)", self.n_components, n,
                    len(self.sample_), time.perf_counter() - t1, t1 - t0)  # fmt: skip
        return self

    def _fit_embed(self, x: np.ndarray, n: int) -> np.ndarray:
        if n > self.sample_size:
            rng = np.random.default_rng(self.random_state)
            self.sample_ = np.sort(rng.choice(n, self.sample_size, replace=False))
            emb = np.empty((n, self.n_components), dtype=np.float32)
            emb[self.sample_] = self.umap_.fit_transform(x[self.sample_])
            rest = np.setdiff1d(np.arange(n), self.sample_)
            emb[rest] = self.umap_.transform(x[rest])
        else:
            self.sample_ = np.arange(n)
            emb = self.umap_.fit_transform(x).astype(np.float32)
        return emb

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).embedding_

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Coordinates of new rows in the fitted space."""
        check_is_fitted(self, "umap_")
        return self.umap_.transform(x).astype(np.float32)


class IdentityReducer:
    """Null reducer: passes vectors through (for already low-dimensional data, or to compare)."""

    def __init__(self) -> None:
        self.embedding_: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> "IdentityReducer":
        self.embedding_ = np.asarray(x, dtype=np.float32)
        return self

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).embedding_

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32)
