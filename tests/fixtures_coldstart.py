"""The planted world the cold-start tests share: users whose segments differ in taste (and rating style), some of
them cut to their first rows as the run's sparse users, item vectors from the categories (no encoder)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from embeddings.encoder import Embeddings
from segmentation.cluster import Segmentation
from segmentation.coldstart import cold_start_split, planted_segment_behaviour
from segmentation.data import Split, split_ratings
from segmentation.planted import PlantedBehaviour


@dataclass(frozen=True)
class SparseWorld:
    planted: PlantedBehaviour
    split: Split  # random90, with the sparse users' train rows cut and their validation rows dropped
    sparse: set[str]
    item_vectors: Embeddings
    truth: pl.DataFrame  # planted users in a segment (noise users left out)


def sparse_world(items: pl.DataFrame, *, keep_rows: int, n_users: int = 1500, n_segments: int = 6,
                 n_sparse: int = 150) -> SparseWorld:  # fmt: skip
    """``n_users`` planted users in ``n_segments`` segments; the first ``n_sparse`` test users keep ``keep_rows``
    train rows (the run's sparse users)."""
    planted, _ = planted_segment_behaviour(items, n_users, k=n_segments, rng=np.random.default_rng(0))
    split = split_ratings(planted.interactions, "random90", seed=0)
    sparse = sorted(split.test["user_id"].unique().to_list())[:n_sparse]
    cut = cold_start_split(split.train, sparse, keep_rows)
    split = Split(cut.train, split.valid.filter(~pl.col("user_id").is_in(sparse)), split.test, split.method)
    cats = sorted({c for cs in items["categories"].to_list() for c in cs})
    v = np.array([[c in cs for c in cats] for cs in items["categories"].to_list()], np.float64)
    v += np.random.default_rng(0).normal(0, 0.1, v.shape)
    emb = Embeddings(items["item_id"].to_numpy().astype(object), (v / np.linalg.norm(v, axis=1, keepdims=True))
                     .astype(np.float32), "categories")  # fmt: skip
    return SparseWorld(planted, split, set(sparse), emb, planted.truth.filter(pl.col("segment_id") >= 0))


def segmentation_of(labels: pl.DataFrame) -> Segmentation:
    """A :class:`Segmentation` whose segments are ``labels`` (user_id, segment_id), without UMAP or HDBSCAN."""
    seg = labels["segment_id"].cast(pl.Int32)
    a = labels.select("user_id").with_columns(seg.alias("segment_id"), seg.alias("nearest_segment"))
    return Segmentation(a, np.zeros((a.height, 2), np.float32), int(seg.n_unique()), 5, {})


def run_folder_with(block: dict, folder: Path) -> tuple[Path, dict]:
    """A run folder at ``folder`` (tests.fixtures_report's 90 users in 3 segments) whose metrics carry the
    cold-start ``block`` and the verdicts on it: the folder, and its metrics."""
    import dataclasses

    from segmentation.verdicts import run_verdicts
    from tests.fixtures_report import make_report_input, write_run_folder

    data = make_report_input(n_users=90, n_segments=3, seed=2)
    metrics = {**data.metrics, "cold_start": block}
    metrics["verdicts"] = run_verdicts(metrics, data.config, [(p.segment_id, p.name, p.stability) for p in data.profiles],
                                       data.models_by_segment())  # fmt: skip
    return write_run_folder(dataclasses.replace(data, metrics=metrics), folder), metrics
