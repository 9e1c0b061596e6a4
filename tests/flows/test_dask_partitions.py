"""Per-user and per-item work as partitions on a Dask cluster: a LocalCluster of 2 worker processes (127.0.0.1, one
thread each) runs the blocks of each heavy step, both workers get some, and the results equal the in-process ones.

Which worker ran a block comes from the scheduler's task stream (``distributed.get_task_stream``): each block is a
task named after its partition function. No Prefect and no UMAP here (the flow's wiring is
``flows.tasks.on_cluster``, tested below on a worker as the flow runs it).
"""

import logging

import numpy as np
import polars as pl
import pytest

from embeddings.encoder import Embeddings, Encoder
from embeddings.partitions import Partitions
from segmentation.cluster import Clusterer, Segmentation
from segmentation.config import EvalConfig, RankerConfig
from segmentation.data import Dataset, Split
from segmentation.rank import make_ranker
from segmentation.rank.base import recommend_in_partitions
from segmentation.rank.stage import rank_test_users
from segmentation.represent import build_user_vectors

distributed = pytest.importorskip("distributed")

from flows._dask import _log_spread, dask_partitions  # noqa: E402  (needs distributed)
from flows.run_logs import library_logs_to_run  # noqa: E402
from flows.tasks import on_cluster  # noqa: E402

N_USERS, N_ITEMS = 300, 60


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:  # fmt: skip
        c.wait_for_workers(2)
        yield c


def _workers(stream: list[dict], fn_name: str) -> list[str]:
    """The worker of every finished task of ``fn_name`` (task keys start with the function's name)."""
    return [t["worker"] for t in stream if str(t["key"]).startswith(fn_name)]


def _data() -> tuple[pl.DataFrame, pl.DataFrame, Embeddings]:
    rng = np.random.default_rng(0)
    rows = [(f"u{u:03d}", f"i{i:02d}", float(rng.integers(1, 6)), 1_600_000_000 + k)
            for k, u in enumerate(range(N_USERS)) for i in rng.choice(N_ITEMS, 12, replace=False)]  # fmt: skip
    inter = pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "rating": pl.Float64,
                                       "timestamp": pl.Int64}, orient="row")  # fmt: skip
    items = pl.DataFrame({"item_id": [f"i{i:02d}" for i in range(N_ITEMS)],
                          "title": [f"Item {i}" for i in range(N_ITEMS)],
                          "categories": [[f"c{i % 5}", f"c{i % 7}"] for i in range(N_ITEMS)]})  # fmt: skip
    vectors = rng.normal(size=(N_ITEMS, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return inter, items, Embeddings(items["item_id"].to_numpy().astype(object), vectors, "random")


def test_user_vectors_are_built_in_blocks_on_both_workers_and_equal_the_in_process_ones(client):
    inter, items, emb = _data()
    method = "item-mean+liked-category-hist"
    here = build_user_vectors(inter, emb, method=method, items=items)
    with distributed.get_task_stream(client) as ts:
        there = build_user_vectors(inter, emb, method=method, items=items, partitions=dask_partitions(client, 64))
    ran = _workers(ts.data, "_weighted_mean")
    assert len(ran) == 5 and len(set(ran)) == 2, ran  # 300 users in blocks of 64, over both workers
    assert np.array_equal(there.ids, here.ids) and np.array_equal(there.vectors, here.vectors)


def test_users_outside_the_sample_are_assigned_in_blocks_on_both_workers(client):
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=6.0, size=(3, 5))
    x = np.vstack([c + rng.normal(size=(200, 5)) for c in centres]).astype(np.float32)
    sample = np.sort(rng.choice(len(x), 240, replace=False))
    here = Clusterer(30, random_state=0).fit(x, sample=sample)
    with distributed.get_task_stream(client) as ts:
        there = Clusterer(30, random_state=0).fit(x, sample=sample, partitions=dask_partitions(client, 50))
    ran = _workers(ts.data, "_assign_block")
    assert len(ran) == 8 and len(set(ran)) == 2, ran  # 360 users outside the sample in blocks of 50
    assert here.n_segments_ == 3
    for attr in ("labels_", "probabilities_", "soft_", "soft_assigned_"):
        assert np.array_equal(getattr(there, attr), getattr(here, attr)), attr


@pytest.mark.parametrize("name", ["segflow", "als"])
def test_top_k_lists_are_scored_in_blocks_on_both_workers_and_equal_one_call(client, name):
    inter, items, emb = _data()
    ranker = make_ranker(name, RankerConfig()).fit(inter, items=items, item_embeddings=emb, seed=0)
    users = [*inter["user_id"].unique().sort().to_list(), "someone new"]
    here = ranker.recommend(users, 10, exclude_seen=True)
    with distributed.get_task_stream(client) as ts:
        there = recommend_in_partitions(ranker, users, 10, partitions=dask_partitions(client, 70))
    ran = _workers(ts.data, "_recommend_block")
    assert len(ran) == 5 and len(set(ran)) == 2, ran
    assert there.equals(here)


def test_texts_are_embedded_in_chunks_on_both_workers_as_in_process(client):
    texts = [f"item {i}: " + "a story about a lighthouse keeper " * (i % 4) + f"number {i}" for i in range(30)]
    here = Encoder(device="cpu", threads=1, chunk_texts=8).encode(texts)
    enc = Encoder(device="cpu", threads=1, chunk_texts=8, partitions=dask_partitions(client, 8))
    with distributed.get_task_stream(client) as ts:
        there = enc.encode(texts)
    ran = _workers(ts.data, "encode_chunk")
    assert len(ran) == 4 and len(set(ran)) == 2, ran
    assert enc.device_used == "cpu" and enc.stats["embedded"] == 30
    assert np.array_equal(there, here)


def test_a_stage_on_a_worker_sends_its_blocks_to_the_whole_cluster(client, caplog):
    """As the flow runs a stage on Dask (``flows.tasks.on_cluster``): the stage is a task on one worker, and its
    blocks run on both, that worker included (the stage's thread secedes while it waits)."""
    inter, items, emb = _data()
    split = Split(inter, inter.head(0), inter.group_by("user_id").head(1), "random90")
    seg = Segmentation(inter.select("user_id").unique().sort("user_id").with_columns(segment_id=pl.lit(0, pl.Int32)),
                       np.zeros((N_USERS, 2), np.float32), 1, 5, {})  # fmt: skip
    dataset = Dataset(inter, items, None, "tiny")
    config = RankerConfig(rankers=["most-popular", "segflow"])
    args = (split, dataset, emb, seg, config, EvalConfig(k=5), 0)
    here = rank_test_users(*args)
    with distributed.get_task_stream(client) as ts:
        # every parameter given, partitions=None included, as Prefect's task engine calls a stage
        there = client.submit(on_cluster(rank_test_users, 64), *args, None, pure=False).result()
    stage = _workers(ts.data, "rank_test_users")
    ran = _workers(ts.data, "_recommend_block")
    assert len(stage) == 1 and len(set(ran)) == 2 and stage[0] in ran, (stage, ran)
    with caplog.at_level(logging.INFO, logger="flows._dask"):
        _log_spread(ts.data)  # what the stage logs (in the worker's process) from the same task stream
    assert f"{len(ran)} blocks of _recommend_block ran on 2 Dask workers" in caplog.text
    assert there.by_segment == here.by_segment
    assert all(there.recs[n].equals(here.recs[n]) for n in here.recs)


def test_a_stage_outside_a_dask_worker_runs_its_blocks_in_process():
    seen = []

    def stage(x, partitions=None):
        seen.append(partitions)
        return x

    assert on_cluster(stage, 64)(3) == 3 and on_cluster(stage, 64)(4, None) == 4 and seen == [None, None]


def test_partitions_cut_rows_and_refuse_empty_blocks():
    assert Partitions(rows=3).blocks(7) == [(0, 3), (3, 6), (6, 7)] and Partitions().blocks(0) == []
    with pytest.raises(ValueError, match="at least 1"):
        Partitions(rows=0)


def test_library_logs_outside_a_run_do_not_warn_about_the_api(recwarn):
    """A block on a Dask worker logs outside any run (e.g. the encoder loading there): no API warning per record."""
    library_logs_to_run()
    logging.getLogger("embeddings.encoder").info("loaded encoder on a worker")
    assert not [str(w.message) for w in recwarn if "without a flow run id" in str(w.message)]
