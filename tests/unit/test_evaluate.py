"""Metrics against hand-computed examples (empty, perfect, no-overlap cases too), properties, and the aggregates."""

import json
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embeddings.encoder import Embeddings
from segmentation.evaluate import (
    USER_GROUPS,
    average_precision_at_k,
    bootstrap_ci,
    calibration_kl,
    catalogue_coverage,
    evaluate_rankings,
    evaluate_ratings,
    expected_calibration_error,
    gini_index,
    group_gap,
    hit_at_k,
    intra_list_diversity,
    mae,
    ndcg_at_k,
    novelty,
    popularity_bias,
    precision_at_k,
    ranking_per_user,
    rating_calibration,
    recall_at_k,
    reciprocal_rank_at_k,
    rmse,
    serendipity,
    user_groups,
)

L2 = math.log2

# ----------------------------------------------------------------------------- rating accuracy


def test_rmse_mae_hand():
    y, p = [1.0, 2.0, 3.0], [2.0, 2.0, 5.0]  # errors 1, 0, 2
    assert rmse(y, p) == pytest.approx(math.sqrt(5 / 3))
    assert mae(y, p) == pytest.approx(1.0)
    assert rmse(y, y) == 0.0 and mae(y, y) == 0.0
    assert math.isnan(rmse([], [])) and math.isnan(mae([], []))
    with pytest.raises(ValueError, match="differ in length"):
        rmse([1.0], [1.0, 2.0])


def test_rating_calibration_and_ece_hand():
    bins = rating_calibration([3.0, 4.0, 5.0], [3.2, 3.3, 4.9], edges=(3.0, 4.0, 5.0))
    assert bins == [
        {"lo": 3.0, "hi": 4.0, "n": 2, "predicted": pytest.approx(3.25), "observed": 3.5},
        {"lo": 4.0, "hi": 5.0, "n": 1, "predicted": 4.9, "observed": 5.0},
    ]
    assert expected_calibration_error(bins) == pytest.approx((2 * 0.25 + 1 * 0.1) / 3)
    # perfectly calibrated: every bin's mean prediction equals its mean rating
    assert expected_calibration_error(rating_calibration([2.0, 4.0], [2.0, 4.0])) == 0.0
    assert math.isnan(expected_calibration_error([]))
    # out-of-range predictions fall into the end bins; empty bins are left out
    out = rating_calibration([1.0, 5.0], [0.2, 6.0])
    assert [(b["lo"], b["n"]) for b in out] == [(1.0, 1), (4.5, 1)]


# ----------------------------------------------------------------------------- top-k accuracy


def test_topk_metrics_hand():
    ranked, rel, k = ["a", "b", "c", "d"], {"b", "d", "e"}, 4  # hits at ranks 2 and 4
    assert precision_at_k(ranked, rel, k) == 0.5
    assert recall_at_k(ranked, rel, k) == pytest.approx(2 / 3)
    assert hit_at_k(ranked, rel, k) == 1.0
    assert reciprocal_rank_at_k(ranked, rel, k) == 0.5
    assert average_precision_at_k(ranked, rel, k) == pytest.approx((1 / 2 + 2 / 4) / 3)
    dcg = 1 / L2(3) + 1 / L2(5)
    idcg = 1 / L2(2) + 1 / L2(3) + 1 / L2(4)
    assert ndcg_at_k(ranked, rel, k) == pytest.approx(dcg / idcg)  # 0.49819
    assert ndcg_at_k(ranked, rel, k) == pytest.approx(0.498189, abs=1e-6)


def test_topk_metrics_cutoff_and_ideal_uses_min_k_relevant():
    ranked, rel = ["x", "a", "b"], {"a", "b", "c", "d"}
    # k = 2: one hit at rank 2; IDCG has min(2, 4) = 2 hits
    assert ndcg_at_k(ranked, rel, 2) == pytest.approx((1 / L2(3)) / (1 + 1 / L2(3)))
    assert precision_at_k(ranked, rel, 2) == 0.5 and recall_at_k(ranked, rel, 2) == 0.25
    assert average_precision_at_k(ranked, rel, 2) == pytest.approx((1 / 2) / 2)


@pytest.mark.parametrize(
    ("ranked", "rel", "want"),
    [
        (["a", "b"], {"a", "b"}, 1.0),  # perfect
        (["a", "b"], {"c"}, 0.0),  # no overlap
        ([], {"a"}, 0.0),  # empty list
        (["a"], set(), 0.0),  # nothing relevant
    ],
)
def test_topk_edge_cases(ranked, rel, want):
    for f in (ndcg_at_k, hit_at_k, reciprocal_rank_at_k, average_precision_at_k, recall_at_k):
        assert f(ranked, rel, 2) == want
    assert precision_at_k(ranked, rel, 2) == (want if len(ranked) == 2 else 0.0)


def test_k_must_be_positive():
    with pytest.raises(ValueError, match="k must be"):
        precision_at_k(["a"], {"a"}, 0)


ids = st.sampled_from(list("abcdefgh"))


@settings(max_examples=80, deadline=None)
@given(st.lists(ids, unique=True, max_size=8), st.sets(ids, max_size=8), st.integers(1, 8))
def test_topk_properties(ranked, rel, k):
    vals = [f(ranked, rel, k) for f in (precision_at_k, recall_at_k, ndcg_at_k, hit_at_k, reciprocal_rank_at_k,
                                        average_precision_at_k)]  # fmt: skip
    assert all(0.0 <= v <= 1.0 + 1e-12 for v in vals)
    assert recall_at_k(ranked, rel, k) <= recall_at_k(ranked, rel, k + 1) + 1e-12
    # the ideal list scores 1
    if rel:
        ideal = sorted(rel) + [i for i in ranked if i not in rel]
        assert ndcg_at_k(ideal, rel, k) == pytest.approx(1.0)
        assert average_precision_at_k(ideal, rel, k) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- beyond accuracy


def test_coverage_gini_novelty_hand():
    assert catalogue_coverage([["a", "b"], ["b", "c"]], 10) == pytest.approx(0.3)
    assert catalogue_coverage([], 10) == 0.0 and math.isnan(catalogue_coverage([["a"]], 0))
    assert gini_index([0, 0, 0, 4]) == pytest.approx((2 * 4 - 4 - 1) * 4 / (4 * 4))  # 0.75
    assert gini_index([4], n_catalogue=4) == pytest.approx(0.75)  # zeros added for unrecommended items
    assert gini_index([3, 3, 3]) == 0.0
    assert math.isnan(gini_index([0, 0]))
    assert novelty(["a", "b"], {"a": 0.5, "b": 0.25}, floor=0.01) == pytest.approx(1.5)
    assert novelty(["z"], {}, floor=0.125) == pytest.approx(3.0)
    assert math.isnan(novelty([], {}, floor=0.1))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=30))
def test_gini_bounds(counts):
    g = gini_index(counts)
    assert math.isnan(g) if sum(counts) == 0 else -1e-12 <= g <= 1.0


def test_intra_list_diversity_hand():
    e1, e2 = np.array([1.0, 0.0]), np.array([0.0, 3.0])
    assert intra_list_diversity(np.stack([e1, e2])) == pytest.approx(1.0)  # orthogonal
    assert intra_list_diversity(np.stack([e1, e1])) == pytest.approx(0.0)  # identical
    assert intra_list_diversity(np.stack([e1, e1, e2])) == pytest.approx(2 / 3)  # pairs: 0, 1, 1
    assert intra_list_diversity(np.stack([e1, -e1])) == pytest.approx(2.0)
    assert math.isnan(intra_list_diversity(e1[None, :]))


def test_serendipity_and_popularity_bias_hand():
    assert serendipity(["a", "b", "c"], {"a", "c"}, ["a"], 3) == pytest.approx(1 / 3)  # only c is unexpected
    assert serendipity(["a", "b"], {"a", "b"}, ["a", "b"], 2) == 0.0  # everything expected
    assert serendipity(["a", "b"], set(), [], 2) == 0.0
    assert popularity_bias([0.5, 0.5], [0.25, 0.25]) == pytest.approx(2.0)
    assert popularity_bias([0.1], [0.1]) == pytest.approx(1.0)
    assert math.isnan(popularity_bias([], [0.1]))


def test_calibration_kl_hand():
    genres = {"i1": ["A", "B"], "i2": ["A"], "i3": ["C"]}
    assert calibration_kl(["i2"], ["i2"], genres) == 0.0  # same distribution
    # no overlap: q~(A) = 0.01 * 1 -> KL = log(1 / 0.01)
    assert calibration_kl(["i2"], ["i3"], genres) == pytest.approx(math.log(100))
    # p = (A .75, B .25); q = (A 1): q~ = (A .99 + .0075, B .0025)
    want = 0.75 * math.log(0.75 / 0.9975) + 0.25 * math.log(0.25 / 0.0025)
    assert calibration_kl(["i1", "i2"], ["i2"], genres) == pytest.approx(want)
    assert math.isnan(calibration_kl([], ["i1"], genres))


# ----------------------------------------------------------------------------- bootstrap and gaps


def test_bootstrap_ci():
    assert bootstrap_ci([2.0, 2.0, 2.0], n_boot=50) == [2.0, 2.0]
    assert all(math.isnan(v) for v in bootstrap_ci([], n_boot=50))
    assert all(math.isnan(v) for v in bootstrap_ci([1.0], n_boot=0))
    # ratio of sums with a transform: per-user squared-error sums and counts -> RMSE over rows
    lo, hi = bootstrap_ci([4.0, 4.0], denominators=[1.0, 1.0], transform=math.sqrt, n_boot=20)
    assert lo == hi == 2.0
    v = np.random.default_rng(0).normal(size=200)
    a, b = bootstrap_ci(v, n_boot=300, seed=1)
    assert a < v.mean() < b and bootstrap_ci(v, n_boot=300, seed=1) == [a, b]


def test_group_gap_hand():
    out = group_gap([1.0, 1.0, 0.0, 0.0], ["a", "a", "b", "b"], min_group_size=2, n_boot=50)
    assert out["groups"] == {"a": 1.0, "b": 0.0} and out["n"] == {"a": 2, "b": 2}
    assert out["gap"] == 1.0 and out["max_group"] == "a" and out["min_group"] == "b"
    assert out["gap_ci"] == [1.0, 1.0]  # no variation within groups
    # groups below min_group_size are reported, not compared; None labels are left out
    small = group_gap([1.0, 0.0, 5.0], ["a", "b", None], min_group_size=2)
    assert small["gap"] is None and small["groups"] == {"a": 1.0, "b": 0.0}
    # RMSE per group from error sums and counts
    rm = group_gap([8.0, 2.0], ["x", "y"], denominators=[2.0, 2.0], transform=math.sqrt, min_group_size=1, n_boot=0)
    assert rm["groups"] == {"x": 2.0, "y": 1.0} and rm["gap"] == 1.0 and rm["gap_ci"] is None


# ----------------------------------------------------------------------------- user groups


def test_user_groups_full_and_missing_attributes():
    inter = pl.DataFrame({"user_id": ["1"] * 1 + ["2"] * 2 + ["3"] * 3 + ["4"] * 4, "item_id": ["x"] * 10})
    users = pl.DataFrame({"user_id": ["1", "2", "3", "4", "5"], "gender": ["F", "M", "", "M", "F"],
                          "age": ["17", "24", "30", "abc", "60"]})  # fmt: skip
    g = user_groups(users, inter)
    assert g.schema == USER_GROUPS and g["user_id"].to_list() == ["1", "2", "3", "4", "5"]
    assert g["gender"].to_list() == ["F", "M", None, "M", "F"]
    assert g["age_band"].to_list() == ["<18", "18-24", "25-34", None, "55+"]
    assert g["activity"].to_list() == ["Q1 (least active)", "Q2", "Q3", "Q4 (most active)", "none"]
    bare = user_groups(None, inter)
    assert bare.schema == USER_GROUPS and bare["gender"].null_count() == 4 and bare["age_band"].null_count() == 4
    only_ids = user_groups(pl.DataFrame({"user_id": ["1"], "occupation": ["x"]}), inter)
    assert only_ids.schema == USER_GROUPS and only_ids.height == 4


# ----------------------------------------------------------------------------- aggregates


def _strict_json(d: dict) -> None:
    json.dumps(d, allow_nan=False)


def test_evaluate_ratings_hand():
    test = pl.DataFrame({"user_id": ["a", "a", "b", "c"], "item_id": ["1", "2", "1", "3"],
                         "rating": [4.0, 2.0, 5.0, 3.0]})  # fmt: skip
    groups = pl.DataFrame({"user_id": ["a", "b", "c"], "segment_id": pl.Series([0, 0, 1], dtype=pl.Int32),
                           "gender": ["F", "M", None]})  # fmt: skip
    preds = {"global": np.array([3.0, 2.0, 5.0, 3.0]), "perfect": np.array([4.0, 2.0, 5.0, 3.0])}
    out = evaluate_ratings(test, preds, groups, n_boot=20, seed=0, min_group_size=1)
    _strict_json(out)
    g = out["global"]
    assert g["rmse"] == pytest.approx(math.sqrt(1 / 4)) and g["mae"] == pytest.approx(0.25) and g["n"] == 4
    assert g["per_segment"]["0"]["rmse"] == pytest.approx(math.sqrt(1 / 3)) and g["per_segment"]["0"]["n"] == 3
    assert g["per_segment"]["1"]["rmse"] == 0.0
    gap = g["fairness"]["segment_id"]["rmse"]
    assert gap["gap"] == pytest.approx(math.sqrt(1 / 3)) and gap["max_group"] == "0"
    assert g["fairness"]["gender"]["rmse"]["groups"] == {"F": pytest.approx(math.sqrt(0.5)), "M": 0.0}
    assert out["perfect"]["rmse"] == 0.0 and out["perfect"]["calibration"]["ece"] == 0.0
    lo, hi = g["rmse_ci"]
    assert lo <= g["rmse"] <= hi
    with pytest.raises(ValueError, match="has 2 values; test has 4 rows"):
        evaluate_ratings(test, {"bad": np.ones(2)}, groups)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_ratings(test, {"bad": np.array([1.0, np.nan, 1.0, 1.0])}, groups)


def test_ranking_per_user_hand():
    test = pl.DataFrame({"user_id": ["a", "a", "b", "c"], "item_id": ["1", "2", "1", "9"],
                         "rating": [5.0, 4.0, 2.0, 4.0]})  # fmt: skip
    recs = pl.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["2", "3", "1"], "rank": [1, 2, 1]})
    out = ranking_per_user(recs, test, k=2, relevance_threshold=4.0)
    # b has no relevant item (rating 2) and is left out; c has no list and scores 0
    assert out["user_id"].to_list() == ["a", "c"]
    a = out.row(0, named=True)
    assert a["precision"] == 0.5 and a["recall"] == 0.5 and a["mrr"] == 1.0 and a["hit"] == 1.0
    assert a["ndcg"] == pytest.approx(1 / (1 + 1 / L2(3)))
    assert out.row(1, named=True)["ndcg"] == 0.0


def test_evaluate_ratings_with_a_test_user_in_no_segment():
    """A user whose rows all fell in test has no segment (null after the join): reported overall, not per segment.

    This crashed an implicit run after half an hour ('arrays used as indices must be of integer type')."""
    test = pl.DataFrame({"user_id": ["a", "b", "z"], "item_id": ["1", "1", "2"], "rating": [4.0, 2.0, 3.0]})
    groups = pl.DataFrame({"user_id": ["a", "b"], "segment_id": pl.Series([0, 1], dtype=pl.Int32)})
    out = evaluate_ratings(test, {"global": np.array([4.0, 3.0, 1.0])}, groups, n_boot=10, seed=0)["global"]
    assert out["n"] == 3 and set(out["per_segment"]) == {"0", "1"}
    assert out["per_segment"]["1"]["rmse"] == 1.0 and out["per_segment"]["0"]["n"] == 1


def test_ranking_relevance_none_counts_every_held_out_item():
    test = pl.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["1", "2", "1"], "rating": [1.0, 30.0, 2.0]})
    recs = pl.DataFrame({"user_id": ["a", "b"], "item_id": ["1", "1"], "rank": [1, 1]})
    implicit = ranking_per_user(recs, test, k=1, relevance_threshold=None)
    assert implicit["user_id"].to_list() == ["a", "b"] and implicit["hit"].to_list() == [1.0, 1.0]
    rated = ranking_per_user(recs, test, k=1, relevance_threshold=4.0)
    assert rated["user_id"].to_list() == ["a"] and rated["hit"].to_list() == [0.0]  # item 2 (30) was relevant


def test_evaluate_rankings_hand():
    train = pl.DataFrame({"user_id": ["a", "b", "b", "c"], "item_id": ["1", "1", "2", "1"],
                          "rating": [5.0, 4.0, 3.0, 4.0]})  # fmt: skip
    test = pl.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["2", "3", "4"], "rating": [5.0, 4.0, 1.0]})
    items = pl.DataFrame({"item_id": ["1", "2", "3", "4"], "categories": [["A"], ["A"], ["B"], ["B"]]})
    emb = Embeddings(np.array(["1", "2", "3", "4"], dtype=object),
                     np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32), "stub")  # fmt: skip
    recs = {
        "pop": pl.DataFrame({"user_id": ["a", "a", "b", "b"], "item_id": ["2", "3", "3", "4"], "rank": [1, 2, 1, 2]}),
        "other": pl.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["3", "2", "4"], "rank": [1, 2, 1]}),
    }
    groups = pl.DataFrame({"user_id": ["a", "b", "c"], "segment_id": pl.Series([0, 1, 1], dtype=pl.Int32)})
    ranking, beyond = evaluate_rankings(recs, test, train, k=2, relevance_threshold=4.0, item_embeddings=emb,
                                        items=items, groups=groups, n_boot=20, min_group_size=1)  # fmt: skip
    _strict_json(ranking)
    _strict_json(beyond)
    r = ranking["pop"]
    assert set(r) >= {"precision@2", "recall@2", "ndcg@2", "hit@2", "mrr@2", "map@2", "ndcg@2_ci", "per_segment",
                      "fairness"}  # fmt: skip
    assert r["n_users"] == 2 and r["ndcg@2"] == 1.0 and r["precision@2"] == 0.5
    assert ranking["other"]["ndcg@2"] == pytest.approx((1 / L2(3)) / 2)
    assert r["per_segment"]["1"]["n"] == 1
    assert r["fairness"]["segment_id"]["ndcg@2"]["groups"] == {"0": 1.0, "1": 1.0}
    b = beyond["pop"]
    assert b["coverage"] == pytest.approx(3 / 4)  # items 2, 3, 4 of 4
    assert b["gini"] == pytest.approx(gini_index([1, 2, 1], n_catalogue=4))
    # popularity: item 1 by 3 of 3 users, item 2 by 1 -> phi(2) = 1/3; items 3, 4 unseen in train -> floor 1/3
    assert b["novelty"] == pytest.approx(L2(3))
    assert b["ils@2"] == pytest.approx(0.5)  # a: (2, 3) distance 1; b: (3, 4) distance 0
    # the primitive list ranks train items only: a (seen 1) expects [2], so its hit on 2 is expected;
    # b (seen 1, 2) expects nothing, so its hit on 3 is serendipitous: (0 + 1/2) / 2 users with relevant items
    assert b["serendipity"] == pytest.approx(0.25)
    assert beyond["other"]["serendipity"] == pytest.approx(0.0)
    assert b["calibration_kl"] is not None and b["per_segment"]["0"]["n"] == 1
    # mean list popularity (a: (1/3 + 0) / 2, b: 0) over mean profile popularity (a: 1, b: (1 + 1/3) / 2)
    assert b["popularity_bias"] == pytest.approx(((1 / 6 + 0) / 2) / ((1 + 2 / 3) / 2))  # 0.1


def test_group_gap_ci_spans_zero_without_a_real_difference():
    """Two groups drawn from one distribution: the gap's CI must be able to reach 0 (a max-min bootstrap never does)."""
    rng = np.random.default_rng(3)
    v = rng.normal(size=400)
    out = group_gap(v, ["a"] * 200 + ["b"] * 200, n_boot=300, seed=0)
    lo, hi = out["gap_ci"]
    assert lo < 0 < hi
