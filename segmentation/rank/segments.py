"""What to recommend to a segment: its members' top-k lists, aggregated per segment."""

from collections.abc import Sequence

import polars as pl

from segmentation.rank.base import Ranker

__all__ = ["SEGMENT_ITEMS", "recommend_for_segment", "segment_top_items"]

#: Output of :func:`segment_top_items`: what to recommend to each segment.
SEGMENT_ITEMS = pl.Schema({
    "segment_id": pl.Int32, "rank": pl.Int32, "item_id": pl.String, "title": pl.String, "rec_share": pl.Float64,
    "mean_score": pl.Float64, "liked_share": pl.Float64, "lift": pl.Float64,
})  # fmt: skip


def segment_top_items(recs: pl.DataFrame, assignments: pl.DataFrame, *, train: pl.DataFrame | None = None,
                      items: pl.DataFrame | None = None, n: int = 10, like_threshold: float = 4.0) -> pl.DataFrame:  # fmt: skip
    """What to recommend to each segment: the items most often in its members' top-k lists.

    ``rec_share`` = share of the segment's members whose list holds the item (ties: higher
    ``liked_share``, then smaller item id). ``liked_share`` = share of the members who rated
    the item at or above ``like_threshold`` in ``train``; ``lift`` = that share over the share
    among all users in ``train`` (both null without ``train``).

    Args:
        recs: recommendations of the segment members (schema ``RECOMMENDATIONS``).
        assignments: ``user_id`` and ``segment_id`` of every user (noise -1 is a segment here too).
        train: train ratings, for ``liked_share`` and ``lift``.
        items: the catalogue, for ``title``.
        n: items per segment.
        like_threshold: train ratings at or above it are likes.

    Returns:
        Frame with schema ``SEGMENT_ITEMS``, by segment then rank.
    """
    a = assignments.select(pl.col("user_id").cast(pl.String), pl.col("segment_id").cast(pl.Int32))
    sizes = a.group_by("segment_id").len().rename({"len": "size"})
    joined = recs.join(a, on="user_id", how="inner")
    agg = (joined.group_by("segment_id", "item_id")
           .agg(pl.col("user_id").n_unique().alias("n_rec"), pl.col("score").mean().alias("mean_score"))
           .join(sizes, on="segment_id").with_columns((pl.col("n_rec") / pl.col("size")).alias("rec_share")))  # fmt: skip
    if train is not None:
        liked = train.filter(pl.col("rating") >= like_threshold).select(
            pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String)).unique()  # fmt: skip
        n_all = max(train["user_id"].n_unique(), 1)
        overall = liked.group_by("item_id").len().with_columns((pl.col("len") / n_all).alias("base")).drop("len")
        seg_liked = (liked.join(a, on="user_id").group_by("segment_id", "item_id").len()
                     .rename({"len": "n_liked"}))  # fmt: skip
        agg = (agg.join(seg_liked, on=["segment_id", "item_id"], how="left")
               .join(overall, on="item_id", how="left")
               .with_columns((pl.col("n_liked").fill_null(0) / pl.col("size")).alias("liked_share"))
               .with_columns(pl.when(pl.col("base") > 0).then(pl.col("liked_share") / pl.col("base"))
                             .otherwise(None).alias("lift")))  # fmt: skip
    else:
        agg = agg.with_columns(pl.lit(None, pl.Float64).alias("liked_share"), pl.lit(None, pl.Float64).alias("lift"))
    key = agg["item_id"].cast(pl.Int64, strict=False)
    agg = agg.with_columns((key if key.null_count() == 0 else agg["item_id"].rank("dense")).alias("_key"))
    agg = (agg.sort(["segment_id", "rec_share", "liked_share", "_key"], descending=[False, True, True, False],
                    nulls_last=True)
           .group_by("segment_id", maintain_order=True).head(n)
           .with_columns(pl.int_range(1, pl.len() + 1).over("segment_id").cast(pl.Int32).alias("rank")))  # fmt: skip
    if items is not None and "title" in items.columns:
        titles = items.select(pl.col("item_id").cast(pl.String), pl.col("title").cast(pl.String))
        agg = agg.join(titles, on="item_id", how="left")
    else:
        agg = agg.with_columns(pl.lit(None, pl.String).alias("title"))
    return agg.select([pl.col(c).cast(t) for c, t in SEGMENT_ITEMS.items()]).sort(["segment_id", "rank"])


def recommend_for_segment(ranker: Ranker, user_ids: Sequence[str], *, n: int = 10, k: int = 10,
                          train: pl.DataFrame | None = None, items: pl.DataFrame | None = None,
                          like_threshold: float = 4.0) -> pl.DataFrame:  # fmt: skip
    """Items to recommend to one segment: its members' top-``k`` lists, aggregated.

    Args:
        ranker: a fitted ranker.
        user_ids: the segment's members.
        n: items returned.
        k: list length per member.
        train, items, like_threshold: as in :func:`segment_top_items`.

    Returns:
        Frame with schema ``SEGMENT_ITEMS`` (``segment_id`` 0).
    """
    members = list(dict.fromkeys(str(u) for u in user_ids))
    recs = ranker.recommend(members, k, exclude_seen=True)
    assignments = pl.DataFrame({"user_id": members, "segment_id": [0] * len(members)},
                               schema={"user_id": pl.String, "segment_id": pl.Int32})  # fmt: skip
    return segment_top_items(recs, assignments, train=train, items=items, n=n, like_threshold=like_threshold)
