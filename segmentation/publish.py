"""Publishing a run: write the run folder (data, indexes, models, metrics, report) and swap ``latest``.

Moved as it was out of the old ``segmentation/stages.py`` when the stages went to the modules that own them;
the run-folder work of issue 12 moves rendering to ``flows`` and the run comparison into the library.
"""

import json
import logging
from pathlib import Path

import numpy as np
import polars as pl

from embeddings.encoder import Embeddings
from embeddings.index import Indexes, segment_neighbours
from segmentation.cluster import Segmentation
from segmentation.config import PipelineConfig
from segmentation.data import Dataset, Split
from segmentation.describe import Described, with_stability
from segmentation.rank import Rankings
from segmentation.runs import json_safe, summarise_data, summarise_segmentation, versions, write_outputs

__all__ = ["publish"]

logger = logging.getLogger(__name__)


def _compare_with_previous(output_dir: Path, writer) -> dict | None:
    """Compare the run being written with the newest complete run before it (for the report's comparison page).

    Written to ``comparison.json`` in the run folder. A failed comparison only warns: the run itself is fine.
    """
    from reports.compare import compare_runs
    from segmentation.runs import previous_run

    previous = previous_run(output_dir, writer.final_path)
    if previous is None:
        return None
    try:
        result = json_safe(compare_runs(previous, writer.path))
    except (OSError, ValueError, KeyError, pl.exceptions.PolarsError) as err:
        logger.warning("comparison with the previous run %s failed: %s", previous.name, err)
        return None
    result["run_b"] = str(writer.final_path)
    (writer.path / "comparison.json").write_text(json.dumps(result, indent=2))
    return result


def _same_global_model(a, b) -> bool:
    """Whether two global predictors hold the same parameters (then a run stores them once, in models/global)."""
    if a is None or b is None:
        return False
    if a is b:
        return True
    try:
        sa, sb = [c.state() for c in a.components_], [c.state() for c in b.components_]
        return _same_states(a, b, sa, sb)
    except (AttributeError, TypeError, ValueError):  # not a GlobalPredictor, or meta holding arrays
        return False


def _same_states(a, b, sa: list, sb: list) -> bool:
    same_arrays = all(xa.keys() == xb.keys() and all(np.array_equal(xa[k], xb[k]) for k in xa)
                      for (xa, _), (xb, _) in zip(sa, sb))  # fmt: skip
    return (len(sa) == len(sb) and same_arrays and [m for _, m in sa] == [m for _, m in sb]
            and a.user_vocab_.ids.tolist() == b.user_vocab_.ids.tolist()
            and a.item_vocab_.ids.tolist() == b.item_vocab_.ids.tolist()
            and np.array_equal(np.asarray(a.weights_), np.asarray(b.weights_)) and a.config == b.config
            and a.seed == b.seed and tuple(a.rating_range_) == tuple(b.rating_range_))  # fmt: skip


def publish(config: PipelineConfig, dataset: Dataset, split: Split, segmentation: Segmentation, described: Described,
            items: Embeddings, users: Embeddings, indexes: Indexes, global_model, segment_models, rankings: Rankings,
            metrics: dict, encoder_stats: dict, timings: dict, stability: dict | None = None) -> str:  # fmt: skip
    """Write the run folder (data, indexes, models, metrics, report) and publish it as ``latest``."""
    from reports import render_report
    from reports.model import ReportInput, load_report_input, save_report_input
    from segmentation.runs import RunWriter

    writer = RunWriter(config.output_dir, keep_last=config.output.keep_last)
    full = {
        "run_id": writer.run_id,
        "data": summarise_data(dataset, split),
        "segmentation": {
            **summarise_segmentation(segmentation),
            **metrics.get("segmentation_quality", {}),
            "selection": segmentation.selection.to_dict() if segmentation.selection is not None else None,
            "stability": stability,
        },
        **{k: v for k, v in metrics.items() if k != "segmentation_quality"},
        "models": {"global": getattr(global_model, "summary", lambda: {})() if global_model is not None else None,
                   "segments": segment_models.models.report_.to_dicts()
                   if segment_models is not None and hasattr(segment_models.models, "report_") else []},
        "timings": {**timings, "embedding": encoder_stats, "rankers": rankings.seconds},
        "versions": versions(),
    }  # fmt: skip
    full = json_safe(full)
    described = Described(with_stability(described.profiles, stability), described.category_lift)
    with writer:
        write_outputs(writer.path, config=config, run_id=writer.run_id, segmentation=segmentation,
                      profiles=described.profiles, items=items, users=users, indexes=indexes, metrics=full,
                      device=str(encoder_stats.get("device")))  # fmt: skip
        if global_model is not None:  # implicit feedback trains no rating model
            global_model.save(writer.path / "models" / "global")
            segmented = segment_models.models
            shared = _same_global_model(getattr(segmented, "global_model", None), global_model)
            segmented.save(writer.path / "models" / "segments",
                           **({"global_model_dir": writer.path / "models" / "global"} if shared else {}))  # fmt: skip
        comparison = _compare_with_previous(config.output_dir, writer)
        save_report_input(ReportInput(
            title=config.report.title, run_id=writer.run_id, config=config.model_dump(mode="json"), metrics=full,
            assignments=segmentation.assignments, profiles=described.profiles,
            segment_models=getattr(segment_models.models, "report_", None) if segment_models is not None else None,
            recommendations=rankings.by_segment,
            neighbours=segment_neighbours(indexes), category_lift=described.category_lift,
            user_ratings=None if dataset.implicit else split.train_full.select("user_id", "rating"),
            comparison=comparison,
        ), writer.path)  # fmt: skip
        # the report reads the run folder only, exactly as `segflow report RUN_DIR` does later
        render_report(load_report_input(writer.path, allow_partial=True), writer.path / "report")
    return str(writer.final_path)
