"""Bounded disk through the real flow: one copy of each byte per run, hard links across unchanged reruns,
a run after the task cache was emptied recomputes, output.keep_last prunes, and the newest run stands alone."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from flows.pipeline import segflow_pipeline
from segmentation.cache import clean_cache
from segmentation.config import CacheConfig, OutputConfig, load_config
from segmentation.predict import SegmentedPredictor
from segmentation.runs import LINK_MIN_BYTES, complete_runs, load_run

pytestmark = [pytest.mark.umap, pytest.mark.usefixtures("prefect_harness")]

SLICE = ["data.max_users=200", "predictor.model='mf'", "predictor.mf.epochs=5", "evaluate.bootstrap=20"]


def _big_files(run: Path) -> dict[str, tuple[tuple[int, int], str]]:
    """Relative path -> ((device, inode), sha256) of every file that linking considers."""
    out = {}
    for p in sorted(run.rglob("*")):
        if p.is_file() and not p.is_symlink() and p.stat().st_size >= LINK_MIN_BYTES:
            st = p.stat()
            out[str(p.relative_to(run))] = ((st.st_dev, st.st_ino), hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def test_reruns_store_unchanged_bytes_once_and_survive_cache_cleaning_and_pruning(tmp_path, cache_dir, caplog):
    cache = tmp_path / "cache"  # a task cache of its own (emptied below); data and embeddings from the session's
    cache.mkdir()
    for name in ("datasets", "embeddings"):
        (cache_dir / name).mkdir(exist_ok=True)
        (cache / name).symlink_to(cache_dir / name, target_is_directory=True)
    out = tmp_path / "runs"
    cfg = load_config(None, SLICE + [f"output_dir='{out}'", f"cache_dir='{cache}'"])

    first = Path(segflow_pipeline(cfg))
    files = _big_files(first)
    by_inode = dict(files.values())
    assert len(set(by_inode.values())) == len(by_inode), "the same bytes stored twice in one run"
    assert not (first / "models" / "segments" / "global").exists()  # the segment models refer to models/global
    users = load_run(first).users

    second = Path(segflow_pipeline(cfg))  # every stage cached: the big artefacts are the same bytes
    again = _big_files(second)
    same = {rel for rel, (_, digest) in again.items() if rel in files and files[rel][1] == digest}
    assert {"models/global/weights.safetensors", "report/assets/plotly.min.js", "embeddings/items.npy",
            "index/items/index.faiss"} <= same  # fmt: skip
    for rel in same:
        assert again[rel][0] == files[rel][0], f"{rel}: unchanged but not a hard link of the previous run's"

    done = clean_cache(cache, max_size=0)  # the whole task cache goes; datasets and embeddings stay
    assert done.removed and not [p for p in (cache / "prefect-results").rglob("*") if p.is_file()]
    assert (cache / "datasets" / "ml-100k").exists()
    caplog.clear()
    bounded = cfg.model_copy(update={"output": OutputConfig(keep_last=2), "cache": CacheConfig(max_size=0)})
    third = Path(segflow_pipeline(bounded))
    messages = [r.getMessage() for r in caplog.records]
    assert any("cache: 0 of 10 cached stages reused" in m for m in messages), "a cleaned cache recomputes"
    assert any("cache.max_size = 0 bytes: removed" in m for m in messages), messages[-5:]
    assert not [
        p for p in (cache / "prefect-results").rglob("*") if p.is_file()
    ]  # cache.max_size applied after the run
    assert complete_runs(out) == [second, third]  # keep_last = 2 pruned the first run after publishing
    assert (out / "latest").resolve() == third.resolve()

    shutil.rmtree(second)  # the newest run stands alone once every other run is gone
    run = load_run(out / "latest")
    assert run.users.equals(users)
    item_ids, _ = run.item_vectors()
    pairs = pl.DataFrame({"user_id": run.users["user_id"].head(5), "item_id": item_ids[:5].tolist()})
    predicted = SegmentedPredictor.load(third / "models" / "segments").predict(pairs)
    assert predicted.shape == (5,) and np.isfinite(predicted).all()
