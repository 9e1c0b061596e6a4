"""Run folders: written whole into a hidden sibling, then published by rename.

Layout of ``<output_dir>/<run-id>/``::

    config.toml        the run's configuration
    manifest.json      run id, seed, config hash, versions, device, schema version
    users.parquet      ASSIGNMENTS: user_id, segment_id, membership, nearest_segment, ..., x, y
    segments.parquet   SEGMENTS: one profile per segment
    embeddings/        items.npy + users.npy + ids (float32, L2-normalised); user_space.json + .npz: what
                       places other users beside them (segmentation.represent.UserSpace; Run.place_users)
    index/items/ index/users/ index/segments/   FAISS indexes
    models/global/     the global rating model: weights.safetensors + manifest.json
    models/segments/   kept segment models, assignments, manifest.json (refers to ../global, no copy)
    metrics.json       data, segmentation, rating, ranking, ranking_sample (which test users the ranking
                       figures are over), beyond_accuracy, fairness, models, timings, versions, verdicts
                       (segmentation.verdicts.run_verdicts)
    report_input.json  what presenting needs beyond the files above (segmentation.run_folder.write_run_details)
    comparison.json    the comparison with the previous complete run (segmentation.compare), if there was one
    report/index.html  the HTML report, rendered from the folder (segmentation.run_folder.load_run_folder)

``<output_dir>/latest`` is a symlink to the newest complete run; a failed or
killed run leaves only a ``.partial-*`` folder that is never ``latest``. A killed
run's ``.partial-*`` folder is *stale*: :func:`stale_partials` finds them and
:func:`clean_output_dir` (``segflow clean``) removes them. The writer holds a file lock
(``filelock``, an OS lock the kernel drops when the process dies) on ``.writer.lock`` in its
partial folder while it writes; a partial folder whose lock can be taken has no live writer.

Bounded disk: before publishing, :func:`link_unchanged` replaces every file of
at least :data:`LINK_MIN_BYTES` whose bytes (SHA-256) equal a file of the run
``latest`` points to, or an earlier file of the same run, by a hard link to it, so
unchanged artefacts are stored once yet every run folder stays self-contained
(opening, moving within the file system or deleting one never breaks another).
Run folders are read-only results: a file edited in place would change in every
run that shares it. :func:`prune_runs` (``segflow prune``, ``output.keep_last``)
removes the oldest complete runs beyond a count, never ``latest``.

:func:`write_outputs` writes a run's data files (config, manifest, users, segments, embeddings, indexes,
metrics) into the folder a :class:`RunWriter` holds; :func:`summarise_data`, :func:`summarise_segmentation`
and :func:`versions` make the parts of ``metrics.json`` that no stage computes.
"""

import hashlib
import importlib.metadata as md
import json
import logging
import os
import platform
import re
import secrets
import shutil
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from filelock import BaseFileLock, FileLock, Timeout

from embeddings.encoder import Embeddings
from embeddings.index import Indexes
from segmentation._errors import ConfigError, DataError
from segmentation._polars import to_float
from segmentation.cluster import Segmentation, SegmentEnvelopes, moved_by_choices
from segmentation.config import ClusterConfig, PipelineConfig, config_hash, dump_config_toml
from segmentation.data import Dataset, Split
from segmentation.describe import SegmentProfile, profiles_to_frame
from segmentation.represent import UserSpace

__all__ = [
    "LinkStats",
    "Pruned",
    "Run",
    "RunWriter",
    "check_output_dir",
    "clean_output_dir",
    "complete_runs",
    "fit_segment_envelopes",
    "link_unchanged",
    "load_run",
    "new_run_id",
    "previous_run",
    "prune_runs",
    "publish_latest",
    "stale_partials",
    "json_safe",
    "summarise_data",
    "summarise_segmentation",
    "versions",
    "write_outputs",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4,}$")
PARTIAL_PREFIX = ".partial-"
WRITER_FILE = ".writer.json"  # inside a partial folder: who is writing it
LOCK_FILE = ".writer.lock"  # inside a partial folder: locked by its writer while it runs
ENVELOPES_FILE = "segment_envelopes.npz"  # in embeddings/: the outlier rule placed users meet
LINK_MIN_BYTES = 4096  # smaller files take one block either way: not worth hashing and linking


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-xxxxxxxx``: sortable by time, unique across concurrent starts (32 random bits: 50 ids drawn in
    one second collide with a chance of 3e-7, where 16 bits gave 2 %; :class:`RunWriter` draws again on a collision
    all the same)."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


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
    """True/False when the folder's writer ran on this machine and is / is not running; None when unknown.

    Alive means its lock file is locked (:class:`filelock.FileLock`); OS locks are not reliable across
    machines (network file systems), so a writer on another host, or a folder without a lock file, is unknown.
    """
    try:
        host = json.loads((partial / WRITER_FILE).read_text())["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    lock_path = partial / LOCK_FILE
    if host != socket.gethostname() or not lock_path.is_file():
        return None
    probe = FileLock(lock_path)
    try:
        probe.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:  # cannot open the lock file (permissions): say nothing
        return None
    probe.release()
    return False


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
        if alive is False or (alive is None and newest is not None and p.name[len(PARTIAL_PREFIX) :] < newest):
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


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _files(folder: Path) -> list[Path]:
    """Regular files under ``folder`` (symlinks left out), in a stable order."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        out += [Path(dirpath) / n for n in sorted(filenames) if not (Path(dirpath) / n).is_symlink()]
    return out


@dataclass(frozen=True)
class LinkStats:
    """What :func:`link_unchanged` did: files (and their bytes) hard-linked to stored copies, and written anew."""

    linked_files: int
    linked_bytes: int
    written_files: int
    written_bytes: int
    previous: Path | None


def _hard_link(src: Path, dst: Path) -> bool:
    """Replace ``dst`` by a hard link to ``src`` atomically; False (``dst`` untouched) where linking fails."""
    tmp = dst.with_name(f".{dst.name}.link-{secrets.token_hex(4)}")
    try:
        os.link(src, tmp)
    except OSError as err:  # another file system (EXDEV), too many links (EMLINK), no hard links at all
        logger.debug("could not hard-link %s to %s (%s); keeping the copy", dst, src, err)
        return False
    try:
        os.replace(tmp, dst)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


def link_unchanged(folder: Path, previous: Path | None, *, min_bytes: int = LINK_MIN_BYTES) -> LinkStats:
    """Store each distinct content of ``folder`` once: hard-link its files to identical ones already on disk.

    Every file of at least ``min_bytes`` whose SHA-256 (and size) equals that of a file of ``previous`` (the
    last complete run) or of an earlier file in ``folder`` becomes a hard link to that file. Where linking
    fails (another file system, a link limit) the written copy stays: the folder is complete either way.

    Returns:
        How many files and bytes were linked, and how many were left as written.
    """
    folder = Path(folder)
    files = [(p, p.stat().st_size) for p in _files(folder)]
    known: dict[tuple[int, str], Path] = {}
    if previous is not None and Path(previous).is_dir():
        sizes = {n for _, n in files if n >= min_bytes}
        for q in _files(Path(previous)):
            try:
                n = q.stat().st_size
                if n in sizes:
                    known.setdefault((n, _sha256(q)), q)
            except OSError:  # the previous run is being pruned meanwhile: its files are not needed
                continue
    linked = linked_bytes = written = written_bytes = 0
    for p, n in files:
        if n >= min_bytes:
            key = (n, _sha256(p))
            src = known.get(key)
            if src is not None and _hard_link(src, p):
                linked, linked_bytes = linked + 1, linked_bytes + n
                continue
            known.setdefault(key, p)
        written, written_bytes = written + 1, written_bytes + n
    return LinkStats(linked, linked_bytes, written, written_bytes, Path(previous) if previous is not None else None)


def _link_source(output_dir: Path) -> Path | None:
    """The complete run a new run's files are compared with: the one ``latest`` points to, else the newest."""
    link = output_dir / "latest"
    if link.is_symlink():
        target = (output_dir / os.readlink(link)).resolve()
        if target.is_dir() and RUN_ID.match(target.name) and target.parent == output_dir.resolve():
            return target
    runs = complete_runs(output_dir)
    return runs[-1] if runs else None


@dataclass(frozen=True)
class Pruned:
    """What :func:`prune_runs` removed (or would remove) and the bytes that frees."""

    removed: list[Path]
    freed_bytes: int
    kept: list[Path]


def _freed_bytes(folders: list[Path]) -> int:
    """Bytes that deleting ``folders`` frees: a file's bytes count only if every hard link to it goes too."""
    seen: dict[tuple[int, int], list[int]] = {}  # (device, inode) -> [links inside folders, st_nlink, size]
    for folder in folders:
        for p in _files(folder):
            try:
                st = p.stat()
            except OSError:
                continue
            entry = seen.setdefault((st.st_dev, st.st_ino), [0, st.st_nlink, st.st_size])
            entry[0] += 1
    return sum(size for inside, nlink, size in seen.values() if inside >= nlink)


def prune_runs(output_dir: Path, keep_last: int, *, dry_run: bool = False) -> Pruned:
    """Remove the oldest complete runs beyond the newest ``keep_last``, and stale ``.partial-*`` folders.

    The run ``latest`` points to is always kept (even when older), and a ``.partial-*`` folder whose writer
    may still be running is never touched (:func:`stale_partials`). Hard-linked files stay with the runs
    kept; ``freed_bytes`` counts only the bytes no kept run shares.

    Raises:
        ConfigError: ``keep_last`` is below 1.
    """
    if keep_last < 1:
        raise ConfigError(f"keep_last must be at least 1 (given {keep_last}); the run 'latest' points to is "
                          "always kept")  # fmt: skip
    output_dir = Path(output_dir)
    runs = complete_runs(output_dir)
    link = output_dir / "latest"
    latest = (output_dir / os.readlink(link)).resolve() if link.is_symlink() else None
    kept = [r for i, r in enumerate(runs) if i >= len(runs) - keep_last or r.resolve() == latest]
    victims = [r for r in runs if r not in kept] + stale_partials(output_dir)
    freed = _freed_bytes(victims)
    if not dry_run:
        for p in victims:
            shutil.rmtree(p, ignore_errors=True)
            logger.info("pruned %s", p)
    return Pruned(victims, freed, kept)


def summarise_data(dataset: Dataset, split: Split) -> dict:
    """The data section of ``metrics.json``: sizes, density, split, notes and user attributes."""
    inter = dataset.interactions
    return {
        "name": dataset.name,
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        "n_interactions": inter.height,
        "implicit": dataset.implicit,
        "density": inter.height / max(dataset.n_users * dataset.n_items, 1),
        "rating_mean": to_float(inter["rating"].mean(), 0.0),
        "split": split.method,
        "n_train": split.train.height,
        "n_valid": split.valid.height,
        "n_test": split.test.height,
        "n_test_users": split.test["user_id"].n_unique(),
        "notes": list(dataset.notes),
        "user_attributes": [c for c in dataset.users.columns if c != "user_id"] if dataset.users is not None else [],
    }


def summarise_segmentation(seg: Segmentation) -> dict:
    """The segmentation section of ``metrics.json``: segment sizes, outliers, membership, timings."""
    a = seg.assignments
    sizes = a.group_by("segment_id").len().sort("segment_id")
    return {
        "n_segments": int(seg.n_segments),
        "n_users": a.height,
        "noise_share": seg.noise_share,
        "soft_assigned": int(a["soft_assigned"].sum()),
        "min_cluster_size": int(seg.min_cluster_size),
        "sizes": {str(s): int(n) for s, n in zip(sizes["segment_id"], sizes["len"])},
        "mean_membership": to_float(a.filter(pl.col("segment_id") >= 0)["membership"].mean(), 0.0),
        "seconds": seg.seconds,
        **({"sample_fits": seg.sample_fits} if seg.sample_fits is not None else {}),
        **({"splits": seg.splits} if seg.splits is not None else {}),
        **({"outliers": seg.outliers} if seg.outliers is not None else {}),
        **({"reassigned": seg.reassigned} if seg.reassigned is not None else {}),
    }


def versions() -> dict:
    """Python's and the result-moving packages' versions (``manifest.json``, ``metrics.json``)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    # numba, pynndescent, scikit-learn, numpy and scipy move UMAP's and HDBSCAN's results between releases
    for pkg in ("segflow", "torch", "sentence-transformers", "faiss-cpu", "umap-learn", "pynndescent", "numba", "hdbscan",
                "scikit-learn", "numpy", "scipy", "polars", "prefect"):  # fmt: skip
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def machine() -> dict:
    """The CPU the run computed on (``manifest.json``): float results (the encoder's vectors, so the segments near a
    tie) differ in their last bits between CPU models, and MovieLens 100k's segments move with such a difference
    (docs/BENCHMARKS.md, "One demo, two machines")."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model or platform.processor() or None, "arch": platform.machine(), "cores": os.cpu_count()}


def write_outputs(folder: Path, *, config: PipelineConfig, run_id: str, segmentation: Segmentation,
                  profiles: list[SegmentProfile], items: Embeddings, users: Embeddings, indexes: Indexes,
                  metrics: dict, device: str, space: UserSpace | None = None) -> None:  # fmt: skip
    """Write the run folder's data files (everything but models and the report); ``space``: the user space new
    users are placed in (``embeddings/user_space.*``; :meth:`Run.place_users`)."""
    folder = Path(folder)
    (folder / "config.toml").write_text(dump_config_toml(config))
    write_json(folder / "manifest.json", {
        "run_id": run_id, "schema_version": SCHEMA_VERSION, "seed": config.seed,
        "config_hash": config_hash(config), "device": device, "machine": machine(), "versions": versions(),
    })  # fmt: skip
    segmentation.assignments.write_parquet(folder / "users.parquet")
    profiles_to_frame(profiles).write_parquet(folder / "segments.parquet")
    emb = folder / "embeddings"
    emb.mkdir()
    np.save(emb / "items.npy", items.vectors)
    np.save(emb / "item_ids.npy", items.ids.astype(str))
    np.save(emb / "users.npy", users.vectors)
    np.save(emb / "user_ids.npy", users.ids.astype(str))
    if space is not None:
        space.save(emb)
        envelopes = fit_segment_envelopes(segmentation, users, config.cluster)
        if envelopes is not None:
            envelopes.save(emb / ENVELOPES_FILE)
    indexes.items.save(folder / "index" / "items")
    indexes.users.save(folder / "index" / "users")
    if indexes.segments is not None:
        indexes.segments.save(folder / "index" / "segments")
    write_json(folder / "metrics.json", metrics)
    logger.info("wrote run outputs to %s", folder)


def fit_segment_envelopes(
    segmentation: Segmentation, users: Embeddings, cluster: ClusterConfig
) -> SegmentEnvelopes | None:
    """The run's outlier rule for users placed later (:class:`segmentation.cluster.SegmentEnvelopes`): the envelopes
    that decided the run's outliers (:func:`segmentation.cluster.judge_outliers`), or, for a segmentation without them
    (cached before 2026-12-05's tenth round of issue 14), those of its final segments (``users`` in any row order);
    None when the run has no ``cluster.outlier_distance``."""
    if cluster.outlier_distance is None:
        return None
    if segmentation.envelopes is not None:
        return segmentation.envelopes
    if not moved_by_choices(segmentation):
        cluster = cluster.model_copy(update={"category_reassign": None})
    a = segmentation.assignments
    row = {u: i for i, u in enumerate(users.ids.astype(str).tolist())}
    labels = np.full(len(users.ids), -1, dtype=np.int32)  # in the users' row order: their vectors are not copied
    labels[np.array([row[u] for u in a["user_id"].to_list()], dtype=np.int64)] = a["segment_id"].to_numpy()
    return SegmentEnvelopes.of_users(users, labels, cluster, segmentation.n_segments)


def json_safe(data: Any) -> Any:
    """Round-trip through JSON so numpy scalars and paths become plain values."""
    return json.loads(json.dumps(data, default=_json_default))


class RunWriter:
    """Create a run folder that becomes visible only when complete.

    >>> with RunWriter(Path("runs")) as w:      # doctest: +SKIP
    ...     (w.path / "metrics.json").write_text("{}")
    >>> w.final_path                             # doctest: +SKIP
    PosixPath('runs/20261123-061500-ab12')
    """

    def __init__(self, output_dir: Path, run_id: str | None = None, *, keep_last: int | None = None) -> None:
        """``keep_last``: after publishing, prune the complete runs beyond the newest ``keep_last``."""
        self.output_dir = Path(output_dir)
        self.run_id = run_id or new_run_id()
        self._chosen_id = run_id is not None
        self.keep_last = keep_last
        self.link_stats: LinkStats | None = None
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
        self._lock: BaseFileLock | None = FileLock(
            self.path / LOCK_FILE, thread_local=False
        )  # any thread of the run may publish
        self._lock.acquire(timeout=0)  # a fresh folder: nobody else can hold it
        (self.path / WRITER_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                         "started": time.time()}))  # fmt: skip
        return self

    def _unlock(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()
            self._lock = None

    def publish(self) -> Path:
        """Hard-link unchanged files, rename the finished folder into place, point ``latest`` at it, prune."""
        (self.path / WRITER_FILE).unlink(missing_ok=True)
        self._unlock()
        (self.path / LOCK_FILE).unlink(missing_ok=True)
        previous = _link_source(self.output_dir)
        try:
            s = self.link_stats = link_unchanged(self.path, previous)
            logger.info("run files: %d (%d bytes) hard-linked to identical files%s, %d (%d bytes) written",
                        s.linked_files, s.linked_bytes, f" of {previous.name} or this run" if previous else
                        " of this run", s.written_files, s.written_bytes)  # fmt: skip
        except OSError as err:  # linking only saves space: the written files are complete
            logger.warning("could not compare the run's files with %s (%s); every file stays a copy", previous, err)
        os.replace(self.path, self.final_path)
        publish_latest(self.output_dir, self.final_path)
        logger.info("published run %s", self.final_path)
        if self.keep_last is not None:
            try:
                pruned = prune_runs(self.output_dir, self.keep_last)
                if pruned.removed:
                    logger.info("output.keep_last = %d: removed %d old run folder(s) (%s), freed %d bytes",
                                self.keep_last, len(pruned.removed), ", ".join(p.name for p in pruned.removed),
                                pruned.freed_bytes)  # fmt: skip
            except OSError as err:  # the run is published; pruning is housekeeping
                logger.warning("pruning %s failed: %s", self.output_dir, err)
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
            self._unlock()
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

    def place_users(self, interactions: pl.DataFrame, *, k: int = 15, source: str = "the interactions",
                    duplicates: str = "keep-latest") -> pl.DataFrame:  # fmt: skip
        """Segments for users from their interactions (``user_id``, ``item_id``, and ``rating`` and ``timestamp`` where
        there are any: 1 and 0 otherwise; new users, or the run's users later on), without refitting anything.

        Each user's vector is built in the run's user space (``embeddings/user_space.*``: the run's
        representation, category columns and mean user; :func:`segmentation.represent.place_in_space`) from their
        interactions with items the run embedded (others are counted and left out), then the ``k`` most similar
        users of the run vote by similarity (:func:`segmentation.cluster.assign_by_neighbours`) for the user's
        nearest segment. Where the run moved members by what they chose (``cluster.category_reassign``), the user
        moves as a member would (:meth:`segmentation.cluster.SegmentEnvelopes.choose`, against the final segments'
        profiles). The run's outlier rule then judges the user as it judged the run's own
        (:meth:`segment_envelopes`; ``cluster.outlier_distance``): a user far from that segment, by the direction of
        their vector for the interactions they made and by the categories they chose, is an outlier (``segment_id``
        -1), their nearest segment still given. Where the run's representation reads no categories, placed users
        are judged by direction alone.
        Repeated (user, item) rows are collapsed as the run's loader did: ``duplicates="keep-latest"`` keeps the
        latest (by ``timestamp``, then by position), ``"sum"`` (implicit feedback with a weight column) sums their
        ratings. The run's users, given the train rows the run saw, get their run's vectors back.

        Returns:
            One row per user (sorted by id): ``user_id``, ``segment_id`` (Int32; -1 for an outlier, or when none of
            the user's items is in the run), ``segment`` (its name; "outlier; nearest: <name>" for an outlier,
            "none: no item the run knows" when no item is in the run), ``nearest_segment`` (the vote's segment, or
            the one the user's choices moved them to; -1 when no item is in the run), ``confidence`` (the vote's
            segment's share of the similarity-weighted vote, 0-1, whether or not the choices moved the user; 0 when
            no item is in the run), ``interactions`` and ``known_interactions`` (those with items
            the run embedded).

        Raises:
            DataError: no interaction is with an item of the run (``source`` names the input in the message), or
                the run's user space is missing (published before 2026-12-05), damaged, or not of its items, or its
                segment envelopes are damaged.
            ConfigError: the run's representation cannot place users (``svd``, ``profile``).
        """
        from segmentation.cluster import assign_by_neighbours
        from segmentation.represent import place_in_space

        if duplicates not in ("keep-latest", "sum"):
            raise ValueError(f"duplicates={duplicates!r}: expected 'keep-latest' or 'sum'")
        space = UserSpace.load(self.path / "embeddings")
        item_ids, item_vectors = self.item_vectors()
        if len(item_ids) != space.n_items or len(item_vectors) != space.n_items:
            raise DataError(f"{self.path / 'embeddings'}: the user space was fitted over {space.n_items} items, the "
                            f"run's item vectors have {len(item_vectors)}; the folder is damaged, run it again")  # fmt: skip
        items = Embeddings(item_ids.astype(object), item_vectors, "run")
        known = pl.Series(item_ids.astype(str)).implode()
        missing = [c for c in ("user_id", "item_id") if c not in interactions.columns]
        if missing:
            raise DataError(f"{source}: no column {missing}; expected user_id, item_id and (optional) rating, "
                            "timestamp")  # fmt: skip
        rows = interactions.with_columns(
            pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String),
            (pl.col("rating") if "rating" in interactions.columns else pl.lit(1.0)).cast(pl.Float64).alias("rating"),
            (pl.col("timestamp") if "timestamp" in interactions.columns else pl.lit(0)).cast(pl.Int64).alias("timestamp"),
        ).select("user_id", "item_id", "rating", "timestamp")  # fmt: skip
        if duplicates == "sum":
            rows = rows.group_by("user_id", "item_id", maintain_order=True).agg(pl.col("rating").sum(),
                                                                                pl.col("timestamp").max())  # fmt: skip
        else:
            rows = (rows.with_row_index("_pos").sort(["timestamp", "_pos"])
                    .unique(["user_id", "item_id"], keep="last", maintain_order=True).sort("_pos").drop("_pos"))  # fmt: skip
        rows = rows.with_columns(pl.col("item_id").is_in(known).alias("_known"))
        counts = rows.group_by("user_id").agg(pl.len().alias("interactions"),
                                              pl.col("_known").sum().cast(pl.Int64).alias("known_interactions"))  # fmt: skip
        usable = rows.filter(pl.col("_known")).drop("_known")
        if usable.height == 0:
            example = rows["item_id"][0] if rows.height else None
            raise DataError(f"{source}: none of the {rows.height} interactions is with an item of the run "
                            f"{self.path.name} (e.g. item {example!r}); expected item ids as in the run's items file")  # fmt: skip
        dropped = rows.height - usable.height
        if dropped:
            logger.warning("%s: %d of %d interactions are with items the run did not embed; left out", source,
                           dropped, rows.height)  # fmt: skip
        vectors = place_in_space(space, usable, items)
        if "rating" not in interactions.columns:  # every rating 1 says nothing of how the user rated: categories alone
            vectors = replace(vectors, choice_counts=None)
        voted = assign_by_neighbours(vectors.vectors, self.index("users"), self.users, k=k)
        nearest = voted["segment_id"].to_numpy()
        far = np.zeros(len(nearest), dtype=bool)
        envelopes = self.segment_envelopes()
        if envelopes is not None:  # counts in the run's category columns where its representation reads categories
            nearest = envelopes.choose(vectors, nearest)
            far = envelopes.far_users(vectors, nearest)
        names = self.segments.select(pl.col("segment_id").cast(pl.Int32).alias("nearest_segment"),
                                     pl.col("name").alias("_name"))  # fmt: skip
        placed = pl.DataFrame({"user_id": vectors.ids.astype(str),
                               "segment_id": np.where(far, -1, nearest).astype(np.int32),
                               "nearest_segment": nearest.astype(np.int32),
                               "confidence": voted["confidence"].cast(pl.Float32)})  # fmt: skip
        return (counts.join(placed, on="user_id", how="left")
                .with_columns(pl.col("segment_id").fill_null(-1), pl.col("nearest_segment").fill_null(-1),
                              pl.col("confidence").fill_null(0.0))
                .join(names, on="nearest_segment", how="left")
                .with_columns(pl.when(pl.col("known_interactions") == 0).then(pl.lit("none: no item the run knows"))
                              .when(pl.col("segment_id") < 0).then(pl.lit("outlier; nearest: ") + pl.col("_name"))
                              .otherwise(pl.col("_name")).alias("segment"))
                .select("user_id", "segment_id", "segment", "nearest_segment", "confidence", "interactions",
                        "known_interactions")
                .sort("user_id"))  # fmt: skip

    def segment_envelopes(self) -> SegmentEnvelopes | None:
        """The run's outlier rule for placed users (``embeddings/segment_envelopes.npz``): None where the run had no
        ``cluster.outlier_distance``, or was published before segflow kept it (2026-12-05)."""
        path = self.path / "embeddings" / ENVELOPES_FILE
        if not path.exists():
            logger.info("%s: no %s (no cluster.outlier_distance, or published before segflow kept it): placed users "
                        "are never outliers", self.path.name, ENVELOPES_FILE)  # fmt: skip
            return None
        n_segments = int((self.segments["segment_id"] >= 0).sum())
        dim = int(np.load(self.path / "embeddings" / "users.npy", mmap_mode="r").shape[1])
        return SegmentEnvelopes.load(path, n_segments=n_segments, dim=dim)


def load_run(path: Path | str, *, allow_partial: bool = False) -> Run:
    """Open a run folder (or ``runs/latest``) written by segflow.

    Args:
        path: the run folder.
        allow_partial: open a ``.partial-*`` folder too (the run's own writer, rendering its report before
            publishing it).

    Raises:
        DataError: the folder is not a complete segflow run.
    """
    path = Path(path).resolve()
    if path.name.startswith(PARTIAL_PREFIX) and not allow_partial:
        raise DataError(f"{path} is an unfinished run (killed or still running), not a published one; "
                        f"open {path.parent / 'latest'} or a run folder without the {PARTIAL_PREFIX} prefix")  # fmt: skip
    missing = [
        f for f in ("users.parquet", "segments.parquet", "metrics.json", "manifest.json") if not (path / f).exists()
    ]
    if missing:
        raise DataError(f"{path} is not a complete segflow run folder (missing {missing})")
    manifest, metrics = (_read_run_json(path / name) for name in ("manifest.json", "metrics.json"))
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DataError(f"{path}: run schema version {manifest.get('schema_version')} is not {SCHEMA_VERSION}")
    return Run(path, pl.read_parquet(path / "users.parquet"), pl.read_parquet(path / "segments.parquet"), metrics,
               manifest)  # fmt: skip


def _read_run_json(path: Path) -> dict:
    """A run folder's JSON object; :class:`DataError` naming the file when it is damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not readable JSON ({err}); rerun the run to write it again") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} holds {type(data).__name__}, not a JSON object; rerun the run to write it again")
    return data
