"""The library's part of publishing a run: write every file of the run folder but the report.

:func:`write_run` writes the data files, indexes, models, ``metrics.json`` (with the verdicts computed once,
:func:`segmentation.verdicts.run_verdicts`), ``report_input.json`` and ``comparison.json`` into a
:class:`segmentation.runs.RunWriter`'s partial folder. The flow's publish task (``flows/publish.py``) then renders
the report from that folder alone, through :func:`segmentation.run_folder.load_run_folder`, and publishes it.
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
from segmentation.rank.base import Rankings
from segmentation.represent import UserSpace
from segmentation.runs import json_safe, summarise_data, summarise_segmentation, versions, write_outputs

__all__ = ["write_run"]

logger = logging.getLogger(__name__)


def _compare_with_previous(output_dir: Path, writer) -> dict | None:
    """Compare the run being written with the newest complete run before it (for the report's comparison page).

    Both runs are read through :func:`segmentation.run_folder.load_run_folder` (so the run's own files must be
    written first). Written to ``comparison.json`` in the run folder; a failed comparison (an unreadable previous
    run, or one of an older schema) only warns: the run itself is fine.
    """
    from segmentation.compare import compare_runs
    from segmentation.run_folder import COMPARISON, load_run_folder
    from segmentation.runs import previous_run

    previous = previous_run(output_dir, writer.final_path)
    if previous is None:
        return None
    try:
        result = json_safe(compare_runs(previous, load_run_folder(writer.path, allow_partial=True)))
    except (OSError, ValueError, KeyError, pl.exceptions.PolarsError) as err:  # DataError is a ValueError
        logger.warning("comparison with the previous run %s failed: %s", previous.name, err)
        return None
    result["run_b"] = str(writer.final_path)
    (writer.path / COMPARISON).write_text(json.dumps(result, indent=2))
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


def write_run(writer, config: PipelineConfig, dataset: Dataset, split: Split, segmentation: Segmentation,
              described: Described, items: Embeddings, users: Embeddings, indexes: Indexes, global_model,
              segment_models, rankings: Rankings, metrics: dict, encoder_stats: dict, timings: dict,
              stability: dict | None = None, space: UserSpace | None = None) -> None:  # fmt: skip
    """Write every file of the run folder but the report into ``writer``'s partial folder (a
    :class:`segmentation.runs.RunWriter` entered by the caller): data files, indexes, models, ``metrics.json``
    with the verdicts (:func:`segmentation.verdicts.run_verdicts`), ``report_input.json``
    (:func:`segmentation.run_folder.write_run_details`) and ``comparison.json`` (against the previous run).

    The flow's publish task (``flows/publish.py``) then renders the report from the folder and publishes it.
    """
    from segmentation.run_folder import RunFolder, rating_summary, write_run_details
    from segmentation.verdicts import run_verdicts

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
    config_json = config.model_dump(mode="json")
    full["verdicts"] = run_verdicts(
        full, config_json, [(p.segment_id, p.name, p.stability) for p in described.profiles]
    )
    write_outputs(writer.path, config=config, run_id=writer.run_id, segmentation=segmentation,
                  profiles=described.profiles, items=items, users=users, indexes=indexes, metrics=full,
                  device=str(encoder_stats.get("device")), space=space)  # fmt: skip
    if global_model is not None:  # implicit feedback trains no rating model
        global_model.save(writer.path / "models" / "global")
        segmented = segment_models.models
        shared = _same_global_model(getattr(segmented, "global_model", None), global_model)
        segmented.save(writer.path / "models" / "segments",
                       **({"global_model_dir": writer.path / "models" / "global"} if shared else {}))  # fmt: skip
    write_run_details(writer.path, RunFolder(
        title=config.report.title, run_id=writer.run_id, config=config_json, metrics=full,
        assignments=segmentation.assignments, profiles=described.profiles,
        segment_models=getattr(segment_models.models, "report_", None) if segment_models is not None else None,
        recommendations=rankings.by_segment, neighbours=segment_neighbours(indexes),
        category_lift=described.category_lift,
        rating_summary=None if dataset.implicit else rating_summary(split.train_full.select("user_id", "rating")),
    ))  # fmt: skip
    _compare_with_previous(config.output_dir, writer)
