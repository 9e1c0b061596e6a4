"""The segments as the report shows them, and the all-user reference values.

:class:`Seg` gives each segment its display name, colour and page; :func:`_segments` orders them (segments
0..K-1, then outliers) and :func:`_overall` computes what the segment pages compare against (:class:`_Overall`).
It imports from :mod:`reports._format` and :mod:`reports._charts`, which refer to these classes in type hints only.
"""

from dataclasses import dataclass

import polars as pl

from reports._charts import OUTLIER_COLOR, PALETTE
from reports._format import _get, segment_filename
from reports.model import ReportInput
from segmentation.cluster import NOISE
from segmentation.describe import SegmentProfile


@dataclass(frozen=True)
class Seg:
    """A segment as the report shows it."""

    id: int
    name: str
    color: str
    href: str
    profile: SegmentProfile | None

    @property
    def is_noise(self) -> bool:
        return self.id == NOISE

    @property
    def short(self) -> str:
        """The name cut to fit a chart axis, keeping a trailing "(...)" that tells twins apart."""
        limit = 44
        if len(self.name) <= limit:
            return self.name
        tail = self.name[self.name.rindex("(") :] if self.name.endswith(")") and "(" in self.name else ""
        if len(tail) > limit // 2:
            tail = ""
        head = self.name[: limit - len(tail) - 2].rstrip(" ,&")
        return f"{head}… {tail}".rstrip()


def _segments(data: ReportInput) -> list[Seg]:
    """Segments 0..K-1 then outliers, each with its colour and page."""
    by_id = {p.segment_id: p for p in data.profiles}
    ids = set(by_id) | set(data.assignments["segment_id"].unique().to_list() if data.assignments.height else [])
    ordered = sorted(i for i in ids if i != NOISE) + ([NOISE] if NOISE in ids else [])
    out = []
    for i, sid in enumerate(ordered):
        p = by_id.get(sid)
        name = p.name if p else ("Outliers (no clear segment)" if sid == NOISE else f"Segment {sid}")
        color = OUTLIER_COLOR if sid == NOISE else PALETTE[i % len(PALETTE)]
        out.append(Seg(int(sid), name, color, segment_filename(sid), p))
    return out


@dataclass(frozen=True)
class _Overall:
    """All-user reference values the segment pages compare against."""

    n_users: int
    mean_rating: float | None
    mean_activity: float | None
    rating_hist: dict[str, float]


def _overall(data: ReportInput, segs: list[Seg]) -> _Overall:
    n_users = data.assignments.height or int(_get(data.metrics, "data", "n_users", default=0) or 0)
    profs = [s.profile for s in segs if s.profile is not None]
    user_ratings = getattr(data, "user_ratings", None)
    if isinstance(user_ratings, pl.DataFrame) and user_ratings.height:
        r = user_ratings["rating"].round(0)
        hist = r.value_counts(normalize=True, name="p").sort("rating")
        return _Overall(n_users, float(user_ratings["rating"].mean()),
                        user_ratings.height / max(user_ratings["user_id"].n_unique(), 1),
                        {f"{k:g}": float(p) for k, p in zip(hist["rating"], hist["p"])})  # fmt: skip
    # weight each segment by its number of ratings (size x mean activity)
    w = [p.size * p.mean_activity for p in profs]
    total = sum(w)
    if not profs or total <= 0:
        return _Overall(n_users, None, None, {})
    hist: dict[str, float] = {}
    for p, wi in zip(profs, w):
        for k, share in p.rating_hist.items():
            hist[k] = hist.get(k, 0.0) + share * wi / total
    mean_r = sum(p.mean_rating * wi for p, wi in zip(profs, w)) / total
    act = total / max(sum(p.size for p in profs), 1)
    return _Overall(n_users, mean_r, act, dict(sorted(hist.items(), key=lambda kv: float(kv[0]))))
