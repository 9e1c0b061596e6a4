"""A complete run folder, read back whole: the one contract between computing and presenting.

The run writes its data files (:mod:`segmentation.runs`: ``manifest.json``, ``metrics.json`` with the verdicts,
``users.parquet``, ``segments.parquet``, ...), the comparison with the previous run (``comparison.json``) and,
with :func:`write_run_details`, what presenting needs beyond them (``report_input.json``: the full segment
profiles, the per-segment model report, what to recommend to each segment, neighbouring segments, the category
lift table, the all-user rating summary, the title and the configuration as JSON). :func:`load_run_folder` reads
all of it into one typed :class:`RunFolder`; the report, ``segflow show``, ``segflow report RUN_DIR`` and the
Prefect artifacts read runs through it only, so any complete run can be presented again.
"""

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from segmentation._errors import DataError
from segmentation.describe import AttributeProfile, SegmentProfile
from segmentation.runs import load_run, write_json
from segmentation.verdicts import models_by_segment, run_verdicts

__all__ = ["COMPARISON", "DETAILS", "ColdStartGate", "ColdStartResult", "RunFolder", "load_run_folder", "rating_summary",
           "write_run_details"]  # fmt: skip

DETAILS = "report_input.json"
"""The run-folder file with what presenting needs that the data files do not hold (schema: :func:`write_run_details`)."""
COMPARISON = "comparison.json"
"""The comparison with the previous complete run (:func:`segmentation.compare.compare_runs`), when there was one."""
DETAILS_VERSION = 1
_DETAILS_KEYS = ("title", "run_id", "config", "profiles")
_USERS_COLUMNS = ("user_id", "segment_id", "membership", "x", "y")
_CATEGORY_LIFT = {"segment_id": pl.Int32, "category": pl.String, "lift": pl.Float64, "share": pl.Float64}


def _pair(c: Any) -> tuple[float, float] | None:
    return (float(c[0]), float(c[1])) if isinstance(c, list | tuple) and len(c) == 2 and None not in c else None


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


@dataclass(frozen=True)
class ColdStartGate:
    """The cold-start gate for one k (``metrics.json`` → ``cold_start.by_k``), on the simulated new users.

    Attributes:
        k: most train ratings of the users it covers (those above the previous k).
        used: ``segment``, ``all-users`` or ``global``: what the sparse users under this k are predicted with.
        n_users: simulated new users.
        rmse: validation RMSE of ``global``, ``all_users``, ``segment`` and ``random_partition``.
        changes: RMSE change (second minus first) and its interval: ``segment_vs_global``,
            ``segment_vs_all_users``, ``all_users_vs_global``, ``random_partition_vs_all_users``.
        per_segment: segment id -> (simulated users placed there, RMSE change of the segment prior against the
            global model, its interval or None when too few users to judge).
        test: the run's sparse test users under this k: ``n_users``, ``rmse_global``, ``rmse_cold_start``,
            ``rmse_change``, ``ci`` (or None in a run without test figures).
    """

    k: int
    used: str
    n_users: int
    rmse: dict[str, float | None]
    changes: dict[str, tuple[float | None, tuple[float, float] | None]]
    per_segment: dict[int, tuple[int, float | None, tuple[float, float] | None]]
    test: dict[str, Any] | None = None


@dataclass(frozen=True)
class ColdStartResult:
    """``metrics.json`` → ``cold_start``, typed: what the cold-start stage chose per k and how the sparse test users
    fared (:func:`segmentation.evaluate.evaluate_cold_start`). ``skipped`` holds the reason when it did not run;
    ``rating_skipped`` when only the rating half did not (implicit feedback). ``ranking``: the top-k lists' half
    (``cold_start.ranking``: ``primary``, ``by_k``, ``test``, ...), None in runs written before it."""

    skipped: str | None
    ks: list[int]
    gates: list[ColdStartGate]
    sparse_users: int
    covered_users: int
    test: dict[str, Any] | None
    ranking: dict[str, Any] | None = None
    rating_skipped: str | None = None

    @classmethod
    def from_metrics(cls, metrics: Any) -> "ColdStartResult | None":
        """The typed block, or None when the run has none (runs written before the stage existed)."""
        raw = metrics.get("cold_start") if isinstance(metrics, dict) else None
        if not isinstance(raw, dict):
            return None
        test = raw.get("test") if isinstance(raw.get("test"), dict) else None
        gates = []
        for key, d in (raw.get("by_k") or {}).items():
            if not isinstance(d, dict):
                continue
            changes = {n: (_float(_get_dict(d, n).get("rmse_change")), _pair(_get_dict(d, n).get("ci")))
                       for n in ("segment_vs_global", "segment_vs_all_users", "all_users_vs_global",
                                 "random_partition_vs_all_users")}  # fmt: skip
            per_segment = {int(sid): (int(e.get("n_users") or 0), _float(e.get("rmse_change")), _pair(e.get("ci")))
                           for sid, e in (d.get("per_segment") or {}).items() if isinstance(e, dict)}  # fmt: skip
            gates.append(ColdStartGate(k=int(d.get("k", key)), used=str(d.get("used")), n_users=int(d.get("n_users") or 0),
                                       rmse={n: _float(v) for n, v in (d.get("rmse") or {}).items()},
                                       changes=changes, per_segment=per_segment,
                                       test=(test.get("by_k") or {}).get(str(key)) if test else None))  # fmt: skip
        return cls(skipped=raw.get("skipped"), ks=[int(k) for k in raw.get("ks") or []], gates=gates,
                   sparse_users=int(raw.get("sparse_users") or 0), covered_users=int(raw.get("covered_users") or 0),
                   test=test, ranking=raw.get("ranking") if isinstance(raw.get("ranking"), dict) else None,
                   rating_skipped=raw.get("rating_skipped"))  # fmt: skip


def _get_dict(d: dict, key: str) -> dict:
    v = d.get(key)
    return v if isinstance(v, dict) else {}


@dataclass(frozen=True)
class RunFolder:
    """Everything a run shows, as read from its folder (or built in memory for a preview or a test).

    Attributes:
        title: the report's title (``report.title``).
        run_id: the run folder's name.
        config: the run's configuration as plain JSON data (``PipelineConfig.model_dump(mode="json")``).
        metrics: ``metrics.json`` (sections data, segmentation, rating, ranking, ranking_sample, beyond_accuracy,
            fairness, cold_start (typed: :attr:`cold_start`), models, timings, versions, verdicts).
        assignments: ``users.parquet`` (``segmentation.cluster.ASSIGNMENTS``: user_id, segment_id, membership,
            nearest_segment, nearest_membership, soft_assigned, x, y).
        profiles: one :class:`SegmentProfile` per segment, outliers (-1) included when present.
        segment_models: per-segment model report (segment_id, strategy, n_train, n_valid, valid_rmse_global,
            valid_rmse_segment, kept), or None.
        recommendations: segment_id -> list of (item_id, title, score) to recommend to that segment.
        neighbours: segment_id -> list of (segment_id, cosine similarity of centroids), nearest first.
        category_lift: frame segment_id, category, lift, share (for the heatmap); may be None.
        comparison: ``comparison.json`` (the comparison with the previous run), or None.
        rating_summary: all users' mean rating, ratings per user and rating histogram (:func:`rating_summary`),
            or None (implicit feedback).
        segments: ``segments.parquet`` (``SEGMENTS``), or None for a bundle built in memory.
        manifest: ``manifest.json`` (run id, seed, config hash, versions, device, schema version).
        path: the run folder, or None for a bundle built in memory.
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
    rating_summary: dict[str, Any] | None = None
    segments: pl.DataFrame | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def verdicts(self) -> dict[str, Any]:
        """``metrics.json``'s ``verdicts`` (:func:`segmentation.verdicts.run_verdicts`).

        A bundle without them (built in memory, or a run written before runs stored them) gets them worked out
        by the same function from its metrics, profiles and per-segment model rows (``metrics["models"]["segments"]``
        as the run does, else the model report).
        """
        stored = self.metrics.get("verdicts") if isinstance(self.metrics, dict) else None
        if isinstance(stored, dict):
            return stored
        models = self.metrics.get("models") if isinstance(self.metrics, dict) else None
        rows = None if isinstance(models, dict) and "segments" in models else self.models_by_segment()
        return run_verdicts(self.metrics, self.config, [(p.segment_id, p.name, p.stability) for p in self.profiles],
                            rows)  # fmt: skip

    @property
    def cold_start(self) -> ColdStartResult | None:
        """``metrics.json``'s ``cold_start`` block, typed; None for a run written before the cold-start stage."""
        return ColdStartResult.from_metrics(self.metrics)

    def models_by_segment(self) -> dict[int, dict[str, Any]]:
        """The per-segment model rows by segment id: the model report, else ``metrics["models"]["segments"]``."""
        frame = self.segment_models
        if isinstance(frame, pl.DataFrame) and "segment_id" in frame.columns:
            return models_by_segment(frame.to_dicts())
        models = self.metrics.get("models") if isinstance(self.metrics, dict) else None
        return models_by_segment(models.get("segments") if isinstance(models, dict) else None)


def rating_summary(user_ratings: pl.DataFrame | None) -> dict[str, Any] | None:
    """All users' mean rating, ratings per user and rating histogram, from train ratings (None without them)."""
    if not isinstance(user_ratings, pl.DataFrame) or not user_ratings.height:
        return None
    hist = user_ratings["rating"].round(0).value_counts(normalize=True, name="p").sort("rating")
    return {"mean_rating": float(user_ratings["rating"].mean()),  # type: ignore[arg-type]
            "mean_activity": user_ratings.height / max(user_ratings["user_id"].n_unique(), 1),
            "hist": {f"{k:g}": float(p) for k, p in zip(hist["rating"], hist["p"])}}  # fmt: skip


def write_run_details(folder: Path | str, data: RunFolder) -> Path:
    """Write ``report_input.json`` into ``folder``: what :class:`RunFolder` holds beyond the run's data files.

    Schema (``format_version`` 1): ``title``, ``run_id``, ``config`` (JSON), ``profiles`` (every
    :class:`SegmentProfile` field), ``segment_models`` (rows or null), ``recommendations`` and ``neighbours``
    (by segment id as a string), ``category_lift`` (rows or null), ``rating_summary`` (or null).
    """
    models = data.segment_models
    payload = {
        "format_version": DETAILS_VERSION,
        "title": data.title,
        "run_id": data.run_id,
        "config": data.config,
        "profiles": [asdict(p) for p in data.profiles],
        "segment_models": models.to_dicts() if isinstance(models, pl.DataFrame) else None,
        "recommendations": {str(k): [list(r) for r in v] for k, v in data.recommendations.items()},
        "neighbours": {str(k): [list(n) for n in v] for k, v in data.neighbours.items()},
        "category_lift": data.category_lift.to_dicts() if isinstance(data.category_lift, pl.DataFrame) else None,
        "rating_summary": data.rating_summary,
    }
    path = Path(folder) / DETAILS
    write_json(path, payload)
    return path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not readable JSON ({err}); rerun the run to write it again") from None


def load_run_folder(path: Path | str, *, allow_partial: bool = False) -> RunFolder:
    """Read a complete run folder (or ``runs/latest``) into a :class:`RunFolder`.

    Args:
        path: the run folder.
        allow_partial: read a ``.partial-*`` folder (the run presenting itself before it is published).

    Raises:
        DataError: the folder is unfinished or not a segflow run, a file is missing, unreadable or lacks a part
            (the message names the file and what is missing), or it was written by another schema version.
    """
    run = load_run(path, allow_partial=allow_partial)
    missing_cols = [c for c in _USERS_COLUMNS if c not in run.users.columns]
    if missing_cols:
        raise DataError(f"{run.path / 'users.parquet'} lacks the column(s) {missing_cols} of the users table "
                        "(ASSIGNMENTS); rerun the run to write it again")  # fmt: skip
    details_file = run.path / DETAILS
    if not details_file.is_file():
        raise DataError(f"run folder {run.path} has no {DETAILS}: it was written by a segflow older than "
                        "'segflow report' and its report cannot be rendered again; rerun it instead")  # fmt: skip
    raw = _read_json(details_file)
    if not isinstance(raw, dict) or raw.get("format_version") != DETAILS_VERSION:
        version = raw.get("format_version") if isinstance(raw, dict) else None
        raise DataError(f"{details_file} has format version {version!r}; this segflow reads version "
                        f"{DETAILS_VERSION}")  # fmt: skip
    absent = [k for k in _DETAILS_KEYS if k not in raw]
    if absent:
        raise DataError(f"{details_file} lacks {absent}; rerun the run to write it again")
    comparison_file = run.path / COMPARISON
    comparison = _read_json(comparison_file) if comparison_file.is_file() else None
    profiles = [replace(SegmentProfile(**{**p, "demographics": []}),
                        demographics=[AttributeProfile(**a) for a in p.get("demographics", [])])
                for p in raw["profiles"]]  # fmt: skip
    return RunFolder(
        title=raw["title"], run_id=raw["run_id"], config=_current_keys(raw["config"]), metrics=run.metrics,
        assignments=run.users,
        profiles=profiles,
        segment_models=pl.DataFrame(raw["segment_models"]) if raw.get("segment_models") is not None else None,
        recommendations={int(k): [tuple(r) for r in v] for k, v in raw.get("recommendations", {}).items()},
        neighbours={int(k): [(int(n[0]), float(n[1])) for n in v] for k, v in raw.get("neighbours", {}).items()},
        category_lift=pl.DataFrame(raw["category_lift"], schema=_CATEGORY_LIFT)
        if raw.get("category_lift") is not None else None,
        comparison=comparison, rating_summary=raw.get("rating_summary"), segments=run.segments,
        manifest=run.manifest, path=run.path,
    )  # fmt: skip


def _current_keys(config: Any) -> Any:
    """A run's stored configuration with the flat predictor keys of segflow 0.1 under their nested names.

    A run written before the predictor section was nested (``predictor.finetune``, ``predictor.embedding_size``,
    ...) then shows its settings under the names a new run uses. Silently: the run is read, not configured.
    """
    if not isinstance(config, dict) or not isinstance(config.get("predictor"), dict):
        return config
    from segmentation._config_legacy import migrate_predictor_keys

    try:
        return {**config, "predictor": migrate_predictor_keys(config["predictor"], warn=False)}
    except ValueError:  # a flat key beside its nested one: show what was stored
        return config
