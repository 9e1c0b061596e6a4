"""Prefect artifacts of a finished run: a markdown summary, a segment table and a link to the report."""

import json
from pathlib import Path

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from segmentation.runs import load_run


def _fmt(x: object, nd: int = 4) -> str:
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def summary_markdown(run_dir: Path) -> str:
    """The run's headline figures as markdown (also printed by the CLI)."""
    run = load_run(run_dir)
    m = run.metrics
    rating = m.get("rating", {})
    gain = rating.get("gain", {})
    seg = m.get("segmentation", {})
    lines = [
        f"# segflow run {run.path.name}",
        "",
        f"- data: {m['data']['name']} ({m['data']['n_users']} users, {m['data']['n_items']} items, "
        f"{m['data']['n_interactions']} interactions)",
        f"- segments: **{seg.get('n_segments')}**, outliers {100 * seg.get('noise_share', 0):.1f} %",
        f"- RMSE global {_fmt(rating.get('global', {}).get('rmse'))}, segmented {_fmt(rating.get('segmented', {}).get('rmse'))}"
        + (f" (change {_fmt(gain.get('rmse_change'))}, 95 % CI {[round(c, 4) for c in gain.get('ci', [])]})" if gain else ""),
        f"- report: `{run.path / 'report' / 'index.html'}`",
    ]
    return "\n".join(lines)


def publish_artifacts(run_dir: str | Path) -> None:
    """Attach the summary, the segment table and the report link to the current flow run."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    create_markdown_artifact(key="segflow-summary", markdown=summary_markdown(run_dir), description="run summary")
    table = [
        {"segment": int(r["segment_id"]), "name": r["name"], "size": int(r["size"]),
         "share": round(float(r["share"]), 4), "top categories": ", ".join(r["top_categories"][:3]),
         "keywords": ", ".join(r["keywords"][:5])}
        for r in run.segments.iter_rows(named=True)
    ]  # fmt: skip
    create_table_artifact(key="segflow-segments", table=json.loads(json.dumps(table)), description="segments")
    create_link_artifact(key="segflow-report", link=(run_dir / "report" / "index.html").resolve().as_uri(),
                         link_text="segment report", description="HTML report of this run")  # fmt: skip
