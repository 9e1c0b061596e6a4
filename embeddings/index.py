"""FAISS indexes over L2-normalised vectors (inner product = cosine similarity).

:class:`VectorIndex` keeps external ids beside the FAISS index, is exact (flat)
up to ``approximate_above`` vectors and HNSW above, and saves to a folder as
``index.faiss`` + ``ids.npy`` + ``manifest.json`` (kind, count, the reason for
the kind and, for HNSW, its measured recall@10). An HNSW index checks its recall
against exact search when built and raises ``efSearch`` until it holds
(:func:`_tune_ef_search`); ``benchmarks/index_scale.py`` measures build time,
query time, recall and memory of flat, HNSW and IVF at 10k to 1M vectors. :func:`build_indexes` builds a run's three
(items, users, segment centroids); :func:`segment_neighbours` reads the nearest segments from them.
"""

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np
import polars as pl

from embeddings.encoder import Embeddings
from embeddings.errors import DataError

if TYPE_CHECKING:
    import faiss

__all__ = ["IndexSettings", "Indexes", "Segmented", "VectorIndex", "build_index", "build_indexes", "segment_centroids",
           "segment_neighbours"]  # fmt: skip

logger = logging.getLogger(__name__)

RECALL_SAMPLE = 256
"""Indexed vectors that an approximate index is checked on against exact search, once, when built."""
RECALL_TARGET = 0.95
"""HNSW's efSearch is doubled (from 64, up to :data:`EF_SEARCH_MAX`) until recall@10 on the sample reaches this."""
EF_SEARCH_MAX = 512


class VectorIndex:
    """Nearest-neighbour search by cosine similarity over vectors with string ids.

    Args:
        kind: ``flat`` (exact), ``hnsw`` (approximate) or ``auto``.
        approximate_above: with ``auto``, use HNSW when there are more vectors than this.

    After :meth:`fit`, ``kind_`` is the kind built, ``reason_`` why, and ``recall_`` an HNSW
    index's recall@10 against exact search (None for flat).
        hnsw_m: HNSW graph degree.
    """

    def __init__(self, kind: str = "auto", *, approximate_above: int = 100_000, hnsw_m: int = 32) -> None:
        self.kind = kind
        self.approximate_above = approximate_above
        self.hnsw_m = hnsw_m
        self.index_: faiss.Index | None = None
        self.ids_: np.ndarray | None = None
        self.kind_: str | None = None
        self.reason_: str | None = None
        self.recall_: float | None = None
        self.spilled_: Path | None = None

    def fit(self, ids: np.ndarray, vectors: np.ndarray) -> "VectorIndex":
        """Index ``vectors`` ((n, d) float32, rows L2-normalised) under ``ids``."""
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(ids) != len(vectors):
            raise DataError(f"index: {len(ids)} ids for vectors of shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise DataError("index: vectors contain NaN or infinity")
        n, d = vectors.shape
        kind = self.kind
        if kind == "auto":
            kind = "hnsw" if n > self.approximate_above else "flat"
            side = "more than" if kind == "hnsw" else "at most"
            reason = f"{n:,} vectors, {side} index.approximate_above = {self.approximate_above:,}"
        else:
            reason = f"kind {kind!r} requested"
        hnsw: faiss.IndexHNSWFlat | None = None
        if kind == "flat":
            index: faiss.Index = faiss.IndexFlatIP(d)
        elif kind == "hnsw":
            index = hnsw = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = 80
            hnsw.hnsw.efSearch = 64
        else:
            raise ValueError(f"unknown index kind {kind!r}; expected auto, flat or hnsw")
        index.add(vectors)
        self.index_, self.ids_, self.kind_, self.reason_ = index, np.asarray(ids, dtype=object), kind, reason
        self._pos = {s: i for i, s in enumerate(self.ids_)}
        self.recall_ = None if hnsw is None else _tune_ef_search(hnsw, vectors)
        what = "exact flat" if hnsw is None else "approximate hnsw"
        how = "" if hnsw is None else (f"; M {self.hnsw_m}, efSearch {hnsw.hnsw.efSearch}, recall@10 {self.recall_:.3f} "
                                         f"against exact search on {min(n, RECALL_SAMPLE)} of the vectors")  # fmt: skip
        logger.info("built %s index over %s vectors of dim %d (%s%s)", what, f"{n:,}", d, reason, how)
        if hnsw is not None and self.recall_ is not None and self.recall_ < 0.9:
            logger.warning("the hnsw index finds only %.0f%% of the exact 10 nearest neighbours even with efSearch %d: "
                           "these vectors have little neighbourhood structure; set index.kind = 'flat' for exact "
                           "search (slower queries)", 100 * self.recall_, hnsw.hnsw.efSearch)  # fmt: skip
        return self

    def __len__(self) -> int:
        return 0 if self.ids_ is None else len(self.ids_)

    def _fitted(self) -> "tuple[faiss.Index, np.ndarray]":
        """The FAISS index and the ids beside it (read back if :meth:`spill` wrote it out); ValueError before
        :meth:`fit` or :meth:`load`."""
        if self.index_ is None and self.spilled_ is not None:
            import faiss

            self.index_ = faiss.read_index(str(self.spilled_ / "index.faiss"))
        if self.index_ is None or self.ids_ is None:
            raise ValueError("This VectorIndex instance is not fitted yet. Call 'fit' first.")
        return self.index_, self.ids_

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ids and cosine similarities for each query row: ((q, k) object, (q, k) float32).

        Where fewer than ``k`` vectors exist, missing slots hold None and -inf.
        """
        index, stored_ids = self._fitted()
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        sims, pos = index.search(q, min(k, len(self)))
        ids = np.where(pos >= 0, stored_ids[np.clip(pos, 0, None)], np.array(None, dtype=object))
        sims = np.where(pos >= 0, sims, -np.inf).astype(np.float32)
        return ids, sims

    def vector(self, id_: str) -> np.ndarray:
        """The stored vector of ``id_`` (KeyError if unknown)."""
        index, _ = self._fitted()
        # faiss's stubs give the torch overload (-> Tensor) first; called with a key only it returns a numpy row
        return cast(np.ndarray, index.reconstruct(self._pos[id_]))

    def similar(self, id_: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` nearest other entries to ``id_`` with their cosine similarity."""
        ids, sims = self.search(self.vector(id_)[None, :], k + 1)
        return [(i, float(s)) for i, s in zip(ids[0], sims[0]) if i is not None and i != id_][:k]

    def spill(self, folder: Path) -> None:
        """Write the index to ``folder`` (as :meth:`save`) and let go of it in memory; searching reads it back, and
        :meth:`save` copies the file. An HNSW index over 1M users holds about 2 GB that a run needs again only
        when it writes its folder."""
        self.save(folder)
        self.index_, self.spilled_ = None, Path(folder)

    def save(self, folder: Path) -> None:
        import faiss

        folder = Path(folder)
        if self.index_ is None and self.spilled_ is not None:  # written out by spill: copy, do not read it back
            if folder.resolve() != self.spilled_.resolve():
                folder.mkdir(parents=True, exist_ok=True)
                for name in ("index.faiss", "ids.npy", "manifest.json"):
                    shutil.copyfile(self.spilled_ / name, folder / name)
            return
        index, ids = self._fitted()
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(index, str(folder / "index.faiss"))
        np.save(folder / "ids.npy", ids.astype(str))
        (folder / "manifest.json").write_text(
            json.dumps(
                {
                    "kind": self.kind_,
                    "n": len(self),
                    "faiss": faiss.__version__,
                    "reason": self.reason_,
                    "recall@10": self.recall_,
                }
            )
        )

    @classmethod
    def load(cls, folder: Path) -> "VectorIndex":
        import faiss

        folder = Path(folder)
        if not (folder / "index.faiss").exists():
            raise DataError(f"{folder} holds no FAISS index (index.faiss missing)")
        manifest = json.loads((folder / "manifest.json").read_text())
        out = cls(manifest["kind"])
        out.index_ = faiss.read_index(str(folder / "index.faiss"))
        out.ids_ = np.load(folder / "ids.npy").astype(object)
        out.kind_ = manifest["kind"]
        out.reason_ = manifest.get("reason")
        out.recall_ = manifest.get("recall@10")
        out._pos = {s: i for i, s in enumerate(out.ids_)}
        return out


def _tune_ef_search(index: "faiss.IndexHNSWFlat", vectors: np.ndarray) -> float:
    """Recall@10 of an HNSW ``index`` against exact search, for up to :data:`RECALL_SAMPLE` of its own vectors.

    Each sampled vector asks for its 10 nearest other vectors (as :meth:`VectorIndex.similar` does); a
    neighbour counts as found when its similarity reaches the exact 10th one, so ties between equal vectors
    are not misses. While recall is below :data:`RECALL_TARGET`, ``efSearch`` doubles, up to
    :data:`EF_SEARCH_MAX`; the setting is saved with the index. Queries unlike every indexed vector find
    fewer of theirs (docs/BENCHMARKS.md, "FAISS above the exact-search limit").
    """
    import faiss

    n = len(vectors)
    q = vectors[np.random.default_rng(0).choice(n, min(n, RECALL_SAMPLE), replace=False)]
    k = min(11, n)
    exact, _ = faiss.knn(q, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    while True:
        found, _ = index.search(q, k)
        recall = float(np.mean(found[:, 1:] >= exact[:, -1:] - 1e-5)) if k > 1 else 1.0
        if recall >= RECALL_TARGET or index.hnsw.efSearch >= EF_SEARCH_MAX:
            return recall
        index.hnsw.efSearch = min(2 * index.hnsw.efSearch, EF_SEARCH_MAX)


def build_index(ids: np.ndarray, vectors: np.ndarray, *, kind: str = "auto", approximate_above: int = 100_000,
                hnsw_m: int = 32) -> VectorIndex:  # fmt: skip
    """Build a :class:`VectorIndex` (convenience wrapper)."""
    return VectorIndex(kind, approximate_above=approximate_above, hnsw_m=hnsw_m).fit(ids, vectors)


class IndexSettings(Protocol):
    """What :func:`build_indexes` reads of the index configuration (``segmentation.config.IndexConfig``)."""

    kind: str
    approximate_above: int
    hnsw_m: int


class Segmented(Protocol):
    """The users' segments as :func:`build_indexes` reads them (``segmentation.cluster.Segmentation``): an
    ``assignments`` frame whose ``segment_id`` column gives each user's segment, in the rows' order of the
    user vectors."""

    assignments: pl.DataFrame


@dataclass(frozen=True)
class Indexes:
    """FAISS indexes of a run: items, users and segment centroids."""

    items: VectorIndex
    users: VectorIndex
    segments: VectorIndex | None


def segment_centroids(users: Embeddings, assignments: pl.DataFrame) -> Embeddings:
    """L2-normalised mean user vector per segment; ids are segment ids as str.

    ``assignments``' ``segment_id`` column holds each user's segment in the rows' order of ``users``; negative
    ids (outliers, -1) have no centroid.
    """
    labels = assignments["segment_id"].to_numpy()
    ids = sorted(int(s) for s in set(labels.tolist()) if s >= 0)
    cents = (
        np.stack([users.vectors[labels == s].mean(axis=0) for s in ids])
        if ids
        else np.zeros((0, users.dim), np.float32)
    )
    cents = cents / np.maximum(np.linalg.norm(cents, axis=1, keepdims=True), 1e-12)
    return Embeddings(np.asarray([str(s) for s in ids], dtype=object), cents.astype(np.float32), "centroids")


def build_indexes(items: Embeddings, users: Embeddings, segments: Segmented, config: IndexSettings,
                  spill: Path | None = None) -> Indexes:  # fmt: skip
    """The flow's index stage: item, user and segment-centroid indexes (exact below ``approximate_above`` vectors).

    ``spill``: a folder where an index over more than ``approximate_above`` vectors is written out and let go of
    (:meth:`VectorIndex.spill`) until the run folder is written; none: all stay in memory.
    """

    def configured(emb: Embeddings) -> VectorIndex:
        return build_index(emb.ids, emb.vectors, kind=config.kind, approximate_above=config.approximate_above,
                           hnsw_m=config.hnsw_m)  # fmt: skip

    cents = segment_centroids(users, segments.assignments)
    seg_index = build_index(cents.ids, cents.vectors, kind="flat") if len(cents.ids) else None
    out = Indexes(configured(items), configured(users), seg_index)
    if spill is not None:
        for name, index in (("items", out.items), ("users", out.users)):
            if len(index) > config.approximate_above:
                index.spill(Path(spill) / name)
                logger.info("index: the %s index (%s vectors) written to %s until the run folder is written",
                            name, f"{len(index):,}", Path(spill) / name)  # fmt: skip
    return out


def segment_neighbours(indexes: Indexes, k: int = 3) -> dict[int, list[tuple[int, float]]]:
    """For each segment, its ``k`` nearest segments by centroid cosine similarity."""
    if indexes.segments is None:
        return {}
    _, seg_ids = indexes.segments._fitted()
    out = {}
    for sid in seg_ids:
        out[int(sid)] = [(int(o), round(s, 4)) for o, s in indexes.segments.similar(sid, k)]
    return out
