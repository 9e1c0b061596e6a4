"""Bounding the cache in ``cache_dir``: remove what only costs a recomputation, least recently used first.

Layout of ``cache_dir`` (``$SEGFLOW_CACHE``, default ``~/.cache/segflow``)::

    prefect-results/   the flow's task cache: one file per cached stage result (removable)
    encoders/          fine-tuned encoders, one folder each (removable)
    embeddings/        text embeddings by (model, text hash) (removable only when asked: re-embedding is slow)
    datasets/          checksummed copies of the built-in data sets (never removed here)

An *entry* is one file or folder directly under a removable folder (one file per folder
of ``embeddings/<model>/``). Its last use is the newest access or modification time of
its files; file systems mounted ``noatime`` record only modifications, so there "least
recently used" means least recently written.

:func:`fingerprint` makes the content hashes that the flow's task cache keys are built from.
"""

import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ByteSize, TypeAdapter, ValidationError

from embeddings.encoder import Embeddings
from segmentation._errors import ConfigError
from segmentation.cluster import Segmentation
from segmentation.config import config_hash
from segmentation.data import Dataset, Split

__all__ = ["CacheEntry", "CleanedCache", "cache_entries", "clean_cache", "fingerprint", "parse_size"]

logger = logging.getLogger(__name__)

TASK_CACHE_FOLDERS = ("prefect-results", "encoders")
EMBEDDINGS_FOLDER = "embeddings"


def fingerprint(*objs: Any) -> str:
    """A content hash of frames, arrays, embeddings, configs and plain values (for cache keys).

    Holds no code version: a stage's key adds the digest of the code it can run (``flows/code_digest.py``), so
    there is no version to bump by hand.
    """
    h = hashlib.sha256()
    for o in objs:
        _feed(h, o)
    return h.hexdigest()[:24]


def _feed(h: "hashlib._Hash", o: Any) -> None:
    if isinstance(o, pl.DataFrame):
        h.update(str(o.schema).encode())
        h.update(o.hash_rows(seed=0).to_numpy().tobytes())
    elif isinstance(o, np.ndarray):
        h.update(str(o.dtype).encode() + str(o.shape).encode())
        h.update(np.ascontiguousarray(o).tobytes() if o.dtype != object else "\x1f".join(map(str, o)).encode())
    elif isinstance(o, Embeddings):
        _feed(h, o.ids)
        _feed(h, o.vectors)
        h.update(o.model.encode())
        if o.activity is not None:  # user vectors: the outlier rules read each user's interactions too
            _feed(h, o.activity)
    elif isinstance(o, Dataset):
        for part in (o.interactions, o.items, o.users):
            _feed(h, part)
    elif isinstance(o, Split):
        for part in (o.train, o.valid, o.test):
            _feed(h, part)
    elif isinstance(o, Segmentation):
        _feed(h, o.assignments)
    elif isinstance(o, BaseModel):
        h.update(config_hash(o).encode())
    elif isinstance(o, (list, tuple)):
        for x in o:
            _feed(h, x)
    elif o is None:
        h.update(b"\x00none")
    else:
        h.update(repr(o).encode())


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    size: int  # bytes of its files
    last_used: float  # epoch seconds


@dataclass(frozen=True)
class CleanedCache:
    """What :func:`clean_cache` removed (or would remove) and what the entries it considered take now."""

    removed: list[CacheEntry]
    freed_bytes: int
    remaining_bytes: int


def parse_size(text: str | int) -> int:
    """Bytes from ``2GB``, ``500MiB``, ``1.5G`` or a plain number of bytes (pydantic's ``ByteSize`` rules).

    Raises:
        ConfigError: not a size.
    """
    try:
        return int(TypeAdapter(ByteSize).validate_python(text))
    except ValidationError:
        raise ConfigError(f"--max-size {text!r} is not a size; give bytes or a number with a unit, e.g. 500MB, "
                          "2GiB or 1.5G") from None  # fmt: skip


def _entry(path: Path) -> CacheEntry | None:
    try:
        if path.is_symlink() or path.is_file():
            st = path.lstat()
            return CacheEntry(path, st.st_size, max(st.st_atime, st.st_mtime))
        size, last = 0, 0.0  # a folder's own times change whenever a file in it is added: its files' times count
        for dirpath, _, filenames in os.walk(path):
            for name in filenames:
                st = (Path(dirpath) / name).lstat()
                size, last = size + st.st_size, max(last, st.st_atime, st.st_mtime)
        return CacheEntry(path, size, last or path.lstat().st_mtime)
    except OSError:  # removed meanwhile (another clean, or Prefect replacing a result)
        return None


def cache_entries(cache_dir: Path, *, embeddings: bool = False) -> list[CacheEntry]:
    """Removable entries of ``cache_dir``, least recently used first (never ``datasets/``)."""
    cache_dir = Path(cache_dir)
    paths: list[Path] = []
    for name in TASK_CACHE_FOLDERS:
        folder = cache_dir / name
        if folder.is_dir():
            paths += list(folder.iterdir())
    if embeddings and (cache_dir / EMBEDDINGS_FOLDER).is_dir():
        for dirpath, _, filenames in os.walk(cache_dir / EMBEDDINGS_FOLDER):
            paths += [Path(dirpath) / n for n in filenames]
    entries = [e for e in map(_entry, paths) if e is not None]
    return sorted(entries, key=lambda e: (e.last_used, str(e.path)))


def clean_cache(cache_dir: Path, *, max_size: int | None = None, older_than_days: float | None = None,
                embeddings: bool = False, dry_run: bool = False, now: float | None = None) -> CleanedCache:  # fmt: skip
    """Remove task-cache entries unused for ``older_than_days``, then the least recently used ones until the
    rest take at most ``max_size`` bytes. ``embeddings``: the embedding cache is counted and removable too.

    A removed entry costs only a recomputation: the flow finds no cached result and runs the stage again.

    Raises:
        ConfigError: neither bound given, or a negative one.
    """
    if max_size is None and older_than_days is None:
        raise ConfigError("segflow clean --cache needs --max-size SIZE or --older-than DAYS (or cache.max_size in "
                          "the configuration)")  # fmt: skip
    if (max_size is not None and max_size < 0) or (older_than_days is not None and older_than_days < 0):
        raise ConfigError(f"segflow clean --cache: sizes and ages cannot be negative (given --max-size {max_size}, "
                          f"--older-than {older_than_days})")  # fmt: skip
    entries = cache_entries(cache_dir, embeddings=embeddings)
    total = sum(e.size for e in entries)
    cutoff = (
        (now if now is not None else time.time()) - older_than_days * 86400 if older_than_days is not None else None
    )
    removed: list[CacheEntry] = []
    for e in entries:  # least recently used first
        too_old = cutoff is not None and e.last_used < cutoff
        too_big = max_size is not None and total > max_size
        if not (too_old or too_big):
            continue
        removed.append(e)
        total -= e.size
    if not dry_run:
        for e in removed:
            if e.path.is_dir() and not e.path.is_symlink():
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                e.path.unlink(missing_ok=True)
        if removed:
            logger.info("cache %s: removed %d entries (%d bytes); %d bytes remain", cache_dir, len(removed),
                        sum(e.size for e in removed), total)  # fmt: skip
    return CleanedCache(removed, sum(e.size for e in removed), total)
