"""Render a run's self-contained HTML report: ``index.html`` plus one page per segment.

The report opens from ``file://`` with no network: plotly.js is copied once into
``assets/`` beside the pages, charts are plotly figure specs embedded as JSON and
drawn by ``assets/report.js``, and every string that comes from data is escaped
(Jinja2 autoescape for HTML, :func:`_plain` for text drawn by plotly).

Every metrics section and key is optional: what is missing is shown as
"not computed", never an error.
"""

import html
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from plotly.io.json import to_json_plotly

from reports.model import ReportInput
from segmentation.cluster import NOISE
from segmentation.describe import SegmentProfile

__all__ = ["render_report", "segment_filename"]

logger = logging.getLogger(__name__)

_HERE = Path(__file__).parent
_ENV = Environment(
    loader=FileSystemLoader(_HERE / "templates"), autoescape=True, undefined=StrictUndefined,
    trim_blocks=True, lstrip_blocks=True,
)  # fmt: skip

#: at most this many users are drawn on the segment map (a fixed-seed sample above it). The map is SVG:
#: WebGL (scattergl) needs 'unsafe-eval' in the page's Content-Security-Policy and is missing on many
#: remote desktops, and 10,000 SVG markers still draw in about a second.
MAX_MAP_POINTS = 10_000

PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
    "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1",
]  # fmt: skip
OUTLIER_COLOR = "#a0a4aa"
_FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "DejaVu Sans", sans-serif'
_LAYOUT = {
    "font": {"family": _FONT, "size": 13, "color": "#1f2937"},
    "paper_bgcolor": "#ffffff",
    "plot_bgcolor": "#ffffff",
    "margin": {"l": 60, "r": 20, "t": 56, "b": 56},
    "hoverlabel": {"font": {"family": _FONT}},
    "title": {"x": 0, "xanchor": "left", "font": {"size": 15}},
}
_TOP_LEGEND = {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1}
_AXIS = {"gridcolor": "#e5e7eb", "zerolinecolor": "#d1d5db", "linecolor": "#9ca3af", "automargin": True}

_LABELS = {
    "rmse": "RMSE", "mae": "MAE", "ndcg": "NDCG", "ils": "ILS", "mrr": "MRR", "map": "MAP", "hit": "Hit rate",
    "ari": "ARI", "nmi": "NMI", "dbcv": "DBCV", "precision": "Precision", "recall": "Recall", "n": "n",
    "coverage": "Catalogue coverage", "novelty": "Novelty", "silhouette": "Silhouette",
    "calinski_harabasz": "Calinski-Harabasz", "noise_share": "Outlier share", "n_segments": "Segments",
    "n_users": "Users", "soft_assigned": "Outliers moved into a segment", "min_cluster_size": "Smallest segment allowed",
    "mean_membership": "Mean membership strength", "seconds": "Seconds",
}  # fmt: skip
_ACRONYMS = {
    w: w.upper() for w in ("rmse", "mae", "ndcg", "ils", "mrr", "map", "ari", "nmi", "dbcv", "ci", "umap", "id")
}
_HELP = {
    "rmse": "Root mean squared error of predicted star ratings on held-out ratings; lower is better.",
    "mae": "Mean absolute error of predicted star ratings; lower is better.",
    "ndcg": "How high the held-out liked items appear in the top-k list (0-1); higher is better.",
    "precision": "Share of the top-k list the user liked in the held-out data; higher is better.",
    "recall": "Share of the user's held-out liked items found in the top-k list; higher is better.",
    "hit": "Share of users with at least one held-out liked item in their top-k list.",
    "coverage": "Share of the catalogue recommended to at least one user; higher means less concentration.",
    "novelty": "How unpopular the recommended items are (mean self-information, bits); higher is more surprising.",
    "ils": "Intra-list similarity: how alike the items in one list are (0-1); lower means more diverse lists.",
    "silhouette": "How well separated segments are (-1 to 1); above 0.25 is reasonable, above 0.5 strong.",
    "dbcv": "Density-based cluster validity (-1 to 1); higher means denser, better separated segments.",
    "calinski_harabasz": "Between- over within-segment dispersion; higher is better, only comparable within a run size.",
    "noise_share": "Share of users that fit no segment well (shown grey on the map).",
    "mean_membership": "Average HDBSCAN membership strength of segment members (0-1).",
    "ari": "Adjusted Rand index: agreement of two segmentations (1 identical, 0 chance).",
    "jaccard": "Users in both segments over users in either (0-1); 1 means the same people.",
}  # fmt: skip
_KEY_CONFIG = [
    ("data.source", "Data source"), ("data.split", "Test split"), ("data.max_users", "User limit"),
    ("encoder.model", "Text encoder"), ("encoder.device", "Encoder device"),
    ("represent.method", "User representation"), ("reduce.n_components", "UMAP dimensions"),
    ("reduce.n_neighbors", "UMAP neighbours"), ("reduce.metric", "UMAP metric"),
    ("cluster.min_cluster_size", "Smallest segment"), ("cluster.min_samples", "HDBSCAN min_samples"),
    ("cluster.cluster_selection_method", "HDBSCAN selection"), ("cluster.outlier_membership", "Outlier reassignment"),
    ("predictor.embedding_size", "Rating model size"), ("predictor.finetune", "Per-segment fine-tuning"),
    ("ranker.rankers", "Recommenders compared"), ("evaluate.k", "List length k"),
    ("evaluate.bootstrap", "Bootstrap resamples"), ("seed", "Seed"),
]  # fmt: skip


# ----------------------------------------------------------------------------- small helpers


def segment_filename(segment_id: int) -> str:
    """The page of one segment: ``segment-<id>.html``, ``segment-outliers.html`` for -1."""
    return "segment-outliers.html" if segment_id == NOISE else f"segment-{int(segment_id)}.html"


def _plain(value: object, limit: int | None = None) -> str:
    """Text for plotly, which reads a subset of HTML: escape it so it shows as typed."""
    s = str(value)
    if limit and len(s) > limit:
        s = s[: limit - 1].rstrip() + "…"
    return html.escape(s, quote=False)


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def fmt(v: Any, kind: str = "auto") -> str:
    """Format a metric value for a table; missing values become an en dash."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if kind == "pct" and isinstance(v, int | float):
        return f"{100 * v:.1f} %"
    if kind == "signed" and isinstance(v, int):
        return f"{v:+,}".replace("-", "−")
    if kind == "signed" and isinstance(v, float):
        return f"{v:+.4f}".replace("-", "−")
    if kind.startswith("d") and isinstance(v, float):
        return f"{v:,.{int(kind[1:])}f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        a = abs(v)
        if a == 0:
            return "0"
        if a >= 100:
            return f"{v:,.0f}" if a >= 1000 or v.is_integer() else f"{v:.1f}"
        if a >= 10:
            return f"{v:.2f}"
        return f"{v:.4f}" if a >= 0.001 else f"{v:.2e}"
    if isinstance(v, list | tuple):
        return ", ".join(fmt(x) for x in v) if v else "–"
    return str(v)


def column_kind(values: list[Any]) -> str:
    """One number format for a whole column, so that its decimals line up."""
    nums = [abs(x) for x in (_num(v) for v in values) if x is not None]
    if not nums or all(isinstance(v, int) for v in values if _num(v) is not None):
        return "auto"
    top = max(nums)
    if top < 0.001 and top > 0:
        return "auto"
    return "d4" if top < 10 else "d2" if top < 100 else "d1" if top < 1000 else "d0"


def label(key: str) -> str:
    """Readable label of a metric key: ``ndcg@10`` -> ``NDCG@10``, ``n_items`` -> ``Items``."""
    base, at, k = str(key).partition("@")
    if base not in _LABELS and base.startswith("n_"):
        base = base[2:]
    text = _LABELS.get(base)
    if text is None:
        words = [_ACRONYMS.get(w, w) for w in base.replace("-", "_").split("_") if w]
        text = " ".join(words)[:1].upper() + " ".join(words)[1:] if words else str(key)
    return f"{text}@{k}" if at else text


def _help(key: str) -> str | None:
    return _HELP.get(str(key).partition("@")[0])


def _get(d: Any, *path: str | int, default: Any = None) -> Any:
    """``d[p0][p1]...`` with string/int keys interchangeable; ``default`` when any step is missing."""
    for p in path:
        if not isinstance(d, dict):
            return default
        if p in d:
            d = d[p]
        elif str(p) in d:
            d = d[str(p)]
        else:
            return default
    return d


def _ci(d: Any, key: str) -> tuple[float, float] | None:
    """The 95 % CI of ``d[key]``: ``d[key + "_ci"]``, or ``d[key]["ci"]`` when the value is a dict."""
    c = _get(d, f"{key}_ci")
    if c is None:
        c = _get(d, key, "ci")
    if isinstance(c, dict):
        c = [c.get("lo", c.get("low")), c.get("hi", c.get("high"))]
    if isinstance(c, list | tuple) and len(c) == 2 and all(_num(x) is not None for x in c):
        return float(c[0]), float(c[1])
    return None


def _value(d: Any, key: str) -> Any:
    v = _get(d, key)
    if isinstance(v, dict):
        v = v.get("value", v.get("mean"))
    return v


def with_ci(v: Any, ci: tuple[float, float] | None, kind: str = "auto") -> str:
    text = fmt(v, kind)
    if ci is not None and text != "–":
        kind = "d4" if kind == "auto" else kind
        text += f" ({fmt(ci[0], kind)} to {fmt(ci[1], kind)})"
    return text


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dict -> [(dotted key, leaf)]; lists of scalars stay leaves."""
    if not isinstance(d, dict):
        return [(prefix, d)]
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.extend(_flatten(v, key) if isinstance(v, dict) and v else [(key, v)])
    return out


# ----------------------------------------------------------------------------- table model


@dataclass(frozen=True)
class Cell:
    """One table cell; all text is escaped by the template."""

    text: str
    href: str | None = None
    cls: str = ""
    title: str | None = None
    sort: float | None = None
    swatch: str | None = None
    bar: float | None = None  # 0..1, drawn as a small inline bar
    chips: list[str] = field(default_factory=list)
    note: str | None = None


@dataclass(frozen=True)
class Column:
    label: str
    num: bool = False
    title: str | None = None


@dataclass(frozen=True)
class Table:
    columns: list[Column]
    rows: list[list[Cell]]
    caption: str | None = None
    id: str | None = None
    groups: list[tuple[str, int]] = field(default_factory=list)  # a header row above: (label, columns spanned)
    wide: bool = False  # stretch to the page width


def _c(v: Any, kind: str = "auto", **kw: Any) -> Cell:
    n = _num(v)
    return Cell(fmt(v, kind), cls=kw.pop("cls", "num" if n is not None else ""), sort=n, **kw)


# ----------------------------------------------------------------------------- segments


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


def _segment_models(data: ReportInput) -> dict[int, dict[str, Any]]:
    frame = data.segment_models
    rows: list[dict[str, Any]]
    if isinstance(frame, pl.DataFrame) and "segment_id" in frame.columns:
        rows = frame.to_dicts()
    else:
        rows = [r for r in _get(data.metrics, "models", "segments", default=[]) or [] if isinstance(r, dict)]
    return {int(r["segment_id"]): r for r in rows if r.get("segment_id") is not None}


# ----------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    kind: str  # good | bad | neutral | missing
    headline: str
    detail: str = ""


def _change_ci(gain: Any, change: float | None) -> tuple[float | None, tuple[float, float] | None]:
    """Change in RMSE (segmented - global) and its CI from a ``rating.gain`` entry."""
    point = None
    for key in ("rmse_change", "delta_rmse", "rmse_delta", "change", "rmse"):
        point = _num(_value(gain, key))
        if point is not None:
            ci = _ci(gain, key) or _ci(gain, "ci") or _as_ci(_get(gain, "ci"))
            break
    else:
        ci = _as_ci(_get(gain, "ci"))
    if point is None:
        point = change
    elif change is not None and point * change < 0 and abs(abs(point) - abs(change)) < 1e-6:
        # the gain was recorded as global - segmented: turn it around to segmented - global
        point, ci = -point, (None if ci is None else (-ci[1], -ci[0]))
    return point, ci


def _as_ci(c: Any) -> tuple[float, float] | None:
    if isinstance(c, list | tuple) and len(c) == 2 and all(_num(x) is not None for x in c):
        return float(c[0]), float(c[1])
    return None


def rating_verdict(metrics: dict[str, Any], models: dict[int, dict[str, Any]]) -> Verdict:
    """Did per-segment models improve rating accuracy? Plain words, driven by the CI of the change."""
    g = _num(_value(_get(metrics, "rating", "global"), "rmse"))
    s = _num(_value(_get(metrics, "rating", "segmented"), "rmse"))
    kept = sum(bool(r.get("kept")) for r in models.values())
    kept_text = (f" {kept} of {len(models)} segments kept their own fine-tuned model; the others use the global model."
                 if models else "")  # fmt: skip
    if g is None or s is None:
        return Verdict("missing", "Rating accuracy was not computed in this run.", kept_text.strip())
    change, ci = _change_ci(_get(metrics, "rating", "gain"), s - g)
    nums = f"RMSE {fmt(s)} with per-segment models vs {fmt(g)} with the global model"
    if ci is not None:
        span = f"change {fmt(change, 'signed')}, 95 % CI {fmt(ci[0], 'signed')} to {fmt(ci[1], 'signed')}"
        if ci[0] <= 0 <= ci[1]:
            return Verdict(
                "neutral",
                "Segmentation did not improve rating accuracy.",
                f"{nums} ({span}: the interval includes zero, so the difference is noise).{kept_text}",
            )
        if ci[1] < 0:
            return Verdict("good", "Per-segment models improved rating accuracy.", f"{nums} ({span}).{kept_text}")
        return Verdict("bad", "Per-segment models made rating accuracy worse.", f"{nums} ({span}).{kept_text}")
    change = s - g if change is None else change
    if abs(change) < 0.001:
        return Verdict("neutral", "Segmentation did not improve rating accuracy.",
                       f"{nums} (change {fmt(change, 'signed')}, within the ±0.001 noise floor; no confidence "
                       f"interval was computed).{kept_text}")  # fmt: skip
    word = "lower" if change < 0 else "higher"
    return Verdict(
        "neutral",
        f"Per-segment RMSE is {abs(change):.4f} {word}, with no confidence interval.",
        f"{nums}. Without a confidence interval this may be noise.{kept_text}",
    )


def control_text(metrics: dict[str, Any]) -> str | None:
    """The random-partition control in plain words: do the segments themselves carry the gain?"""
    ctl = _get(metrics, "rating", "random_partition_control")
    if not isinstance(ctl, dict):
        return None
    change, ci = _num(ctl.get("rmse_change")), _as_ci(ctl.get("ci"))
    kept = ctl.get("segments_kept")
    kept_text = f"{kept} random group{'s' if kept != 1 else ''} kept a fine-tuned model" if kept is not None else ""
    if change is None:
        return None
    span = f" (95 % CI {fmt(ci[0], 'signed')} to {fmt(ci[1], 'signed')})" if ci else ""
    seg_change, seg_ci = _change_ci(_get(metrics, "rating", "gain"), None)
    seg_ci_text = "" if seg_ci is None else f" (95 % CI {fmt(seg_ci[0], 'signed')} to {fmt(seg_ci[1], 'signed')})"
    if seg_change is None:
        compare = ""
    elif seg_ci is not None and ci is not None and seg_ci[1] < ci[0]:
        compare = " The segments did better than random groups of the same sizes: they carry real signal."
    elif seg_ci is not None and seg_ci[1] < 0 <= (ci[1] if ci else 0):
        compare = (" The segments helped where random groups did not, though the two intervals overlap: "
                   "treat the segments' gain as likely, not proven.")  # fmt: skip
    else:
        compare = (" The segments did no better than random groups of the same sizes, so any change above comes "
                   "from fine-tuning itself, not from who is in which segment.")  # fmt: skip
    return (f"Control: the same fine-tuning and gate on random partitions of the users, with the segments' sizes, "
            f"changed RMSE by {fmt(change, 'signed')}{span}{'; ' + kept_text if kept_text else ''}. "
            f"The segments changed it by {fmt(seg_change, 'signed')}{seg_ci_text}.{compare}")  # fmt: skip


def stability_view(segmentation: Any) -> tuple[str | None, Table | None]:
    """One sentence and a table: ARI of the run's segments against refits with other seeds and on subsamples."""
    st = _get(segmentation, "stability")
    if not isinstance(st, dict):
        return None, None
    if st.get("skipped"):
        return f"Not measured: {st['skipped']}.", None
    rows, parts = [], []
    for key, what in (("seed_ari", "other seeds"), ("bootstrap_ari", f"{fmt(st.get('fraction'), 'pct')} subsamples")):
        v = st.get(key)
        if not isinstance(v, dict) or _num(v.get("mean")) is None:
            continue
        values = ", ".join(fmt(x, "d3") for x in v.get("values") or [])
        rows.append([Cell(f"ARI with {what}", title=_HELP["ari"]), _c(v.get("mean"), "d3"), _c(v.get("min"), "d3"),
                     Cell(values, cls="muted")])  # fmt: skip
        parts.append(f"{v['mean']:.2f} with {what}")
    if not rows:
        return None, None
    counts = st.get("n_segments") or []
    if counts:
        rows.append([Cell("Segments found per seed"), Cell(", ".join(str(c) for c in counts), cls="val"), Cell(""),
                     Cell("")])  # fmt: skip
    low = min(_num(_get(st, k, "mean")) or 1.0 for k in ("seed_ari", "bootstrap_ari"))
    word = "stable" if low >= 0.8 else "fairly stable" if low >= 0.6 else "unstable: read single segments with care"
    sentence = (f"Refitting gives much the same segments ({'; '.join(parts)}; 1 = identical): {word}. "
                f"Measured on {fmt(st.get('n_users'))} users in {seconds(st.get('seconds'))}.")  # fmt: skip
    cols = [Column("Compared with"), Column("Mean ARI", num=True), Column("Lowest", num=True), Column("Each refit")]
    return sentence, Table(cols, rows)


def selection_view(segmentation: Any) -> tuple[str | None, Table | None]:
    """How the clustering parameters were chosen without labels: the reason and every candidate's scores."""
    sel = _get(segmentation, "selection")
    if not isinstance(sel, dict):
        return None, None
    chosen = sel.get("chosen") or {}
    rows = []
    for c in sel.get("candidates") or []:
        if not isinstance(c, dict):
            continue
        win = all(c.get(k) == chosen.get(k) for k in ("min_cluster_size", "cluster_selection_method"))
        rows.append([Cell(("✔ " if win else "") + f"{c.get('min_cluster_size')} · {c.get('cluster_selection_method')}",
                          cls="strong" if win else ""),
                     _c(c.get("n_segments")), _c(c.get("noise_share"), "pct"), _c(c.get("dbcv"), "d3"),
                     _c(c.get("stability"), "d3"), _c(c.get("score"), "d3"),
                     Cell(fmt(c.get("eligible")), cls="" if c.get("eligible") else "muted")])  # fmt: skip
    cols = [Column("Smallest segment · method"), Column("Segments", num=True), Column("Outliers", num=True),
            Column("DBCV", num=True, title=_HELP["dbcv"]), Column("Stability", num=True, title=_HELP["ari"]),
            Column("Score", num=True, title=str(sel.get("criterion") or "")), Column("Eligible")]  # fmt: skip
    reason = sel.get("reason")
    return (str(reason) if reason else None), (Table(cols, rows) if rows else None)


def _segment_change(metrics: dict[str, Any], sid: int) -> tuple[float | None, tuple[float, float] | None, Any]:
    g = _num(_value(_get(metrics, "rating", "global", "per_segment", sid), "rmse"))
    s = _num(_value(_get(metrics, "rating", "segmented", "per_segment", sid), "rmse"))
    entry = _get(metrics, "rating", "gain", "per_segment", sid)
    change, ci = _change_ci(entry, None if g is None or s is None else s - g)
    n = _get(entry, "n", default=_get(metrics, "rating", "global", "per_segment", sid, "n"))
    return change, ci, n


def _change_cell(change: float | None, ci: tuple[float, float] | None) -> Cell:
    if change is None:
        return Cell("–", cls="num muted")
    if ci is None:
        return Cell(fmt(change, "signed"), cls="num", sort=change, title="no confidence interval computed")
    cls = "good" if ci[1] < 0 else "bad" if ci[0] > 0 else "muted"
    word = "better" if ci[1] < 0 else "worse" if ci[0] > 0 else "no clear change"
    return Cell(fmt(change, "signed"), cls=f"num {cls}", sort=change,
                note=f"{fmt(ci[0], 'signed')} to {fmt(ci[1], 'signed')} · {word}")  # fmt: skip


# ----------------------------------------------------------------------------- metric tables


def _metric_keys(entries: list[Any]) -> list[str]:
    keys: list[str] = []
    for e in entries:
        for k, v in (e or {}).items() if isinstance(e, dict) else []:
            if k in keys or k.endswith("_ci") or k in ("per_segment", "fairness", "ci"):
                continue
            if _num(v) is not None or (isinstance(v, dict) and _num(v.get("value", v.get("mean"))) is not None):
                keys.append(k)
    return keys


def systems_table(section: Any, *, first: str = "System") -> Table | None:
    """Rows = systems (models, rankers), columns = their scalar metrics, CIs in brackets."""
    if not isinstance(section, dict):
        return None
    systems = {k: v for k, v in section.items() if isinstance(v, dict) and k not in ("gain", "per_segment")}
    keys = _metric_keys(list(systems.values()))
    if not systems or not keys:
        return None
    cols = [Column(first)] + [Column(label(k), num=True, title=_help(k)) for k in keys]
    kinds = {k: column_kind([_value(m, k) for m in systems.values()]) for k in keys}
    rows = [[Cell(str(name))] + [Cell(with_ci(_value(m, k), _ci(m, k), kinds[k]), cls="num", sort=_num(_value(m, k)))
                                  for k in keys] for name, m in systems.items()]  # fmt: skip
    return Table(cols, rows, caption="95 % confidence intervals in brackets where computed.")


def _primary(keys: list[str], wanted: tuple[str, ...]) -> list[str]:
    out = [k for w in wanted for k in keys if k.partition("@")[0] == w]
    return list(dict.fromkeys(out)) or keys[:1]


def per_segment_table(section: Any, segs: list[Seg], wanted: tuple[str, ...]) -> Table | None:
    """Rows = segments, columns = (system, headline metric) pairs."""
    if not isinstance(section, dict):
        return None
    systems = {k: v for k, v in section.items() if isinstance(v, dict) and isinstance(v.get("per_segment"), dict)}
    if not systems:
        return None
    entries = [e for s in systems.values() for e in s["per_segment"].values()]
    keys = _primary(_metric_keys(entries), wanted)
    if not keys:
        return None
    pairs = [(name, k) for k in keys for name in systems]
    cols = [Column("Segment")] + [Column(f"{name} · {label(k)}", num=True, title=_help(k)) for name, k in pairs]
    kinds = {k: column_kind([_value(e, k) for e in entries]) for k in keys}
    rows = []
    for s in segs:
        vals = [_get(systems[name], "per_segment", s.id) for name, _ in pairs]
        if all(v is None for v in vals):
            continue
        rows.append([Cell(s.name, href=s.href, swatch=s.color)]
                    + [Cell(with_ci(_value(v, k), _ci(v, k), kinds[k]), cls="num", sort=_num(_value(v, k)))
                       for v, (_, k) in zip(vals, pairs)])  # fmt: skip
    return Table(cols, rows) if rows else None


def key_value_table(d: Any, skip: tuple[str, ...] = (), *, raw_keys: bool = False,
                    header: tuple[str, str] = ("Measure", "Value")) -> Table | None:  # fmt: skip
    """Flattened ``key -> value`` table with readable labels and help texts."""
    if not isinstance(d, dict):
        return None
    rows = []
    for k, v in _flatten({k: v for k, v in d.items() if k not in skip}):
        if isinstance(v, list) and v and not all(_num(x) is not None or isinstance(x, str) for x in v):
            continue
        leaf = k.rsplit(".", 1)[-1]
        text = k if raw_keys else " · ".join(label(p) for p in k.split("."))
        rows.append([Cell(text, title=_help(leaf)), Cell(_kv_text(leaf, v), cls="val", sort=_num(v))])
    return Table([Column(header[0]), Column(header[1])], rows) if rows else None


def _kv_text(key: str, v: Any) -> str:
    if key.endswith("share") and _num(v) is not None:
        return fmt(v, "pct")
    if key in ("seconds", "time", "duration") and _num(v) is not None:
        return seconds(v)
    return fmt(v)


def seconds(v: Any) -> str:
    x = _num(v)
    if x is None:
        return fmt(v)
    if x >= 60:
        return f"{int(x // 60)} min {x % 60:.0f} s"
    return f"{x:.2f} s" if x < 10 else f"{x:.1f} s"


def nested_table(d: Any) -> Table | None:
    """``{column: nested dict}`` -> rows = flattened keys, columns = top-level keys (for fairness)."""
    if not isinstance(d, dict) or not d:
        return None
    if not all(isinstance(v, dict) for v in d.values()):
        return key_value_table(d)
    flat = {c: dict(_flatten(v)) for c, v in d.items()}
    keys = list(dict.fromkeys(k for f in flat.values() for k in f if not k.endswith("_ci")))
    if not keys:
        return None
    cols = [Column("Measure")] + [Column(str(c), num=True) for c in flat]
    kind = column_kind([f.get(k) for f in flat.values() for k in keys])
    rows = [[Cell(" · ".join(label(p) if p.islower() else p for p in k.split(".")), title=_help(k.rsplit(".", 1)[-1]))]
            + [Cell(with_ci(f.get(k), _as_ci(f.get(f"{k}_ci")), kind), cls="num", sort=_num(f.get(k)))
               for f in flat.values()]
            for k in keys]  # fmt: skip
    return Table(cols, rows)


# ----------------------------------------------------------------------------- charts


def _layout(title: str, height: int, **extra: Any) -> dict[str, Any]:
    lay = {**_LAYOUT, "height": height, "title": {**_LAYOUT["title"], "text": _plain(title)}}
    lay.update(extra)
    return lay


def _axis(title: str, **extra: Any) -> dict[str, Any]:
    return {**_AXIS, "title": {"text": _plain(title)}, **extra}


def fig_map(data: ReportInput, segs: list[Seg]) -> go.Figure | None:
    """The 2-d segment map: one trace per segment, outliers grey underneath."""
    a = data.assignments
    if a.height == 0 or not {"x", "y", "segment_id"} <= set(a.columns):
        return None
    note = ""
    if a.height > MAX_MAP_POINTS:
        a = a.sample(MAX_MAP_POINTS, seed=0)
        note = f" (a sample of {MAX_MAP_POINTS:,} of {data.assignments.height:,} users)"
    names = {s.id: s.name for s in segs}
    fig = go.Figure()
    for s in sorted(segs, key=lambda s: not s.is_noise):  # outliers first, so segments draw on top
        part = a.filter(pl.col("segment_id") == s.id)
        if part.height == 0:
            continue
        member = (
            part["membership"].fill_null(0).to_numpy().round(2)
            if "membership" in part.columns
            else np.zeros(part.height)
        )
        if s.is_noise and "nearest_segment" in part.columns:
            nearest = [_plain(names.get(n, f"Segment {n}"), 40) for n in part["nearest_segment"].fill_null(NOISE)]
            near_m = (
                part["nearest_membership"].fill_null(0).to_numpy().round(2)
                if "nearest_membership" in part.columns
                else member
            )
            custom = list(
                zip(
                    part["user_id"].cast(pl.String).map_elements(_plain, return_dtype=pl.String),
                    nearest,
                    near_m.tolist(),
                )
            )
            hover = "user %{customdata[0]}<br>nearest: %{customdata[1]} (membership %{customdata[2]:.2f})<extra>outlier</extra>"
        else:
            custom = list(
                zip(part["user_id"].cast(pl.String).map_elements(_plain, return_dtype=pl.String), member.tolist())
            )
            hover = "user %{customdata[0]}<br>membership %{customdata[1]:.2f}<extra>%{fullData.name}</extra>"
        fig.add_trace(go.Scatter(
            x=part["x"].to_numpy(), y=part["y"].to_numpy(), mode="markers", name=_plain(s.short),
            marker={"color": s.color, "size": 5 if s.is_noise else 6, "opacity": 0.55 if s.is_noise else 0.8,
                    "line": {"width": 0}},
            customdata=custom, hovertemplate=hover,
        ))  # fmt: skip
    fig.update_layout(
        **_layout(
            f"Segment map: each dot is a user, placed by taste{note}",
            560,
            xaxis=_axis("map axis 1 (UMAP)", showticklabels=False, zeroline=False),
            yaxis=_axis("map axis 2 (UMAP)", showticklabels=False, zeroline=False),
            showlegend=False,
        )
    )  # the sizes chart beside it is the colour key
    return fig


def fig_sizes(segs: list[Seg], n_users: int) -> go.Figure | None:
    rows = [s for s in segs if s.profile is not None]
    if not rows:
        return None
    rows = sorted(rows, key=lambda s: s.profile.size)  # plotly draws horizontal bars bottom-up
    fig = go.Figure(go.Bar(
        y=[_plain(s.short) for s in rows], x=[s.profile.size for s in rows], orientation="h",
        marker={"color": [s.color for s in rows]},
        text=[f"{s.profile.size:,} ({100 * s.profile.size / max(n_users, 1):.1f} %)" for s in rows],
        textposition="auto", cliponaxis=False,
        customdata=[_plain(s.name) for s in rows], hovertemplate="%{customdata}<br>%{x:,} users<extra></extra>",
    ))  # fmt: skip
    fig.update_layout(**_layout("Segment sizes", 90 + 30 * len(rows), xaxis=_axis("users"),
                                yaxis=_axis("", automargin=True), showlegend=False, bargap=0.25))  # fmt: skip
    return fig


def _lift_frame(data: ReportInput) -> pl.DataFrame:
    cl = data.category_lift
    if isinstance(cl, pl.DataFrame) and cl.height and {"segment_id", "category", "lift"} <= set(cl.columns):
        return cl if "share" in cl.columns else cl.with_columns(pl.lit(None, pl.Float64).alias("share"))
    rows = [(p.segment_id, c, lift, share) for p in data.profiles
            for c, lift, share in zip(p.top_categories, p.category_lift, p.category_share or [None] * len(p.top_categories))]  # fmt: skip
    return pl.DataFrame(rows, schema={"segment_id": pl.Int32, "category": pl.String, "lift": pl.Float64,
                                      "share": pl.Float64}, orient="row")  # fmt: skip


def fig_heatmap(data: ReportInput, segs: list[Seg], max_categories: int = 24) -> go.Figure | None:
    """Segments x categories, coloured by log2 lift (blue = chosen more than by all users)."""
    lf = _lift_frame(data).drop_nulls(["lift"]).filter(pl.col("lift") > 0)
    if lf.height == 0:
        return None
    order = [s for s in segs if s.id in set(lf["segment_id"].to_list())]
    # categories ordered by the segment where they stand out most: a readable near-diagonal
    best = lf.sort("lift", descending=True).group_by("category", maintain_order=True).first()
    pos = {s.id: i for i, s in enumerate(order)}
    best = best.with_columns(pl.col("segment_id").replace_strict(pos, default=len(pos)).alias("pos"))
    best = best.sort("lift", descending=True).head(max_categories).sort(["pos", "lift"], descending=[False, True])
    cats = best["category"].to_list()
    look = {(r["segment_id"], r["category"]): r for r in lf.iter_rows(named=True)}
    z, text, custom = [], [], []
    for s in order:
        zr, tr, cr = [], [], []
        for c in cats:
            r = look.get((s.id, c))
            lift = r["lift"] if r else None
            zr.append(None if lift is None else max(-2.0, min(2.0, math.log2(lift))))
            tr.append("" if lift is None else f"{lift:.1f}×")
            share = "" if not r or r.get("share") is None else f" · {100 * r['share']:.1f} % of its choices"
            cr.append("not among its top categories" if lift is None else f"{lift:.2f}× all users{share}")
        z.append(zr), text.append(tr), custom.append(cr)
    fig = go.Figure(go.Heatmap(
        z=z, x=[_plain(c, 22) for c in cats], y=[_plain(s.short) for s in order], text=text,
        texttemplate="%{text}", textfont={"size": 11}, customdata=custom, zmin=-2, zmax=2, zmid=0, xgap=2, ygap=2,
        colorscale=[[0, "#b45309"], [0.25, "#f4c790"], [0.5, "#f7f7f7"], [0.75, "#93c5e8"], [1, "#1d4e89"]],
        colorbar={"title": {"text": "lift"}, "tickvals": [-2, -1, 0, 1, 2], "ticktext": ["¼×", "½×", "1×", "2×", "4×"]},
        hovertemplate="%{y}<br>%{x}: %{customdata}<extra></extra>", hoverongaps=False,
    ))  # fmt: skip
    fig.update_layout(**_layout("What each segment chooses more (blue) or less (orange) than all users", 140 + 34 * len(order),
                                xaxis=_axis("category", tickangle=-35, showgrid=False),
                                yaxis=_axis("", autorange="reversed", showgrid=False),
                                margin={**_LAYOUT["margin"], "b": 110}))  # fmt: skip
    return fig


def fig_segment_rmse(metrics: dict[str, Any], segs: list[Seg]) -> go.Figure | None:
    """RMSE per segment under the global and the per-segment models: how hard each segment is to predict."""
    fig = go.Figure()
    for model, color, sym in (("global", "#6b7280", "circle"), ("segmented", "#2563eb", "diamond")):
        rows = [(s, _get(metrics, "rating", model, "per_segment", s.id)) for s in segs]
        rows = [(s, e) for s, e in rows if _num(_value(e, "rmse")) is not None]
        if not rows:
            continue
        cis = [_ci(e, "rmse") for _, e in rows]
        vals = [float(_value(e, "rmse")) for _, e in rows]
        err = None
        if all(c is not None for c in cis):
            err = {"type": "data", "symmetric": False, "array": [c[1] - v for c, v in zip(cis, vals)],
                   "arrayminus": [v - c[0] for c, v in zip(cis, vals)], "color": color, "thickness": 1}  # fmt: skip
        fig.add_trace(go.Scatter(
            x=vals, y=[_plain(s.short) for s, _ in rows], mode="markers", name=f"{model} model",
            marker={"color": color, "size": 10, "symbol": sym}, error_x=err,
            customdata=[_get(e, "n") for _, e in rows],
            hovertemplate="%{y}<br>RMSE %{x:.4f}<br>%{customdata} test ratings<extra>" + model + "</extra>",
        ))  # fmt: skip
    if not fig.data:
        return None
    n = len({y for t in fig.data for y in t.y})
    fig.update_layout(**_layout("Prediction error by segment (lower is better)", 120 + 30 * n,
                                xaxis=_axis("RMSE on held-out ratings"), yaxis=_axis("", autorange="reversed"),
                                legend=_TOP_LEGEND))  # fmt: skip
    return fig


def fig_category_lift(p: SegmentProfile, color: str) -> go.Figure | None:
    if not p.top_categories:
        return None
    cats, lifts = p.top_categories[::-1], p.category_lift[::-1]
    shares = (p.category_share or [None] * len(p.top_categories))[::-1]
    fig = go.Figure(go.Bar(
        y=[_plain(c, 30) for c in cats], x=lifts, orientation="h",
        marker={"color": [color if v >= 1 else "#c7cbd1" for v in lifts]}, text=[f"{v:.1f}×" for v in lifts], textposition="outside", cliponaxis=False,
        customdata=["" if s is None else f"{100 * s:.1f} % of the segment's choices" for s in shares],
        hovertemplate="%{y}: %{x:.2f}× all users<br>%{customdata}<extra></extra>",
    ))  # fmt: skip
    fig.add_vline(x=1, line={"color": "#374151", "dash": "dot", "width": 1},
                  annotation={"text": "all users", "font": {"size": 11}}, annotation_position="top")  # fmt: skip
    fig.update_layout(**_layout("Its categories: chosen how many times as often as by all users", 110 + 26 * len(cats),
                                xaxis=_axis("lift (× the share among all users)", rangemode="tozero"),
                                yaxis=_axis(""), showlegend=False))  # fmt: skip
    return fig


def fig_rating_hist(p: SegmentProfile, overall: _Overall, color: str) -> go.Figure | None:
    if not p.rating_hist:
        return None
    keys = sorted(set(p.rating_hist) | set(overall.rating_hist), key=float)
    fig = go.Figure()
    fig.add_trace(go.Bar(x=keys, y=[100 * p.rating_hist.get(k, 0) for k in keys], name="this segment",
                         marker={"color": color}, hovertemplate="%{x} stars: %{y:.1f} %<extra>this segment</extra>"))  # fmt: skip
    if overall.rating_hist:
        fig.add_trace(go.Bar(x=keys, y=[100 * overall.rating_hist.get(k, 0) for k in keys], name="all users",
                             marker={"color": "#c7cbd1"}, hovertemplate="%{x} stars: %{y:.1f} %<extra>all users</extra>"))  # fmt: skip
    fig.update_layout(**_layout("How it rates", 320, barmode="group", xaxis=_axis("rating", type="category"),
                                yaxis=_axis("% of ratings", rangemode="tozero"), legend=_TOP_LEGEND))  # fmt: skip
    return fig


def fig_demographic(a: Any, color: str, max_values: int = 10) -> go.Figure | None:
    """One user attribute: share of the segment vs share of all users per value."""
    if a.kind != "categorical" or not a.segment:
        return None
    values = sorted(set(a.segment) | set(a.overall), key=lambda v: (-a.segment.get(v, 0), v))[:max_values][::-1]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=[_plain(v, 24) for v in values], x=[100 * a.overall.get(v, 0) for v in values],
                         name="all users", orientation="h", marker={"color": "#c7cbd1"},
                         hovertemplate="%{y}: %{x:.1f} %<extra>all users</extra>"))  # fmt: skip
    fig.add_trace(go.Bar(y=[_plain(v, 24) for v in values], x=[100 * a.segment.get(v, 0) for v in values],
                         name="this segment", orientation="h", marker={"color": color},
                         hovertemplate="%{y}: %{x:.1f} %<extra>this segment</extra>"))  # fmt: skip
    fig.update_layout(**_layout(f"{label(a.name)}: {a.headline}", 150 + 30 * len(values), barmode="group",
                                xaxis=_axis("% of users", rangemode="tozero"), yaxis=_axis(""),
                                legend={**_TOP_LEGEND, "traceorder": "reversed"}))  # fmt: skip
    return fig


def fig_outlier_nearest(data: ReportInput, segs: list[Seg]) -> go.Figure | None:
    a = data.assignments
    if "nearest_segment" not in a.columns:
        return None
    counts = a.filter(pl.col("segment_id") == NOISE).group_by("nearest_segment").len()
    look = dict(zip(counts["nearest_segment"].to_list(), counts["len"].to_list()))
    rows = [s for s in segs if s.id in look and not s.is_noise][::-1]
    if not rows:
        return None
    fig = go.Figure(go.Bar(y=[_plain(s.short) for s in rows], x=[look[s.id] for s in rows], orientation="h",
                           marker={"color": [s.color for s in rows]}, hovertemplate="%{y}: %{x} outliers<extra></extra>"))  # fmt: skip
    fig.update_layout(**_layout("Nearest segment of each outlier", 100 + 30 * len(rows), xaxis=_axis("outliers"),
                                yaxis=_axis(""), showlegend=False))  # fmt: skip
    return fig


# ----------------------------------------------------------------------------- page contexts


class _Figures:
    """Collects a page's figures; each gets a div id and goes into the page's JSON block."""

    def __init__(self) -> None:
        self.specs: dict[str, Any] = {}

    def add(self, name: str, fig: go.Figure | None) -> str | None:
        if fig is None:
            return None
        div = f"chart-{name}"
        spec = fig.to_plotly_json()
        spec["layout"].pop("template", None)
        self.specs[div] = {"data": spec["data"], "layout": spec["layout"]}
        return div

    def json(self) -> Markup:
        # to_json_plotly escapes < > & as \u003c..., so the block cannot close the <script> element
        text = to_json_plotly(self.specs).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        return Markup(text)


def _cards(data: ReportInput, segs: list[Seg], verdict: Verdict) -> list[dict[str, str]]:
    m = data.metrics
    n_seg = _get(m, "segmentation", "n_segments")
    if not isinstance(n_seg, int):
        n_seg = sum(not s.is_noise for s in segs)
    n_users = _get(m, "data", "n_users") or data.assignments.height
    a = data.assignments
    noise = _num(_get(m, "segmentation", "noise_share"))
    if noise is None and a.height:
        noise = a.filter(pl.col("segment_id") == NOISE).height / a.height
    g = _num(_value(_get(m, "rating", "global"), "rmse"))
    s = _num(_value(_get(m, "rating", "segmented"), "rmse"))
    sizes = [x.profile.size for x in segs if x.profile is not None and not x.is_noise]
    return [
        {"label": "Segments", "value": fmt(n_seg),
         "sub": f"{min(sizes):,} to {max(sizes):,} users each" if sizes else ""},
        {"label": "Users", "value": fmt(n_users),
         "sub": f"{fmt(_get(m, 'data', 'n_interactions'))} ratings" if _get(m, "data", "n_interactions") else ""},
        {"label": "Outliers", "value": fmt(noise, "pct") if noise is not None else "not computed",
         "sub": "users in no clear segment"},
        {"label": "Rating error (RMSE)", "value": f"{fmt(g)} → {fmt(s)}" if g is not None and s is not None else "not computed",
         "sub": "global model → per-segment models", "kind": verdict.kind},
    ]  # fmt: skip


def _segments_table(data: ReportInput, segs: list[Seg], n_users: int, models: dict[int, dict[str, Any]]) -> Table:
    cols = [
        Column("Segment"),
        Column("Users", num=True),
        Column("Share", num=True),
        Column("Chooses more than others", title="Categories by lift: share in the segment over share among all users"),
        Column("Keywords"),
    ]
    if models:
        cols.append(Column("Own model", title="Did a fine-tuned model beat the global one on validation data?"))
    rows = []
    for s in segs:
        p = s.profile
        if p is None:
            continue
        apart = " · ".join(f"{c} {lift:.1f}×" for c, lift in zip(p.top_categories[:3], p.category_lift[:3]))
        r = models.get(s.id)
        own = (
            Cell("–", cls="muted")
            if r is None
            else (Cell("kept", cls="good") if r.get("kept") else Cell("global used", cls="muted"))
        )
        rows.append([Cell(s.name, href=s.href, swatch=s.color), _c(p.size),
                     Cell(fmt(p.share, "pct"), cls="num", sort=p.share, bar=p.share),
                     Cell(apart or "–", cls="nowrap"), Cell("", chips=p.keywords[:4], cls="nowrap")]
                    + ([own] if models else []))  # fmt: skip
    return Table(cols, rows, id="segments", wide=True)


def _models_table(data: ReportInput, segs: list[Seg], models: dict[int, dict[str, Any]]) -> Table | None:
    m = data.metrics
    cols = [Column("Segment"), Column("RMSE global", num=True), Column("RMSE own model", num=True),
            Column("Model used"), Column("Ratings", num=True), Column("RMSE global", num=True),
            Column("RMSE per-segment", num=True), Column("Change (95 % CI)", num=True,
                                                         title="Per-segment minus global RMSE; negative is better")]  # fmt: skip
    rows = []
    for s in segs:
        r = models.get(s.id, {})
        g = _value(_get(m, "rating", "global", "per_segment", s.id), "rmse")
        sg = _value(_get(m, "rating", "segmented", "per_segment", s.id), "rmse")
        change, ci, n = _segment_change(m, s.id)
        if not r and g is None and sg is None:
            continue
        used = Cell("nearest segment's" if s.is_noise else "–", cls="muted") if not r else Cell(
            "own model" if r.get("kept") else "global", cls="good" if r.get("kept") else "muted",
            note=str(r["strategy"]) if r.get("strategy") not in (None, "finetune") else None)  # fmt: skip
        rows.append([Cell(s.name, href=s.href, swatch=s.color), _c(r.get("valid_rmse_global"), "d4"),
                     _c(r.get("valid_rmse_segment"), "d4"), used, _c(n), _c(g, "d4"), _c(sg, "d4"),
                     _change_cell(change, ci)])  # fmt: skip
    groups = [("", 1), ("Validation: picks the model", 3), ("Held-out test: the final check", 4)]
    return Table(cols, rows, groups=groups, wide=True) if rows else None


def _config_rows(data: ReportInput) -> Table | None:
    cfg = data.config or {}
    rows = []
    for path, text in _KEY_CONFIG:
        v = _get(cfg, *path.split("."), default="__missing__")
        if v == "__missing__":
            continue
        if path == "cluster.min_cluster_size" and v is None:
            auto = _get(data.metrics, "segmentation", "min_cluster_size")
            v = f"auto ({auto})" if auto is not None else "auto"
        rows.append([Cell(text, title=path), Cell("auto" if v is None else fmt(v), cls="val")])
    return Table([Column("Setting"), Column("Value")], rows) if rows else None


def _full_config(cfg: dict[str, Any]) -> Table | None:
    rows = [[Cell(k), Cell("–" if v is None else fmt(v), cls="val")] for k, v in _flatten(cfg or {})]
    return Table([Column("Key"), Column("Value")], rows) if rows else None


def _timings(metrics: dict[str, Any]) -> Table | None:
    t = _get(metrics, "timings")
    if not isinstance(t, dict) or not t:
        return None
    rows, total = [], 0.0
    for k, v in _flatten(t):
        leaf = k.rsplit(".", 1)[-1]
        is_time = "." not in k and _num(v) is not None
        if is_time:
            total += _num(v) or 0.0
        text = seconds(v) if is_time or (_num(v) is not None and leaf in ("seconds", "fit", "predict")) else fmt(v)
        rows.append([Cell(" · ".join(p.replace("_", " ") for p in k.split("."))), Cell(text, cls="val", sort=_num(v))])
    if total and not any(k in t for k in ("total", "flow", "run")):
        rows.append(
            [Cell("total of the stages above", cls="strong"), Cell(seconds(total), cls="val strong", sort=total)]
        )
    return Table([Column("Stage"), Column("Time")], rows)


def _overview(data: ReportInput, segs: list[Seg], overall: _Overall) -> dict[str, Any]:
    m = data.metrics
    figs = _Figures()
    models = _segment_models(data)
    verdict = rating_verdict(m, models)
    n_users = overall.n_users
    rating = _get(m, "rating")
    rating_systems = ({k: v for k, v in rating.items() if k not in ("gain", "random_partition_control")}
                      if isinstance(rating, dict) else None)  # fmt: skip
    data_info = _get(m, "data") if isinstance(_get(m, "data"), dict) else {}
    return {
        "page": "overview",
        "cards": _cards(data, segs, verdict),
        "verdict": verdict,
        "segments_table": _segments_table(data, segs, n_users, models),
        "chart_map": figs.add("map", fig_map(data, segs)),
        "chart_sizes": figs.add("sizes", fig_sizes(segs, n_users)),
        "chart_heatmap": figs.add("heatmap", fig_heatmap(data, segs)),
        "chart_segment_rmse": figs.add("segment-rmse", fig_segment_rmse(m, segs)),
        "accuracy_table": systems_table(rating_systems, first="Model"),
        "global_model": key_value_table(_get(m, "models", "global")),
        "models_table": _models_table(data, segs, models),
        "ranking_table": systems_table(_get(m, "ranking"), first="Recommender"),
        "ranking_segments": per_segment_table(_get(m, "ranking"), segs, ("ndcg",)),
        "beyond_table": systems_table(_get(m, "beyond_accuracy"), first="Recommender"),
        "beyond_segments": per_segment_table(_get(m, "beyond_accuracy"), segs, ("novelty", "ils")),
        "fairness": [(label(k), nested_table(v)) for k, v in (_get(m, "fairness") or {}).items()]
        if isinstance(_get(m, "fairness"), dict)
        else [],
        "quality_table": key_value_table(_get(m, "segmentation"), skip=("sizes", "selection", "stability")),
        "stability": stability_view(_get(m, "segmentation")),
        "selection": selection_view(_get(m, "segmentation")),
        "control": control_text(m),
        "data_table": key_value_table(data_info, skip=("notes", "name")),
        "data_name": data_info.get("name") or _get(data.config, "data", "source"),
        "data_notes": [str(n) for n in data_info.get("notes", []) or []],
        "config_table": _config_rows(data),
        "full_config": _full_config(data.config),
        "timings_table": _timings(m),
        "versions_table": key_value_table(_get(m, "versions"), raw_keys=True, header=("Package", "Version")),
        "comparison": _comparison_context(
            data.comparison, segs, "comparison.html" if _has_migration(data.comparison) else None
        ),
        "figures": figs.json(),
    }


def _has_migration(comp: Any) -> bool:
    return isinstance(comp, dict) and isinstance(comp.get("migration"), dict)


def _matches_table(comp: dict[str, Any], href: dict[int, str]) -> Table | None:
    rows = []
    for mt in comp.get("matches") or []:
        if not isinstance(mt, dict):
            continue
        b = mt.get("segment_b")
        before = mt.get("name_a") or "(new segment)"
        now = mt.get("name_b") or "(gone)"
        rows.append([Cell(str(before), cls="" if mt.get("name_a") else "muted"),
                     Cell(str(now), href=href.get(b) if b is not None else None, cls="" if mt.get("name_b") else "muted"),
                     _c(mt.get("jaccard"), "d2"), _c(mt.get("size_a")), _c(mt.get("size_b")),
                     _c(mt.get("size_change"), "signed"), _c(mt.get("rmse_a"), "d4"), _c(mt.get("rmse_b"), "d4")])  # fmt: skip
    cols = [Column("Before"), Column("Now"), Column("Overlap", num=True, title=_HELP["jaccard"]),
            Column("Users before", num=True), Column("Users now", num=True), Column("Change", num=True),
            Column("RMSE before", num=True, title=_help("rmse")), Column("RMSE now", num=True, title=_help("rmse"))]  # fmt: skip
    return Table(cols, rows, wide=True) if rows else None


def _comparison_context(comp: Any, segs: list[Seg], href: str | None = None) -> dict[str, Any] | None:
    """The 'since the previous run' block from :func:`reports.compare.compare_runs`'s result."""
    if not isinstance(comp, dict) or not comp:
        return None
    return {
        "summary": [str(x) for x in comp.get("summary", [])],
        "table": _matches_table(comp, {s.id: s.href for s in segs}),
        "run_a": str(comp.get("run_a", "previous run")),
        "href": href,
    }


def fig_sankey(comp: dict[str, Any]) -> go.Figure | None:
    """Users flowing from the earlier run's segments (left) to the later run's (right)."""
    mig = comp.get("migration") or {}
    rows, cols, counts = mig.get("rows") or [], mig.get("cols") or [], mig.get("counts") or []
    if not rows or not cols or not counts:
        return None
    rn = mig.get("row_names") or [f"Segment {r}" for r in rows]
    cn = mig.get("col_names") or [f"Segment {c}" for c in cols]
    col_color = {c: OUTLIER_COLOR if c == NOISE else PALETTE[i % len(PALETTE)] for i, c in enumerate(cols)}
    matched = {m.get("segment_a"): m.get("segment_b") for m in comp.get("matches") or [] if isinstance(m, dict)}
    row_color = [OUTLIER_COLOR if r == NOISE else col_color.get(matched.get(r), "#4b5563") for r in rows]
    src, dst, val, link_color = [], [], [], []
    for i, line in enumerate(counts):
        for j, n in enumerate(line):
            if n:
                src.append(i), dst.append(len(rows) + j), val.append(int(n))
                link_color.append(_rgba(row_color[i], 0.35))
    if not val:
        return None
    sizes_a = [sum(line) for line in counts]
    sizes_b = [sum(line[j] for line in counts) for j in range(len(cols))]
    labels = [f"{_plain(n, 40)} ({k:,})" for n, k in zip(rn, sizes_a)] + [
        f"{_plain(n, 40)} ({k:,})" for n, k in zip(cn, sizes_b)
    ]
    fig = go.Figure(go.Sankey(
        arrangement="fixed",
        node={"label": labels, "color": row_color + [col_color[c] for c in cols], "pad": 12, "thickness": 14,
              "line": {"width": 0}, "hovertemplate": "%{label}<extra></extra>"},
        link={"source": src, "target": dst, "value": val, "color": link_color,
              "hovertemplate": "%{source.label} → %{target.label}: %{value:,} users<extra></extra>"},
    ))  # fmt: skip
    fig.update_layout(**_layout("Where users moved: segments before (left) and now (right)",
                                max(360, 36 * max(len(rows), len(cols)) + 120)))  # fmt: skip
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[k : k + 2], 16) for k in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def fig_migration(comp: dict[str, Any]) -> go.Figure | None:
    """Migration matrix: share of each earlier segment's users found in each later segment."""
    mig = comp.get("migration") or {}
    counts = np.asarray(mig.get("counts") or [], dtype=float)
    if counts.ndim != 2 or counts.size == 0:
        return None
    rn = [_plain(n, 36) for n in mig.get("row_names") or [str(r) for r in mig.get("rows", [])]]
    cn = [_plain(n, 30) for n in mig.get("col_names") or [str(c) for c in mig.get("cols", [])]]
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = go.Figure(go.Heatmap(
        z=(100 * share).round(1).tolist(), x=cn, y=rn, text=counts.astype(int).tolist(), texttemplate="%{text}",
        colorscale="Blues", zmin=0, zmax=100, xgap=2, ygap=2, colorbar={"title": {"text": "% of row"}},
        hovertemplate="%{y} → %{x}<br>%{text} users (%{z:.1f} % of the earlier segment)<extra></extra>",
    ))  # fmt: skip
    fig.update_layout(**_layout("Migration matrix: users from each earlier segment (rows) into each segment now (columns)",
                                140 + 34 * len(rn), xaxis=_axis("segment now", tickangle=-30, showgrid=False),
                                yaxis=_axis("segment before", autorange="reversed", showgrid=False)))  # fmt: skip
    return fig


def _drift_table(comp: dict[str, Any]) -> Table | None:
    """Measures that changed between the runs (unchanged ones are counted in the caption)."""
    every = [r for r in comp.get("metric_drift") or [] if isinstance(r, dict)]
    rows = [r for r in every if _num(r.get("change")) is None or abs(r["change"]) > 1e-12]
    if not every:
        return None
    out = []
    for r in rows:
        path = str(r.get("metric", ""))
        leaf = path.rsplit(".", 1)[-1]
        out.append([Cell(" · ".join(label(x) if x.islower() else x for x in path.split(".")), title=_help(leaf)),
                    _c(r.get("a")), _c(r.get("b")), _c(r.get("change"), "signed")])  # fmt: skip
    unchanged = len(every) - len(rows)
    return Table([Column("Measure"), Column("Before", num=True), Column("Now", num=True), Column("Change", num=True)],
                 out, caption=f"{unchanged} other measures did not change." if unchanged else None)  # fmt: skip


def comparison_page(comp: dict[str, Any], out_dir: Path, *, title: str = "What changed between two runs",
                    run_id: str = "", segs: list[Seg] | None = None, home: str | None = None) -> Path:  # fmt: skip
    """Write ``out_dir/comparison.html`` for :func:`reports.compare.compare_runs`'s result."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _copy_assets(out_dir)
    segs = segs or []
    figs = _Figures()
    ctx = {
        "title": title, "run_id": run_id or str(comp.get("run_b", "")), "segs": segs, "home": home,
        "page": "comparison", "run_a": str(comp.get("run_a", "")), "run_b": str(comp.get("run_b", "")),
        "summary": [str(x) for x in comp.get("summary", [])],
        "cards": [
            {"label": "Users in both runs", "value": fmt(comp.get("n_common")),
             "sub": f"{fmt(comp.get('n_users_a'))} before, {fmt(comp.get('n_users_b'))} now"},
            {"label": "Stayed in their segment", "value": fmt(comp.get("stayed_share"), "pct")
             if _num(comp.get("stayed_share")) is not None else "–", "sub": "of the users in both runs"},
            {"label": "Agreement (ARI)", "value": fmt(comp.get("ari"), "d2") if _num(comp.get("ari")) is not None else "–",
             "sub": "1 = identical segments, 0 = chance"},
        ],
        "chart_sankey": figs.add("sankey", fig_sankey(comp)),
        "chart_migration": figs.add("migration", fig_migration(comp)),
        "matches_table": _matches_table(comp, {s.id: s.href for s in segs}),
        "drift_table": _drift_table(comp),
    }  # fmt: skip
    path = out_dir / "comparison.html"
    path.write_text(_ENV.get_template("compare.html.j2").render(**ctx, figures=figs.json()), encoding="utf-8")
    return path


def _segment_page(data: ReportInput, segs: list[Seg], i: int, overall: _Overall) -> dict[str, Any]:
    s = segs[i]
    p = s.profile
    m = data.metrics
    figs = _Figures()
    models = _segment_models(data)
    names = {x.id: x for x in segs}
    n_users = overall.n_users
    r = models.get(s.id, {})
    g = _num(_value(_get(m, "rating", "global", "per_segment", s.id), "rmse"))
    sg = _num(_value(_get(m, "rating", "segmented", "per_segment", s.id), "rmse"))
    change, ci, n_test = _segment_change(m, s.id)

    cards = []
    if p is not None:
        cards.append({"label": "Users", "value": fmt(p.size), "sub": f"{fmt(p.share, 'pct')} of all users"})
        cards.append(
            {
                "label": "Average rating",
                "value": f"{p.mean_rating:.2f}",
                "sub": f"all users {overall.mean_rating:.2f}" if overall.mean_rating is not None else "",
            }
        )
        cards.append({"label": "Ratings per user", "value": f"{p.mean_activity:.0f}",
                      "sub": f"median {p.median_activity:.0f}; all users {overall.mean_activity:.0f}"
                      if overall.mean_activity is not None else f"median {p.median_activity:.0f}"})  # fmt: skip
    if g is not None:
        cards.append({"label": "Rating error (RMSE)", "value": f"{fmt(g)} → {fmt(sg)}",
                      "sub": "global → nearest segments' models" if s.is_noise else "global → per-segment model",
                      "kind": _change_kind(ci)})  # fmt: skip

    model_lines = _model_sentences(s, r, g, sg, change, ci, n_test)
    acc_rows = []
    for model in ("global", "segmented"):
        e = _get(m, "rating", model, "per_segment", s.id)
        if isinstance(e, dict):
            acc_rows.append([Cell(model)] + [Cell(with_ci(_value(e, k), _ci(e, k)), cls="num") for k in ("rmse", "mae")]
                            + [_c(_get(e, "n"))])  # fmt: skip
    acc_table = Table([Column("Model"), Column("RMSE", num=True, title=_help("rmse")),
                       Column("MAE", num=True, title=_help("mae")), Column("Test ratings", num=True)],
                      acc_rows) if acc_rows else None  # fmt: skip

    def seg_systems(section: str) -> Table | None:
        sec = _get(m, section)
        if not isinstance(sec, dict):
            return None
        sub = {name: _get(v, "per_segment", s.id) for name, v in sec.items() if isinstance(v, dict)}
        sub = {k: v for k, v in sub.items() if isinstance(v, dict)}
        return systems_table(sub, first="Recommender") if sub else None

    items = None
    if p is not None and p.top_items:
        top = max(p.item_lift) if p.item_lift else 1
        items = Table([Column("Title"), Column("Lift", num=True, title="Share of segment users who chose it over the share of all users")],
                      [[Cell(t), Cell(f"{lift:.1f}×", cls="num", sort=lift, bar=lift / top if top else 0)]
                       for t, lift in zip(p.top_items, p.item_lift)])  # fmt: skip
    recs = data.recommendations.get(s.id) or data.recommendations.get(str(s.id)) or []  # type: ignore[call-overload]
    rec_table = Table([Column("#", num=True), Column("Title"),
                       Column("Members who get it", num=True, title="Share of the segment's members with this item in their top-k list")],
                      [[_c(j + 1), Cell(str(title)), Cell(fmt(score, "pct") if _num(score) is not None and score <= 1 else fmt(score),
                                                         cls="num", sort=_num(score), bar=_num(score) if _num(score) is not None and score <= 1 else None)]
                       for j, (_, title, score) in enumerate(recs)]) if recs else None  # fmt: skip
    neigh = []
    for other, sim in data.neighbours.get(s.id, []) or []:
        o = names.get(int(other))
        if o is not None and o.id != s.id:
            neigh.append({"seg": o, "sim": fmt(_num(sim), "d2")})
    members = data.assignments.filter(pl.col("segment_id") == s.id) if data.assignments.height else data.assignments
    reps = []
    if p is not None and p.representative_users:
        mm = (
            dict(zip(members["user_id"].cast(pl.String).to_list(), members["membership"].to_list()))
            if members.height
            else {}
        )
        reps = [{"id": str(u), "membership": fmt(_num(mm.get(str(u))), "d2")} for u in p.representative_users]
    demo_figs = []
    demo_numeric = []
    for a in p.demographics if p is not None else []:
        div = figs.add(f"demo-{len(demo_figs)}", fig_demographic(a, s.color))
        if div:
            demo_figs.append(div)
        elif a.kind == "numeric":
            demo_numeric.append([Cell(label(a.name)), _c(a.segment.get("mean")), _c(a.overall.get("mean")),
                                 _c(a.segment.get("median")), _c(a.overall.get("median"))])  # fmt: skip
    return {
        "page": "segment",
        "seg": s,
        "p": p,
        "prev": segs[i - 1] if i > 0 else None,
        "next": segs[i + 1] if i + 1 < len(segs) else None,
        "cards": cards,
        "chart_categories": figs.add("categories", fig_category_lift(p, s.color)) if p else None,
        "chart_ratings": figs.add("ratings", fig_rating_hist(p, overall, s.color)) if p else None,
        "chart_nearest": figs.add("nearest", fig_outlier_nearest(data, segs)) if s.is_noise else None,
        "items_table": items,
        "popular": p.popular_items if p else [],
        "recs_table": rec_table,
        "neighbours": neigh,
        "reps": reps,
        "demo_figs": demo_figs,
        "demo_numeric": Table(
            [
                Column("Attribute"),
                Column("Mean here", num=True),
                Column("Mean, all users", num=True),
                Column("Median here", num=True),
                Column("Median, all users", num=True),
            ],
            demo_numeric,
        )
        if demo_numeric
        else None,  # fmt: skip
        "model_lines": model_lines,
        "accuracy_table": acc_table,
        "ranking_table": seg_systems("ranking"),
        "beyond_table": seg_systems("beyond_accuracy"),
        "n_users": n_users,
        "figures": figs.json(),
    }


def _change_kind(ci: tuple[float, float] | None) -> str:
    if ci is None:
        return ""
    return "good" if ci[1] < 0 else "bad" if ci[0] > 0 else "neutral"


def _model_sentences(s: Seg, r: dict[str, Any], g: float | None, sg: float | None, change: float | None,
                     ci: tuple[float, float] | None, n: Any) -> list[str]:  # fmt: skip
    out = []
    if s.is_noise:
        out.append("Outliers have no model of their own: each is predicted by its nearest segment's model.")
    if r:
        vg, vs = _num(r.get("valid_rmse_global")), _num(r.get("valid_rmse_segment"))
        if vg is not None and vs is not None:
            out.append(
                f"On validation data its own fine-tuned model scored RMSE {fmt(vs)} against {fmt(vg)} for "
                f"the global model, so the {'own model is used' if r.get('kept') else 'global model is used'}."
            )
        else:
            out.append("Its own model is used." if r.get("kept") else "The global model is used for it.")
    if g is not None and sg is not None:
        text = (
            f"On {fmt(n)} held-out test ratings: RMSE {fmt(sg)} with the model it uses, {fmt(g)} with the global model"
        )
        if ci is not None:
            verdict = (
                "better" if ci[1] < 0 else "worse" if ci[0] > 0 else "no clear difference: the 95 % CI includes zero"
            )
            text += f" (change {fmt(change, 'signed')}, 95 % CI {fmt(ci[0], 'signed')} to {fmt(ci[1], 'signed')}; {verdict})"
        out.append(text + ".")
    return out


# ----------------------------------------------------------------------------- writing


def _copy_assets(out_dir: Path) -> None:
    assets = out_dir / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    for name in ("style.css", "report.js"):
        shutil.copyfile(_HERE / "static" / name, assets / name)
    src = Path(go.__file__).parent.parent / "package_data" / "plotly.min.js"
    dst = assets / "plotly.min.js"
    if not src.is_file():
        from plotly.offline import get_plotlyjs

        dst.write_text(get_plotlyjs(), encoding="utf-8")
    elif not dst.is_file() or dst.stat().st_size != src.stat().st_size:
        shutil.copyfile(src, dst)


def render_report(data: ReportInput, out_dir: Path) -> Path:
    """Write the report: ``index.html``, one ``segment-<id>.html`` per segment, and ``assets/``.

    Args:
        data: everything the report shows (see :class:`reports.model.ReportInput`).
        out_dir: folder to write into (created; earlier segment pages in it are replaced).

    Returns:
        The path of ``index.html``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _copy_assets(out_dir)
    segs = _segments(data)
    overall = _overall(data, segs)
    common = {"title": data.title, "run_id": data.run_id, "segs": segs, "home": "index.html"}
    pages = {"index.html": _ENV.get_template("overview.html.j2").render(**common, **_overview(data, segs, overall))}
    for i, s in enumerate(segs):
        ctx = _segment_page(data, segs, i, overall)
        pages[s.href] = _ENV.get_template("segment.html.j2").render(**common, **ctx)
    for old in [*out_dir.glob("segment-*.html"), out_dir / "comparison.html"]:
        if old.name not in pages and old.exists():
            old.unlink()
    for name, text in pages.items():
        (out_dir / name).write_text(text, encoding="utf-8")
    if _has_migration(data.comparison):
        comparison_page(data.comparison, out_dir, title=f"{data.title}: what changed since the previous run",
                        run_id=data.run_id, segs=segs, home="index.html")  # fmt: skip
    logger.info("report: %d pages in %s", len(pages) + _has_migration(data.comparison), out_dir)
    return out_dir / "index.html"
