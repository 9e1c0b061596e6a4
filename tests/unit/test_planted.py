"""Planted-truth generators: shapes, shares, reproducibility, and that the planted signal is there."""

import numpy as np
import polars as pl
import pytest

from segmentation._errors import DataError
from segmentation.data import INTERACTIONS
from segmentation.planted import NOISE_LABEL, planted_behaviour, planted_vectors, zipf_sizes


def test_zipf_sizes_sum_and_skew():
    sizes = zipf_sizes(10_000, 20, ratio=11.0)
    assert sizes.sum() == 10_000 and len(sizes) == 20
    assert (np.diff(sizes) <= 0).all()
    assert 10 < sizes[0] / sizes[-1] < 12
    assert zipf_sizes(7, 1).tolist() == [7]
    with pytest.raises(ValueError, match="1 <= k <= n"):
        zipf_sizes(3, 5)


@pytest.fixture(scope="module")
def vectors():
    return planted_vectors(3000, rng=np.random.default_rng(0), chunk=1000)


def test_planted_vectors_shape_norm_and_noise(vectors):
    x, y = vectors.vectors, vectors.labels
    assert x.shape == (3000, 384) and x.dtype == np.float32 and y.dtype == np.int32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert (y == NOISE_LABEL).sum() == 150
    assert set(np.unique(y[y >= 0])) == set(range(20))
    assert np.array_equal(np.bincount(y[y >= 0]), vectors.sizes)


def test_planted_vectors_are_seeded(vectors):
    again = planted_vectors(
        3000, rng=np.random.default_rng(0), chunk=700
    )  # chunking does not change the draw order of the truth
    assert np.array_equal(again.labels, vectors.labels)
    other = planted_vectors(3000, rng=np.random.default_rng(1), chunk=1000)
    assert not np.array_equal(other.labels, vectors.labels)
    same = planted_vectors(3000, rng=np.random.default_rng(0), chunk=1000)
    assert np.array_equal(same.vectors, vectors.vectors)


def test_planted_vectors_segments_are_tighter_than_the_whole(vectors):
    x, y = vectors.vectors, vectors.labels
    within = np.mean([x[y == c].mean(axis=0) @ x[y == c].mean(axis=0) for c in range(20)])
    overall = x[y >= 0].mean(axis=0) @ x[y >= 0].mean(axis=0)
    assert within > 2 * overall  # members of a segment point the same way; the whole set does not
    sphere = x[y == NOISE_LABEL]
    # uniform noise points are nearly orthogonal to every segment centre
    centres = np.stack([x[y == c].mean(axis=0) for c in range(20)])
    assert np.median(np.abs(sphere @ centres.T).max(axis=1)) < np.median(x[y == 0] @ centres[0])


def test_planted_vectors_rejects_bad_arguments():
    with pytest.raises(ValueError, match="at least 2"):
        planted_vectors(10, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="noise_share"):
        planted_vectors(1000, noise_share=0.6, rng=np.random.default_rng(0))


@pytest.fixture(scope="module")
def behaviour(planted):
    ds, _ = planted
    return ds.items, planted_behaviour(ds.items, 400, k=3, min_ratings=8, median_ratings=12, max_ratings=25,
                                       rng=np.random.default_rng(0))  # fmt: skip


def test_planted_behaviour_frame(behaviour):
    items, pb = behaviour
    inter = pb.interactions
    assert inter.schema == INTERACTIONS
    assert inter.select(pl.struct("user_id", "item_id").is_duplicated().any()).item() is False
    per_user = inter.group_by("user_id").len()["len"]
    assert per_user.min() >= 8 and per_user.max() <= 25 and per_user.len() == 400
    assert set(inter["rating"].unique().to_list()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert set(inter["item_id"].unique().to_list()) <= set(items["item_id"].to_list())
    assert pb.truth.height == 400 and pb.truth["user_id"].is_sorted()
    assert (pb.truth["segment_id"] == NOISE_LABEL).sum() == 20
    assert len(pb.styles) == 3


def test_planted_behaviour_segments_prefer_their_categories(behaviour):
    items, pb = behaviour
    joined = pb.interactions.join(pb.truth, on="user_id").join(items.select("item_id", "categories"), on="item_id")
    for s, style in enumerate(pb.styles):
        mine = joined.filter(pl.col("segment_id") == s)
        others = joined.filter(pl.col("segment_id") != s)

        def share(frame: pl.DataFrame, cats=style.categories) -> float:
            return frame.select(pl.col("categories").list.eval(pl.element().is_in(list(cats))).list.any().mean()).item()

        assert share(mine) > share(others) + 0.15, style
        liked = mine.filter(pl.col("categories").list.eval(pl.element().is_in(list(style.categories))).list.any())
        assert liked["rating"].mean() > mine["rating"].mean()


def test_planted_behaviour_labels_and_seed(planted, behaviour):
    ds, _ = planted
    _, pb = behaviour
    ids = ["3", "1", "400"]
    assert pb.labels_for(ids).tolist() == [pb.truth.filter(pl.col("user_id") == u)["segment_id"].item() for u in ids]
    again = planted_behaviour(ds.items, 400, k=3, min_ratings=8, median_ratings=12, max_ratings=25,
                              rng=np.random.default_rng(0))  # fmt: skip
    assert again.interactions.equals(pb.interactions) and again.truth.equals(pb.truth)


def test_planted_behaviour_needs_enough_categories(planted):
    ds, _ = planted
    with pytest.raises(DataError, match="too few for 20 distinct pairs"):
        planted_behaviour(ds.items, 100, k=20, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="positive weights"):
        planted_behaviour(ds.items, 100, k=3, min_ratings=5, item_popularity=np.zeros(ds.items.height),
                          rng=np.random.default_rng(0))  # fmt: skip
