"""Top-k lists for sparse users from a popularity blend (issue 16, item 2): what the cold-start stage's ranking
gate keeps and the flow's rank stage uses.

A fitted ranker's scores of a user, standardised per user, are blended with the standardised ``log1p`` item counts
of a population (:func:`blend`, the formula of :class:`~segmentation.rank.conditioned.SegmentConditionedRanker`'s
``segment-popularity``): every train user (*popularity blend*) or the warm users of the user's segment (*segment
blend*; :func:`segment_counts`). :class:`ColdStartLists` holds what the gate kept per k (blend and weight) for the
run's sparse users and lists their top-k items with it, in batches of users (the batches of
:meth:`MatrixRanker.recommend`); every other user keeps the ranker's own list.

The gate itself (which blend, which weight, on simulated new users) is :func:`segmentation.coldstart.cold_start_users`.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from segmentation.rank.base import _CHUNK, _CHUNK_CELLS, RECOMMENDATIONS, MatrixRanker, Ranker, top_k, zscore

__all__ = ["BLENDS", "ColdStartLists", "batch_size", "blend", "segment_counts", "unwrap"]

#: What a sparse user's list can come from: the ranker's own scores, or a blend with overall or segment popularity.
BLENDS = ("primary", "popularity", "segment")


def unwrap(ranker: Ranker) -> MatrixRanker:
    """The ranker that scores: the segflow ranker's ALS fallback when it fell back, else the ranker itself.

    Raises:
        TypeError: the ranker keeps no train matrices to score from (every ranker of ``make_ranker`` does).
    """
    fallback = getattr(ranker, "fallback_", None)
    out = fallback if fallback is not None else ranker
    if not isinstance(out, MatrixRanker):
        raise TypeError(f"cold-start lists need a MatrixRanker (scores over its train matrices), not {type(out)!r}")
    return out


def batch_size(n_items: int, tables: int = 4) -> int:
    """Users per batch when ``tables`` (users x items) float64 tables are held at once: at most what
    :meth:`MatrixRanker.recommend` holds in one."""
    return max(1, min(_CHUNK, _CHUNK_CELLS // max(tables * n_items, 1)))


def blend(scores: np.ndarray, counts: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) z(scores) + weight z(counts)``, ``z`` standardising each row; ``counts``: (n, items) or
    (1, items) ``log1p`` item counts (:func:`segmentation.coldstart.segment_popularity_scores`)."""
    return (1.0 - weight) * zscore(scores) + weight * zscore(counts)


def segment_counts(ranker: MatrixRanker, labels: dict[str, int]) -> dict[int, np.ndarray]:
    """Segment -> (n_items,) interactions of its users with each of ``ranker``'s items (``labels``: user -> segment;
    users the ranker does not know are left out)."""
    base = unwrap(ranker)
    ids = list(labels)
    rows = base.users_.lookup(pl.Series(ids, dtype=pl.String), missing=-1)
    seg = np.array([labels[u] for u in ids], dtype=np.int64)
    ok = rows >= 0
    return {int(s): np.asarray(base.data_.x[rows[ok & (seg == s)]].sum(axis=0)).ravel()
            for s in np.unique(seg[ok]) if s >= 0}  # fmt: skip


@dataclass(frozen=True)
class ColdStartLists:
    """What the cold-start ranking gate kept, for the run's sparse users.

    Attributes:
        primary: the ranker the blend is made of (the run's primary ranker).
        kept: k -> (``popularity`` or ``segment``, blend weight) for each k whose gate kept a blend.
        users: each sparse user a kept k covers -> that k.
        place: each covered user under a ``segment`` k -> its segment (placed as the rating part places it);
            a user placed nowhere gets the popularity blend.
        labels: the warm users' segments (user -> segment), whose interactions make the segment counts.
    """

    primary: str
    kept: dict[int, tuple[str, float]]
    users: dict[str, int]
    place: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)

    def recommend(self, ranker: Ranker, user_ids: Sequence[str], k: int = 10) -> pl.DataFrame:
        """Top-``k`` unseen items of the covered users among ``user_ids`` from their kept blend over ``ranker`` (the
        primary ranker fitted on the run's train); other users get no row here.

        Returns:
            Frame with schema ``RECOMMENDATIONS``, in the order of ``user_ids`` then rank.
        """
        base = unwrap(ranker)
        users = [u for u in dict.fromkeys(str(u) for u in user_ids) if u in self.users]
        rows = base.users_.lookup(pl.Series(users, dtype=pl.String), missing=-1) if users else np.array([], np.int64)
        users = [u for u, r in zip(users, rows) if r >= 0]
        rows = rows[rows >= 0]
        if not users:
            return pl.DataFrame(schema=RECOMMENDATIONS)
        overall = base.popularity_.astype(np.float64)
        seg = segment_counts(base, self.labels) if any(b == "segment" for b, _ in self.kept.values()) else {}
        what = [self.kept[self.users[u]] for u in users]
        segs = np.array([self.place.get(u, -1) if b == "segment" else -1 for u, (b, _) in zip(users, what)])
        weights = np.array([w for _, w in what], dtype=np.float64)
        step = batch_size(len(base.items_))
        tops: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        for start in range(0, len(users), step):
            sl = slice(start, start + step)
            r = rows[sl]
            pop = np.log1p(np.stack([seg.get(int(s), overall) for s in segs[sl]]))  # as segment_popularity_scores
            w = weights[sl, None]
            scores = (1.0 - w) * zscore(base._scores(r)) + w * zscore(pop)
            seen = base.data_.x[r].tocoo()
            scores[seen.row, seen.col] = -np.inf
            for t, row in zip(top_k(scores, k), scores):
                t = t[np.isfinite(row[t])]
                tops.append(t)
                vals.append(row[t])
        lens = [len(t) for t in tops]
        n = sum(lens)
        return pl.DataFrame({
            "user_id": np.repeat(np.array(users, dtype=object), lens) if n else [],
            "item_id": base.items_.ids[np.concatenate(tops)] if n else [],
            "rank": np.concatenate([np.arange(1, m + 1) for m in lens]) if n else [],
            "score": np.concatenate(vals) if n else [],
        }, schema=RECOMMENDATIONS)  # fmt: skip
