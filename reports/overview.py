"""The overview page (``index.html``): headline cards, the rating verdict and the control, the segments table,
the map and charts, accuracy, ranking, beyond-accuracy and fairness tables, segment quality and stability, how
the clustering settings were chosen, the data, the configuration, timings and versions.

The verdicts are the run's own (``metrics.json`` → ``verdicts``, :attr:`segmentation.run_folder.RunFolder.verdicts`):
this page prints them and decides nothing.
"""

from typing import Any

import polars as pl

from reports._charts import fig_heatmap, fig_map, fig_segment_rmse, fig_sizes
from reports._format import (
    _HELP,
    Cell,
    Column,
    Table,
    _c,
    _change_cell,
    _flatten,
    fmt,
    key_value_table,
    label,
    nested_table,
    per_segment_table,
    seconds,
    systems_table,
)
from reports._page import _Figures
from reports._segments import TENTATIVE_MEANING, Seg, _implicit, _Overall, _segment_change, unstable_summary
from reports.comparison_page import _comparison_context, _has_migration
from segmentation._format import _get, _num, _value
from segmentation.cluster import NOISE
from segmentation.run_folder import RunFolder
from segmentation.verdicts import Verdict

__all__ = ["selection_view", "stability_view"]

_KEY_CONFIG = [
    ("data.source", "Data source"), ("data.split", "Test split"), ("data.max_users", "User limit"),
    ("encoder.model", "Text encoder"), ("encoder.device", "Encoder device"),
    ("represent.method", "User representation"), ("represent.weights", "Weights of its parts"),
    ("represent.evidence", "Light users' category parts"), ("represent.max_categories", "Categories read, at most"),
    ("reduce.n_components", "UMAP dimensions"),
    ("reduce.n_neighbors", "UMAP neighbours"), ("reduce.metric", "UMAP metric"),
    ("cluster.min_cluster_size", "Smallest segment"), ("cluster.min_samples", "HDBSCAN min_samples"),
    ("cluster.cluster_selection_method", "HDBSCAN selection"), ("cluster.outlier_membership", "Outlier reassignment"),
    ("predictor.model", "Rating model"), ("predictor.per_segment.enabled", "Per-segment fine-tuning"),
    ("ranker.rankers", "Recommenders compared"), ("evaluate.k", "List length k"),
    ("evaluate.bootstrap", "Bootstrap resamples"), ("seed", "Seed"),
]  # fmt: skip


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


def reassigned_text(segmentation: Any) -> str | None:
    """One sentence on the members moved by what they chose (``segmentation.reassigned``), or on why nobody moved;
    None when the run has no such record."""
    r = _get(segmentation, "reassigned")
    moved, level = (_num(_get(r, "moved")), _num(_get(r, "level"))) if isinstance(r, dict) else (None, None)
    if moved is None or level is None:
        return None
    levels = _num(_get(r, "rating_levels"))
    what = f"the categories, at {fmt(int(levels))} rating levels" if levels and levels > 1 else "the categories"
    proposed, limit = _num(_get(r, "proposed_share")), _num(_get(r, "max_share"))
    if _get(r, "applied") is False and proposed is not None and limit is not None:
        return (f"Once the segments were final, moving members to the segment whose profile best explains what they "
                f"chose ({what}) would have moved {fmt(proposed, 'pct')} of them, more than "
                f"cluster.category_reassign_max_share ({fmt(limit, 'pct')}): these segments are set apart by more "
                "than what their members chose, so nobody moved.")  # fmt: skip
    users = _num(_get(segmentation, "n_users"))
    share = f" ({fmt(moved / users, 'pct')} of the users)" if users else ""
    out = (f"Once the segments were final, {fmt(int(moved))} members{share} moved to the segment whose profile best "
           f"explains what they chose ({what}): their own segment's posterior was below {fmt(level, 'd2')} (a naive "
           "Bayes over the segments' profiles).")  # fmt: skip
    refused = _num(_get(r, "refused"))
    if refused:
        out += (f" {fmt(int(refused))} such moves were not made: the user's taste vector lay far from that segment "
                "(cluster.outlier_distance).")  # fmt: skip
    return out


def splits_text(segmentation: Any, names: dict[int, str] | None = None) -> str | None:
    """One paragraph on the segments fitted again on their own (``segmentation.splits``): which came apart (by the
    names in ``names``, segment id to name, where given), which held together."""
    sp = _get(segmentation, "splits")
    if not isinstance(sp, dict) or not isinstance(sp.get("tested"), list):
        return None
    bar = _num(sp.get("split_stability"))
    tested = [t for t in sp["tested"] if isinstance(t, dict)]
    split = [t for t in tested if t.get("split")]
    # held together: parts that did not come back on subsamples (a test that failed on the parts' size, or found
    # fewer than two parts, says nothing about how well they came back)
    # (runs before ``outcome`` was recorded say it in ``why`` only)
    held = [t for t in tested if not t.get("split") and _num(t.get("stability")) is not None
            and (t.get("outcome") == "unstable"
                 or ("outcome" not in t and str(t.get("why", "")).startswith("stability")))]  # fmt: skip
    if not split and not held:
        return None
    out = [f"Each large segment was then fitted again on its own users, to find segments that the first fit drew "
           f"as one: it is split when its parts come back on subsamples with a stability of at least {fmt(bar, 'd2')}."]  # fmt: skip
    if any(str(t.get("test", "")).endswith(("categories", "ratings")) for t in split):
        out.append("Every segment was then also tested on the categories its users chose (a mixture of category "
                   "profiles, its number of parts by BIC), by the same bar.")  # fmt: skip
    if any(str(t.get("test", "")).endswith("ratings") for t in split):
        out.append("A segment the categories kept whole was tested once more on what its users chose and how they "
                   "rated it (the same mixture over each category at each rating level).")  # fmt: skip
    for t in split:
        parts = [(names or {}).get(i) or f"segment {i}" for i in t.get("segments") or []]
        ids = ", ".join(f"“{p}”" if not p.startswith("segment ") else p for p in parts)
        how = {"categories": " by the categories its users chose",
               "layout, then categories": " in its own layout, then by the categories its users chose",
               "ratings": " by what its users chose and how they rated it",
               "layout, then ratings": " in its own layout, then by what its users chose and how they rated it"}.get(
            str(t.get("test")), "")  # fmt: skip
        out.append(f"{fmt(t.get('users'))} users came apart{how} into {ids} (stability "
                   f"{fmt(_num(t.get('stability')), 'd3')}).")  # fmt: skip
    if held:
        top = max(_num(t.get("stability")) or 0.0 for t in held)
        out.append(f"{len(held)} segment{'s' if len(held) > 1 else ''} held together (stability at most "
                   f"{fmt(top, 'd3')}).")  # fmt: skip
    if split:
        out.append("The quality scores and the map come from the first fit, in which each split segment's parts were "
                   "one region: they understate how well the parts stand apart.")  # fmt: skip
    return " ".join(out)


def _cards(data: RunFolder, segs: list[Seg], verdict: Verdict) -> list[dict[str, str]]:
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
        primary = data.verdicts.get("ranking") or {}
        name, ndcg = primary.get("primary"), primary.get("ndcg")
        k = primary.get("k") or _get(data.config, "evaluate", "k") or 10
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


def _segments_table(data: RunFolder, segs: list[Seg], n_users: int, models: dict[int, dict[str, Any]]) -> Table:
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
                     Cell(apart or "–", cls="nowrap"), Cell("", chips=p.keywords[:4])]
                    + ([stab_cell] if stab else []) + ([own] if models else []))  # fmt: skip
    return Table(cols, rows, id="segments", wide=True)


def _models_table(data: RunFolder, segs: list[Seg], models: dict[int, dict[str, Any]]) -> Table | None:
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


def _cold_start_table(data: RunFolder) -> Table | None:
    """One row per k of the cold-start gate: what is used, validation RMSE of each choice, the changes, test."""
    cs = data.cold_start
    if cs is None or not cs.gates:
        return None
    used_cell = {"segment": Cell("segment prior", cls="good"), "all-users": Cell("all-users prior"),
                 "global": Cell("global", cls="muted")}  # fmt: skip
    rows = []
    for g in cs.gates:
        t = g.test or {}
        rows.append([Cell(f"≤ {g.k}", sort=g.k), used_cell.get(g.used, Cell(g.used)), _c(g.n_users),
                     _c(g.rmse.get("global"), "d4"), _c(g.rmse.get("all_users"), "d4"), _c(g.rmse.get("segment"), "d4"),
                     _change_cell(*g.changes["segment_vs_all_users"]), _change_cell(*g.changes["segment_vs_global"]),
                     _change_cell(*g.changes["random_partition_vs_all_users"]), _c(t.get("n_users")),
                     _change_cell(_num(t.get("rmse_change")), _ci_pair(t.get("ci")))])  # fmt: skip
    cols = [Column("Train ratings"), Column("Used"), Column("Simulated new users", num=True),
            Column("RMSE global", num=True), Column("RMSE all-users prior", num=True),
            Column("RMSE segment prior", num=True),
            Column("Segment vs all-users prior (CI)", num=True, title="Negative: the segment prior is better"),
            Column("Segment prior vs global (CI)", num=True, title="Negative: the segment prior is better"),
            Column("Random groups vs all-users prior (CI)", num=True,
                   title="Control: the same prior on random groups of the segments' sizes"),
            Column("Sparse test users", num=True),
            Column("Test: used minus global (CI)", num=True, title="Negative: the model used is better")]  # fmt: skip
    groups = [("", 2), ("Validation: simulated new users pick the model", 7), ("Held-out test: the final check", 2)]
    return Table(cols, rows, groups=groups, wide=True)


def _cold_start_ranking_table(data: RunFolder) -> Table | None:
    """One row per k of the cold-start gate for top-k lists: what is used, validation NDCG of each choice, the
    changes, test."""
    cs = data.cold_start
    r = cs.ranking if cs is not None else None
    if not isinstance(r, dict) or not isinstance(r.get("by_k"), dict) or not r["by_k"]:
        return None
    used_cell = {"segment": Cell("segment blend", cls="good"), "popularity": Cell("popularity blend"),
                 "primary": Cell("ranker alone", cls="muted")}  # fmt: skip
    test = (r.get("test") or {}).get("by_k") or {}
    rows = []
    for key, g in r["by_k"].items():
        if not isinstance(g, dict):
            continue
        nd, t = g.get("ndcg") or {}, test.get(str(key)) or {}

        def ch(name: str, g=g) -> Cell:
            c = g.get(name) or {}
            return _change_cell(_num(c.get("ndcg_change")), _ci_pair(c.get("ci")))

        rows.append([Cell(f"≤ {g.get('k', key)}", sort=g.get("k")), used_cell.get(str(g.get("used")), Cell(str(g.get("used")))),
                     _c(g.get("n_users")), _c(_num(nd.get("primary")), "d4"), _c(_num(nd.get("popularity")), "d4"),
                     _c(_num(nd.get("segment")), "d4"), ch("segment_vs_popularity"), ch("segment_vs_primary"),
                     ch("random_partition_vs_popularity"), _c(t.get("n_users")),
                     _change_cell(_num(t.get("ndcg_change")), _ci_pair(t.get("ci")))])  # fmt: skip
    k = r.get("k", 10)
    cols = [Column("Train rows"), Column("Lists used"), Column("Simulated new users", num=True),
            Column(f"NDCG@{k} {r.get('primary', 'ranker')}", num=True), Column(f"NDCG@{k} popularity blend", num=True),
            Column(f"NDCG@{k} segment blend", num=True),
            Column("Segment vs popularity blend (CI)", num=True, title="Positive: the segment blend is better"),
            Column("Segment blend vs ranker (CI)", num=True, title="Positive: the segment blend is better"),
            Column("Random groups vs popularity blend (CI)", num=True,
                   title="Control: the same blend with random groups of the segments' sizes"),
            Column("Sparse test users", num=True),
            Column("Test: used minus ranker (CI)", num=True, title="Positive: the lists used are better")]  # fmt: skip
    groups = [("", 2), ("Validation: simulated new users pick the lists", 7), ("Held-out test: the final check", 2)]
    return Table(cols, rows, groups=groups, wide=True) if rows else None


def _ci_pair(c: Any) -> tuple[float, float] | None:
    return (float(c[0]), float(c[1])) if isinstance(c, list | tuple) and len(c) == 2 and None not in c else None


def _config_rows(data: RunFolder) -> Table | None:
    cfg = data.config or {}
    rows = []
    for path, text in _KEY_CONFIG:
        v = _get(cfg, *path.split("."), default="__missing__")
        if v == "__missing__":
            continue
        if path == "cluster.min_cluster_size" and v is None:
            auto = _get(data.metrics, "segmentation", "min_cluster_size")
            v = f"auto ({auto})" if auto is not None else "auto"
        rows.append([Cell(text, title=path), Cell(_represent_value(path, v, cfg) or ("auto" if v is None else fmt(v)),
                                                  cls="val")])  # fmt: skip
    return Table([Column("Setting"), Column("Value")], rows) if rows else None


def _represent_value(path: str, v: Any, cfg: dict[str, Any]) -> str | None:
    """The represent settings in words (None: the plain value serves): a fusion's weights for its own parts, and
    what the evidence does."""
    parts = str(_get(cfg, "represent", "method", default="")).split("+")
    if path == "represent.weights":
        if len(parts) < 2:
            return "– (one part)"
        given = v if isinstance(v, dict) else {}
        return ", ".join(f"{p} {float(given.get(p, 1.0)):g}" for p in parts)
    if path == "represent.evidence":
        if v is None:
            return "not scaled"
        if not any(p in parts for p in ("category-hist", "liked-category-hist", "category-rating")) or len(parts) < 2:
            return "– (no category part in a fusion)"
        return f"scaled by n / (n + {float(v):g}) for a user with n interactions"
    return None


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


def _overview(data: RunFolder, segs: list[Seg], overall: _Overall) -> dict[str, Any]:
    m = data.metrics
    figs = _Figures()
    models = data.models_by_segment()
    verdict = Verdict(**data.verdicts["rating"])
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
        "cold_start": data.verdicts.get("cold_start"),
        "cold_start_table": _cold_start_table(data),
        "cold_start_ranking_table": _cold_start_ranking_table(data),
        "ranking_table": systems_table(_get(m, "ranking"), first="Recommender"),
        "ranking_sample_note": str(_get(m, "ranking_sample", "note", default=""))
        if _get(m, "ranking_sample", "sampled")
        else None,
        "ranking_segments": per_segment_table(_get(m, "ranking"), segs, ("ndcg",)),
        "beyond_table": systems_table(_get(m, "beyond_accuracy"), first="Recommender"),
        "beyond_segments": per_segment_table(_get(m, "beyond_accuracy"), segs, ("novelty", "ils")),
        "fairness": [(label(k), nested_table(v)) for k, v in (_get(m, "fairness") or {}).items()]
        if isinstance(_get(m, "fairness"), dict)
        else [],
        "quality_table": key_value_table(
            _get(m, "segmentation"), skip=("sizes", "selection", "stability", "splits", "outliers", "reassigned")
        ),  # fmt: skip
        "stability": stability_view(_get(m, "segmentation")),
        "selection": selection_view(_get(m, "segmentation")),
        "splits": splits_text(_get(m, "segmentation"), {x.id: x.name for x in segs if not x.is_noise}),
        "reassigned": reassigned_text(_get(m, "segmentation")),
        "control": data.verdicts.get("control"),
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
