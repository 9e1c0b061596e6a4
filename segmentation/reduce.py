"""UMAP reduction of user vectors; past ``sample_size`` users, fitted on a sample and extended by neighbours.

UMAP is imported on first fit, not at module import: its numba compilation costs
15-55 s per process, and a run whose reduction is cached never pays it.

Large inputs: UMAP is fitted on a uniform sample; every other row gets the weighted mean
of the UMAP coordinates of its nearest sample rows, found by FAISS in a PCA projection of
the original space (:class:`SampleNeighbours`). ``umap.UMAP.transform`` would re-run the
optimisation per row and is far slower (20k rows took 65 s against 19 s for fitting 20k
rows on the benchmark machine); the neighbour extension also scored a higher ARI on planted
data (see docs/BENCHMARKS.md). ``assign="umap"`` keeps UMAP's own transform.
"""

import logging
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from segmentation._errors import DataError, check_is_fitted

if TYPE_CHECKING:  # imported on first use at run time (see above)
    import faiss
    import umap

__all__ = ["SMALL_DATA", "IdentityReducer", "Reducer", "SampleNeighbours", "exact_cosine_knn", "neighbour_weights"]

logger = logging.getLogger(__name__)

_CHUNK = 65_536


def require_users(n: int, n_components: int) -> None:
    """Raise :class:`DataError` when ``n`` users are too few for an ``n_components``-d UMAP layout."""
    if n <= n_components + 1:
        raise DataError(f"reduce: {n} users are too few for a {n_components}-d UMAP; need at least {n_components + 2}")


def neighbour_weights(dist: np.ndarray) -> np.ndarray:
    """UMAP-style weights of each row's neighbours from their distances ((q, k) → (q, k) float32, rows sum to 1).

    ``w_j = exp(-(d_j - d_1) / (d_k - d_1))``: the nearest neighbour weighs 1, the k-th ``1/e``.
    """
    d = np.sqrt(np.maximum(dist, 0.0))
    span = np.maximum(d[:, -1:] - d[:, :1], 1e-6)
    w = np.exp(-(d - d[:, :1]) / span)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def _pca_init(coords: np.ndarray, n_components: int) -> np.ndarray:
    """The first principal axes of ``coords``, scaled to UMAP's initial spread (10), as a UMAP ``init``."""
    centred = coords - coords.mean(axis=0)
    _, _, vt = np.linalg.svd(centred[:: max(1, len(centred) // 20_000)], full_matrices=False)
    out = centred @ vt[:n_components].T
    return (10.0 * out / np.maximum(np.abs(out).max(), 1e-12)).astype(np.float32)


class SampleNeighbours:
    """Nearest rows of a fitted sample for any query row, by FAISS in a PCA projection.

    Args:
        n_neighbors: neighbours returned per query.
        n_dims: PCA dimensions used for the search (None or >= input dims: no projection).
        approximate_above: use an IVF index (``nlist ~ 4 sqrt(n)``, ``nprobe`` 8) above this many sample rows.
        random_state: seed of the PCA and of the IVF training.
    """

    components_: np.ndarray | None  # set by fit (None: no projection)
    mean_: np.ndarray | None

    def __init__(self, n_neighbors: int = 15, *, n_dims: int | None = 64, approximate_above: int = 20_000,
                 random_state: int | None = None) -> None:  # fmt: skip
        self.n_neighbors = n_neighbors
        self.n_dims = n_dims
        self.approximate_above = approximate_above
        self.random_state = random_state
        self.index_: faiss.Index | None = None

    def _project(self, x: np.ndarray) -> np.ndarray:
        if self.components_ is None:
            return np.ascontiguousarray(x, dtype=np.float32)
        out = np.empty((len(x), self.components_.shape[0]), dtype=np.float32)
        for lo in range(0, len(x), _CHUNK):
            out[lo : lo + _CHUNK] = (x[lo : lo + _CHUNK] - self.mean_) @ self.components_.T
        return out

    def fit(self, sample: np.ndarray) -> "SampleNeighbours":
        """Index ``sample`` ((m, d) float32)."""
        import faiss

        m, d = sample.shape
        self.components_, self.mean_ = None, None
        if self.n_dims is not None and self.n_dims < d and m > self.n_dims:
            from sklearn.decomposition import PCA

            pca = PCA(self.n_dims, svd_solver="randomized", random_state=self.random_state).fit(sample)
            self.components_ = pca.components_.astype(np.float32)
            self.mean_ = pca.mean_.astype(np.float32)
        z = self._project(sample)
        dim = z.shape[1]
        index: faiss.Index
        if m > self.approximate_above:
            nlist = int(4 * np.sqrt(m))
            quantiser = faiss.IndexFlatL2(dim)
            index = faiss.IndexIVFFlat(quantiser, dim, nlist)
            rng = np.random.default_rng(self.random_state)
            train = z[rng.choice(m, min(m, 64 * nlist), replace=False)]
            index.cp.seed = int(rng.integers(0, 2**31 - 1))
            index.train(train)
            index.nprobe = 8
        else:
            index = faiss.IndexFlatL2(dim)
        index.add(z)
        self.index_ = index
        return self

    def kneighbors(self, x: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(q, k) int64 sample positions and (q, k) float32 weights (rows sum to 1) of the query rows' neighbours.

        Args:
            x: (n, d) vectors.
            rows: which rows of ``x`` to query (default all); read chunk by chunk, never copied whole.
        """
        check_is_fitted(self, "index_")
        index = self.index_
        assert index is not None  # what check_is_fitted checked
        rows = np.arange(len(x)) if rows is None else rows
        k = min(self.n_neighbors, index.ntotal)
        pos = np.empty((len(rows), k), dtype=np.int64)
        wts = np.empty((len(rows), k), dtype=np.float32)
        for lo in range(0, len(rows), _CHUNK):
            dist, idx = index.search(self._project(x[rows[lo : lo + _CHUNK]]), k)
            missing = idx < 0  # IVF may return fewer than k: reuse the nearest one found
            if missing.any():
                idx = np.where(missing, idx[:, :1], idx)
                dist = np.where(missing, dist[:, :1], dist)
            pos[lo : lo + _CHUNK], wts[lo : lo + _CHUNK] = idx, neighbour_weights(dist)
        return pos, wts


@dataclass(frozen=True)
class Neighbours:
    """Rows extended from a sample: ``rest`` (r,) row numbers, ``pos`` (r, k) sample positions, ``weights`` (r, k)."""

    rest: np.ndarray
    pos: np.ndarray
    weights: np.ndarray

    def spread(self, values: np.ndarray) -> np.ndarray:
        """Weighted mean of the sample rows' ``values`` ((m, c)) for every extended row: (r, c) float32."""
        out = np.zeros((len(self.rest), values.shape[1]), dtype=np.float32)
        for j in range(self.pos.shape[1]):
            out += values[self.pos[:, j]] * self.weights[:, j : j + 1]
        return out


SMALL_DATA = 4096
"""Below this many rows UMAP finds neighbours exactly, from every pairwise distance (its own threshold)."""


def exact_cosine_knn(x: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of every row of ``x`` by cosine distance (itself first, at 0), as UMAP's small-data path
    finds them: distances ``1 - x.y / (|x| |y|)`` in float64, each row's ``k`` smallest in ascending order.

    Returns ``(indices, distances)``: (n, k) int64 and float32 (UMAP's own dtypes for precomputed neighbours).
    """
    x64 = np.asarray(x, dtype=np.float64)
    norms = np.sqrt((x64 * x64).sum(axis=1))
    norms[norms == 0] = 1.0
    unit = x64 / norms[:, None]
    idx = np.empty((len(x64), k), dtype=np.int64)
    dist = np.empty((len(x64), k), dtype=np.float32)
    for lo in range(0, len(x64), chunk):
        d = 1.0 - unit[lo : lo + chunk] @ unit.T
        rows = np.arange(len(d))
        d[rows, rows + lo] = 0.0  # itself, exactly
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1, kind="stable")
        idx[lo : lo + chunk] = np.take_along_axis(part, order, axis=1)
        dist[lo : lo + chunk] = np.take_along_axis(d, idx[lo : lo + chunk], axis=1)
    return idx, dist


class Reducer:
    """UMAP with sklearn-style ``fit``/``transform``; large inputs are fitted on a sample.

    Args:
        n_components: output dimensions.
        n_neighbors: UMAP's local neighbourhood size (also the neighbours of the extension).
        min_dist: UMAP's minimum distance (0 packs clusters tightly, good for clustering).
        metric: UMAP metric.
        sample_size: above this many rows, fit on a uniform sample and extend to the rest.
        assign: how rows outside the sample (and new rows) get coordinates: ``knn`` (weighted mean
            of their nearest sample rows' coordinates) or ``umap`` (``UMAP.transform``, slow).
        knn_dims: PCA dimensions of the neighbour search (None: the original space).
        n_epochs: UMAP's optimisation epochs (None: UMAP's default, 200 above 10k rows, else 500).
        random_state: seed; a seeded UMAP is reproducible (and single-threaded).
        exact_knn: below UMAP's small-data size (:data:`SMALL_DATA` rows) with the cosine metric and ``knn``
            extension, give UMAP the exact neighbours found by one matrix product (:func:`exact_cosine_knn`)
            instead of letting it compute every distance through a Python callable (about 25 s for 9 segments of
            1,000-3,500 users in the split test, against well under 1 s).

    Attributes:
        embedding_: (n, n_components) float32 coordinates of the rows given to ``fit``.
        sample_: indices of the rows UMAP was fitted on (all rows up to ``sample_size``).
        neighbours_: :class:`Neighbours` of the rows outside the sample (None when all were fitted).
        seconds_: wall time of the steps of the last fit (``import``, ``umap``, ``extend``).
    """

    def __init__(self, n_components: int = 5, *, n_neighbors: int = 15, min_dist: float = 0.0,
                 metric: str = "cosine", sample_size: int = 50_000, assign: str = "knn", knn_dims: int | None = 64,
                 n_epochs: int | None = None, random_state: int | None = None,
                 exact_knn: bool = False) -> None:  # fmt: skip
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.sample_size = sample_size
        self.assign = assign
        self.knn_dims = knn_dims
        self.n_epochs = n_epochs
        self.random_state = random_state
        self.exact_knn = exact_knn
        self.umap_: umap.UMAP | None = None
        self.embedding_: np.ndarray | None = None
        self.sample_: np.ndarray | None = None
        self.neighbours_: Neighbours | None = None
        self.knn_: SampleNeighbours | None = None

    def fit(self, x: np.ndarray, *, like: "Reducer | None" = None) -> "Reducer":
        """Fit on ``x`` ((n, d) float32) and keep the coordinates of every row in ``embedding_``.

        Args:
            x: the vectors.
            like: a reducer already fitted on the same ``x``: its sample, UMAP neighbour graph and
                extension neighbours are reused, and the layout starts from the first principal axes of
                its coordinates (a 2-d picture next to the clustering coordinates).
        """
        n = len(x)
        if self.assign not in ("knn", "umap"):
            raise ValueError(f"assign must be 'knn' or 'umap' (given {self.assign!r})")
        require_users(n, self.n_components)
        if not all(np.isfinite(x[lo : lo + _CHUNK]).all() for lo in range(0, n, _CHUNK)):
            raise DataError("reduce: input vectors contain NaN or infinity")
        like_embedding = like_sample = None
        if like is not None:
            like_embedding, like_sample = like.embedding_, like.sample_
            if like_embedding is None or like_sample is None or len(like_embedding) != n:
                raise ValueError("like= must be a Reducer fitted on the same rows")
        t0 = time.perf_counter()
        import umap

        t1 = time.perf_counter()
        if like_sample is not None:
            sample = like_sample
        elif n > self.sample_size:
            rng = np.random.default_rng(self.random_state)
            sample = np.sort(rng.choice(n, self.sample_size, replace=False))
        else:
            sample = np.arange(n)
        self.sample_ = sample
        m = len(sample)
        n_neighbors = min(self.n_neighbors, m - 1)
        kwargs: dict[str, Any] = {}
        if like is not None and like.umap_ is not None and like.n_neighbors == self.n_neighbors \
                and getattr(like.umap_, "_knn_indices", None) is not None:  # fmt: skip
            kwargs["precomputed_knn"] = (like.umap_._knn_indices, like.umap_._knn_dists, like.umap_._knn_search_index)
        if self.exact_knn and "precomputed_knn" not in kwargs and self.metric == "cosine" and self.assign == "knn" \
                and n_neighbors < m < SMALL_DATA:  # fmt: skip
            kwargs["precomputed_knn"] = (*exact_cosine_knn(x if m == n else x[sample], n_neighbors), None)
        init: str | np.ndarray = "spectral" if m > self.n_components + 10 else "random"
        if like_embedding is not None and like_embedding.shape[1] >= self.n_components:
            init = _pca_init(like_embedding[sample], self.n_components)
        self.umap_ = fitted = umap.UMAP(n_components=self.n_components, n_neighbors=n_neighbors, min_dist=self.min_dist,
                               metric=self.metric, random_state=self.random_state, init=init,
                               n_epochs=self.n_epochs, **kwargs)  # fmt: skip
        sample_x = x if m == n else x[sample]
        with warnings.catch_warnings():
            # a seeded UMAP runs single-threaded by design (reproducibility); UMAP warns about it every fit
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            warnings.filterwarnings("ignore", message="Failed to correctly find n_neighbors", category=UserWarning)
            sample_emb = fitted.fit_transform(sample_x).astype(np.float32)
        t2 = time.perf_counter()
        self.knn_ = like.knn_ if like is not None else None
        self.neighbours_ = None
        if m == n:
            self.embedding_ = sample_emb
        else:
            emb = np.empty((n, self.n_components), dtype=np.float32)
            emb[sample] = sample_emb
            rest = np.setdiff1d(np.arange(n), sample)
            if self.assign == "umap":
                for lo in range(0, len(rest), _CHUNK):
                    emb[rest[lo : lo + _CHUNK]] = self._umap_transform(x[rest[lo : lo + _CHUNK]])
            else:
                if like is not None and like.neighbours_ is not None:
                    self.neighbours_ = like.neighbours_
                else:
                    self.knn_ = self._fit_knn(sample_x)
                    pos, wts = self.knn_.kneighbors(x, rest)
                    self.neighbours_ = Neighbours(rest, pos, wts)
                emb[rest] = self.neighbours_.spread(sample_emb)
            self.embedding_ = emb
        t3 = time.perf_counter()
        self.seconds_ = {"import": t1 - t0, "umap": t2 - t1, "extend": t3 - t2}
        logger.info("UMAP %d-d on %d users (fitted on %d) in %.1fs (+%.1fs extending, +%.1fs import)",
                    self.n_components, n, m, t2 - t1, t3 - t2, t1 - t0)  # fmt: skip
        return self

    def _fit_knn(self, sample_x: np.ndarray) -> SampleNeighbours:
        return SampleNeighbours(self.n_neighbors, n_dims=self.knn_dims, random_state=self.random_state).fit(sample_x)

    def _umap_transform(self, x: np.ndarray) -> np.ndarray:
        assert self.umap_ is not None  # called by fit, or by transform once check_is_fitted passed
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            return self.umap_.transform(x).astype(np.float32)

    def fit_transform(self, x: np.ndarray, *, like: "Reducer | None" = None) -> np.ndarray:
        embedding = self.fit(x, like=like).embedding_
        assert embedding is not None  # fit sets it
        return embedding

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Coordinates of new rows in the fitted space (as the rows outside the sample got theirs)."""
        check_is_fitted(self, "umap_")
        fitted, embedding, sample = self.umap_, self.embedding_, self.sample_
        assert fitted is not None and embedding is not None and sample is not None  # fit set all three
        x = np.asarray(x, dtype=np.float32)
        if self.assign == "umap":
            return self._umap_transform(x)
        if self.knn_ is None:
            self.knn_ = self._fit_knn(np.asarray(fitted._raw_data, dtype=np.float32))
        pos, wts = self.knn_.kneighbors(x)
        return Neighbours(np.arange(len(x)), pos, wts).spread(embedding[sample])


class IdentityReducer:
    """Null reducer: passes vectors through (for already low-dimensional data, or to compare)."""

    def __init__(self) -> None:
        self.embedding_: np.ndarray | None = None
        self.sample_: np.ndarray | None = None
        self.neighbours_: Neighbours | None = None

    def fit(self, x: np.ndarray, *, like: object = None) -> "IdentityReducer":
        self.embedding_ = np.asarray(x, dtype=np.float32)
        self.sample_ = np.arange(len(x))
        return self

    def fit_transform(self, x: np.ndarray, *, like: object = None) -> np.ndarray:
        embedding = self.fit(x).embedding_
        assert embedding is not None  # fit sets it
        return embedding

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32)
