"""Segments that come apart on their own are split (``cluster.split_stability``; one UMAP warm-up per process)."""

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import adjusted_rand_score

from embeddings.encoder import Embeddings
from segmentation.cluster import ASSIGNMENTS, NOISE, fit_segments, split_merged
from segmentation.config import ClusterConfig, ReduceConfig
from segmentation.runs import summarise_segmentation

pytestmark = pytest.mark.umap


def _merged_pair(seed: int = 0, dim: int = 24) -> tuple[Embeddings, np.ndarray, pl.DataFrame]:
    """Three tight groups on the unit sphere, two of them (400 and 250 users) labelled one segment, the third (550)
    another; one outlier next to the second group whose nearest segment is the merged one."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:3] * 1.0 + 0.4  # a shared component, as centred-then-fused vectors keep some
    sizes = [400, 250, 550]
    x = np.vstack([c + rng.normal(0, 0.12, (m, dim)) for c, m in zip(centres, sizes, strict=True)] +
                  [centres[1] + rng.normal(0, 0.6, (1, dim))])  # fmt: skip
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    truth = np.repeat([0, 1, 2, 3], [*sizes, 1])
    segment = np.array([0, 0, 1, NOISE], dtype=np.int32)[truth]
    nearest = np.array([0, 0, 1, 0], dtype=np.int32)[truth]
    n = len(x)
    a = pl.DataFrame({"user_id": [f"u{i:04d}" for i in range(n)], "segment_id": segment,
                      "membership": np.where(segment >= 0, 0.9, 0.0).astype(np.float32), "nearest_segment": nearest,
                      "nearest_membership": np.full(n, 0.5, np.float32), "soft_assigned": np.zeros(n, bool),
                      "x": x[:, 0], "y": x[:, 1]}, schema=ASSIGNMENTS)  # fmt: skip
    return Embeddings(a["user_id"].to_numpy(), x, "planted"), truth, a


def test_a_merged_pair_is_split_and_a_single_group_kept():
    users, truth, a = _merged_pair()
    out, k, tested = split_merged(users, a, ReduceConfig(), ClusterConfig(), 50, seed=0)
    seg = out["segment_id"].to_numpy()
    assert k == 3
    assert adjusted_rand_score(truth[:-1], seg[:-1]) > 0.98  # the two groups come apart, the third is untouched
    # renumbered by decreasing size: the lone 550-user group is 0, the parts of 400 and 250 users are 1 and 2
    assert np.bincount(seg[seg >= 0]).tolist() == [550, 400, 250]
    first, second = tested
    assert first["split"] and first["stability"] >= 0.9 and sorted(first["sizes"]) == [250, 400]
    assert sorted(first["segments"]) == [1, 2] and second["segments"] == [0]
    assert first["outcome"] == "split" and "why" not in first
    assert not second["split"] and second["outcome"] in ("unstable", "no parts")
    assert second["why"].startswith("stability" if second["outcome"] == "unstable" else "no candidate")
    assert second["stability"] < 0.9
    # the outlier stays an outlier; its nearest segment is the part it lies next to, every member is its own nearest
    assert seg[-1] == NOISE and out["nearest_segment"][-1] == seg[truth == 1][0]
    members = seg >= 0
    assert (out["nearest_segment"].to_numpy()[members] == seg[members]).all()
    # every other column is kept as it was
    assert out.drop("segment_id", "nearest_segment").equals(a.drop("segment_id", "nearest_segment"))


def test_a_large_smallest_part_keeps_the_segments():
    users, _, a = _merged_pair()
    out, k, tested = split_merged(users, a, ReduceConfig(), ClusterConfig(), 300, seed=0)
    assert k == 2 and out.equals(a)  # a 250-user part is under the smallest segment allowed
    assert tested[0]["why"] in ("fewer than two parts of at least 300 users", "no candidate with two or more parts")
    assert tested[0]["outcome"] in ("parts too small", "no parts")
    assert tested[1]["why"] == "under 600 users: not tested"  # 550 users cannot hold two parts of 300
    assert tested[1]["outcome"] == "not tested"


def test_fit_segments_records_the_tests_and_off_records_none():
    users, truth, _ = _merged_pair(seed=1)
    on = fit_segments(users, ReduceConfig(), ClusterConfig(), seed=0, picture=False)
    assert on.splits is not None and on.splits["split_stability"] == 0.9
    assert sorted(i for t in on.splits["tested"] for i in t["segments"]) == list(range(on.n_segments))
    assert "split" in on.seconds and summarise_segmentation(on)["splits"] == on.splits
    off = fit_segments(users, ReduceConfig(), ClusterConfig(split_stability=None), seed=0, picture=False)
    assert off.splits is None and "splits" not in summarise_segmentation(off)
    seg = on.assignments["segment_id"].to_numpy()
    assert adjusted_rand_score(truth[:-1], seg[:-1]) >= adjusted_rand_score(
        truth[:-1], off.assignments["segment_id"].to_numpy()[:-1]
    )


def test_split_stability_is_validated():
    with pytest.raises(ValueError):
        ClusterConfig(split_stability=0.0)
    with pytest.raises(ValueError):
        ClusterConfig(split_stability=1.5)


def test_exact_cosine_neighbours_match_a_brute_force_search():
    from sklearn.neighbors import NearestNeighbors

    from segmentation.reduce import exact_cosine_knn

    x = np.random.default_rng(3).normal(size=(700, 12)).astype(np.float32)
    idx, dist = exact_cosine_knn(x, 15, chunk=256)  # several chunks
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=15, metric="cosine", algorithm="brute").fit(x).kneighbors(x)
    assert (idx[:, 0] == np.arange(700)).all() and (dist[:, 0] == 0).all()  # itself first, at 0
    assert (idx == ref_idx).mean() > 0.999 and np.allclose(dist, ref_dist, atol=1e-5)
    assert (np.diff(dist, axis=1) >= 0).all() and idx.dtype == np.int64 and dist.dtype == np.float32
