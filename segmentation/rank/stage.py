"""The flow's rank stage: every configured ranker's top-k lists for the test users, and per-segment lists.

:func:`rank_test_users` fits each ranker named in ``ranker.rankers`` that fits the data's size
(:func:`~segmentation.rank.factory.choose_rankers`: above ``ranker.dense_budget_mib`` the dense items x items rankers
are left out and ALS ranks instead, with a log line saying why) on train, lists top-k unseen items for every
test user and, with the last (primary) ranker, what to recommend to each segment (:func:`segment_top_items`).

At scale both are sampled, seeded by the run's seed and logged: the test users beyond ``evaluate.ranking_max_users``
(:func:`sample_test_users`; the evaluate stage scores the same users, ``Rankings.sample``), and the members of a
segment beyond ``ranker.segment_max_users`` (:func:`sample_segment_members`).
"""

import logging
import time
from typing import Any

import numpy as np
import polars as pl

from embeddings.encoder import Embeddings
from embeddings.partitions import Partitions
from segmentation.cluster import Segmentation
from segmentation.config import EvalConfig, RankerConfig
from segmentation.data import Dataset, Split
from segmentation.rank.base import Rankings, RankingSample, recommend_in_partitions
from segmentation.rank.cold import ColdStartLists
from segmentation.rank.factory import choose_rankers, make_ranker
from segmentation.rank.segments import segment_top_items

__all__ = ["rank_test_users", "sample_segment_members", "sample_test_users"]

logger = logging.getLogger(__name__)


def sample_test_users(test: pl.DataFrame, max_users: int | None, seed: int) -> RankingSample:
    """The test users to list top-k for: every one, or above ``max_users`` (0 or None: no cap) a uniform sample of
    that many drawn with ``seed``; sorted either way. Logged when it samples."""
    users = test["user_id"].unique().sort().to_list()
    if not max_users or len(users) <= max_users:
        return RankingSample(tuple(users), len(users), max_users)
    rng = np.random.default_rng([seed, 1])  # its own stream: the same sample whatever else draws from the seed
    picked = np.sort(rng.choice(len(users), max_users, replace=False))
    logger.info("ranking: %s test users, over evaluate.ranking_max_users = %s: top-k lists and ranking metrics "
                "for a seeded uniform sample of %s of them", f"{len(users):,}", f"{max_users:,}",
                f"{max_users:,}")  # fmt: skip
    return RankingSample(tuple(users[i] for i in picked), len(users), max_users)


def sample_segment_members(assignments: pl.DataFrame, max_users: int | None, seed: int) -> pl.DataFrame:
    """``assignments`` with at most ``max_users`` members per segment (0 or None: all): a larger segment keeps a
    uniform sample drawn with ``seed``. Logged when it samples."""
    sizes = assignments.group_by("segment_id").len()
    if not max_users or sizes["len"].max() <= max_users:  # type: ignore[operator]
        return assignments
    big = sizes.filter(pl.col("len") > max_users).sort("segment_id")
    ordered = assignments.sort("user_id")
    segments = ordered["segment_id"].to_numpy()
    rng = np.random.default_rng([seed, 2])
    keep = np.ones(ordered.height, dtype=bool)
    for sid in big["segment_id"].to_list():
        keep[rng.permutation(np.flatnonzero(segments == sid))[max_users:]] = False
    kept = ordered.filter(pl.Series(keep))
    logger.info("what to recommend to each segment: %d segment(s) over ranker.segment_max_users = %s members (%s); "
                "their lists are aggregated over a seeded uniform sample of %s members each", big.height,
                f"{max_users:,}", ", ".join(f"segment {s}: {n:,}" for s, n in big.iter_rows()),
                f"{max_users:,}")  # fmt: skip
    return kept


def rank_test_users(split: Split, dataset: Dataset, items: Embeddings, segmentation: Segmentation,
                    config: RankerConfig, evaluation: EvalConfig, seed: int,
                    partitions: Partitions | None = None, cold_start: Any = None) -> Rankings:  # fmt: skip
    """The flow's rank stage: fit each configured ranker on train and list top-k unseen items for the test users
    (a seeded sample of them above ``evaluate.ranking_max_users``); with the last (primary) ranker, what to
    recommend to each segment (:func:`segment_top_items` of its members' lists, at most ``ranker.segment_max_users``
    sampled members per segment, as ``Rankings.by_segment``). ``partitions``: where the lists are scored, in blocks
    of users.

    ``cold_start``: the cold-start stage's result (``segmentation.coldstart.ColdStart``) or None; where its ranking
    gate kept a popularity blend (``cold_start.lists``, a :class:`~segmentation.rank.cold.ColdStartLists` over the
    primary ranker), the sparse test users it covers get their lists from that blend (``Rankings.cold_start``);
    every other list is the ranker's own."""
    train = split.train_full
    sample = sample_test_users(split.test, evaluation.ranking_max_users, seed)
    test_users = list(sample.users)
    names = choose_rankers(config, train["user_id"].n_unique(), train["item_id"].n_unique()).names
    primary = names[-1]
    plan: ColdStartLists | None = getattr(cold_start, "lists", None)
    cold_lists = None
    recs, seconds, by_segment = {}, {}, {}
    for name in names:
        t0 = time.perf_counter()
        ranker = make_ranker(name, config).fit(train, items=dataset.items, item_embeddings=items, seed=seed,
                                               implicit=dataset.implicit)  # fmt: skip
        recs[name] = recommend_in_partitions(ranker, test_users, evaluation.k, partitions=partitions)
        if name == primary:  # what to recommend to each segment, from its members' lists
            members = sample_segment_members(segmentation.assignments, config.segment_max_users, seed)
            everyone = recommend_in_partitions(ranker, members["user_id"].to_list(), evaluation.k,
                                               partitions=partitions)  # fmt: skip
            by_segment = _segment_lists(segment_top_items(everyone, members, items=dataset.items,
                                                          n=evaluation.k))  # fmt: skip
            if plan is not None and plan.primary == name:
                cold_lists = plan.recommend(ranker, test_users, evaluation.k)
                logger.info("cold start: %d sparse test users get their top-%d lists from the blend the cold-start "
                            "gate kept (%s)", cold_lists["user_id"].n_unique(), evaluation.k,
                            ", ".join(f"k = {k}: {b} popularity, weight {w:g}" for k, (b, w) in sorted(plan.kept.items())))  # fmt: skip
        seconds[name] = round(time.perf_counter() - t0, 3)
    return Rankings(recs, by_segment, primary, seconds, sample, cold_lists)


def _segment_lists(top: pl.DataFrame) -> dict[int, list[tuple[str, str, float]]]:
    """``SEGMENT_ITEMS`` rows as segment id -> (item id, title (the id where the catalogue has none), rec_share)."""
    out: dict[int, list[tuple[str, str, float]]] = {}
    for sid, iid, title, share in top.select("segment_id", "item_id", "title", "rec_share").iter_rows():
        out.setdefault(int(sid), []).append((iid, iid if title is None else title, round(share, 4)))
    return out
