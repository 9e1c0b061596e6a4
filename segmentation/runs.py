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
killed run leaves only a ``.partial-*`` folder that is never ``latest``. A killed
run's ``.partial-*`` folder is *stale*: :func:`stale_partials` finds them and
:func:`clean_output_dir` (``segflow clean``) removes them.
"""

import json
import logging
import os
import re
import secrets
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from segmentation._errors import DataError

__all__ = ["Run", "RunWriter", "check_output_dir", "clean_output_dir", "complete_runs", "load_run", "new_run_id",
           "previous_run", "publish_latest", "stale_partials"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4,}$")
PARTIAL_PREFIX = ".partial-"
WRITER_FILE = ".writer.json"  # inside a partial folder: who is writing it


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-xxxx``: sortable by time, unique across concurrent starts."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def publish_latest(output_dir: Path, run_dir: Path) -> None:
    """Point ``output_dir/latest`` at ``run_dir`` atomically (symlink swapped by rename)."""
    link = output_dir / "latest"
    tmp = output_dir / f".latest-{secrets.token_hex(4)}"
    os.symlink(run_dir.name, tmp)
    os.replace(tmp, link)


def check_output_dir(output_dir: Path) -> None:
    """Fail early (before hours of work) when run folders cannot be created in ``output_dir``.

    Raises:
        DataError: ``output_dir`` is a file, or neither it nor its nearest existing parent is writable.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"output_dir {output_dir} exists and is not a folder; give a folder for the run folders")
    probe = output_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise DataError(f"output_dir {output_dir}: {probe} is not a writable folder; choose another output_dir "
                        "(--output) or fix its permissions")  # fmt: skip


def complete_runs(output_dir: Path) -> list[Path]:
    """Published run folders in ``output_dir``, oldest first (by run id, which sorts by start time)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    return sorted(p for p in output_dir.iterdir() if RUN_ID.match(p.name) and p.is_dir() and not p.is_symlink())


def previous_run(output_dir: str | Path, run_dir: str | Path) -> Path | None:
    """The newest complete run in ``output_dir`` that started before ``run_dir`` (None for the first run)."""
    name = Path(run_dir).name
    earlier = [p for p in complete_runs(Path(output_dir)) if p.name < name]
    return earlier[-1] if earlier else None


def _writer_alive(partial: Path) -> bool | None:
    """True/False when the folder's writer ran on this machine and is / is not running; None when unknown."""
    try:
        writer = json.loads((partial / WRITER_FILE).read_text())
        pid, host = int(writer["pid"]), writer["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        return True
    return True


def stale_partials(output_dir: Path) -> list[Path]:
    """Unfinished run folders (``.partial-*``) that no running segflow will finish.

    A partial folder is stale when its writer on this machine is gone (killed, crashed), or, for a writer
    elsewhere or unknown, when it is older than the newest complete run.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    runs = complete_runs(output_dir)
    newest = runs[-1].name if runs else None
    out = []
    for p in sorted(output_dir.glob(PARTIAL_PREFIX + "*")):
        alive = _writer_alive(p)
        if alive is False or (alive is None and newest is not None and p.name[len(PARTIAL_PREFIX):] < newest):
            out.append(p)
    return out


def clean_output_dir(output_dir: Path, *, dry_run: bool = False) -> list[Path]:
    """Remove stale ``.partial-*`` folders and leftover ``.latest-*`` links; returns what was (or would be) removed."""
    output_dir = Path(output_dir)
    victims = stale_partials(output_dir)
    if output_dir.is_dir():
        hour_ago = time.time() - 3600
        victims += [p for p in output_dir.glob(".latest-*") if p.is_symlink() and p.lstat().st_mtime < hour_ago]
    if not dry_run:
        for p in victims:
            if p.is_symlink():
                p.unlink(missing_ok=True)
            else:
                shutil.rmtree(p, ignore_errors=True)
            logger.info("removed %s", p)
    return victims


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
        self._chosen_id = run_id is not None
        self._set_paths()

    def _set_paths(self) -> None:
        self.path = self.output_dir / f"{PARTIAL_PREFIX}{self.run_id}"
        self.final_path = self.output_dir / self.run_id

    def __enter__(self) -> "RunWriter":
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise DataError(f"output_dir {self.output_dir} exists and is not a folder")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(20):  # two runs starting in the same second may draw the same id: draw again
            if not self.final_path.exists():
                try:
                    self.path.mkdir()
                    break
                except FileExistsError:
                    pass
            if self._chosen_id:
                raise DataError(f"run folder {self.final_path} already exists; run ids must be unique")
            self.run_id = new_run_id()
            self._set_paths()
        else:  # pragma: no cover - 20 collisions in a row
            raise DataError(f"could not find a free run id in {self.output_dir}")
        (self.path / WRITER_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                         "started": time.time()}))  # fmt: skip
        return self

    def publish(self) -> Path:
        """Rename the finished folder into place and point ``latest`` at it."""
        (self.path / WRITER_FILE).unlink(missing_ok=True)
        os.replace(self.path, self.final_path)
        publish_latest(self.output_dir, self.final_path)
        logger.info("published run %s", self.final_path)
        stale = stale_partials(self.output_dir)
        if stale:
            logger.warning("%d unfinished run folder(s) left by killed or crashed runs in %s (%s); remove them with "
                           "`segflow clean --output %s`", len(stale), self.output_dir,
                           ", ".join(p.name for p in stale[:5]), self.output_dir)  # fmt: skip
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
    if path.name.startswith(PARTIAL_PREFIX):
        raise DataError(f"{path} is an unfinished run (killed or still running), not a published one; "
                        f"open {path.parent / 'latest'} or a run folder without the {PARTIAL_PREFIX} prefix")  # fmt: skip
    missing = [f for f in ("users.parquet", "segments.parquet", "metrics.json", "manifest.json") if not (path / f).exists()]
    if missing:
        raise DataError(f"{path} is not a complete segflow run folder (missing {missing})")
    manifest = json.loads((path / "manifest.json").read_text())
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DataError(f"{path}: run schema version {manifest.get('schema_version')} is not {SCHEMA_VERSION}")
    return Run(path, pl.read_parquet(path / "users.parquet"), pl.read_parquet(path / "segments.parquet"),
               json.loads((path / "metrics.json").read_text()), manifest)  # fmt: skip
