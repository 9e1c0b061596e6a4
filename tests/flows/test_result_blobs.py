"""The task cache's data files: a stage's result pickled beside a small record, read back, cleaned with the record,
and a lost data file turned into a cache miss."""

import json
import os
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from prefect.filesystems import LocalFileSystem
from prefect.results import ResultStore
from prefect.serializers import PickleSerializer

from flows.result_blobs import BlobSerializer, drop_lost_record
from segmentation.cache import cache_entries, clean_cache, record_blob


def _store(cache: Path, serializer=None) -> ResultStore:
    folder = cache / "prefect-results"
    folder.mkdir(parents=True, exist_ok=True)
    return ResultStore(result_storage=LocalFileSystem(basepath=str(folder)),
                       serializer=serializer or BlobSerializer(folder=str(folder / "blobs")))  # fmt: skip


def _result(n: int = 5000):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 16)).astype(np.float32), pl.DataFrame({"user_id": [f"u{i}" for i in range(n)]})


def test_a_result_goes_to_a_data_file_and_the_record_keeps_a_pointer(tmp_path):
    store = _store(tmp_path)
    vectors, frame = _result()
    store.write((vectors, frame), key="represent-abc")
    record = tmp_path / "prefect-results" / "represent-abc"
    blob = record_blob(record)
    assert blob is not None and blob.parent == tmp_path / "prefect-results" / "blobs" and blob.is_file()
    assert record.stat().st_size < 1000 < blob.stat().st_size  # the record holds a pointer, the data file the pickle
    assert json.loads(json.loads(record.read_text())["result"])["bytes"] == blob.stat().st_size
    assert not list(blob.parent.glob(".*.partial"))
    got_vectors, got_frame = store.read("represent-abc").result
    assert np.array_equal(got_vectors, vectors) and got_frame.equals(frame)
    # Prefect's own serializer keeps the pickle (base64) inside the record: no data file, record_blob says so
    plain = _store(tmp_path, PickleSerializer())
    plain.write((vectors, frame), key="split-abc")
    assert record_blob(tmp_path / "prefect-results" / "split-abc") is None
    assert (tmp_path / "prefect-results" / "split-abc").stat().st_size > vectors.nbytes


def test_cleaning_counts_and_removes_a_record_with_its_data_file(tmp_path):
    store = _store(tmp_path)
    store.write(_result(), key="old-abc")
    store.write(_result(100), key="new-abc")
    folder = tmp_path / "prefect-results"
    old_blob, new_blob = record_blob(folder / "old-abc"), record_blob(folder / "new-abc")
    past = time.time() - 40 * 86400
    for p in (folder / "old-abc", old_blob):
        os.utime(p, (past, past))
    entries = {e.path.name: e for e in cache_entries(tmp_path)}
    assert sorted(entries) == ["new-abc", "old-abc"]  # the blobs folder is no entry of its own
    assert entries["old-abc"].size == (folder / "old-abc").stat().st_size + old_blob.stat().st_size
    assert entries["old-abc"].blob == old_blob
    done = clean_cache(tmp_path, older_than_days=30)
    assert [e.path.name for e in done.removed] == ["old-abc"]
    assert not old_blob.exists() and not (folder / "old-abc").exists() and new_blob.is_file()
    # a data file no record points to: kept while it may be a record's being written, removed once old
    orphan = folder / "blobs" / "0123.pkl"
    orphan.write_bytes(b"x" * 10)
    assert not [e for e in clean_cache(tmp_path, older_than_days=30).removed if e.path == orphan]
    os.utime(orphan, (past, past))
    assert [e.path for e in clean_cache(tmp_path, older_than_days=30).removed] == [orphan]
    assert not orphan.exists() and new_blob.is_file()


def test_a_record_whose_data_file_is_gone_becomes_a_cache_miss(tmp_path, caplog):
    store = _store(tmp_path)
    store.write(_result(), key="rank-abc")
    record = tmp_path / "prefect-results" / "rank-abc"
    assert not drop_lost_record(record) and record.exists()  # its data file is there: kept
    record_blob(record).unlink()
    with pytest.raises(FileNotFoundError):
        _store(tmp_path).read("rank-abc")  # what a new run would do with it: fail the stage
    assert drop_lost_record(record) and not record.exists() and not store.exists("rank-abc")
    assert any("rank-abc pointed to" in r.getMessage() and "computed again" in r.getMessage() for r in caplog.records)
    assert not drop_lost_record(tmp_path / "prefect-results" / "no-such-record")


def test_the_serializer_as_the_prefect_api_sends_it_back_validates_but_loads_nothing():
    """The API keeps only a serializer's type in a task run's state; the client must still validate that state
    (the flow failed with 'serializer.folder Field required' before the folder had a default)."""
    from prefect.serializers import Serializer

    bare = Serializer.model_validate({"type": "segflow-blob"})
    assert isinstance(bare, BlobSerializer) and bare.folder == ""
    with pytest.raises(ValueError, match="without its folder"):
        bare.loads(b'{"blob": "x.pkl"}')
    with pytest.raises(ValueError, match="needs the folder"):
        bare.dumps([1, 2])
