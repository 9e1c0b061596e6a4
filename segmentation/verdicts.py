"""The run's verdicts in plain words, worked out once from the evaluation figures.

:func:`run_verdicts` turns a run's metrics into what every reader of the run is told: did per-segment models
improve rating accuracy (:func:`rating_verdict`, driven by the confidence interval of the change), what the
random-partition control says (:func:`control_text`), which segments are tentative, and which recommender lists
what to recommend to each segment. The run writes the result into ``metrics.json`` under ``verdicts``; the report,
``segflow show`` and the Prefect artifacts print it and decide nothing themselves.
"""

from dataclasses import asdict, dataclass
from typing import Any

from segmentation._format import _as_ci, _ci, _get, _num, _value, fmt
from segmentation.cluster import NOISE
from segmentation.stability import TENTATIVE

__all__ = ["IMPLICIT_DETAIL", "IMPLICIT_HEADLINE", "Verdict", "cold_start_text", "control_text", "models_by_segment",
           "primary_ranking", "rating_verdict", "run_verdicts", "tentative_segments"]  # fmt: skip

IMPLICIT_HEADLINE = "This data is implicit feedback (no ratings), so no rating model was trained."
IMPLICIT_DETAIL = ("Segments are built from what their members chose, and no per-segment rating model was tried; "
                   "recommendation quality counts every held-out interaction as relevant.")  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """The rating verdict: ``kind`` is good, bad, neutral or missing; a headline and a sentence of detail."""

    kind: str
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


def models_by_segment(rows: Any) -> dict[int, dict[str, Any]]:
    """The per-segment model rows (``metrics["models"]["segments"]``) by segment id."""
    return {int(r["segment_id"]): r for r in rows or [] if isinstance(r, dict) and r.get("segment_id") is not None}


def rating_verdict(metrics: dict[str, Any], models: dict[int, dict[str, Any]] | None = None) -> Verdict:
    """Did per-segment models improve rating accuracy? Plain words, driven by the CI of the change.

    Implicit feedback (``rating.skipped``) has no rating model: the verdict says so.

    Args:
        metrics: a run's metrics (``rating.global``, ``rating.segmented``, ``rating.gain``).
        models: the per-segment model rows by segment id (``kept`` says whether a segment kept its own model);
            None takes them from ``metrics["models"]["segments"]``.
    """
    if _get(metrics, "rating", "skipped"):
        return Verdict("neutral", IMPLICIT_HEADLINE, IMPLICIT_DETAIL)
    if models is None:
        models = models_by_segment(_get(metrics, "models", "segments", default=[]))
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
        return Verdict(
            "neutral", "No segment kept its own model, so segmentation did not change rating accuracy.", detail
        )
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


def tentative_segments(segments: list[tuple[int, str, float | None]]) -> list[dict[str, Any]]:
    """The segments whose stability (mean clusterwise Jaccard) is below :data:`segmentation.stability.TENTATIVE`.

    Args:
        segments: (segment id, name, stability or None) of every segment, outliers included (they never count).
    """
    return [{"segment_id": int(sid), "name": str(name), "stability": float(st)} for sid, name, st in segments
            if sid != NOISE and st is not None and st < TENTATIVE]  # fmt: skip


def primary_ranking(metrics: dict[str, Any], config: dict[str, Any]) -> dict[str, Any] | None:
    """The recommender that lists what to recommend to each segment (the last configured one) and its NDCG@k."""
    ranking = _get(metrics, "ranking")
    if not isinstance(ranking, dict) or not ranking:
        return None
    names = [n for n in (_get(config, "ranker", "rankers") or []) if n in ranking] or list(ranking)
    k = _get(config, "evaluate", "k") or 10
    return {"primary": names[-1], "k": k, "ndcg": _num(_get(ranking, names[-1], f"ndcg@{k}"))}


def run_verdicts(metrics: dict[str, Any], config: dict[str, Any], segments: list[tuple[int, str, float | None]],
                 models: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """Every verdict of a run, as plain JSON data for ``metrics.json`` (``verdicts``).

    Args:
        metrics: the run's metrics (without ``verdicts``).
        config: the run's configuration as JSON data (``PipelineConfig.model_dump(mode="json")``).
        segments: (segment id, name, stability or None) of every segment.
        models: the per-segment model rows by segment id; None takes them from ``metrics["models"]["segments"]``.

    Returns:
        ``rating`` (``kind``, ``headline``, ``detail``), ``control`` (a paragraph or None), ``tentative``
        (``segment_id``, ``name``, ``stability`` of each tentative segment) and ``ranking`` (``primary``, ``k``,
        ``ndcg``, or None without ranking metrics) and ``cold_start`` (:func:`cold_start_text`, or None).
    """
    return {
        "cold_start": cold_start_text(metrics),
        "rating": asdict(rating_verdict(metrics, models)),
        "control": control_text(metrics),
        "tentative": tentative_segments(segments),
        "ranking": primary_ranking(metrics, config),
    }


_COLD_USED = {"segment": "the segment prior is used", "all-users": "the all-users prior is used",
              "global": "the global model is used"}  # fmt: skip


def _span(c: Any, level: Any = 0.95) -> str:
    """'change +0.0012, 95 % CI -0.0010 to +0.0030' of a ``{"rmse_change", "ci"}`` entry."""
    change, ci = _num(_get(c, "rmse_change")), _as_ci(_get(c, "ci"))
    text = f"change {fmt(change, 'signed')}"
    pct = f"{100 * (_num(level) or 0.95):.3g} %"
    return text + (f", {pct} CI {fmt(ci[0], 'signed')} to {fmt(ci[1], 'signed')}" if ci else "")


def _direction(c: Any) -> str:
    ci = _as_ci(_get(c, "ci"))
    if ci is None:
        return "no interval"
    return "better" if ci[1] < 0 else "worse" if ci[0] > 0 else "the interval includes zero, so the difference is noise"


def cold_start_text(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """New and sparse users in plain words (``metrics["cold_start"]``, :mod:`segmentation.coldstart`).

    Returns:
        None without a ``cold_start`` block (runs written before it), else ``summary`` (one sentence),
        ``by_k`` (a sentence per k: what the gate chose on the simulated new users and why), ``control``,
        ``test`` (the sparse test users against the global model, or None) and ``segments`` (segment id as a
        string -> a sentence per k); each holds the rating decision, then the top-k lists' decision
        (``cold_start.ranking``) in the same words when the ranking half ran.
    """
    block = _get(metrics, "cold_start")
    if not isinstance(block, dict):
        return None
    if block.get("skipped"):
        return {"summary": f"New and sparse users: no prior was tried ({block['skipped']}).", "by_k": [],
                "control": None, "test": None, "segments": {}}  # fmt: skip
    rating = _cold_rating_text(block)
    ranking = _cold_ranking_text(block)
    if ranking is None:
        return rating
    segments = dict(rating["segments"])
    for sid, lines in ranking["segments"].items():
        segments[sid] = [*segments.get(sid, []), *lines]
    join = lambda a, b: " ".join(x for x in (a, b) if x) or None  # noqa: E731
    return {"summary": join(rating["summary"], ranking["summary"]), "by_k": [*rating["by_k"], *ranking["by_k"]],
            "control": join(rating["control"], ranking["control"]), "test": join(rating["test"], ranking["test"]),
            "segments": segments}  # fmt: skip


_RANK_USED = {"segment": "the segment-popularity blend is used", "popularity": "the popularity blend is used",
              "primary": "the ranker's own lists are used"}  # fmt: skip


def _ndcg_span(c: Any, level: Any = 0.95) -> str:
    """'change +0.0123, 98.3 % CI +0.0050 to +0.0200' of a ``{"ndcg_change", "ci"}`` entry."""
    return _span({"rmse_change": _get(c, "ndcg_change"), "ci": _get(c, "ci")}, level)


def _ndcg_direction(c: Any) -> str:
    ci = _as_ci(_get(c, "ci"))
    if ci is None:
        return "no interval"
    return "better" if ci[0] > 0 else "worse" if ci[1] < 0 else "the interval includes zero, so the difference is noise"


def _cold_ranking_text(block: dict[str, Any]) -> dict[str, Any] | None:
    """The ranking half of :func:`cold_start_text` (``cold_start.ranking``), or None when it did not run."""
    r = block.get("ranking")
    if not isinstance(r, dict):
        return None
    primary, k_list = r.get("primary", "the primary ranker"), r.get("k", 10)
    lvl, seg_lvl = r.get("gate_level"), r.get("per_segment_level")
    rows = "train interactions" if block.get("rating_skipped") else "train ratings"
    lines: list[str] = []
    controls: list[str] = []
    segments: dict[str, list[str]] = {}
    by_k = [d for d in (r.get("by_k") or {}).values() if isinstance(d, dict)]
    for d in by_k:
        k, used, n = d.get("k"), str(d.get("used")), d.get("n_users")
        who = f"Users with at most {k} {rows if k != 1 else rows[:-1]}, top-{k_list} lists"
        head = f"{who}: {_RANK_USED.get(used, used)}."
        seg_p, seg_pop, pop_p = (
            d.get("segment_vs_primary"),
            d.get("segment_vs_popularity"),
            d.get("popularity_vs_primary"),
        )
        if d.get("note"):
            why = f" {str(d['note'])[0].upper()}{str(d['note'])[1:]}."
        elif used == "segment":
            why = (f" On {fmt(n)} simulated new users the blend with their segment's popularity beat the blend with "
                   f"overall popularity (NDCG@{k_list} {_ndcg_span(seg_pop, lvl)}) and the {primary} ranker alone "
                   f"({_ndcg_span(seg_p, lvl)}).")  # fmt: skip
        else:
            why = (f" On {fmt(n)} simulated new users the segment-popularity blend did not pass the validation gate: "
                   f"against the overall-popularity blend NDCG@{k_list} {_ndcg_span(seg_pop, lvl)} "
                   f"({_ndcg_direction(seg_pop)}), against the {primary} ranker {_ndcg_span(seg_p, lvl)}. The "
                   f"overall-popularity blend against the {primary} ranker: {_ndcg_span(pop_p, lvl)} "
                   f"({_ndcg_direction(pop_p)}).")  # fmt: skip
        lines.append(head + why)
        ctl = d.get("random_partition_vs_popularity")
        if isinstance(ctl, dict):
            controls.append(f"k = {k}: {_ndcg_span(ctl, lvl)}")
        for sid, s in (d.get("per_segment") or {}).items():
            if not isinstance(s, dict):
                continue
            what = f"{who}: " + ("the segment-popularity blend is used for new users placed here" if s.get("used")
                                 else f"{_RANK_USED.get(used, used)}, not the segment-popularity blend")  # fmt: skip
            if s.get("ci") is None:
                what += (f"; {fmt(s.get('n_users'))} simulated new users placed here, too few users to judge "
                         f"(segment blend against the {primary} ranker: NDCG@{k_list} change "
                         f"{fmt(_num(s.get('ndcg_change')), 'signed')})")  # fmt: skip
            else:
                what += (f"; on {fmt(s.get('n_users'))} simulated new users placed here the segment blend against "
                         f"the {primary} ranker: NDCG@{k_list} {_ndcg_span(s, seg_lvl)} ({_ndcg_direction(s)})")  # fmt: skip
            segments.setdefault(str(sid), []).append(what + ".")
    seg = [d.get("k") for d in by_k if d.get("used") == "segment"]
    pop = [d.get("k") for d in by_k if d.get("used") == "popularity"]
    summary = (f"Top-{k_list} lists: the segment-popularity blend is used for k = {', '.join(map(str, seg))}" if seg
               else f"Top-{k_list} lists: the segment-popularity blend passed the validation gate for no k")  # fmt: skip
    summary += (f"; the popularity blend for k = {', '.join(map(str, pop))}" if pop else "") + "."
    control = (f"Control for the lists: the same blend with random groups of the segments' sizes, against the "
               f"overall-popularity blend: {'; '.join(controls)}.") if controls else None  # fmt: skip
    t = r.get("test")
    test = None
    if isinstance(t, dict) and t.get("n_users"):
        test = (f"On the test split, {fmt(t.get('n_users'))} sparse users with a relevant test item "
                f"({fmt(t.get('listed_by_blend'))} of them listed from a kept blend): NDCG@{t.get('k', k_list)} "
                f"{fmt(_num(t.get('ndcg_cold_start')))} with the lists the gate chose for them vs "
                f"{fmt(_num(t.get('ndcg_primary')))} with the {primary} ranker's own "
                f"({_ndcg_span(t)}; {_ndcg_direction(t)}).")  # fmt: skip
    elif isinstance(t, dict):
        test = "No sparse test user has a relevant test item, so the lists' choice was not scored on the test split."
    return {"summary": summary, "by_k": lines, "control": control, "test": test, "segments": segments}


def _cold_rating_text(block: dict[str, Any]) -> dict[str, Any]:
    """The rating half of :func:`cold_start_text`."""
    if block.get("rating_skipped"):
        return {"summary": f"New and sparse users: no rating prior was tried ({block['rating_skipped']}).",
                "by_k": [], "control": None, "test": None, "segments": {}}  # fmt: skip
    by_k = [d for d in (block.get("by_k") or {}).values() if isinstance(d, dict)]
    lines: list[str] = []
    segments: dict[str, list[str]] = {}
    controls: list[str] = []
    lvl, seg_lvl = block.get("gate_level"), block.get("per_segment_level")
    for d in by_k:
        k, used, n = d.get("k"), str(d.get("used")), d.get("n_users")
        head = f"Users with at most {k} train rating{'s' if k != 1 else ''}: {_COLD_USED.get(used, used)}."
        seg_all, seg_g, all_g = d.get("segment_vs_all_users"), d.get("segment_vs_global"), d.get("all_users_vs_global")
        if used == "segment":
            why = (f" On {fmt(n)} simulated new users the segment prior beat the all-users prior ({_span(seg_all, lvl)}) "
                   f"and the global model ({_span(seg_g, lvl)}).")  # fmt: skip
        else:
            why = (f" On {fmt(n)} simulated new users the segment prior did not pass the validation gate: against the "
                   f"all-users prior {_span(seg_all, lvl)} ({_direction(seg_all)}), against the global model "
                   f"{_span(seg_g, lvl)}. The all-users prior against the global model: {_span(all_g, lvl)} "
                   f"({_direction(all_g)}).")  # fmt: skip
        lines.append(head + why)
        ctl = d.get("random_partition_vs_all_users")
        if isinstance(ctl, dict):
            controls.append(f"k = {k}: {_span(ctl, lvl)}")
        for sid, s in (d.get("per_segment") or {}).items():
            if not isinstance(s, dict):
                continue
            what = f"Users with at most {k} train rating{'s' if k != 1 else ''}: "
            what += ("the segment prior is used for new users placed here" if s.get("used")
                     else f"{_COLD_USED.get(used, used)}, not the segment prior")  # fmt: skip
            if s.get("ci") is None:
                what += (f"; {fmt(s.get('n_users'))} simulated new users placed here, too few users to judge "
                         f"(segment prior against the global model: change {fmt(_num(s.get('rmse_change')), 'signed')})")  # fmt: skip
            else:
                what += (f"; on {fmt(s.get('n_users'))} simulated new users placed here the segment prior against "
                         f"the global model: {_span(s, seg_lvl)} ({_direction(s)})")  # fmt: skip
            segments.setdefault(str(sid), []).append(what + ".")
    kept = [d.get("k") for d in by_k if d.get("used") == "segment"]
    prior = [d.get("k") for d in by_k if d.get("used") == "all-users"]
    summary = (f"New and sparse users: the segment prior is used for k = {', '.join(map(str, kept))}" if kept else
               "New and sparse users: the segment prior passed the validation gate for no k")  # fmt: skip
    summary += (f"; the all-users prior for k = {', '.join(map(str, prior))}" if prior else "") + "."
    control = ("Control: the same prior on random groups of the segments' sizes, against the all-users prior: "
               + "; ".join(controls) + ".") if controls else None  # fmt: skip
    t = block.get("test")
    test = None
    if isinstance(t, dict) and t.get("n_users"):
        test = (f"On the test split, {fmt(t.get('n_users'))} sparse users (at most {max(block.get('ks') or [0])} train "
                f"ratings; {fmt(block.get('covered_users'))} of the run's sparse users predicted with a kept prior): "
                f"RMSE {fmt(_num(t.get('rmse_cold_start')))} with the model the gate chose for them vs "
                f"{fmt(_num(t.get('rmse_global')))} with the global model ({_span(t)}; {_direction(t)}).")  # fmt: skip
    elif isinstance(t, dict):
        test = "No test user has so few train ratings, so the choice was not used on the test split."
    return {"summary": summary, "by_k": lines, "control": control, "test": test, "segments": segments}
