"""Bounded disk: unchanged files are stored once (hard links), old runs and cache entries go, nothing else does."""

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from reliability_helpers import make_published_run

import segmentation.runs as runs
from flows.cli import main
from segmentation._errors import ConfigError
from segmentation.cache import cache_entries, clean_cache, parse_size
from segmentation.runs import (
    SCHEMA_VERSION,
    RunWriter,
    complete_runs,
    link_unchanged,
    load_run,
    prune_runs,
    publish_latest,
    stale_partials,
)

BIG = np.random.default_rng(0).standard_normal(50_000).astype(np.float32)  # 200 kB: "model weights"
ASSET = b"/* plotly.js */" + bytes(range(256)) * 400  # 100 kB, the same in every report


def _write_run(out: Path, *, weights: np.ndarray = BIG, run_id: str | None = None, keep_last: int | None = None,
               extra: dict[str, bytes] | None = None) -> RunWriter:  # fmt: skip
    """A loadable run whose big files (weights, asset, embeddings) are what a rerun on unchanged data writes."""
    with RunWriter(out, run_id, keep_last=keep_last) as w:
        pl.DataFrame({"user_id": ["a", "b"], "segment_id": [0, 1]}).write_parquet(w.path / "users.parquet")
        pl.DataFrame({"segment_id": [0, 1], "name": ["x", "y"]}).write_parquet(w.path / "segments.parquet")
        (w.path / "metrics.json").write_text(json.dumps({"run_id": w.run_id, "pad": "x" * 5000}))  # differs per run
        (w.path / "manifest.json").write_text(json.dumps({"run_id": w.run_id, "schema_version": SCHEMA_VERSION}))
        (w.path / "models" / "global").mkdir(parents=True)
        (w.path / "models" / "global" / "weights.bin").write_bytes(weights.tobytes())
        (w.path / "report" / "assets").mkdir(parents=True)
        (w.path / "report" / "assets" / "plotly.min.js").write_bytes(ASSET)
        (w.path / "embeddings").mkdir()
        np.save(w.path / "embeddings" / "users.npy", BIG.reshape(-1, 50))
        for name, data in (extra or {}).items():
            (w.path / name).write_bytes(data)
    return w


def _ids(n: int) -> list[str]:
    """Run ids in time order (ids drawn in the same second sort by their random suffix)."""
    return [f"20260101-0000{k:02d}-{k:04x}" for k in range(n)]


def _inode(p: Path) -> tuple[int, int]:
    st = p.stat()
    return st.st_dev, st.st_ino


def _digest_by_inode(folder: Path) -> dict[tuple[int, int], str]:
    return {_inode(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file() and p.stat().st_size >= runs.LINK_MIN_BYTES}  # fmt: skip


def test_unchanged_rerun_stores_its_big_files_as_hard_links_of_the_previous_run(tmp_path):
    out = tmp_path / "runs"
    first = _write_run(out)
    second = _write_run(out)
    a, b = first.final_path, second.final_path
    for rel in ("models/global/weights.bin", "report/assets/plotly.min.js", "embeddings/users.npy"):
        assert _inode(a / rel) == _inode(b / rel), rel
        assert (a / rel).stat().st_nlink == 2
    assert _inode(a / "metrics.json") != _inode(b / "metrics.json")  # changed (the run id): written
    s = second.link_stats
    assert s.previous == a and s.linked_files == 3
    assert s.linked_bytes == BIG.nbytes + len(ASSET) + (b / "embeddings" / "users.npy").stat().st_size
    assert first.link_stats.linked_files == 0 and first.link_stats.previous is None
    # a changed model is written, not linked; the unchanged asset still is
    third = _write_run(out, weights=BIG + 1)
    c = third.final_path
    assert _inode(c / "models/global/weights.bin") != _inode(b / "models/global/weights.bin")
    assert np.array_equal(np.frombuffer((c / "models/global/weights.bin").read_bytes(), np.float32), BIG + 1)
    assert _inode(c / "report/assets/plotly.min.js") == _inode(a / "report/assets/plotly.min.js")


def test_no_bytes_stored_twice_within_one_run(tmp_path):
    w = _write_run(tmp_path / "runs", extra={"copy-of-weights.bin": BIG.tobytes(), "small.txt": b"tiny"})
    digests = _digest_by_inode(w.final_path)
    assert len(set(digests.values())) == len(digests), "two files with the same bytes on separate inodes"
    assert _inode(w.final_path / "copy-of-weights.bin") == _inode(w.final_path / "models/global/weights.bin")
    assert w.link_stats.linked_files == 1


def test_deleting_the_older_run_leaves_the_newer_one_whole(tmp_path):
    out = tmp_path / "runs"
    older, newer = _write_run(out).final_path, _write_run(out).final_path
    shutil.rmtree(older)
    run = load_run(newer)
    assert run.users.height == 2
    assert np.array_equal(np.load(newer / "embeddings" / "users.npy"), BIG.reshape(-1, 50))
    assert (newer / "models/global/weights.bin").read_bytes() == BIG.tobytes()
    moved = tmp_path / "elsewhere"  # moving a run keeps it whole too
    newer.rename(moved)
    assert load_run(moved).manifest["run_id"] == newer.name


def test_where_hard_links_fail_the_run_keeps_its_copies(tmp_path, monkeypatch):
    out = tmp_path / "runs"
    first = _write_run(out)

    def no_links(src, dst, *a, **k):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(runs.os, "link", no_links)
    second = _write_run(out)
    rel = "models/global/weights.bin"
    assert _inode(first.final_path / rel) != _inode(second.final_path / rel)
    assert (second.final_path / rel).read_bytes() == BIG.tobytes()
    assert second.link_stats.linked_files == 0 and second.link_stats.written_bytes > BIG.nbytes
    assert not [p for p in second.final_path.rglob(".*link-*")], "temporary link names left behind"


def test_publish_logs_linked_and_written_bytes(tmp_path, caplog):
    out = tmp_path / "runs"
    _write_run(out)
    caplog.clear()  # earlier tests may have set the library loggers to INFO already: keep only the second run's lines
    with caplog.at_level("INFO", logger="segmentation.runs"):
        _write_run(out)
    said = [r.getMessage() for r in caplog.records if "hard-linked" in r.getMessage()]
    assert said and "3 (" in said[0] and "written" in said[0], said


def _dead_partial(out: Path) -> Path:
    """A .partial-* folder whose writer (a finished process on this machine) is gone."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    partial = out / ".partial-20000101-000000-dead"
    partial.mkdir(parents=True)
    (partial / runs.WRITER_FILE).write_text(json.dumps({"pid": int(proc.stdout), "host": runs.socket.gethostname()}))
    return partial


def test_prune_keeps_latest_and_the_newest_n_and_live_partials(tmp_path):
    out = tmp_path / "runs"
    ids = [f"2026010{d}-000000-000{d}" for d in range(1, 6)]
    made = [_write_run(out, run_id=i, extra={"own.bin": bytes([d]) * 10_000}).final_path for d, i in enumerate(ids)]
    publish_latest(out, made[0])  # an operator pointed latest back at the oldest run
    dead = _dead_partial(out)
    with RunWriter(out) as live:  # a run still writing
        (live.path / "x").write_text("1")
        dry = prune_runs(out, 2, dry_run=True)
        assert dry.removed == [made[1], made[2], dead] and all(p.exists() for p in dry.removed)
        own = sum((p / "own.bin").stat().st_size for p in made[1:3])
        pruned = prune_runs(out, 2)
        assert pruned.removed == dry.removed and pruned.freed_bytes == dry.freed_bytes
        assert complete_runs(out) == [made[0], made[3], made[4]] and not dead.exists()
        assert live.path.is_dir()
        # freed: each pruned run's own file and metrics; the shared weights, asset, embeddings stay with kept runs
        assert own < pruned.freed_bytes < own + 4 * 10_000
    assert (out / "latest").resolve() == live.final_path.resolve()
    load_run(made[0])
    assert np.array_equal(np.load(made[3] / "embeddings" / "users.npy"), BIG.reshape(-1, 50))
    with pytest.raises(ConfigError, match="keep_last must be at least 1"):
        prune_runs(out, 0)


def test_keep_last_prunes_after_each_publish(tmp_path):
    out = tmp_path / "runs"
    made = [_write_run(out, run_id=i, keep_last=2).final_path for i in _ids(4)]
    assert complete_runs(out) == made[-2:]
    assert (out / "latest").resolve() == made[-1].resolve()
    assert load_run(out / "latest").users.height == 2


def test_prune_command(tmp_path, capsys):
    out = tmp_path / "runs"
    made = [_write_run(out, run_id=i).final_path for i in _ids(3)]
    assert main(["prune", "--output", str(out), "--keep-last", "1", "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert f"would remove {made[0]}" in said and f"would remove {made[1]}" in said and "would free" in said
    assert complete_runs(out) == made
    assert main(["prune", "--output", str(out), "--keep-last", "1"]) == 0
    said = capsys.readouterr().out
    assert f"removed {made[0]}" in said and "removed 2 folder(s), freed " in said and "kept 1 run(s)" in said
    assert complete_runs(out) == made[-1:]
    assert main(["prune", "--output", str(out)]) == 2
    assert "segflow prune needs --keep-last N" in capsys.readouterr().err
    assert main(["prune", "--output", str(out), "--set", "output.keep_last=1"]) == 0  # from the configuration


# ----------------------------------------------------------------------------------------------- task cache


def _cache(tmp_path: Path) -> Path:
    """A cache folder: 4 task results of 1000 bytes used 40, 30, 20, 10 days ago, an encoder, embeddings, data."""
    cache = tmp_path / "cache"
    now = time.time()
    for k, days in enumerate((40, 30, 20, 10)):
        f = cache / "prefect-results" / f"stage{k}-abc"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"r" * 1000)
        os.utime(f, (now - days * 86400, now - days * 86400))
    enc = cache / "encoders" / "finetuned-1"
    enc.mkdir(parents=True)
    (enc / "model.safetensors").write_bytes(b"e" * 500)
    os.utime(enc / "model.safetensors", (now - 35 * 86400, now - 35 * 86400))
    (cache / "embeddings" / "07db").mkdir(parents=True)
    (cache / "embeddings" / "07db" / "shard.npz").write_bytes(b"v" * 3000)
    os.utime(cache / "embeddings" / "07db" / "shard.npz", (now - 90 * 86400, now - 90 * 86400))
    (cache / "datasets" / "ml-100k").mkdir(parents=True)
    (cache / "datasets" / "ml-100k" / "u.data").write_bytes(b"d" * 5000)
    os.utime(cache / "datasets" / "ml-100k" / "u.data", (now - 400 * 86400, now - 400 * 86400))
    return cache


def test_clean_cache_by_size_removes_least_recently_used_first(tmp_path):
    cache = _cache(tmp_path)
    assert [e.path.name for e in cache_entries(cache)] == ["stage0-abc", "finetuned-1", "stage1-abc", "stage2-abc",
                                                           "stage3-abc"]  # fmt: skip
    done = clean_cache(cache, max_size=2000)
    assert [e.path.name for e in done.removed] == ["stage0-abc", "finetuned-1", "stage1-abc"]
    assert done.freed_bytes == 2500 and done.remaining_bytes == 2000
    assert sorted(p.name for p in (cache / "prefect-results").iterdir()) == ["stage2-abc", "stage3-abc"]
    assert not (cache / "encoders" / "finetuned-1").exists()
    assert (cache / "embeddings" / "07db" / "shard.npz").exists() and (
        cache / "datasets" / "ml-100k" / "u.data"
    ).exists()


def test_clean_cache_by_age_and_embeddings_only_when_asked(tmp_path):
    cache = _cache(tmp_path)
    dry = clean_cache(cache, older_than_days=25, dry_run=True)
    assert [e.path.name for e in dry.removed] == ["stage0-abc", "finetuned-1", "stage1-abc"]
    assert (cache / "prefect-results" / "stage0-abc").exists()
    clean_cache(cache, older_than_days=25)
    assert sorted(p.name for p in (cache / "prefect-results").iterdir()) == ["stage2-abc", "stage3-abc"]
    assert (cache / "embeddings" / "07db" / "shard.npz").exists()
    done = clean_cache(cache, older_than_days=25, embeddings=True)
    assert [e.path.name for e in done.removed] == ["shard.npz"]
    clean_cache(cache, max_size=0, embeddings=True)
    assert not list((cache / "prefect-results").iterdir())
    assert (cache / "datasets" / "ml-100k" / "u.data").read_bytes() == b"d" * 5000  # never the datasets


def test_clean_cache_command(tmp_path, capsys):
    cache = _cache(tmp_path)
    cfg = ["--set", f"cache_dir='{cache}'"]
    assert main(["clean", "--cache", *cfg, "--max-size", "2kB", "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert "would remove" in said and "stage0-abc" in said and "would free 2500 bytes" in said
    assert len(cache_entries(cache)) == 5
    assert main(["clean", "--cache", *cfg, "--older-than", "15"]) == 0
    said = capsys.readouterr().out
    assert "removed 4 entries, freed 3500 bytes" in said and "now takes 1000 bytes" in said
    assert main(["clean", "--cache", *cfg]) == 2
    assert "needs --max-size SIZE or --older-than DAYS" in capsys.readouterr().err
    assert main(["clean", "--cache", *cfg, "--max-size", "lots"]) == 2
    assert "--max-size 'lots' is not a size" in capsys.readouterr().err
    assert main(["clean", "--cache", *cfg, "--older-than", "-1"]) == 2
    assert "cannot be negative" in capsys.readouterr().err
    assert main(["clean", "--cache", *cfg, "--set", "cache.max_size='0'"]) == 0  # the configured bound
    assert cache_entries(cache) == []


def test_parse_size():
    assert parse_size("2GB") == 2 * 10**9 and parse_size("500MiB") == 500 * 2**20 and parse_size("1234") == 1234
    with pytest.raises(ConfigError, match="not a size"):
        parse_size("two gigs")


def test_stale_partials_are_still_found_after_linking(tmp_path):
    """Linking happens inside the partial folder before the rename: a killed run leaves only a stale partial."""
    out = tmp_path / "runs"
    good = make_published_run(out)
    dead = _dead_partial(out)
    assert stale_partials(out) == [dead]
    assert link_unchanged(dead, good).linked_files == 0
    assert complete_runs(out) == [good]
