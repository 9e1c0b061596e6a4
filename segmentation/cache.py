"""Bounding the cache in ``cache_dir``: remove what only costs a recomputation, least recently used first.

Layout of ``cache_dir`` (``$SEGFLOW_CACHE``, default ``~/.cache/segflow``)::

    prefect-results/   the flow's task cache: one record per cached stage result (removable); the record of a
                       segflow stage points to its data file in prefect-results/blobs/ (removed with it)
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
import json
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

__all__ = [
    "BLOB_SERIALIZER",
    "RESULT_BLOBS",
    "CacheEntry",
    "CleanedCache",
    "cache_entries",
    "clean_cache",
    "fingerprint",
    "parse_size",
    "record_blob",
]

logger = logging.getLogger(__name__)

TASK_CACHE_FOLDERS = ("prefect-results", "encoders")
EMBEDDINGS_FOLDER = "embeddings"
RESULT_BLOBS = "blobs"  # prefect-results/blobs/: the data files the cached stages' records point to
BLOB_SERIALIZER = "segflow-blob"  # the serializer type those records name (flows/result_blobs.py)
_RECORD_MAX_BYTES = 1 << 20  # a record that points to a data file is a few hundred bytes
_BLOB_GRACE_SECONDS = 600  # an unreferenced data file this new may belong to a record being written


def _read_untouched(path: Path) -> bytes:
    """The bytes of ``path`` without marking it used: its access time is what "least recently used" reads."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOATIME", 0))
    except PermissionError:  # O_NOATIME needs the file's owner: read it, then put its times back
        st = path.stat()
        data = path.read_bytes()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        return data
    with os.fdopen(fd, "rb") as f:
        return f.read()


def record_blob(record: Path) -> Path | None:
    """The data file that a task-cache record points to, or None: the record holds its result itself (another
    serializer), or it is not a record."""
    try:
        if not record.is_file() or record.stat().st_size > _RECORD_MAX_BYTES:
            return None
        doc = json.loads(_read_untouched(record))
        serializer = doc["metadata"]["serializer"]
        if serializer.get("type") != BLOB_SERIALIZER:
            return None
        return Path(serializer["folder"]) / json.loads(doc["result"])["blob"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


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
        # and the category split test and the reassignment what they chose (and how they rated it)
        for name, counts in (("category_counts", o.category_counts), ("choice_counts", o.choice_counts)):
            if counts is not None:
                c = counts.tocsr()
                h.update(name.encode() + str(c.shape).encode())
                for part in (c.indptr, c.indices, c.data):
                    _feed(h, np.asarray(part))
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
    size: int  # bytes of its files (a record's: with its data file)
    last_used: float  # epoch seconds
    blob: Path | None = None  # a task-cache record's data file (removed with the record)


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
            paths += [p for p in folder.iterdir() if p.name != RESULT_BLOBS]  # data files count with their records
    if embeddings and (cache_dir / EMBEDDINGS_FOLDER).is_dir():
        for dirpath, _, filenames in os.walk(cache_dir / EMBEDDINGS_FOLDER):
            paths += [Path(dirpath) / n for n in filenames]
    entries = [_with_blob(e) for e in map(_entry, paths) if e is not None]
    return sorted(entries, key=lambda e: (e.last_used, str(e.path)))


def _with_blob(entry: CacheEntry) -> CacheEntry:
    blob = record_blob(entry.path)
    if blob is None:
        return entry
    try:
        st = blob.stat()
    except OSError:  # its data file is gone: the record is all there is (the flow recomputes such a stage)
        return entry
    return CacheEntry(entry.path, entry.size + st.st_size, max(entry.last_used, st.st_atime, st.st_mtime), blob)


def _orphan_blobs(cache_dir: Path, now: float) -> list[CacheEntry]:
    """Data files under ``prefect-results/blobs/`` that no record points to (older than a grace period)."""
    folder = cache_dir / TASK_CACHE_FOLDERS[0] / RESULT_BLOBS
    if not folder.is_dir():
        return []
    used = {b.resolve() for r in folder.parent.iterdir() if (b := record_blob(r)) is not None}
    out = []
    for path in folder.iterdir():
        e = _entry(path)
        if e is not None and path.resolve() not in used and now - e.last_used > _BLOB_GRACE_SECONDS:
            out.append(e)
    return out


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
            if e.blob is not None:
                e.blob.unlink(missing_ok=True)
        # data files whose record is gone (removed by hand, or a run killed between the two writes)
        orphans = _orphan_blobs(cache_dir, now if now is not None else time.time())
        for e in orphans:
            e.path.unlink(missing_ok=True)
        removed += orphans
        if removed:
            logger.info("cache %s: removed %d entries (%d bytes); %d bytes remain", cache_dir, len(removed),
                        sum(e.size for e in removed), total)  # fmt: skip
    return CleanedCache(removed, sum(e.size for e in removed), total)
