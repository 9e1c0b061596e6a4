"""The segments as the report shows them, and the all-user reference values.

:class:`Seg` gives each segment its display name, colour and page; :func:`_segments` orders them (segments
0..K-1, then outliers) and :func:`_overall` computes what the segment pages compare against (:class:`_Overall`).
The segments' colours (``PALETTE``, ``OUTLIER_COLOR``) and pages (:func:`segment_filename`) are here too: this
module imports nothing else from ``reports``, so every other report module can import it.
"""

from dataclasses import dataclass
from typing import Any

from segmentation._format import _get, _num, _value
from segmentation.cluster import NOISE
from segmentation.describe import SegmentProfile
from segmentation.run_folder import RunFolder
from segmentation.stability import TENTATIVE
from segmentation.verdicts import _change_ci

PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
    "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1",
]  # fmt: skip
OUTLIER_COLOR = "#a0a4aa"


def segment_filename(segment_id: int) -> str:
    """The page of one segment: ``segment-<id>.html``, ``segment-outliers.html`` for -1."""
    return "segment-outliers.html" if segment_id == NOISE else f"segment-{int(segment_id)}.html"


@dataclass(frozen=True)
class Seg:
    """A segment as the report shows it."""

    id: int
    name: str
    color: str
    href: str
    profile: SegmentProfile | None
    tentative: bool = False
    """Listed among the run's tentative segments (``verdicts.tentative``: stability below
    :data:`segmentation.stability.TENTATIVE`)."""

    @property
    def is_noise(self) -> bool:
        return self.id == NOISE

    @property
    def stability(self) -> float | None:
        """Mean clusterwise Jaccard over the stability refits (``segments.parquet``), None if not measured."""
        return None if self.profile is None or self.is_noise else self.profile.stability

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


def _segments(data: RunFolder) -> list[Seg]:
    """Segments 0..K-1 then outliers, each with its colour and page."""
    by_id = {p.segment_id: p for p in data.profiles}
    tentative = {int(t["segment_id"]) for t in data.verdicts.get("tentative") or []}
    ids = set(by_id) | set(data.assignments["segment_id"].unique().to_list() if data.assignments.height else [])
    ordered = sorted(i for i in ids if i != NOISE) + ([NOISE] if NOISE in ids else [])
    out = []
    for i, sid in enumerate(ordered):
        p = by_id.get(sid)
        name = p.name if p else ("Outliers (no clear segment)" if sid == NOISE else f"Segment {sid}")
        color = OUTLIER_COLOR if sid == NOISE else PALETTE[i % len(PALETTE)]
        out.append(Seg(int(sid), name, color, segment_filename(sid), p, int(sid) in tentative))
    return out


@dataclass(frozen=True)
class _Overall:
    """All-user reference values the segment pages compare against."""

    n_users: int
    mean_rating: float | None
    mean_activity: float | None
    rating_hist: dict[str, float]


def _overall(data: RunFolder, segs: list[Seg]) -> _Overall:
    n_users = data.assignments.height or int(_get(data.metrics, "data", "n_users", default=0) or 0)
    profs = [s.profile for s in segs if s.profile is not None]
    summary = data.rating_summary
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


def _implicit(metrics: dict[str, Any]) -> bool:
    return bool(_get(metrics, "data", "implicit")) or bool(_get(metrics, "rating", "skipped"))


def _segment_change(metrics: dict[str, Any], sid: int) -> tuple[float | None, tuple[float, float] | None, Any]:
    g = _num(_value(_get(metrics, "rating", "global", "per_segment", sid), "rmse"))
    s = _num(_value(_get(metrics, "rating", "segmented", "per_segment", sid), "rmse"))
    entry = _get(metrics, "rating", "gain", "per_segment", sid)
    change, ci = _change_ci(entry, None if g is None or s is None else s - g)
    n = _get(entry, "n", default=_get(metrics, "rating", "global", "per_segment", sid, "n"))
    return change, ci, n
