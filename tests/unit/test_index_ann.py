"""Above ``approximate_above`` vectors the index is HNSW: its recall, its log line, its saved form, new users."""

import json
import logging

import numpy as np
import polars as pl
import pytest

import embeddings.index as index_module
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
    assert any(
        "exact flat index over 2,000 vectors" in m and "at most index.approximate_above = 2,000" in m for m in said
    )
    assert any("approximate hnsw index over 2,000 vectors" in m and "more than index.approximate_above = 100" in m
               and f"recall@10 {approx.recall_:.3f} against exact search on 256 of the vectors" in m for m in said)  # fmt: skip
    assert approx.recall_ >= 0.95 and approx.index_.hnsw.efSearch == 64
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
    assert manifest["recall@10"] == approx.recall_
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


def _uniform(n: int) -> np.ndarray:
    x = np.random.default_rng(3).normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_hnsw_raises_ef_search_until_recall_holds_on_structureless_vectors():
    """Uniform vectors on the sphere have no neighbourhoods: efSearch 64 finds about 85 % of the 10 nearest."""
    x = _uniform(10_000)
    idx = VectorIndex("hnsw").fit(np.arange(len(x)).astype(str), x)
    assert idx.index_.hnsw.efSearch > 64 and idx.recall_ >= 0.95
    # the recall it reports is what a search with the kept setting finds, for indexed vectors' neighbours
    rows = np.random.default_rng(9).choice(len(x), 100, replace=False)
    exact = np.argsort(-(x[rows] @ x.T), axis=1)[:, 1:11]
    found = np.vectorize(int)(idx.search(x[rows], 11)[0][:, 1:])
    assert np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)]) >= 0.9


def test_hnsw_warns_when_it_cannot_reach_the_recall(monkeypatch, caplog):
    monkeypatch.setattr(index_module, "EF_SEARCH_MAX", 16)
    x = _uniform(10_000)
    with caplog.at_level(logging.WARNING, logger="embeddings.index"):
        idx = VectorIndex("auto", approximate_above=1000).fit(np.arange(len(x)).astype(str), x)
    assert idx.recall_ < 0.9 and idx.index_.hnsw.efSearch == 64  # never lowered below the default
    assert any("set index.kind = 'flat' for exact search" in r.getMessage() for r in caplog.records)


def test_an_unfitted_index_says_so_in_every_method_and_saves_nothing(tmp_path):
    """search() said "not fitted"; vector() and save() failed on None inside FAISS (AttributeError, TypeError)."""
    index = VectorIndex()
    for call in (lambda: index.search(np.zeros((1, 4), np.float32)), lambda: index.vector("a"),
                 lambda: index.save(tmp_path / "idx")):  # fmt: skip
        with pytest.raises(ValueError, match="not fitted yet"):
            call()
    assert not (tmp_path / "idx").exists()


def test_a_spilled_index_searches_saves_and_loads_as_before(data, tmp_path, caplog):
    """build_indexes writes an index over more than approximate_above vectors out and lets go of it; searching
    reads it back, and saving copies the file (the run folder gets the same index)."""
    from types import SimpleNamespace

    from embeddings.encoder import Embeddings
    from embeddings.index import build_indexes

    ids, x, labels, queries, _ = data
    users = Embeddings(ids, x, "m")
    items = Embeddings(ids[:50], x[:50], "m")
    segs = SimpleNamespace(assignments=pl.DataFrame({"user_id": ids.tolist(), "segment_id": labels.astype(np.int32)}))
    config = SimpleNamespace(kind="auto", approximate_above=100, hnsw_m=16)
    with caplog.at_level(logging.INFO, logger="embeddings.index"):
        spilled = build_indexes(items, users, segs, config, spill=tmp_path / "spill")
    assert spilled.users.index_ is None and (tmp_path / "spill" / "users" / "index.faiss").is_file()
    assert spilled.items.index_ is not None and not (tmp_path / "spill" / "items").exists()  # 50 vectors: kept
    assert any("users index (2,000 vectors) written to" in r.getMessage() for r in caplog.records)
    spilled.users.save(tmp_path / "run" / "users")  # a copy of the file, without reading it back
    assert spilled.users.index_ is None
    assert (tmp_path / "run" / "users" / "index.faiss").read_bytes() == (
        tmp_path / "spill" / "users" / "index.faiss").read_bytes()  # fmt: skip
    copied = VectorIndex.load(tmp_path / "run" / "users")
    assert copied.kind_ == "hnsw" and copied.recall_ == spilled.users.recall_ >= 0.9
    found, sims = spilled.users.search(queries, 10)  # read back on demand
    assert spilled.users.index_ is not None and spilled.users.index_.hnsw.efSearch == copied.index_.hnsw.efSearch
    again, again_sims = copied.search(queries, 10)
    assert np.array_equal(found, again) and np.array_equal(sims, again_sims)
    exact, _ = VectorIndex("flat").fit(ids, x).search(queries, 10)
    assert np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, exact)]) >= 0.9
