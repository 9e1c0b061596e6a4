"""Render a run's self-contained HTML report: ``index.html`` plus one page per segment.

The report opens from ``file://`` with no network: plotly.js is copied once into
``assets/`` beside the pages, charts are plotly figure specs embedded as JSON and
drawn by ``assets/report.js``, and every string that comes from data is escaped
(Jinja2 autoescape for HTML, :func:`_plain` for text drawn by plotly).

Every metrics section and key is optional: what is missing is shown as
"not computed", never an error.

This module holds the verdicts in plain words (:func:`rating_verdict`, :func:`control_text`,
:func:`stability_view`, :func:`selection_view`), the page contexts, the
comparison page and :func:`render_report`. Formatting and the table model are in :mod:`reports._format`, the
other charts in :mod:`reports._charts`, the segments in :mod:`reports._segments`; their names are imported
here, so ``reports.render`` still offers them.
"""

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import polars as pl
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from plotly.io.json import to_json_plotly

from reports._charts import (
    MAX_MAP_POINTS,  # noqa: F401  (re-exported: reports.render.MAX_MAP_POINTS)
    fig_category_lift,
    fig_demographic,
    fig_heatmap,
    fig_map,
    fig_migration,
    fig_outlier_nearest,
    fig_rating_hist,
    fig_sankey,
    fig_segment_rmse,
    fig_sizes,
)
from reports._format import (
    _HELP,
    Cell,
    Column,
    Table,
    _as_ci,
    _c,
    _ci,
    _flatten,
    _get,
    _help,
    _num,
    _value,
    fmt,
    key_value_table,
    label,
    nested_table,
    per_segment_table,
    seconds,
    segment_filename,
    systems_table,
    with_ci,
)
from reports._segments import (
    TENTATIVE_MEANING,
    Seg,
    _Overall,
    _overall,
    _segments,
    stability_sentence,
    unstable_summary,
)
from reports.model import ReportInput
from segmentation.cluster import NOISE

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

_KEY_CONFIG = [
    ("data.source", "Data source"), ("data.split", "Test split"), ("data.max_users", "User limit"),
    ("encoder.model", "Text encoder"), ("encoder.device", "Encoder device"),
    ("represent.method", "User representation"), ("reduce.n_components", "UMAP dimensions"),
    ("reduce.n_neighbors", "UMAP neighbours"), ("reduce.metric", "UMAP metric"),
    ("cluster.min_cluster_size", "Smallest segment"), ("cluster.min_samples", "HDBSCAN min_samples"),
    ("cluster.cluster_selection_method", "HDBSCAN selection"), ("cluster.outlier_membership", "Outlier reassignment"),
    ("predictor.model", "Rating model"), ("predictor.per_segment.enabled", "Per-segment fine-tuning"),
    ("ranker.rankers", "Recommenders compared"), ("evaluate.k", "List length k"),
    ("evaluate.bootstrap", "Bootstrap resamples"), ("seed", "Seed"),
]  # fmt: skip


# ----------------------------------------------------------------------------- segments


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


IMPLICIT_HEADLINE = "This data is implicit feedback (no ratings), so no rating model was trained."
IMPLICIT_DETAIL = ("Segments are built from what their members chose, and no per-segment rating model was tried; "
                   "recommendation quality counts every held-out interaction as relevant.")  # fmt: skip


def _implicit(metrics: dict[str, Any]) -> bool:
    return bool(_get(metrics, "data", "implicit")) or bool(_get(metrics, "rating", "skipped"))


def _primary_ndcg(data: ReportInput) -> tuple[str | None, float | None]:
    """The last configured ranker (the one that lists what to recommend to each segment) and its NDCG@k."""
    ranking = _get(data.metrics, "ranking")
    if not isinstance(ranking, dict) or not ranking:
        return None, None
    names = [n for n in (_get(data.config, "ranker", "rankers") or []) if n in ranking] or list(ranking)
    k = _get(data.config, "evaluate", "k") or 10
    return names[-1], _num(_get(ranking, names[-1], f"ndcg@{k}"))


def rating_verdict(metrics: dict[str, Any], models: dict[int, dict[str, Any]] | None = None) -> Verdict:
    """Did per-segment models improve rating accuracy? Plain words, driven by the CI of the change.

    The report's verdict, and the run summary artifact's (which passes a run's ``metrics.json`` alone).
    Implicit feedback (``rating.skipped``) has no rating model: the verdict says so.

    Args:
        metrics: a run's metrics (``rating.global``, ``rating.segmented``, ``rating.gain``).
        models: the per-segment model rows by segment id (``kept`` says whether a segment kept its own model);
            None takes them from ``metrics["models"]["segments"]``.
    """
    if _get(metrics, "rating", "skipped"):
        return Verdict("neutral", IMPLICIT_HEADLINE, IMPLICIT_DETAIL)
    if models is None:
        rows = _get(metrics, "models", "segments", default=[]) or []
        models = {int(r["segment_id"]): r for r in rows if isinstance(r, dict) and r.get("segment_id") is not None}
    g = _num(_value(_get(metrics, "rating", "global"), "rmse"))
    s = _num(_value(_get(metrics, "rating", "segmented"), "rmse"))
    kept = sum(bool(r.get("kept")) for r in models.values())
    kept_text = (f" {kept} of {len(models)} segments kept their own fine-tuned model; the others use the global model."
                 if models else "")  # fmt: skip
    if g is None or s is None:
        return Verdict("missing", "Rating accuracy was not computed in this run.", kept_text.strip())
    change, ci = _change_ci(_get(metrics, "rating", "gain"), s - g)
    nums = f"RMSE {fmt(s)} with per-segment models vs {fmt(g)} with the global model"
    if (models and kept == 0) or (not models and change == 0 and ci == (0.0, 0.0)):
        # every segment predicts with the global model: "change 0, 95 % CI [0, 0]" would say nothing more
        where = f"none of the {len(models)} segments" if models else "no segment"
        detail = (f"The fine-tuned per-segment models passed the validation gate in {where}, so every segment uses "
                  f"the global model")  # fmt: skip
        if not change:
            detail += f" (RMSE {fmt(g)})."
        else:
            span = f", 95 % CI {fmt(ci[0], 'signed')} to {fmt(ci[1], 'signed')}" if ci else ""
            detail += f". {nums} (change {fmt(change, 'signed')}{span})."
        return Verdict("neutral", "No segment kept its own model, so segmentation did not change rating accuracy.",
                       detail)
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
    elif change == 0 and seg_change == 0:
        compare = (" Neither the segments nor the random groups kept a fine-tuned model that passed the gate, so "
                   "both predict as the global model does.")  # fmt: skip
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
    sentence = (f"Refitting the segments gives ARI {'; '.join(parts)} (1 = identical, 0 = chance): {word}. "
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
    chosen_text = (f"Chosen: segments of at least {sel.get('min_cluster_size')} users, "
                   f"{sel.get('cluster_selection_method')} selection" if sel.get("min_cluster_size") else None)  # fmt: skip
    text = "; ".join(str(t) for t in (chosen_text, reason) if t) or None
    return text, (Table(cols, rows) if rows else None)


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


# ----------------------------------------------------------------------------- segment map


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
    implicit = _implicit(m)
    if implicit:
        name, ndcg = _primary_ndcg(data)
        k = _get(data.config, "evaluate", "k") or 10
        quality = {"label": f"Recommendations (NDCG@{k})", "value": fmt(ndcg) if ndcg is not None else "not computed",
                   "sub": f"{name} recommender; no rating model (implicit feedback)" if name else "implicit feedback"}  # fmt: skip
    else:
        quality = {"label": "Rating error (RMSE)",
                   "value": f"{fmt(g)} → {fmt(s)}" if g is not None and s is not None else "not computed",
                   "sub": "global model → per-segment models", "kind": verdict.kind}  # fmt: skip
    noun = "interactions" if implicit else "ratings"
    return [
        {"label": "Segments", "value": fmt(n_seg),
         "sub": f"{min(sizes):,} to {max(sizes):,} users each" if sizes else ""},
        {"label": "Users", "value": fmt(n_users),
         "sub": f"{fmt(_get(m, 'data', 'n_interactions'))} {noun}" if _get(m, "data", "n_interactions") else ""},
        {"label": "Outliers", "value": fmt(noise, "pct") if noise is not None else "not computed",
         "sub": "users in no clear segment"},
        quality,
    ]  # fmt: skip


_STABILITY_HELP = ("Mean overlap (Jaccard, 0-1) of the segment with its closest segment when the users are refitted "
                   "with other seeds and on 80 % subsamples (Hennig's clusterboot). Below 0.6 the segment is "
                   "tentative: it dissolves or merges with another segment on resampled data.")  # fmt: skip


def _segments_table(data: ReportInput, segs: list[Seg], n_users: int, models: dict[int, dict[str, Any]]) -> Table:
    cols = [
        Column("Segment"),
        Column("Users", num=True),
        Column("Share", num=True),
        Column("Chooses more than others", title="Categories by lift: share in the segment over share among all users"),
        Column("Keywords"),
    ]
    stab = any(x.stability is not None for x in segs)
    if stab:
        cols.append(Column("Stability", num=True, title=_STABILITY_HELP))
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
        st = s.stability
        stab_cell = (Cell("–", cls="num muted") if st is None else
                     Cell(f"{st:.2f}", cls="num bad" if s.tentative else "num", sort=st,
                          note="tentative" if s.tentative else None))  # fmt: skip
        rows.append([Cell(s.name, href=s.href, swatch=s.color, badge="tentative" if s.tentative else None,
                          title=TENTATIVE_MEANING if s.tentative else None), _c(p.size),
                     Cell(fmt(p.share, "pct"), cls="num", sort=p.share, bar=p.share),
                     Cell(apart or "–", cls="nowrap"), Cell("", chips=p.keywords[:4], cls="nowrap")]
                    + ([stab_cell] if stab else []) + ([own] if models else []))  # fmt: skip
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
        "implicit": _implicit(m),
        "cards": _cards(data, segs, verdict),
        "verdict": verdict,
        "segments_table": _segments_table(data, segs, n_users, models),
        "unstable": unstable_summary(m, segs),
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

    implicit = _implicit(m)
    cards = []
    if p is not None:
        cards.append({"label": "Users", "value": fmt(p.size), "sub": f"{fmt(p.share, 'pct')} of all users"})
        if not implicit:
            cards.append(
                {
                    "label": "Average rating",
                    "value": f"{p.mean_rating:.2f}",
                    "sub": f"all users {overall.mean_rating:.2f}" if overall.mean_rating is not None else "",
                }
            )
        cards.append({"label": "Items per user" if implicit else "Ratings per user", "value": f"{p.mean_activity:.0f}",
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
        "chart_ratings": figs.add("ratings", fig_rating_hist(p, overall, s.color)) if p and not implicit else None,
        "implicit": implicit,
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
        "stability_text": stability_sentence(m, s, segs),
        "tentative_text": TENTATIVE_MEANING if s.tentative else None,
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
