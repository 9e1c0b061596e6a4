"""The flow's rank stage: top-k lists for the test users, and what to recommend to each segment from its members'
lists (the typed ``segment_top_items`` aggregation; the report reads ``Rankings.by_segment``)."""

from collections import Counter

import numpy as np
import polars as pl

from segmentation.cluster import Segmentation
from segmentation.config import EvalConfig, RankerConfig
from segmentation.data import Dataset, Split
from segmentation.rank import make_ranker, rank_test_users


def _run(config: RankerConfig | None = None) -> tuple:
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
    return rank_test_users(split, dataset, None, seg, config, EvalConfig(k=5), seed=0), assignments, split, dataset


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
