"""What the report is rendered from: one typed bundle, read back from a run folder.

A run writes what the report needs beyond its data files into ``report_input.json``
(:func:`save_report_input`); :func:`load_report_input` rebuilds the :class:`ReportInput` from the folder alone
(``metrics.json``, ``users.parquet``, ``comparison.json`` and that file), so the run renders its report from the
folder, and ``segflow report RUN_DIR`` renders any complete run again.
"""

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from segmentation._errors import DataError
from segmentation.describe import AttributeProfile, SegmentProfile

__all__ = ["REPORT_INPUT", "ReportInput", "load_report_input", "save_report_input"]

REPORT_INPUT = "report_input.json"
"""The run-folder file with the report's inputs that the data files do not hold."""
_FORMAT_VERSION = 1
_CATEGORY_LIFT = {"segment_id": pl.Int32, "category": pl.String, "lift": pl.Float64, "share": pl.Float64}


@dataclass(frozen=True)
class ReportInput:
    """Everything a report shows.

    Attributes:
        title: page title.
        run_id: the run folder's name.
        config: the run's configuration as plain JSON data (``PipelineConfig.model_dump(mode="json")``).
        metrics: the run's ``metrics.json`` content (sections data, segmentation, rating, ranking,
            beyond_accuracy, fairness, timings, versions ...).
        assignments: ``segmentation.cluster.ASSIGNMENTS`` frame (user_id, segment_id, membership,
            nearest_segment, nearest_membership, soft_assigned, x, y).
        profiles: one :class:`SegmentProfile` per segment, outliers (-1) included when present.
        segment_models: per-segment model report (segment_id, strategy, n_train, n_valid,
            valid_rmse_global, valid_rmse_segment, kept), or None.
        recommendations: segment_id -> list of (item_id, title, score) to recommend to that segment.
        neighbours: segment_id -> list of (segment_id, cosine similarity of centroids), nearest first.
        category_lift: frame segment_id, category, lift, share (for the heatmap); may be empty.
        comparison: result of comparing with the previous run, or None.
        user_ratings: frame user_id, rating (train ratings), for the all-user rating figures; may be None.
        rating_summary: those figures already computed (``reports._segments.rating_summary``): what a run
            folder keeps instead of every train rating.
    """

    title: str
    run_id: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    assignments: pl.DataFrame
    profiles: list[SegmentProfile]
    segment_models: pl.DataFrame | None = None
    recommendations: dict[int, list[tuple[str, str, float]]] = field(default_factory=dict)
    neighbours: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    category_lift: pl.DataFrame | None = None
    comparison: dict[str, Any] | None = None
    user_ratings: pl.DataFrame | None = None
    rating_summary: dict[str, Any] | None = None


def save_report_input(data: ReportInput, run_dir: Path | str) -> Path:
    """Write ``report_input.json`` into ``run_dir``: the report's inputs that the run's data files do not hold."""
    from reports._segments import rating_summary
    from segmentation.runs import write_json

    models = data.segment_models
    payload = {
        "format_version": _FORMAT_VERSION,
        "title": data.title,
        "run_id": data.run_id,
        "config": data.config,
        "profiles": [asdict(p) for p in data.profiles],
        "segment_models": models.to_dicts() if isinstance(models, pl.DataFrame) else None,
        "recommendations": {str(k): [list(r) for r in v] for k, v in data.recommendations.items()},
        "neighbours": {str(k): [list(n) for n in v] for k, v in data.neighbours.items()},
        "category_lift": data.category_lift.to_dicts() if isinstance(data.category_lift, pl.DataFrame) else None,
        "rating_summary": data.rating_summary or rating_summary(data.user_ratings),
    }
    path = Path(run_dir) / REPORT_INPUT
    write_json(path, payload)
    return path


def load_report_input(run_dir: Path | str, *, allow_partial: bool = False) -> ReportInput:
    """The :class:`ReportInput` of a complete run folder, read from its files alone.

    Args:
        run_dir: the run folder.
        allow_partial: read a ``.partial-*`` folder (the run rendering its own report before publishing).

    Raises:
        DataError: the folder is not a complete run, or was written before runs kept ``report_input.json``.
    """
    from segmentation.runs import load_run

    run = load_run(run_dir, allow_partial=allow_partial)
    path = run.path / REPORT_INPUT
    if not path.is_file():
        raise DataError(f"run folder {run.path} has no {REPORT_INPUT}: it was written by a segflow older than "
                        "'segflow report' and its report cannot be rendered again; rerun it instead")  # fmt: skip
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not readable JSON ({err}); rerun the run to write it again") from None
    if raw.get("format_version") != _FORMAT_VERSION:
        raise DataError(f"{path} has format version {raw.get('format_version')!r}; this segflow reads version "
                        f"{_FORMAT_VERSION}")  # fmt: skip
    comparison_file = run.path / "comparison.json"
    comparison = json.loads(comparison_file.read_text(encoding="utf-8")) if comparison_file.is_file() else None
    profiles = [replace(SegmentProfile(**{**p, "demographics": []}),
                        demographics=[AttributeProfile(**a) for a in p.get("demographics", [])])
                for p in raw["profiles"]]  # fmt: skip
    return ReportInput(
        title=raw["title"], run_id=raw["run_id"], config=raw["config"], metrics=run.metrics, assignments=run.users,
        profiles=profiles,
        segment_models=pl.DataFrame(raw["segment_models"]) if raw.get("segment_models") is not None else None,
        recommendations={int(k): [tuple(r) for r in v] for k, v in raw.get("recommendations", {}).items()},
        neighbours={int(k): [(int(n[0]), float(n[1])) for n in v] for k, v in raw.get("neighbours", {}).items()},
        category_lift=pl.DataFrame(raw["category_lift"], schema=_CATEGORY_LIFT)
        if raw.get("category_lift") is not None else None,
        comparison=comparison, rating_summary=raw.get("rating_summary"),
    )  # fmt: skip
