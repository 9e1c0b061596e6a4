"""The second split test: a mixture of multinomials over the categories a segment's users chose."""

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

from embeddings.encoder import Embeddings
from segmentation.cluster import ASSIGNMENTS, NOISE, split_merged
from segmentation.config import ClusterConfig, ReduceConfig
from segmentation.mixture import fit_mixture, split_by_categories
from segmentation.synthetic import light_category_counts


def _light_users(sizes: list[int], seed: int = 0, categories: int = 20, taste: float = 0.75,
                 ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Users of 3-10 interactions in groups of two own categories (:func:`light_category_counts`)."""
    return light_category_counts(sizes, categories, taste=taste, seed=seed)


def test_two_light_groups_drawn_as_one_segment_come_apart():
    counts, group = _light_users([700, 500])
    found = split_by_categories(counts, min_size=100, bar=0.9, seed=0)
    assert found.bic_parts == 2 and found.parts is not None and found.why == "split"
    assert found.stability[2] >= 0.9
    assert adjusted_rand_score(group, found.parts) > 0.9  # 3-10 picks each: a few users are ambiguous
    # the same seed gives the same parts; the kept mixture places other users (the segment's outliers)
    again = split_by_categories(counts, min_size=100, bar=0.9, seed=0)
    assert again.parts is not None and (again.parts == found.parts).all()
    np.testing.assert_array_equal(found.assign(sp.csr_matrix(counts[:50])), found.parts[:50])


def test_one_taste_stays_whole_and_a_high_bar_or_a_large_smallest_part_keeps_a_pair():
    one, _ = _light_users([1200], seed=1)
    kept = split_by_categories(one, min_size=100, bar=0.9, seed=0)
    assert kept.parts is None and kept.mixture is None
    assert kept.bic_parts == 1 or all(v < 0.9 for v in kept.stability.values())
    pair, _ = _light_users([700, 500], seed=2)
    assert split_by_categories(pair, min_size=100, bar=0.9999, seed=0).parts is None
    small = split_by_categories(pair, min_size=800, bar=0.9, seed=0)
    assert small.parts is None and "hold 800 users" in small.why


def test_a_part_under_the_smallest_size_joins_its_most_probable_neighbour():
    counts, group = _light_users([700, 600, 120], seed=3, taste=0.9)
    found = split_by_categories(counts, min_size=200, bar=0.9, seed=0)
    assert found.parts is not None and found.parts.max() == 1  # two parts kept, the 120 users joined them
    assert adjusted_rand_score(group[group < 2], found.parts[group < 2]) > 0.85


def test_without_fewer_only_bics_number_of_parts_is_tried(monkeypatch):
    import segmentation.mixture as mixture

    counts, _ = _light_users([600, 500, 400], seed=6, taste=0.9)  # three plain tastes: BIC takes 3
    monkeypatch.setattr(mixture, "_stability", lambda x, fit, *args: 0.95 if fit.k == 2 else 0.5)
    fell_back = split_by_categories(counts, min_size=100, bar=0.9, seed=0)
    assert fell_back.bic_parts == 3 and fell_back.parts is not None and fell_back.parts.max() == 1
    assert fell_back.stability == {3: 0.5, 2: 0.95}
    strict = split_by_categories(counts, min_size=100, bar=0.9, seed=0, fewer=False)
    assert (
        strict.parts is None and strict.stability == {3: 0.5} and "3 parts came back at stability 0.500" in strict.why
    )


def test_fit_mixture_refuses_more_components_than_rows():
    with pytest.raises(ValueError, match="3 rows cannot hold 4 components"):
        fit_mixture(np.ones((3, 5)), 4)


def test_embeddings_carry_their_category_counts_with_their_rows():
    x = np.eye(4, dtype=np.float32)
    counts = sp.csr_matrix(np.arange(8, dtype=np.float32).reshape(4, 2))
    e = Embeddings(np.array(["a", "b", "c", "d"], dtype=object), x, "m", np.arange(4), counts)
    sub = e.subset(np.array([2, 0]))
    assert sub.category_counts.toarray().tolist() == [[4, 5], [0, 1]] and sub.activity.tolist() == [2, 0]
    with pytest.raises(ValueError, match=r"category counts \(3, 2\) do not match"):
        Embeddings(e.ids, x, "m", None, counts[:3])


@pytest.mark.umap
def test_split_merged_splits_by_categories_where_the_layout_sees_one_group():
    """One segment whose vectors are one round group (the layout test keeps it whole) while its users chose two
    sets of categories; its outlier, whose choices are the second group's, gets the second part as nearest."""
    counts, group = _light_users([700, 500], seed=4, taste=0.9)
    outlier_counts, _ = _light_users([0, 1], seed=5, taste=1.0)
    counts = np.vstack([counts, outlier_counts])
    blind = [3, 900]  # one member of each group whose items have no category: placed by direction
    counts[blind] = 0
    n = len(counts)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (n, 16)) * 0.1 + 1.0
    x[:, 0] += np.r_[np.where(group == 0, 0.03, -0.03), 0.0]  # a faint direction per group, too faint for a layout
    x[blind, 0] += [0.5, -0.5]  # the two without counts lean plainly towards their group
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    segment = np.r_[np.zeros(n - 1, np.int32), NOISE].astype(np.int32)
    a = pl.DataFrame({"user_id": [f"u{i:04d}" for i in range(n)], "segment_id": segment,
                      "membership": np.where(segment >= 0, 0.9, 0.0).astype(np.float32),
                      "nearest_segment": np.zeros(n, np.int32), "nearest_membership": np.full(n, 0.5, np.float32),
                      "soft_assigned": np.zeros(n, bool), "x": x[:, 0], "y": x[:, 1]}, schema=ASSIGNMENTS)  # fmt: skip
    users = Embeddings(a["user_id"].to_numpy(), x, "planted", counts.sum(axis=1), sp.csr_matrix(counts))
    out, k, tested = split_merged(users, a, ReduceConfig(), ClusterConfig(), 100, seed=0)
    seg = out["segment_id"].to_numpy()
    assert k == 2 and adjusted_rand_score(group, seg[:-1]) > 0.9
    (record,) = tested
    assert record["split"] and record["test"] == "categories" and record["outcome"] == "split"
    assert seg[blind[0]] == np.bincount(seg[:-1][group == 0]).argmax()  # by direction, with their group
    assert seg[blind[1]] == np.bincount(seg[:-1][group == 1]).argmax()
    (entry,) = record["categories"]  # the segment alone was tested; its parts are not tested again
    assert entry["segment"] in record["segments"] and record["parts"] == 2
    assert entry["bic_parts"] == 2 and entry["split"] and record["stability"] == entry["stability"]["2"] >= 0.9
    assert entry["min_size"] == 48  # the default segment size of 1,201 users (4 %), under the run's 100
    assert sorted(record["sizes"]) == sorted(np.bincount(seg[seg >= 0]).tolist())
    assert record["layout"]["outcome"] in ("unstable", "no parts", "parts too small")
    second = np.bincount(seg[:-1][group == 1]).argmax()
    assert seg[-1] == NOISE and out["nearest_segment"][-1] == second
    # without the counts the layout test alone decides: one segment
    plain = Embeddings(users.ids, x, "planted")
    out, k, tested = split_merged(plain, a, ReduceConfig(), ClusterConfig(), 100, seed=0)
    assert k == 1 and "categories" not in tested[0] and not tested[0]["split"]


@pytest.mark.umap
def test_split_merged_splits_by_how_members_rated_what_they_chose_where_their_categories_are_one():
    """Two groups that choose alike and rate differently (one mostly at the high level, the other at the low one):
    one multinomial by their categories, two by (rating level, category); only with cluster.split_reads_levels."""
    counts, _ = _light_users([1200], seed=7, taste=0.9)
    rng = np.random.default_rng(1)
    group = (rng.random(len(counts)) < 0.45).astype(int)
    high = rng.binomial(counts.astype(int), np.where(group == 1, 0.15, 0.85)[:, None]).astype(float)
    choices = np.hstack([counts - high, high])  # level-major: level 0 (low), then level 1 (high)
    n = len(counts)
    x = rng.normal(0, 1, (n, 16)) * 0.1 + 1.0
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    a = pl.DataFrame({"user_id": [f"u{i:04d}" for i in range(n)], "segment_id": np.zeros(n, np.int32),
                      "membership": np.full(n, 0.9, np.float32), "nearest_segment": np.zeros(n, np.int32),
                      "nearest_membership": np.full(n, 0.5, np.float32), "soft_assigned": np.zeros(n, bool),
                      "x": x[:, 0], "y": x[:, 1]}, schema=ASSIGNMENTS)  # fmt: skip
    users = Embeddings(a["user_id"].to_numpy(), x, "planted", counts.sum(axis=1), sp.csr_matrix(counts),
                       sp.csr_matrix(choices))  # fmt: skip
    out, k, tested = split_merged(users, a, ReduceConfig(), ClusterConfig(), 100, seed=0)
    assert k == 2 and adjusted_rand_score(group, out["segment_id"].to_numpy()) > 0.8
    (entry,) = tested[0]["categories"]
    assert entry["bic_parts"] == 1 and entry["split"] and tested[0]["test"] == "ratings"  # by the levels
    assert entry["levels"]["split"] and entry["levels"]["bic_parts"] == 2 and entry["levels"]["stability"]["2"] >= 0.9
    off = ClusterConfig(split_reads_levels=False)
    out, k, tested = split_merged(users, a, ReduceConfig(), off, 100, seed=0)
    assert k == 1 and not tested[0]["split"] and "levels" not in tested[0]["categories"][0]


def test_members_without_counts_take_no_part_in_the_fits_and_are_left_to_the_caller():
    """Rows of zeros fit every part alike: they would land together in every fit and lift the stability without
    evidence (1,200 of them pushed a pair at 0.88 over the 0.9 bar). They are left out of the fits and get -1."""
    weak, _ = _light_users([700, 500], seed=1, taste=0.3)
    alone = split_by_categories(weak, min_size=100, bar=0.9, seed=0)
    padded = split_by_categories(np.vstack([weak, np.zeros((1200, weak.shape[1]))]), min_size=100, bar=0.9, seed=0)
    assert padded.stability == alone.stability and (padded.parts is None) == (alone.parts is None)
    counts, group = _light_users([700, 500], seed=0)
    with_zeros = sp.csr_matrix(np.vstack([counts, np.zeros((30, counts.shape[1]))]))
    found = split_by_categories(with_zeros, min_size=100, bar=0.9, seed=-3)  # a negative seed is folded, not refused
    assert found.parts is not None and (found.parts[-30:] == -1).all() and (found.parts[:-30] >= 0).all()
    assert (found.assign(with_zeros[-2:]) == -1).all()
    assert split_by_categories(np.zeros((600, 0)), min_size=100, bar=0.9).why == "no category columns"
    assert split_by_categories(np.zeros((600, 4)), min_size=100, bar=0.9).parts is None
