"""The flow's rank stage: every configured ranker's top-k lists for the test users, and per-segment lists.

:func:`rank_test_users` fits each ranker named in ``ranker.rankers`` that fits the data's size
(:func:`~segmentation.rank.factory.choose_rankers`: above ``ranker.dense_budget_mib`` the dense items x items rankers
are left out and ALS ranks instead, with a log line saying why) on train, lists top-k unseen items for every
test user and, with the last (primary) ranker, what to recommend to each segment (:func:`segment_top_items`).
"""

import time

import polars as pl

from embeddings.encoder import Embeddings
from embeddings.partitions import Partitions
from segmentation.cluster import Segmentation
from segmentation.config import EvalConfig, RankerConfig
from segmentation.data import Dataset, Split
from segmentation.rank.base import Rankings, recommend_in_partitions
from segmentation.rank.factory import choose_rankers, make_ranker
from segmentation.rank.segments import segment_top_items

__all__ = ["rank_test_users"]


def rank_test_users(split: Split, dataset: Dataset, items: Embeddings, segmentation: Segmentation,
                    config: RankerConfig, evaluation: EvalConfig, seed: int,
                    partitions: Partitions | None = None) -> Rankings:  # fmt: skip
    """The flow's rank stage: fit each configured ranker on train and list top-k unseen items for every test user;
    with the last (primary) ranker, what to recommend to each segment (:func:`segment_top_items` of every member's
    list, as ``Rankings.by_segment``). ``partitions``: where the lists are scored, in blocks of users."""
    train = split.train_full
    test_users = split.test["user_id"].unique().sort().to_list()
    names = choose_rankers(config, train["user_id"].n_unique(), train["item_id"].n_unique()).names
    primary = names[-1]
    recs, seconds, by_segment = {}, {}, {}
    for name in names:
        t0 = time.perf_counter()
        ranker = make_ranker(name, config).fit(train, items=dataset.items, item_embeddings=items, seed=seed,
                                               implicit=dataset.implicit)  # fmt: skip
        recs[name] = recommend_in_partitions(ranker, test_users, evaluation.k, partitions=partitions)
        if name == primary:  # what to recommend to each segment, from every member's list
            everyone = recommend_in_partitions(ranker, segmentation.assignments["user_id"].to_list(), evaluation.k,
                                               partitions=partitions)  # fmt: skip
            by_segment = _segment_lists(segment_top_items(everyone, segmentation.assignments, items=dataset.items,
                                                          n=evaluation.k))  # fmt: skip
        seconds[name] = round(time.perf_counter() - t0, 3)
    return Rankings(recs, by_segment, primary, seconds)


def _segment_lists(top: pl.DataFrame) -> dict[int, list[tuple[str, str, float]]]:
    """``SEGMENT_ITEMS`` rows as segment id -> (item id, title (the id where the catalogue has none), rec_share)."""
    out: dict[int, list[tuple[str, str, float]]] = {}
    for sid, iid, title, share in top.select("segment_id", "item_id", "title", "rec_share").iter_rows():
        out.setdefault(int(sid), []).append((iid, iid if title is None else title, round(share, 4)))
    return out
