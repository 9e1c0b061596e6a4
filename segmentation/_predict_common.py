"""Shared pieces of the rating predictors: schemas, seeds, manifests, optimiser settings."""

import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from threadpoolctl import threadpool_limits

from segmentation._errors import DataError
from segmentation._predict_mf import TrainSettings
from segmentation.config import PredictorConfig

#: The columns :meth:`GlobalPredictor.predict` needs (other columns are ignored).
PAIRS = pl.Schema({"user_id": pl.String, "item_id": pl.String})

#: Schema of :attr:`SegmentedPredictor.report_`, one row per segment.
SEGMENT_REPORT = pl.Schema(
    {
        "segment_id": pl.Int32,
        "strategy": pl.String,
        "n_users": pl.Int64,
        "n_train": pl.Int64,
        "n_valid": pl.Int64,
        "valid_rmse_global": pl.Float64,
        "valid_rmse_segment": pl.Float64,
        "gate_rmse_global": pl.Float64,
        "gate_rmse_segment": pl.Float64,
        "gate_ci_low": pl.Float64,
        "gate_ci_high": pl.Float64,
        "best_epoch": pl.Int64,
        "kept": pl.Boolean,
        "seconds": pl.Float64,
    }
)

_FORMAT = "segflow.predictor"
_FORMAT_VERSION = 1


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Limit torch's intra-op threads and the BLAS pools to ``n`` (0: leave them) for the block, then restore.

    Results depend slightly on the thread count (float sums in another order), so a fixed count also
    keeps fits identical across machines.
    """
    if n <= 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


def _child_seed(seed: int, name: str) -> int:
    """A seed for one named sub-step, derived from the run's seed (order-independent)."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])


def _versions() -> dict[str, str]:
    out = {"torch": torch.__version__, "numpy": np.__version__, "polars": pl.__version__}
    for dist in ("segflow", "safetensors"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def _read_manifest(folder: Path, kind: str) -> dict[str, Any]:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise DataError(f"{folder} is not a saved segflow predictor: {path} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not valid JSON: {err}") from None
    if manifest.get("format") != _FORMAT or manifest.get("kind") != kind:
        raise DataError(
            f"{path}: expected format {_FORMAT!r} kind {kind!r}, found {manifest.get('format')!r} "
            f"kind {manifest.get('kind')!r}"
        )
    if manifest.get("format_version") != _FORMAT_VERSION:
        raise DataError(f"{path}: format_version {manifest.get('format_version')!r} is not supported "
                        f"(this segflow reads version {_FORMAT_VERSION})")  # fmt: skip
    return manifest


def _settings(config: PredictorConfig, *, finetune: bool = False) -> TrainSettings:
    mf = config.mf
    if finetune:  # bias_reg is not read by the fine-tuning strategies (their penalties use reg)
        return TrainSettings(epochs=config.per_segment.epochs, learning_rate=config.per_segment.learning_rate,
                             reg=config.per_segment.reg, bias_reg=mf.bias_reg, batch_size=mf.batch_size,
                             patience=2)  # fmt: skip
    return TrainSettings(epochs=mf.epochs, learning_rate=mf.learning_rate, reg=mf.reg, bias_reg=mf.bias_reg,
                         batch_size=mf.batch_size, patience=mf.patience,
                         patience_ratings=mf.patience_ratings)  # fmt: skip
