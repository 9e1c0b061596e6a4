"""The flat ``predictor`` keys of segflow 0.1, renamed to the nested keys that replaced them (for one release), and
``predictor.max_dense_cells``, replaced by ``predictor.dense_budget_mib`` (MiB, like ``ranker.dense_budget_mib``).

Old config files, ``--set`` overrides, a Prefect deployment's parameters and the ``config`` of a saved model may
still carry them: :func:`migrate_predictor_keys` (called by ``PredictorConfig`` and by ``load_config`` before the
overrides) and :func:`override_paths` (for ``--set``) rename them, each with a logged warning naming the new keys.
Delete this module, its two imports in ``segmentation.config`` and the ``patternProperties`` there in the next
release.
"""

import logging
import math
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

__all__ = [
    "CONVERTED_PREDICTOR_KEYS",
    "LEGACY_PREDICTOR_KEYS",
    "REMOVED_PREDICTOR_KEYS",
    "migrate_predictor_keys",
    "override_paths",
]

logger = logging.getLogger("segmentation.config")  # the warnings come from reading a configuration


#: The flat keys of PredictorConfig before it was nested (segflow 0.1), each with the nested key(s) that took its
#: place. One flat key that several models read (epochs, reg, ...) maps to each of them, so an old file fits the
#: same models. Accepted with a logged deprecation warning for one release.
LEGACY_PREDICTOR_KEYS: dict[str, tuple[str, ...]] = {
    "embedding_size": ("mf.embedding_size", "svdpp.embedding_size"),
    "epochs": ("mf.epochs", "svdpp.epochs", "autorec.epochs"),
    "learning_rate": ("mf.learning_rate",),
    "reg": ("mf.reg", "svdpp.reg"),
    "bias_reg": ("mf.bias_reg", "svdpp.bias_reg"),
    "batch_size": ("mf.batch_size", "svdpp.batch_size"),
    "patience": ("mf.patience", "svdpp.patience", "autorec.patience"),
    "svdpp_learning_rate": ("svdpp.learning_rate",),
    "svdpp_time_bins": ("svdpp.time_bins",),
    "svdpp_user_day_bias": ("svdpp.user_day_bias",),
    "side_features": ("svdpp.side_features",),
    "autorec_hidden": ("autorec.hidden",),
    "autorec_reg": ("autorec.reg",),
    "autorec_learning_rate": ("autorec.learning_rate",),
    "autorec_batch_size": ("autorec.batch_size",),
    "knn_neighbors": ("knn.neighbors",),
    "knn_shrinkage": ("knn.shrinkage",),
    "blend_components": ("blend.components",),
    "blend_reg": ("blend.reg",),
    "finetune": ("per_segment.enabled",),
    "finetune_strategies": ("per_segment.strategies",),
    "segment_blend_reg": ("per_segment.blend_reg",),
    "finetune_epochs": ("per_segment.epochs",),
    "finetune_learning_rate": ("per_segment.learning_rate",),
    "finetune_reg": ("per_segment.reg",),
    "finetune_rank": ("per_segment.rank",),
    "gate_fraction": ("per_segment.gate_fraction",),
    "gate_level": ("per_segment.gate_level",),
    "gate_correction": ("per_segment.gate_correction",),
    "gate_bootstrap": ("per_segment.gate_bootstrap",),
    "min_segment_valid": ("per_segment.min_segment_valid",),
}

#: Flat PredictorConfig keys removed because no stage of a run reads them: they set up the optional
#: EncoderRegressor, which takes :class:`EncoderRegressorConfig`. Ignored with a logged warning for one release.
REMOVED_PREDICTOR_KEYS: dict[str, str] = {
    f"encoder_{name}": name
    for name in (
        "model",
        "epochs",
        "learning_rate",
        "head_learning_rate",
        "batch_size",
        "max_seq_length",
        "max_train_rows",
    )  # fmt: skip
}


def _cells_to_mib(cells: Any) -> int:
    """``predictor.max_dense_cells`` (cells of one table) as the MiB of that table in float64, rounded up."""
    if isinstance(cells, bool) or not isinstance(cells, int | float) or cells < 1 or cells != int(cells):
        raise ValueError(f"predictor.max_dense_cells (deprecated) must be a whole number of cells of at least 1 "
                         f"(given: {cells!r}); better, set predictor.dense_budget_mib")  # fmt: skip
    return max(1, math.ceil(int(cells) * 8 / 2**20))


#: Flat PredictorConfig keys replaced by a key in another unit: old key -> (new key, conversion, what the conversion
#: keeps). Read for one release with a logged warning naming the new key and the converted value.
CONVERTED_PREDICTOR_KEYS: dict[str, tuple[str, Callable[[Any], Any], str]] = {
    "max_dense_cells": (
        "dense_budget_mib", _cells_to_mib,
        "cells of one table, read as the MiB of that table in float64; the budget now counts every table and "
        "temporary a component holds while fitting, so the same number admits smaller tables",
    ),
}  # fmt: skip


def _is_legacy(key: str) -> bool:
    """Whether ``predictor.<key>`` is a flat key of segflow 0.1 or a key replaced by one in another unit."""
    return key in LEGACY_PREDICTOR_KEYS or key in REMOVED_PREDICTOR_KEYS or key in CONVERTED_PREDICTOR_KEYS


def migrate_predictor_keys(section: dict[str, Any], where: str = "predictor", *, warn: bool = True) -> dict[str, Any]:
    """A copy of a ``predictor`` mapping with the flat keys of segflow 0.1 moved to their nested places.

    Logs one deprecation warning naming each old key and its new key(s) (a key in another unit, such as
    ``max_dense_cells``, with its converted value); removed keys are dropped with a
    warning (``warn=False``: silently, for reading a stored run rather than a configuration). A flat key given
    beside one of its new keys is refused (which one was meant is unclear).

    Raises:
        ValueError: a flat key and its nested counterpart are both given.
    """
    legacy = [k for k in section if _is_legacy(k)]
    if not legacy:
        return section
    # sections as plain dicts (a section given as a model keeps only the fields set on it, so that a flat key
    # beside it is judged against what was given, not against defaults)
    out = {k: (v.model_dump(exclude_unset=True) if isinstance(v, BaseModel) else dict(v) if isinstance(v, dict) else v)
           for k, v in section.items() if k not in legacy}  # fmt: skip
    moved, dropped = [], []
    for key in legacy:
        value = section[key]
        if key in REMOVED_PREDICTOR_KEYS:
            dropped.append(f"predictor.{key}")
            continue
        if key in CONVERTED_PREDICTOR_KEYS:
            target, convert, meaning = CONVERTED_PREDICTOR_KEYS[key]
            if target in out:
                raise ValueError(f"predictor.{key} (deprecated, now predictor.{target}) and predictor.{target} are "
                                 f"both given; keep only predictor.{target}")  # fmt: skip
            out[target] = convert(value)
            moved.append(f"predictor.{key} = {value!r} -> predictor.{target} = {out[target]!r} ({meaning})")
            continue
        for new in LEGACY_PREDICTOR_KEYS[key]:
            sub, field = new.split(".")
            node = out.setdefault(sub, {})
            if not isinstance(node, dict):
                raise ValueError(f"predictor.{sub} must be a section (a table of settings), got {node!r}")
            if field in node:
                raise ValueError(f"predictor.{key} (deprecated, now predictor.{new}) and predictor.{new} are both "
                                 f"given; keep only predictor.{new}")  # fmt: skip
            node[field] = value
        moved.append(f"predictor.{key} -> " + ", ".join(f"predictor.{n}" for n in LEGACY_PREDICTOR_KEYS[key]))
    if moved and warn:
        logger.warning("%s: deprecated flat predictor keys (accepted for one release; rename them): %s", where,
                       "; ".join(moved))  # fmt: skip
    if dropped and warn:
        logger.warning("%s: %s ignored: no stage of a run reads it (the optional EncoderRegressor takes "
                       "segmentation.config.EncoderRegressorConfig); remove it", where, ", ".join(dropped))  # fmt: skip
    return out


def override_paths(parts: list[str], item: str) -> list[list[str]]:
    """Where an override's value goes: its own dotted path, or for a flat predictor key of segflow 0.1 the nested
    path(s) that took its place (logged as deprecated), or none for a removed key (logged)."""
    if len(parts) != 2 or parts[0] != "predictor" or not _is_legacy(parts[1]) or parts[1] in CONVERTED_PREDICTOR_KEYS:
        return [parts]  # a key in another unit stays as given: the predictor section converts it, with its warning
    if parts[1] in REMOVED_PREDICTOR_KEYS:
        logger.warning("override %r ignored: no stage of a run reads predictor.%s (the optional EncoderRegressor "
                       "takes segmentation.config.EncoderRegressorConfig); remove it", item, parts[1])  # fmt: skip
        return []
    new = LEGACY_PREDICTOR_KEYS[parts[1]]
    logger.warning("override %r: predictor.%s is deprecated (accepted for one release); use %s", item, parts[1],
                   ", ".join(f"predictor.{n}" for n in new))  # fmt: skip
    return [["predictor", *n.split(".")] for n in new]
