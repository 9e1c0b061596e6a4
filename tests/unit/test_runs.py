"""Run folders appear whole or not at all; fingerprints change with content, not identity."""

import os

import numpy as np
import polars as pl
import pytest

from segmentation._errors import DataError
from segmentation.cache import fingerprint
from segmentation.config import PipelineConfig
from segmentation.runs import RunWriter, load_run, new_run_id


def test_publish_renames_and_points_latest(tmp_path):
    with RunWriter(tmp_path) as w:
        assert w.path.name.startswith(".partial-") and w.path.is_dir()
        (w.path / "x.txt").write_text("hi")
        assert not w.final_path.exists()
    assert (w.final_path / "x.txt").read_text() == "hi"
    assert os.readlink(tmp_path / "latest") == w.final_path.name
    with RunWriter(tmp_path) as w2:
        pass
    assert (tmp_path / "latest").resolve() == w2.final_path.resolve()


def test_failed_run_leaves_latest_and_no_partial(tmp_path):
    with RunWriter(tmp_path) as good:
        pass
    with pytest.raises(RuntimeError), RunWriter(tmp_path) as bad:
        (bad.path / "half.txt").write_text("...")
        raise RuntimeError("boom")
    assert (tmp_path / "latest").resolve() == good.final_path.resolve()
    assert not bad.path.exists() and not bad.final_path.exists()


def test_run_ids_sort_by_time_and_are_unique():
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50


def test_load_run_refuses_incomplete_folder(tmp_path):
    with pytest.raises(DataError, match="not a complete segflow run"):
        load_run(tmp_path)


def test_output_dir_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(DataError, match="not a folder"), RunWriter(tmp_path / "f"):
        pass


def test_fingerprint_follows_content():
    a = pl.DataFrame({"x": [1, 2, 3]})
    assert fingerprint(a) == fingerprint(pl.DataFrame({"x": [1, 2, 3]}))
    assert fingerprint(a) != fingerprint(pl.DataFrame({"x": [1, 2, 4]}))
    v = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert fingerprint(v) == fingerprint(v.copy()) != fingerprint(v + 1)
    assert fingerprint(PipelineConfig()) != fingerprint(PipelineConfig(seed=1))
    assert fingerprint(PipelineConfig().cluster, 1) != fingerprint(PipelineConfig().cluster, 2)
    # user vectors carry each user's interactions, which the outlier rules read: part of the content
    from embeddings.encoder import Embeddings

    ids = np.array(["a", "b"], dtype=object)
    assert fingerprint(Embeddings(ids, v, "m", np.array([3, 4]))) != fingerprint(
        Embeddings(ids, v, "m", np.array([3, 5]))
    )
    assert fingerprint(Embeddings(ids, v, "m")) == fingerprint(Embeddings(ids, v.copy(), "m"))


def test_fingerprint_reads_what_users_chose_by_category():
    """Two user-vector sets alike but for their category counts (items re-categorised, vectors not read from
    categories) must not share a cache key: the segment stage's split test reads the counts."""
    import scipy.sparse as sp

    from embeddings.encoder import Embeddings
    from segmentation.cache import fingerprint

    ids = np.array(["a", "b"], dtype=object)
    x = np.eye(2, dtype=np.float32)
    one = Embeddings(ids, x, "m", np.array([1, 2]), sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 2.0]])))
    other = Embeddings(ids, x, "m", np.array([1, 2]), sp.csr_matrix(np.array([[0.0, 1.0], [0.0, 2.0]])))
    same = Embeddings(ids, x, "m", np.array([1, 2]), sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 2.0]])))
    assert fingerprint(one) != fingerprint(other) and fingerprint(one) == fingerprint(same)
    assert fingerprint(Embeddings(ids, x, "m", np.array([1, 2]))) != fingerprint(one)
