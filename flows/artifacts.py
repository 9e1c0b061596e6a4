"""Prefect artifacts of a finished run: a markdown summary, a segment table, a link to the report, and what
changed since the previous run in the same output folder."""

import json
import logging
import math
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from segmentation.run_folder import load_run_folder
from segmentation.stability import TENTATIVE

logger = logging.getLogger("segmentation.compare")  # a library logger: reaches the run logs like the stages' own

#: the public base URL of a runs folder, and the folder it serves (``segflow serve`` sets both for its own)
BASE_URL_ENV = "SEGFLOW_REPORT_BASE_URL"
BASE_DIR_ENV = "SEGFLOW_REPORT_BASE_DIR"


def _fmt(x: object, nd: int = 4) -> str:
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def summary_markdown(run_dir: Path) -> str:
    """The run's headline figures as markdown (also printed by ``segflow show``).

    The rating verdict, the random-partition control and the tentative segments are the run's own
    (``metrics.json`` → ``verdicts``, the sentences the report prints), so the artifact and the report never disagree.
    """
    run = load_run_folder(run_dir)
    assert run.path is not None, "a RunFolder read from a folder has its path (None only for one built in memory)"
    m = run.metrics
    seg = m.get("segmentation", {})
    verdicts = run.verdicts
    verdict = verdicts["rating"]
    lines = [
        f"# segflow run {run.path.name}",
        "",
        f"- data: {m['data']['name']} ({m['data']['n_users']} users, {m['data']['n_items']} items, "
        f"{m['data']['n_interactions']} interactions)",
        f"- segments: **{seg.get('n_segments')}**, outliers {100 * seg.get('noise_share', 0):.1f} %",
        f"- {'rating model' if (m.get('rating') or {}).get('skipped') else 'rating accuracy'}: **{verdict['headline']}**"
        + (f" {verdict['detail']}" if verdict["detail"] else ""),
        f"- report: `{run.path / 'report' / 'index.html'}`",
    ]
    ranking = m.get("ranking") or {}
    if ranking:
        k = next((key.split("@")[1] for r in ranking.values() if isinstance(r, dict) for key in r
                  if key.startswith("ndcg@") and not key.endswith("_ci")), "10")  # fmt: skip
        lines.insert(-1, f"- top-{k} NDCG: " + ", ".join(f"{name} {_fmt(r.get(f'ndcg@{k}'))}" for name, r in ranking.items()
                                                     if isinstance(r, dict)))  # fmt: skip
        sample = m.get("ranking_sample") or {}
        if sample.get("sampled") and sample.get("note"):  # past evaluate.ranking_max_users test users
            lines.insert(-1, f"  ({sample['note']})")
    stab = seg.get("stability") or {}
    parts = [f"{what} {_fmt(stab[key]['mean'])}" for key, what in (("seed_ari", "between seeds"),
             ("bootstrap_ari", "on subsamples")) if isinstance(stab.get(key), dict) and stab[key].get("mean") is not None]  # fmt: skip
    if parts:
        lines.insert(-1, f"- segment stability (ARI, 1 = identical): {', '.join(parts)}")
    lines[-1:-1] = _tentative_lines(verdicts.get("tentative") or [])
    if verdicts.get("control"):
        lines.insert(-1, f"- {verdicts['control']}")
    cold = verdicts.get("cold_start")
    if isinstance(cold, dict) and cold.get("summary"):
        lines.insert(-1, f"- {cold['summary']}" + (f" {cold['test']}" if cold.get("test") else ""))
    return "\n".join(lines)


def _tentative_lines(tentative: list[dict[str, Any]]) -> list[str]:
    """The run's tentative segments (``verdicts.tentative``), as the report names them."""
    if not tentative:
        return []
    named = ", ".join(f"{t['name']} ({t['stability']:.2f})" for t in tentative)
    return [f"- tentative segments (stability below {TENTATIVE:g}; they dissolve or merge when the users are "
            f"resampled): {named}"]  # fmt: skip


def report_link(run_dir: Path, base_url: str | None = None) -> tuple[str, str]:
    """(URL of the run's report, a sentence saying where it is served), in this order of preference:

    1. ``base_url`` (``report.base_url`` of the run's configuration): the public URL of ``output_dir``
       (nginx, a shared drive's web server);
    2. ``SEGFLOW_REPORT_BASE_URL``: set by the operator, or by ``segflow serve`` for the runs folder it serves over
       HTTP (then only for runs in that folder, ``SEGFLOW_REPORT_BASE_DIR``);
    3. a ``file://`` URL, which only a browser on the machine that ran it opens, and not from the Prefect UI.
    """
    run_dir = Path(run_dir).resolve()
    tail = f"{quote(run_dir.name)}/report/index.html"
    if base_url:
        return f"{base_url.rstrip('/')}/{tail}", "served at report.base_url"
    env_url = os.environ.get(BASE_URL_ENV)
    served_dir = os.environ.get(BASE_DIR_ENV)
    if env_url and (not served_dir or Path(served_dir).resolve() == run_dir.parent):
        return f"{env_url.rstrip('/')}/{tail}", f"served at {BASE_URL_ENV}"
    return (run_dir / "report" / "index.html").as_uri(), (
        "a file:// link: the last resort, since neither report.base_url nor an HTTP server of the runs folder "
        "(segflow serve) is set up for this run. It opens only in a browser on the machine that ran it (copy it into "
        "the address bar; browsers refuse it from the Prefect UI). See docs/OPERATIONS.md, serving reports")  # fmt: skip


def publish_artifacts(run_dir: str | Path) -> None:
    """Attach the summary, the segment table and the report link to the current flow run."""
    run_dir = Path(run_dir)
    run = load_run_folder(run_dir)
    assert run.segments is not None, "a RunFolder read from a folder has segments.parquet (load_run requires it)"
    create_markdown_artifact(key="segflow-summary", markdown=summary_markdown(run_dir), description="run summary")
    table = [
        {"segment": int(r["segment_id"]), "name": r["name"], "size": int(r["size"]),
         "share": round(float(r["share"]), 4), "top categories": ", ".join(r["top_categories"][:3]),
         "keywords": ", ".join(r["keywords"][:5])}
        for r in run.segments.iter_rows(named=True)
    ]  # fmt: skip
    create_table_artifact(key="segflow-segments", table=json.loads(json.dumps(table)), description="segments")
    link, where = report_link(run_dir, (run.config.get("report") or {}).get("base_url") or None)
    create_link_artifact(key="segflow-report", link=link, link_text="segment report",
                         description=f"HTML report of this run ({where})")  # fmt: skip


def _seg(sid: Any, name: Any) -> str:
    if sid is None:
        return "–"
    return "outliers" if sid == -1 else f"{sid} · {name}" if name else str(sid)


def _num(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def comparison_markdown(result: dict[str, Any], *, max_drift: int = 15) -> str:
    """:func:`segmentation.compare.compare_runs`'s result as markdown: summary, segment matching, metric drift."""
    a, b = Path(result["run_a"]).name, Path(result["run_b"]).name
    lines = ["# What changed since the previous run", "", f"Previous run `{a}`, this run `{b}`.", ""]
    lines += [f"- {s}" for s in result.get("summary", [])]
    lines += ["", "## Segment matching", "",
              "Segments are matched by the users they share (Jaccard overlap, one-to-one); – means no match: "
              "a segment that is new or gone.", "",
              "| previous segment | this run's segment | overlap (Jaccard) | size before | size now | size change "
              "| RMSE before | RMSE now |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for m in result.get("matches", []):
        lines.append(" | ".join([
            "", _seg(m["segment_a"], m["name_a"]), _seg(m["segment_b"], m["name_b"]), _num(m["jaccard"], 2),
            str(m["size_a"]), str(m["size_b"]), f"{m['size_change']:+d}", _num(m["rmse_a"], 4), _num(m["rmse_b"], 4), "",
        ]).strip())  # fmt: skip
    drift = [d for d in result.get("metric_drift", []) if isinstance(d.get("change"), int | float)
             and not d["metric"].startswith("fairness.")  # a copy of rating.*.fairness and ranking.*.fairness
             and ".segment_id." not in d["metric"]]  # by segment id: ids of two runs differ (see the matching)  # fmt: skip
    changed = [d for d in drift if d["change"] != 0]
    changed.sort(key=lambda d: -abs(d["change"]) / max(abs(d["a"]), abs(d["b"]), 1e-12))
    lines += ["", "## Metric drift", ""]
    if not changed:
        lines.append(f"No metric changed ({len(drift)} compared)." if drift else "No metrics to compare.")
    else:
        lines += [f"The {min(max_drift, len(changed))} largest relative changes of {len(changed)} changed metrics "
                  f"({len(drift) - len(changed)} unchanged):", "",
                  "| metric | previous | this run | change |", "| --- | ---: | ---: | ---: |"]  # fmt: skip
        for d in changed[:max_drift]:
            lines.append(f"| `{d['metric']}` | {d['a']:.4g} | {d['b']:.4g} | {d['change']:+.4g} |")
    return "\n".join(lines)


def compare_with_previous(output_dir: str | Path, run_dir: str | Path) -> dict[str, Any] | None:
    """Attach the run's comparison with the previous complete run in ``output_dir`` (``comparison.json``, written
    while publishing, the one its report shows) as the ``segflow-comparison`` markdown artifact; None (and a note
    artifact) when the run has none: the first run in ``output_dir``, or the comparison failed while publishing
    (the run's log says why)."""
    result = load_run_folder(run_dir).comparison
    if result is not None:
        create_markdown_artifact(key="segflow-comparison", markdown=comparison_markdown(result),
                                 description=f"segments and metrics compared with run {Path(result['run_a']).name}")  # fmt: skip
        return result
    logger.info("run %s holds no comparison with an earlier run in %s", Path(run_dir).name, output_dir)
    create_markdown_artifact(key="segflow-comparison", markdown="# What changed since the previous run\n\n"
                             f"This run holds no comparison with an earlier run in `{output_dir}`: it is the first "
                             "complete run there, or comparing failed while publishing (see the run's log).",
                             description="comparison with the previous run")  # fmt: skip
    return None
