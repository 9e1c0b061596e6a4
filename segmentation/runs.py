"""Run folders: written whole into a hidden sibling, then published by rename.

Layout of ``<output_dir>/<run-id>/``::

    config.toml        the run's configuration
    manifest.json      run id, seed, config hash, versions, device, schema version
    users.parquet      ASSIGNMENTS: user_id, segment_id, membership, nearest_segment, ..., x, y
    segments.parquet   SEGMENTS: one profile per segment
    embeddings/        items.npy + users.npy + ids (float32, L2-normalised)
    index/items/ index/users/ index/segments/   FAISS indexes
    models/global/ models/segments/             safetensors + manifest.json
    metrics.json       data, segmentation, rating, ranking, beyond_accuracy, fairness, timings
    report/index.html  the HTML report

``<output_dir>/latest`` is a symlink to the newest complete run; a failed or
killed run leaves only a ``.partial-*`` folder that is never ``latest``.
"""

import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from segmentation._errors import DataError

__all__ = ["Run", "RunWriter", "load_run", "new_run_id", "publish_latest"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-xxxx``: sortable by time, unique across concurrent starts."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def publish_latest(output_dir: Path, run_dir: Path) -> None:
    """Point ``output_dir/latest`` at ``run_dir`` atomically (symlink swapped by rename)."""
    link = output_dir / "latest"
    tmp = output_dir / f".latest-{secrets.token_hex(4)}"
    os.symlink(run_dir.name, tmp)
    os.replace(tmp, link)


class RunWriter:
    """Create a run folder that becomes visible only when complete.

    >>> with RunWriter(Path("runs")) as w:      # doctest: +SKIP
    ...     (w.path / "metrics.json").write_text("{}")
    >>> w.final_path                             # doctest: +SKIP
    PosixPath('runs/20261123-061500-ab12')
    """

    def __init__(self, output_dir: Path, run_id: str | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.run_id = run_id or new_run_id()
        self.path = self.output_dir / f".partial-{self.run_id}"
        self.final_path = self.output_dir / self.run_id

    def __enter__(self) -> "RunWriter":
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise DataError(f"output_dir {self.output_dir} exists and is not a folder")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if self.final_path.exists():
            raise DataError(f"run folder {self.final_path} already exists; run ids must be unique")
        self.path.mkdir()
        return self

    def publish(self) -> Path:
        """Rename the finished folder into place and point ``latest`` at it."""
        os.replace(self.path, self.final_path)
        publish_latest(self.output_dir, self.final_path)
        logger.info("published run %s", self.final_path)
        return self.final_path

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.publish()
        else:
            shutil.rmtree(self.path, ignore_errors=True)
            logger.info("run %s failed; removed its partial folder, %s/latest unchanged", self.run_id, self.output_dir)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file + rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default))
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@dataclass(frozen=True)
class Run:
    """A published run, read back for notebooks and comparisons."""

    path: Path
    users: pl.DataFrame
    segments: pl.DataFrame
    metrics: dict
    manifest: dict

    def user_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, (n, d) float32 vectors) of the run's users."""
        return np.load(self.path / "embeddings" / "user_ids.npy"), np.load(self.path / "embeddings" / "users.npy")

    def item_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        return np.load(self.path / "embeddings" / "item_ids.npy"), np.load(self.path / "embeddings" / "items.npy")

    def index(self, name: str = "users"):
        """The FAISS :class:`~embeddings.index.VectorIndex` named ``users``, ``items`` or ``segments``."""
        from embeddings.index import VectorIndex

        return VectorIndex.load(self.path / "index" / name)


def load_run(path: Path | str) -> Run:
    """Open a run folder (or ``runs/latest``) written by segflow.

    Raises:
        DataError: the folder is not a complete segflow run.
    """
    path = Path(path).resolve()
    missing = [f for f in ("users.parquet", "segments.parquet", "metrics.json", "manifest.json") if not (path / f).exists()]
    if missing:
        raise DataError(f"{path} is not a complete segflow run folder (missing {missing})")
    manifest = json.loads((path / "manifest.json").read_text())
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DataError(f"{path}: run schema version {manifest.get('schema_version')} is not {SCHEMA_VERSION}")
    return Run(path, pl.read_parquet(path / "users.parquet"), pl.read_parquet(path / "segments.parquet"),
               json.loads((path / "metrics.json").read_text()), manifest)  # fmt: skip
