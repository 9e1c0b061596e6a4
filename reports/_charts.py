"""Plotly figure builders of the HTML report.

The shared layout (``_LAYOUT``, ``_AXIS``; the segments' colours are in :mod:`reports._segments`), and one
``fig_*`` function per chart: segment sizes, the category-lift heatmap, RMSE per segment, a segment's
categories, ratings and demographics, the outliers' nearest segments, and the run comparison's Sankey diagram
and migration matrix. Each returns a ``go.Figure`` or ``None`` when its data is missing; every string from data
goes through :func:`reports._format._plain`. The segment map (``fig_map``) draws at most ``MAX_MAP_POINTS``
users (a seeded sample beyond).
"""

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl

from reports._format import _ci, _get, _num, _plain, _value, label
from reports._segments import OUTLIER_COLOR, PALETTE, Seg, _Overall
from segmentation.cluster import NOISE
from segmentation.describe import SegmentProfile
from segmentation.run_folder import RunFolder

MAX_MAP_POINTS = 10_000
_FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "DejaVu Sans", sans-serif'
_LAYOUT: dict[str, Any] = {
    "font": {"family": _FONT, "size": 13, "color": "#1f2937"},
    "paper_bgcolor": "#ffffff",
    "plot_bgcolor": "#ffffff",
    "margin": {"l": 60, "r": 20, "t": 76, "b": 56},
    "hoverlabel": {"font": {"family": _FONT}},
    # the title starts below the row plotly's toolbar takes at the chart's top right, so a long one is not covered
    "title": {
        "x": 0,
        "xanchor": "left",
        "y": 1,
        "yref": "container",
        "yanchor": "top",
        "pad": {"t": 34},
        "font": {"size": 15},
    },
}
_TOP_LEGEND = {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1}
_AXIS = {"gridcolor": "#e5e7eb", "zerolinecolor": "#d1d5db", "linecolor": "#9ca3af", "automargin": True}


def _layout(title: str, height: int, **extra: Any) -> dict[str, Any]:
    lay = {**_LAYOUT, "height": height, "title": {**_LAYOUT["title"], "text": _plain(title)}}
    lay.update(extra)
    return lay


def _axis(title: str, **extra: Any) -> dict[str, Any]:
    return {**_AXIS, "title": {"text": _plain(title)}, **extra}


def fig_map(data: RunFolder, segs: list[Seg]) -> go.Figure | None:
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
            custom: list[tuple[Any, ...]] = list(  # triples here, pairs for the segments below
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
    rows = [(s, s.profile) for s in segs if s.profile is not None]
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: r[1].size)  # plotly draws horizontal bars bottom-up
    fig = go.Figure(go.Bar(
        y=[_plain(s.short) for s, _ in rows], x=[p.size for _, p in rows], orientation="h",
        marker={"color": [s.color for s, _ in rows]},
        text=[f"{p.size:,}" for _, p in rows], textposition="outside", cliponaxis=False,
        customdata=[[_plain(s.name), 100 * p.size / max(n_users, 1)] for s, p in rows],
        hovertemplate="%{customdata[0]}<br>%{x:,} users (%{customdata[1]:.1f} %)<extra></extra>",
    ))  # fmt: skip
    top = max(p.size for _, p in rows)  # room right of the longest bar for its count
    fig.update_layout(**_layout("Segment sizes", 110 + 30 * len(rows), xaxis=_axis("users", range=[0, 1.3 * top]),
                                yaxis=_axis("", automargin=True), showlegend=False, bargap=0.25))  # fmt: skip
    return fig


def _shares(p: SegmentProfile) -> list[float | None]:
    """Each top category's share of the segment's choices, or None each where the profile has none."""
    return list(p.category_share) if p.category_share else [None] * len(p.top_categories)


def _lift_frame(data: RunFolder) -> pl.DataFrame:
    cl = data.category_lift
    if isinstance(cl, pl.DataFrame) and cl.height and {"segment_id", "category", "lift"} <= set(cl.columns):
        return cl if "share" in cl.columns else cl.with_columns(pl.lit(None, pl.Float64).alias("share"))
    rows = [(p.segment_id, c, lift, share) for p in data.profiles
            for c, lift, share in zip(p.top_categories, p.category_lift, _shares(p))]  # fmt: skip
    return pl.DataFrame(rows, schema={"segment_id": pl.Int32, "category": pl.String, "lift": pl.Float64,
                                      "share": pl.Float64}, orient="row")  # fmt: skip


def fig_heatmap(data: RunFolder, segs: list[Seg], max_categories: int = 24) -> go.Figure | None:
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
        z.append(zr)
        text.append(tr)
        custom.append(cr)
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
        known = [c for c in cis if c is not None]
        if len(known) == len(cis):
            err = {"type": "data", "symmetric": False, "array": [c[1] - v for c, v in zip(known, vals)],
                   "arrayminus": [v - c[0] for c, v in zip(known, vals)], "color": color, "thickness": 1}  # fmt: skip
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
    shares = _shares(p)[::-1]
    fig = go.Figure(go.Bar(
        y=[_plain(c, 30) for c in cats], x=lifts, orientation="h",
        marker={"color": [color if v >= 1 else "#c7cbd1" for v in lifts]}, text=[f"{v:.1f}×" for v in lifts], textposition="outside", cliponaxis=False,
        customdata=["" if s is None else f"{100 * s:.1f} % of the segment's choices" for s in shares],
        hovertemplate="%{y}: %{x:.2f}× all users<br>%{customdata}<extra></extra>",
    ))  # fmt: skip
    fig.add_vline(x=1, line={"color": "#374151", "dash": "dot", "width": 1},
                  annotation={"text": "all users", "font": {"size": 11}}, annotation_position="top")  # fmt: skip
    fig.update_layout(**_layout("Its categories: chosen how many times as often as by all users", 110 + 26 * len(cats),
                                xaxis=_axis("lift (× the share among all users)",
                                            range=[0, 1.25 * max(1.0, *lifts)]),  # room for the labels
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


def fig_outlier_nearest(data: RunFolder, segs: list[Seg]) -> go.Figure | None:
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


# ----------------------------------------------------------------------------- run comparison


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
                src.append(i)
                dst.append(len(rows) + j)
                val.append(int(n))
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
