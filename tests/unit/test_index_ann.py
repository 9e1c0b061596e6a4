"""Above ``approximate_above`` vectors the index is HNSW: its recall, its log line, its saved form, new users."""

import json
import logging

import numpy as np
import polars as pl
import pytest

from embeddings.index import VectorIndex
from segmentation.cluster import assign_by_neighbours

N, DIM, K_CLUSTERS = 2000, 384, 20


def _clustered(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around 20 centres in a 16-d subspace (embedding-like), with their cluster labels."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(K_CLUSTERS, 16))
    basis = rng.normal(size=(16, DIM)) / 4
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K_CLUSTERS, n)
    x = (centres[labels] + 0.6 * rng.normal(size=(n, 16))) @ basis + 0.05 * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


@pytest.fixture(scope="module")
def data():
    x, labels = _clustered(N, seed=1)
    queries, query_labels = _clustered(300, seed=2)
    ids = np.array([f"u{i}" for i in range(N)], dtype=object)
    return ids, x, labels, queries, query_labels


def test_a_tiny_limit_makes_hnsw_whose_recall_against_exact_is_high(data, caplog):
    ids, x, _, queries, _ = data
    with caplog.at_level(logging.INFO, logger="embeddings.index"):
        exact = VectorIndex("auto", approximate_above=N).fit(ids, x)
        approx = VectorIndex("auto", approximate_above=100).fit(ids, x)
    assert exact.kind_ == "flat" and approx.kind_ == "hnsw"
    said = [r.getMessage() for r in caplog.records]
    assert any("exact flat index over 2,000 vectors" in m and "at most index.approximate_above = 2,000" in m for m in said)
    assert any("approximate hnsw index over 2,000 vectors" in m and "more than index.approximate_above = 100" in m
               for m in said)  # fmt: skip
    truth, _ = exact.search(queries, 10)
    found, sims = approx.search(queries, 10)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    assert recall >= 0.95
    assert np.all(np.diff(sims, axis=1) <= 1e-6)  # best first


def test_the_hnsw_index_loads_back_and_new_users_are_assigned_through_it(data, tmp_path):
    ids, x, labels, queries, query_labels = data
    approx = VectorIndex("auto", approximate_above=100).fit(ids, x)
    approx.save(tmp_path / "users")
    manifest = json.loads((tmp_path / "users" / "manifest.json").read_text())
    assert manifest["kind"] == "hnsw" and manifest["n"] == N and "approximate_above" in manifest["reason"]
    again = VectorIndex.load(tmp_path / "users")
    assert again.kind_ == "hnsw" and len(again) == N
    assert again.index_.hnsw.efSearch == approx.index_.hnsw.efSearch
    before, sims_before = approx.search(queries, 10)
    after, sims_after = again.search(queries, 10)
    assert np.array_equal(before, after) and np.array_equal(sims_before, sims_after)
    np.testing.assert_allclose(again.vector("u5"), x[5], atol=1e-6)
    # new users (never indexed) are placed by their nearest indexed users' segments, as with an exact index
    assignments = pl.DataFrame({"user_id": ids.tolist(), "nearest_segment": labels.astype(np.int32)})
    through_ann = assign_by_neighbours(queries, again, assignments, k=15)["segment_id"].to_numpy()
    exact = VectorIndex("flat").fit(ids, x)
    through_exact = assign_by_neighbours(queries, exact, assignments, k=15)["segment_id"].to_numpy()
    assert (through_ann == through_exact).mean() >= 0.98
    assert (through_ann == query_labels).mean() >= 0.9
