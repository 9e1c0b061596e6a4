"""One page per segment (``segment-<id>.html``): who is in it, what sets it apart, how it rates, how well the
models predict it, what to recommend to it, its neighbours, its stability and its people."""

from typing import Any

import polars as pl

from reports._charts import fig_category_lift, fig_demographic, fig_outlier_nearest, fig_rating_hist
from reports._format import Cell, Column, Table, _c, _ci, _help, fmt, label, systems_table, with_ci
from reports._page import _Figures
from reports._segments import TENTATIVE_MEANING, Seg, _implicit, _Overall, _segment_change, stability_sentence
from segmentation._format import _get, _num, _value
from segmentation.run_folder import RunFolder


def _segment_page(data: RunFolder, segs: list[Seg], i: int, overall: _Overall) -> dict[str, Any]:
    s = segs[i]
    p = s.profile
    m = data.metrics
    figs = _Figures()
    models = data.models_by_segment()
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
    demo_figs: list[str] = []
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
        "outliers_text": outliers_text(_get(m, "segmentation", "outliers")) if s.is_noise else None,
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
        "cold_start_lines": (_get(data.verdicts, "cold_start", "segments") or {}).get(str(s.id), []),
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


def outliers_text(record: Any) -> str | None:
    """Why these users are outliers, from ``metrics.json`` → ``segmentation.outliers`` (:func:`segmentation.cluster.
    judge_outliers`); None for a run without that record."""
    if not isinstance(record, dict) or _num(record.get("outliers")) is None:
        return None
    weighed = ", for the number of interactions they made," if record.get("outlier_evidence", True) else ","
    if record.get("reads_categories"):
        how = (f"by how far their taste points from that segment's and how unlike its category profile the categories "
               f"they chose are{weighed} each against the segment's own members; a user is an outlier when the two "
               "scores together lie")  # fmt: skip
    else:
        how = (
            f"by how far their taste points from that segment's{weighed} against the segment's own members; a user "
            "is an outlier when that score lies"
        )
    out = [f"Once the segments were final, every user was judged against their segment (an outlier against the "
           f"nearest one) {how} more than {fmt(_num(record.get('outlier_distance')), 'd2')} robust standard "
           f"deviations out (cluster.outlier_distance): {fmt(record.get('outliers'))} users."]  # fmt: skip
    joined = _num(record.get("joined"))
    if joined:
        out.append(f"{fmt(int(joined))} users that the clustering had left out were close enough to join their nearest "
                   "segment.")  # fmt: skip
    return " ".join(out)
