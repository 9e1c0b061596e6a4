"""The flow's rank stage: top-k lists for the test users, and what to recommend to each segment from its members'
lists (the typed ``segment_top_items`` aggregation; the report reads ``Rankings.by_segment``)."""

from collections import Counter

import numpy as np
import polars as pl

from segmentation.cluster import Segmentation
from segmentation.config import EvalConfig, RankerConfig
from segmentation.data import Dataset, Split, split_ratings
from segmentation.evaluate import evaluate_rankings, ranked_test, ranking_per_user
from segmentation.rank import make_ranker, rank_test_users
from segmentation.rank.stage import sample_segment_members


def _run(config: RankerConfig | None = None, evaluation: EvalConfig | None = None) -> tuple:
    rng = np.random.default_rng(3)
    users = [f"u{u}" for u in range(30)]
    rows = [(u, str(i), float(rng.integers(1, 6)), 1_600_000_000 + k)
            for k, u in enumerate(users) for i in rng.choice(np.arange(1, 41), 8, replace=False)]  # fmt: skip
    inter = pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "rating": pl.Float64,
                                       "timestamp": pl.Int64}, orient="row")  # fmt: skip
    # items 1..40 as strings ("10" sorts before "9" as text); item 7 has no title in the catalogue
    items = pl.DataFrame({"item_id": [str(i) for i in range(1, 41)],
                          "title": [None if i == 7 else f"Item {i}" for i in range(1, 41)]})  # fmt: skip
    test = inter.filter(pl.col("timestamp") % 5 == 0).group_by("user_id").head(1)
    train = inter.join(test, on=["user_id", "item_id"], how="anti")
    split = Split(train, train.head(0), test, "random90")
    labels = [0] * 12 + [1] * 10 + [-1] * 8
    assignments = pl.DataFrame({"user_id": users, "segment_id": labels}, schema={"user_id": pl.String,
                                                                                "segment_id": pl.Int32})  # fmt: skip
    seg = Segmentation(assignments, np.zeros((30, 2), np.float32), 2, 5, {})
    dataset = Dataset(inter, items, None, "tiny")
    config = config or RankerConfig(rankers=["item-knn", "most-popular"], knn_neighbors=10)
    out = rank_test_users(split, dataset, None, seg, config, evaluation or EvalConfig(k=5), seed=0)
    return out, assignments, split, dataset


def test_every_ranker_lists_the_test_users_and_the_last_one_recommends_to_each_segment():
    out, assignments, split, dataset = _run()
    assert set(out.recs) == {"item-knn", "most-popular"} and out.primary == "most-popular"
    assert set(out.seconds) == set(out.recs)
    test_users = set(split.test["user_id"])
    assert all(
        set(r["user_id"]) == test_users and r.group_by("user_id").len()["len"].max() <= 5 for r in out.recs.values()
    )
    # by hand: the primary ranker's list for every member; share = members whose list holds the item / members;
    # best share first, ties by the smaller id as a number; outliers (-1) are a segment of their own here
    lists = make_ranker("most-popular", RankerConfig()).fit(split.train_full, items=dataset.items).recommend(
        assignments["user_id"].to_list(), 5, exclude_seen=True)  # fmt: skip
    of = dict(zip(assignments["user_id"], assignments["segment_id"]))
    size = Counter(of.values())
    held = Counter((of[u], i) for u, i in zip(lists["user_id"], lists["item_id"]))
    titles = dict(zip(dataset.items["item_id"], dataset.items["title"]))
    expected = {}
    for sid in sorted(size):
        best = sorted((i for s, i in held if s == sid), key=lambda i: (-held[sid, i], int(i)))[:5]
        expected[sid] = [(i, titles[i] or i, round(held[sid, i] / size[sid], 4)) for i in best]
    assert out.by_segment == expected
    # the data has ties whose numeric and text orders differ, and an item without a title (shown by its id)
    assert out.by_segment[0][:3] == [("5", "Item 5", 0.75), ("7", "7", 0.75), ("12", "Item 12", 0.75)]


def test_above_the_dense_budget_the_stage_ranks_with_als_and_says_why(caplog, monkeypatch):
    # a catalogue whose dense items x items tables would exceed the budget (the estimate made huge): item-kNN is
    # left out, ALS ranks every test user and is the primary
    import segmentation.rank.factory as factory

    monkeypatch.setattr(factory, "dense_mib", lambda n_items: 10_000.0)
    config = RankerConfig(rankers=["most-popular", "item-knn"], knn_neighbors=10, dense_budget_mib=1)
    with caplog.at_level("INFO", logger="segmentation.rank.factory"):
        out, _, split, _ = _run(config)
    assert list(out.recs) == ["most-popular", "als"] and out.primary == "als"
    assert set(out.recs["als"]["user_id"]) == set(split.test["user_id"])
    assert out.by_segment and "left out: item-knn" in caplog.text


def test_a_low_ranking_cap_lists_and_scores_a_seeded_sample_of_the_test_users(caplog):
    out, _, split, _ = _run()
    n_test = split.test["user_id"].n_unique()
    assert out.sample is not None and not out.sample.sampled and len(out.sample.users) == n_test == 6
    with caplog.at_level("INFO", logger="segmentation.rank.stage"):
        low, _, _, _ = _run(evaluation=EvalConfig(k=5, ranking_max_users=3))
    sampled = set(low.sample.users)
    assert len(sampled) == 3 and low.sample.sampled and low.sample.n_test_users == n_test
    assert all(set(r["user_id"]) == sampled for r in low.recs.values())
    assert _run(evaluation=EvalConfig(k=5, ranking_max_users=3))[0].sample == low.sample  # seeded
    assert "6 test users, over evaluate.ranking_max_users = 3" in caplog.text
    # the evaluation scores the same users: on the whole test split the 3 users without a list would count 0
    ranked, summary = ranked_test(split.test, low.sample)
    assert set(ranked["user_id"]) == sampled
    assert summary["sampled"] and summary["n_users"] == 3 and summary["n_test_users"] == 6
    assert "uniform sample of 3 of the 6 test users" in summary["note"]
    recs = low.recs["item-knn"]
    assert set(ranking_per_user(recs, ranked, k=5, relevance_threshold=None)["user_id"]) == sampled
    assert len(ranking_per_user(recs, split.test, k=5, relevance_threshold=None)) == 6
    ranking, beyond = evaluate_rankings(low.recs, ranked, split.train_full, k=5, relevance_threshold=None,
                                        item_embeddings=None, items=None, groups=pl.DataFrame({"user_id": list(sampled)}),
                                        n_boot=50)  # fmt: skip
    assert ranking["item-knn"]["n_users"] == 3 and ranking["item-knn"]["ndcg@5_ci"] is not None
    assert beyond["item-knn"]["n_users"] == 3


def test_a_low_segment_cap_aggregates_a_seeded_sample_of_each_segments_members(caplog):
    config = RankerConfig(rankers=["most-popular"], segment_max_users=5)
    with caplog.at_level("INFO", logger="segmentation.rank.stage"):
        out, assignments, split, dataset = _run(config)
    assert "3 segment(s) over ranker.segment_max_users = 5 members (segment -1: 8, segment 0: 12, segment 1: 10)" \
        in caplog.text  # fmt: skip
    members = sample_segment_members(assignments, 5, 0)
    assert sorted(members.group_by("segment_id").len()["len"].to_list()) == [5, 5, 5]
    assert members.equals(sample_segment_members(assignments, 5, 0))
    lists = make_ranker("most-popular", config).fit(split.train_full, items=dataset.items).recommend(
        members["user_id"].to_list(), 5, exclude_seen=True)  # fmt: skip
    of = dict(zip(members["user_id"], members["segment_id"]))
    held = Counter((of[u], i) for u, i in zip(lists["user_id"], lists["item_id"]))
    for sid, top in out.by_segment.items():
        assert [share for _, _, share in top] == sorted((held[sid, i] / 5 for i, _, _ in top), reverse=True)
        assert all(share * 5 == round(share * 5) for _, _, share in top)  # shares of 5 sampled members


def test_the_default_caps_leave_movielens_100k_as_it_was(ml100k):
    """943 users: the default caps sample nobody, and the rank stage lists and aggregates exactly as with no cap."""
    split = split_ratings(ml100k.interactions, "random90", seed=0)
    users = split.train_full["user_id"].unique().sort()
    labels = np.random.default_rng(0).integers(-1, 6, len(users)).astype(np.int32)
    assignments = pl.DataFrame({"user_id": users, "segment_id": labels})
    seg = Segmentation(assignments, np.zeros((len(users), 2), np.float32), 6, 5, {})
    config = RankerConfig(rankers=["most-popular"])
    default = rank_test_users(split, ml100k, None, seg, config, EvalConfig(), seed=0)
    uncapped = rank_test_users(split, ml100k, None, seg, config.model_copy(update={"segment_max_users": 0}),
                               EvalConfig(ranking_max_users=0), seed=0)  # fmt: skip
    assert not default.sample.sampled and len(default.sample.users) == split.test["user_id"].n_unique()
    assert default.recs["most-popular"].equals(uncapped.recs["most-popular"])
    assert default.by_segment == uncapped.by_segment
    ranked, summary = ranked_test(split.test, default.sample)
    assert ranked is split.test and summary["sampled"] is False and summary["n_users"] == summary["n_test_users"]
