"""What the report is rendered from: one typed bundle, filled by the pipeline or read back from a run folder."""

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from segmentation.describe import SegmentProfile

__all__ = ["ReportInput"]


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
        user_ratings: frame user_id, rating (train ratings), for per-segment rating distributions; may be None.
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
