"""The segments as the report shows them, and the all-user reference values.

:class:`Seg` gives each segment its display name, colour and page; :func:`_segments` orders them (segments
0..K-1, then outliers) and :func:`_overall` computes what the segment pages compare against (:class:`_Overall`).
It imports from :mod:`reports._format` and :mod:`reports._charts`, which refer to these classes in type hints only.
"""

from dataclasses import dataclass
from typing import Any

import polars as pl

from reports._charts import OUTLIER_COLOR, PALETTE
from reports._format import _get, segment_filename
from reports.model import ReportInput
from segmentation.cluster import NOISE
from segmentation.describe import SegmentProfile
from segmentation.stability import TENTATIVE


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
    def stability(self) -> float | None:
        """Mean clusterwise Jaccard over the stability refits (``segments.parquet``), None if not measured."""
        return None if self.profile is None or self.is_noise else self.profile.stability

    @property
    def tentative(self) -> bool:
        """Measured and below :data:`segmentation.stability.TENTATIVE`."""
        return self.stability is not None and self.stability < TENTATIVE

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


def rating_summary(user_ratings: pl.DataFrame | None) -> dict[str, Any] | None:
    """All users' mean rating, ratings per user and rating histogram, from train ratings (None without them)."""
    if not isinstance(user_ratings, pl.DataFrame) or not user_ratings.height:
        return None
    hist = user_ratings["rating"].round(0).value_counts(normalize=True, name="p").sort("rating")
    return {"mean_rating": float(user_ratings["rating"].mean()),  # type: ignore[arg-type]
            "mean_activity": user_ratings.height / max(user_ratings["user_id"].n_unique(), 1),
            "hist": {f"{k:g}": float(p) for k, p in zip(hist["rating"], hist["p"])}}  # fmt: skip


def _overall(data: ReportInput, segs: list[Seg]) -> _Overall:
    n_users = data.assignments.height or int(_get(data.metrics, "data", "n_users", default=0) or 0)
    profs = [s.profile for s in segs if s.profile is not None]
    summary = data.rating_summary or rating_summary(getattr(data, "user_ratings", None))
    if summary:
        return _Overall(n_users, summary["mean_rating"], summary["mean_activity"], dict(summary["hist"]))
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


TENTATIVE_MEANING = ("Tentative: when the users are resampled and the segments fitted again, this segment does not "
                     "reliably come back; it dissolves or merges with another segment, so its exact members (and "
                     "the figures on this page) may change from run to run. Treat it as a hint, not a fixed group.")  # fmt: skip

_FATES = {"split": "its members spread over several segments",
          "outliers": "most of its members become outliers",
          "merged": "it merges into a larger segment"}  # fmt: skip


def _stability_entry(metrics: dict[str, Any], s: Seg) -> dict[str, Any]:
    entry = _get(metrics, "segmentation", "stability", "per_segment", s.id)
    return entry if isinstance(entry, dict) else {}


def _why(entry: dict[str, Any], names: dict[int, Seg]) -> str:
    """'in most of the refits where it did not come back, it merges into a larger segment (with X)', or ''."""
    fate = entry.get("fate")
    if fate not in _FATES:
        return ""
    text = _FATES[fate]
    partner = names.get(entry["merged_with"]) if isinstance(entry.get("merged_with"), int) else None
    if fate == "merged" and partner is not None:
        text = f"it merges with {partner.name}"
    return text


def stability_sentence(metrics: dict[str, Any], s: Seg, segs: list[Seg]) -> str | None:
    """One plain sentence on how reliably the segment comes back when the data is resampled (None: not measured)."""
    if s.is_noise or s.stability is None:
        return None
    e = _stability_entry(metrics, s)
    n, low = e.get("n_refits"), e.get("min")
    refits = f"{n} refits" if isinstance(n, int) else "the refits"
    word = ("highly stable" if s.stability >= 0.85 else "stable" if s.stability >= 0.75 else
            "fairly stable" if s.stability >= TENTATIVE else "tentative")  # fmt: skip
    text = (f"Stability {s.stability:.2f} ({word}): when the segments were fitted again with other seeds and on 80 % "
            f"subsamples of the users ({refits}), the closest refitted segment overlapped this one by {s.stability:.2f} "
            f"on average (Jaccard: users in both over users in either; 1 = the same members every time"
            + (f", lowest {low:.2f}" if isinstance(low, (int, float)) else "") + ").")  # fmt: skip
    why = _why(e, {x.id: x for x in segs})
    if s.tentative and why:
        text += f" Where it did not come back, {why}."
    return text


def unstable_summary(metrics: dict[str, Any], segs: list[Seg]) -> str | None:
    """The overview's line on which segments are tentative and why (None: all stable or not measured)."""
    measured = [s for s in segs if s.stability is not None]
    if not measured:
        return None
    weak = [s for s in measured if s.tentative]
    if not weak:
        return (f"All {len(measured)} segments are stable enough to act on: each came back with a mean overlap of at "
                f"least {TENTATIVE} when the users were resampled and the segments fitted again.")  # fmt: skip
    names = {x.id: x for x in segs}
    parts = []
    for s in weak:
        why = _why(_stability_entry(metrics, s), names)
        parts.append(f"{s.name} ({s.stability:.2f}{': ' + why if why else ''})")
    return (f"{len(weak)} of {len(measured)} segments are tentative (mean overlap below {TENTATIVE} when the users are "
            f"resampled and the segments fitted again): " + "; ".join(parts) + ". They dissolve or merge with another "
            "segment on resampled data, so their members and figures may change from run to run.")  # fmt: skip
