"""Top-k rankers: most-popular, item-kNN, EASE, RP3beta, ALS and segflow's own ranker.

Every ranker follows the small :class:`Ranker` protocol: ``fit(train, *, items=None,
item_embeddings=None, seed=0) -> self`` and ``recommend(user_ids, k=10, *, exclude_seen=True,
candidates=None) -> frame`` with schema ``RECOMMENDATIONS`` (user_id, item_id, rank 1-based,
score); within a list, ties break by the smaller item id (numerically when every id is an
integer). Users unknown at fit time get the most popular items, scored by their train
popularity.

Hyper-parameters that are not fixed in :class:`~segmentation.config.RankerConfig` are chosen on
a validation carve of ``train`` (``valid_fraction`` of its rows, drawn with ``seed``): the
ranker is fitted on the rest, scored by NDCG@10 on the carved rows rated at or above
``like_threshold``, and refitted on all of ``train`` with the winner.

segflow's ranker (:class:`SegflowRanker`) is a rating-aware EASE: liked items (rating >=
``like_threshold``) weigh more both as evidence and as targets (optionally with Steck's 2020
emphasised-denoising ridge), and the scores are blended with a similarity of the items'
description embeddings. On MovieLens 100k ``random90`` it beats EASE by about 0.02
NDCG@10 (docs/BENCHMARKS.md, "Top-10 ranking").

One module per family of rankers, the framework and the per-segment aggregation beside them:

- :mod:`~segmentation.rank.base`: the :class:`Ranker` protocol, ``RECOMMENDATIONS`` and
  :class:`~segmentation.rank.base.MatrixRanker` (matrices, validation carve, top-k, recommending);
- :mod:`~segmentation.rank.popularity` (:class:`MostPopular`), :mod:`~segmentation.rank.knn`
  (:class:`ItemKNN`), :mod:`~segmentation.rank.ease` (:class:`EASE`), :mod:`~segmentation.rank.rp3beta`
  (:class:`RP3beta`), :mod:`~segmentation.rank.als` (:class:`ALS`, from ``implicit``: no dense table),
  :mod:`~segmentation.rank.segflow` (:class:`SegflowRanker`);
- :mod:`~segmentation.rank.factory`: ``RANKERS`` and :func:`make_ranker`, the names the configuration accepts, and
  :func:`choose_rankers`, which of them fit a given size (dense ones only within
  ``ranker.dense_budget_mib``, ALS above it; logged with the reason);
- :mod:`~segmentation.rank.segments`: what to recommend to each segment (:func:`segment_top_items`);
- :mod:`~segmentation.rank.conditioned`: recommending within segments (:class:`SegmentConditionedRanker`: a fitted
  ranker blended with the segment's popularity, restricted to the segment's items, or blended with an EASE refitted
  on the segment's members, each kept per segment only where a validation gate says it helps);
- :mod:`~segmentation.rank.stage`: the flow's rank stage (:func:`rank_test_users`; its result, :class:`Rankings`, lives in ``base``).
  Past ``evaluate.ranking_max_users`` test users it lists top-k for a seeded sample of them (:class:`RankingSample`), and
  what to recommend to a segment comes from at most ``ranker.segment_max_users`` sampled members.

A new family of rankers is a new module here: a subclass of
``MatrixRanker`` with ``_fit_model`` and ``_scores`` (or any class that follows :class:`Ranker`),
registered by name in :mod:`~segmentation.rank.factory` and re-exported below.

>>> import polars as pl
>>> train = pl.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["1", "2", "1"], "rating": [5.0, 4.0, 3.0]})
>>> MostPopular().fit(train).recommend(["b"], k=1)["item_id"].to_list()
['2']
"""

from segmentation.rank.als import ALS
from segmentation.rank.base import RECOMMENDATIONS, Ranker, Rankings, RankingSample
from segmentation.rank.conditioned import CONDITIONED_KINDS, SEGMENT_RANKER_REPORT, SegmentConditionedRanker
from segmentation.rank.ease import EASE
from segmentation.rank.factory import RANKERS, RankerChoice, choose_rankers, make_ranker
from segmentation.rank.knn import ItemKNN
from segmentation.rank.popularity import MostPopular
from segmentation.rank.rp3beta import RP3beta
from segmentation.rank.segflow import SegflowRanker
from segmentation.rank.segments import SEGMENT_ITEMS, recommend_for_segment, segment_top_items
from segmentation.rank.stage import rank_test_users

__all__ = [
    "ALS",
    "CONDITIONED_KINDS",
    "EASE",
    "RANKERS",
    "RECOMMENDATIONS",
    "SEGMENT_ITEMS",
    "SEGMENT_RANKER_REPORT",
    "ItemKNN",
    "MostPopular",
    "RP3beta",
    "Ranker",
    "RankerChoice",
    "RankingSample",
    "Rankings",
    "SegflowRanker",
    "SegmentConditionedRanker",
    "choose_rankers",
    "make_ranker",
    "rank_test_users",
    "recommend_for_segment",
    "segment_top_items",
]
