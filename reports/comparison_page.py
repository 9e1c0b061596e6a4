"""The comparison page: what changed since the previous run (migration Sankey and matrix, matched segments,
metric drift), from :func:`segmentation.compare.compare_runs`'s result; and the overview's short block on it."""

from pathlib import Path
from typing import Any, TypeGuard

from reports._charts import fig_migration, fig_sankey
from reports._format import _HELP, Cell, Column, Table, _c, _help, fmt, label
from reports._page import _ENV, _copy_assets, _Figures
from reports._segments import Seg
from segmentation._format import _num

__all__ = ["comparison_page", "render_comparison"]


def _has_migration(comp: Any) -> TypeGuard[dict[str, Any]]:
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
    """The 'since the previous run' block from :func:`segmentation.compare.compare_runs`'s result."""
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
    """Write ``out_dir/comparison.html`` for :func:`segmentation.compare.compare_runs`'s result."""
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


def render_comparison(result: dict[str, Any], out_dir: Path, *, title: str = "What changed between two runs") -> Path:
    """Write ``out_dir/comparison.html`` (migration Sankey and matrix, matches, drift) with its assets.

    Args:
        result: :func:`segmentation.compare.compare_runs`'s result.
        out_dir: folder to write into; a report folder works (the page shares its ``assets/``).
        title: page title.

    Returns:
        The path of ``comparison.html``.
    """
    return comparison_page(result, Path(out_dir), title=title)
