"""Segment-conditioned rankers (issue 16, item 4): list contract, candidate restriction, batching, and the gate on a
planted within-segment taste against a random partition. Small data, no UMAP: segments are given."""

import json

import numpy as np
import polars as pl
import pytest

import segmentation.rank.conditioned as conditioned
from segmentation._errors import ConfigError, DataError, NotFittedError, SchemaError
from segmentation.config import RankerConfig
from segmentation.predict import random_partition
from segmentation.rank import (
    CONDITIONED_KINDS,
    EASE,
    RECOMMENDATIONS,
    SEGMENT_RANKER_REPORT,
    MostPopular,
    SegmentConditionedRanker,
)

N_SEG, PER, N_COMMON, BLOCK = 3, 120, 30, 20


def planted_taste(seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Users of segment s pick 5 of 30 shared items (one popularity for all) and 5 of the segment's own 20 items.

    What a segment's members chose beyond the shared items is its taste; the global popularity knows it only mixed.
    """
    rng = np.random.default_rng(seed)
    p_common = 1.0 / np.arange(1, N_COMMON + 1)
    p_block = 1.0 / np.arange(1, BLOCK + 1) ** 0.8
    rows, seg = [], []
    for s in range(N_SEG):
        for u in range(PER):
            uid = f"{s}-{u}"
            seg.append((uid, s))
            common = rng.choice(N_COMMON, 5, replace=False, p=p_common / p_common.sum())
            own = N_COMMON + s * BLOCK + rng.choice(BLOCK, 5, replace=False, p=p_block / p_block.sum())
            rows += [(uid, str(i), 5.0) for i in np.r_[common, own]]
    train = pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "rating": pl.Float64}, orient="row")
    segments = pl.DataFrame(seg, schema={"user_id": pl.String, "segment_id": pl.Int32}, orient="row")
    return train, segments


@pytest.fixture(scope="module")
def world():
    train, segments = planted_taste()
    ease = EASE(RankerConfig(ease_reg=50.0, valid_fraction=0.2)).fit(train, seed=0)
    popular = MostPopular(RankerConfig(valid_fraction=0.2)).fit(train, seed=0)
    return train, segments, ease, popular


@pytest.mark.parametrize("kind", CONDITIONED_KINDS)
def test_lists_hold_k_unseen_items_in_the_given_order(world, kind):
    train, segments, ease, _ = world
    cond = SegmentConditionedRanker(ease, kind).fit(train, segments, seed=0)
    assert cond.report_.schema == SEGMENT_RANKER_REPORT
    assert set(cond.settings_) == {0, 1, 2}  # every segment has enough validation users to be tested
    users = ["2-5", "0-1", "1-7", "unknown", "0-1"]
    recs = cond.recommend(users, 10, gated=False)  # every tested segment conditioned, kept or not
    assert recs.schema == RECOMMENDATIONS
    assert recs["user_id"].unique(maintain_order=True).to_list() == ["2-5", "0-1", "1-7", "unknown"]
    seen = train.group_by("user_id").agg(pl.col("item_id"))
    seen = dict(zip(seen["user_id"].to_list(), seen["item_id"].to_list()))
    for u, lst in recs.group_by("user_id", maintain_order=True).agg(pl.col("item_id")).iter_rows():
        assert len(lst) == 10 == len(set(lst))
        assert not set(lst) & set(seen.get(u, []))
    ranks = recs.group_by("user_id", maintain_order=True).agg(pl.col("rank"))["rank"].to_list()
    assert all(r == list(range(1, 11)) for r in ranks)


def test_restricted_candidates_are_respected_and_fall_back_when_too_few(world):
    train, segments, ease, _ = world
    counts = (train.join(segments, on="user_id").group_by("segment_id", "item_id").len()
              .filter(pl.col("len") >= 3))  # fmt: skip
    allowed = {s: set(counts.filter(pl.col("segment_id") == s)["item_id"].to_list()) for s in range(N_SEG)}
    cond = SegmentConditionedRanker(ease, "segment-candidates", grid=[{"min_count": 3}]).fit(train, segments, seed=0)
    members = segments["user_id"].to_list()
    recs = cond.recommend(members, 10, gated=False).join(segments, on="user_id")
    outside = [(s, i) for s, i in recs.select("segment_id", "item_id").iter_rows() if i not in allowed[s]]
    assert not outside
    # the global ranker does recommend items outside the segments' candidates, so the restriction changed lists
    base = ease.recommend(members, 10).join(segments, on="user_id")
    assert any(i not in allowed[s] for s, i in base.select("segment_id", "item_id").iter_rows())
    # a candidate set smaller than k unseen items: the global candidates (the global ranker's own list)
    few = SegmentConditionedRanker(ease, "segment-candidates", grid=[{"min_count": 60}]).fit(train, segments, seed=0)
    assert few.recommend(members[:40], 10, gated=False).equals(ease.recommend(members[:40], 10))


@pytest.mark.parametrize("kind", ["segment-popularity", "segment-candidates"])
def test_gate_keeps_planted_taste_and_nothing_on_a_random_partition(world, kind):
    train, segments, _, popular = world
    planted = SegmentConditionedRanker(popular, kind).fit(train, segments, seed=0)
    rep = planted.report_
    assert rep["kept"].all(), rep
    assert (rep["gate_ci_low"] > 0).all()
    shuffled = random_partition(segments, seed=0)
    control = SegmentConditionedRanker(popular, kind).fit(train, shuffled, seed=0)
    assert not control.report_["kept"].any(), control.report_
    assert control.kept_ == set()
    users = segments["user_id"].to_list()
    assert control.recommend(users, 10).equals(popular.recommend(users, 10))  # nothing kept: the global lists
    assert not planted.recommend(users, 10).equals(popular.recommend(users, 10))


def test_refit_on_any_large_group_beats_a_popularity_ranker(world):
    """The control's limit: a refitted EASE is personal, so over a non-personal global ranker it gains on random groups
    too (the gate then measures a weak global ranker, not the segments); with the planted segments it gains more."""
    train, segments, _, popular = world
    planted = SegmentConditionedRanker(popular, "segment-refit").fit(train, segments, seed=0).report_
    control = (
        SegmentConditionedRanker(popular, "segment-refit").fit(train, random_partition(segments, 0), seed=0).report_
    )
    assert planted["kept"].all() and control["kept"].any()
    gain = (planted["valid_ndcg_segment"] - planted["valid_ndcg_global"]).mean()
    assert gain > (control["valid_ndcg_segment"] - control["valid_ndcg_global"]).mean() + 0.02


def test_settings_are_chosen_from_the_grid_and_reported(world):
    train, segments, ease, _ = world
    grid = [{"source": "interactions", "alpha": 0.3}, {"source": "interactions", "alpha": 0.9}]
    cond = SegmentConditionedRanker(ease, "segment-popularity", grid=grid).fit(train, segments, seed=0)
    for s, setting in cond.settings_.items():
        assert setting in grid
        row = cond.report_.filter(pl.col("segment_id") == s)
        assert json.loads(row["setting"][0]) == setting
        assert row["n_gate"][0] + 2 <= row["n_valid"][0]


def test_batches_give_the_same_lists(world, monkeypatch):
    train, segments, ease, _ = world
    users = segments["user_id"].to_list()
    whole = SegmentConditionedRanker(ease, "segment-refit").fit(train, segments, seed=0)
    expected = whole.recommend(users, 10, gated=False)
    monkeypatch.setattr(conditioned, "_CHUNK_CELLS", 7 * len(ease.items_))  # 7 users per batch
    batched = SegmentConditionedRanker(ease, "segment-refit").fit(train, segments, seed=0)
    assert batched.report_.equals(whole.report_)
    assert batched.recommend(users, 10, gated=False).equals(expected)


def test_bad_settings_and_input_are_refused(world):
    train, segments, ease, _ = world
    with pytest.raises(ConfigError, match="unknown segment-conditioned ranker 'segment-magic'"):
        SegmentConditionedRanker(ease, "segment-magic")
    with pytest.raises(ConfigError, match="the grid of settings to try is empty"):
        SegmentConditionedRanker(ease, "segment-candidates", grid=[])
    with pytest.raises(NotFittedError):
        SegmentConditionedRanker(EASE(), "segment-popularity").fit(train, segments)
    with pytest.raises(SchemaError, match="segment assignments"):
        SegmentConditionedRanker(ease, "segment-popularity").fit(train, segments.rename({"segment_id": "segment"}))
    strangers = segments.with_columns(pl.concat_str(pl.lit("x"), pl.col("user_id")).alias("user_id"))
    with pytest.raises(DataError, match="none of the 360 users of the global ranker has a segment"):
        SegmentConditionedRanker(ease, "segment-popularity").fit(train, strangers)
    cond = SegmentConditionedRanker(ease, "segment-popularity")
    with pytest.raises(NotFittedError):
        cond.recommend(["0-1"], 10)
