"""The whole flow on a slice of MovieLens 100k under Prefect's test harness."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from prefect.artifacts import Artifact
from prefect.exceptions import ParameterTypeError

from flows.cli import main
from flows.pipeline import segflow_pipeline
from segmentation.config import load_config
from segmentation.data import load_dataset, split_ratings
from segmentation.describe import SEGMENTS
from segmentation.runs import load_run

pytestmark = [pytest.mark.umap, pytest.mark.usefixtures("prefect_harness")]

# The same tiny configuration as tests/server (TINY), so that the server tests find every stage in the cache.
SLICE = ["data.max_users=200", "predictor.model='mf'", "predictor.mf.epochs=5", "evaluate.bootstrap=20"]


def _artifact(key: str):
    """The latest artifact ``key``; _sync: an event loop left running in this thread (e.g. by a session-wide
    Playwright) would otherwise make Prefect hand back a coroutine."""
    return Artifact.get(key, _sync=True)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("project") / "runs"  # the layout check_outputs.py expects
    cfg = load_config(None, SLICE + [f"output_dir='{out}'", f"cache_dir='{cache_dir}'"])
    t0 = time.perf_counter()
    path = Path(segflow_pipeline(cfg))
    return cfg, out, path, time.perf_counter() - t0


def test_run_folder_contract(first_run):
    cfg, out, path, _ = first_run
    assert (out / "latest").resolve() == path.resolve()
    for f in ["config.toml", "manifest.json", "users.parquet", "segments.parquet", "metrics.json",
              "report/index.html", "index/items/index.faiss", "index/users/index.faiss",
              "models/global/manifest.json", "embeddings/items.npy"]:  # fmt: skip
        assert (path / f).exists(), f
    assert not list(out.glob(".partial-*"))
    run = load_run(out / "latest")
    # the CPU the floats came from (segments near a tie move with a last-bit difference between CPU models)
    assert run.manifest["machine"]["cores"] == os.cpu_count() and run.manifest["machine"]["arch"]
    assert run.manifest["machine"]["cpu"] is None or run.manifest["machine"]["cpu"].strip()
    m = run.metrics
    for section in ["data", "segmentation", "rating", "ranking", "beyond_accuracy", "timings"]:
        assert section in m, section
    assert isinstance(m["segmentation"]["n_segments"], int) and m["segmentation"]["n_segments"] >= 2
    # the model must beat predicting the train mean on the same test rows (a check that fails if fitting breaks)
    split = split_ratings(load_dataset(cfg.data, cfg.cache_dir).interactions, cfg.data.split, seed=cfg.seed)
    y = split.test["rating"].to_numpy()
    mean_rmse = float(np.sqrt(np.mean((y - split.train_full["rating"].mean()) ** 2)))
    assert m["rating"]["global"]["rmse"] < mean_rmse - 0.02, (m["rating"]["global"]["rmse"], mean_rmse)
    assert isinstance(m["rating"]["segmented"]["rmse"], float)
    assert m["data"]["n_users"] == 200
    # ranking is scored on every test user (200 users: far under evaluate.ranking_max_users), and metrics.json says so
    sample = m["ranking_sample"]
    assert sample["sampled"] is False
    assert sample["n_users"] == sample["n_test_users"] == split.test["user_id"].n_unique()
    users = run.users
    assert users.height == 200 and users["user_id"].n_unique() == 200
    assert set(run.segments["segment_id"].to_list()) == set(users["segment_id"].to_list())
    # per-segment stability (clusterwise Jaccard): in segments.parquet and metrics.json, none for outliers
    assert run.segments.schema == SEGMENTS
    per = m["segmentation"]["stability"]["per_segment"]
    stab = dict(zip(run.segments["segment_id"].to_list(), run.segments["stability"].to_list()))
    assert sorted(per) == sorted(str(s) for s in stab if s != -1) and stab.get(-1) is None
    for sid, entry in per.items():
        assert entry["jaccard"] == stab[int(sid)] and 0 <= entry["min"] <= entry["jaccard"] <= 1
        assert entry["n_refits"] == 4  # 2 other seeds + 2 subsamples, the stability stage's defaults
    # the agreed output-contract checker (a copy kept in tests/contract, checked against shared/ when it is there)
    checker = Path(__file__).resolve().parents[1] / "contract" / "check_outputs.py"
    proc = subprocess.run([sys.executable, str(checker)], cwd=out.parent, capture_output=True, text=True)
    assert proc.returncode == 0 and "runs/latest" in proc.stdout, proc.stdout


def test_report_command_renders_the_published_pages_again(first_run, tmp_path, capsys):
    """`segflow report RUN_DIR` reads the run folder alone and gives back the published pages byte for byte."""
    _, _, path, _ = first_run
    assert main(["report", str(path), "--out", str(tmp_path / "again")]) == 0
    assert "Report:" in capsys.readouterr().out
    published = sorted(p.name for p in (path / "report").glob("*.html"))
    assert published and published == sorted(p.name for p in (tmp_path / "again").glob("*.html"))
    for name in published:
        assert (path / "report" / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_artifacts_published(first_run):
    _, _, path, _ = first_run
    assert path.name in _artifact("segflow-summary").data
    table = json.loads(_artifact("segflow-segments").data)
    assert table and {"segment", "name", "size"} <= set(table[0])
    assert "report/index.html" in _artifact("segflow-report").data
    assert "first complete run" in _artifact("segflow-comparison").data  # nothing to compare with yet


def test_rerun_hits_the_cache_and_reproduces(first_run, caplog):
    cfg, out, path, first_seconds = first_run
    t0 = time.perf_counter()
    again = Path(segflow_pipeline(cfg))
    seconds = time.perf_counter() - t0
    assert again != path and (out / "latest").resolve() == again.resolve()
    a, b = load_run(path), load_run(again)
    assert a.users.equals(b.users)
    assert a.segments.equals(b.segments)
    assert a.metrics["rating"] == b.metrics["rating"]
    assert b.metrics["timings"]["embedding"]["embedded"] == 0
    assert seconds < first_seconds
    assert any("cache: 10 of 10 cached stages reused" in r.getMessage() for r in caplog.records), "cache hits logged"
    comparison = _artifact("segflow-comparison").data  # compared with the previous run in the same output_dir
    assert f"Previous run `{path.name}`, this run `{again.name}`" in comparison
    # identical runs: every user keeps their segment (outliers stay outliers), so the labelings agree exactly
    assert "Segment matching" in comparison and "(adjusted Rand index 1.00)" in comparison
    assert "No metric changed" in comparison


def test_other_task_runner_runs_the_stages_in_a_subflow(first_run, caplog):
    """orchestration changes how stages run, never their cache keys: one stage at a time, all from the cache."""
    cfg, out, _, _ = first_run
    sequential = cfg.model_copy(update={"orchestration": cfg.orchestration.model_copy(update={"max_workers": 1})})
    state = segflow_pipeline(sequential, return_state=True)
    assert state.is_completed()
    messages = [r.getMessage() for r in caplog.records]
    assert any("Beginning subflow run" in m and "segflow-stages" in m for m in messages), messages[:20]
    assert any("cache: 10 of 10 cached stages reused" in m for m in messages)


def test_a_large_index_waits_on_disk_and_the_run_folder_gets_it(first_run, monkeypatch, caplog):
    """An index over more than index.approximate_above vectors is written out during the run (not held in memory
    until publish), copied into the run folder, and its spill folder is gone when the run ends."""
    import flows.pipeline as pipeline

    cfg, out, _, _ = first_run
    real = pipeline.build_indexes
    # a limit of 50 for the index stage only (index is an uncached stage; the cached stages' keys stay the same)
    monkeypatch.setattr(pipeline, "build_indexes", lambda items, users, seg, index, spill: real(
        items, users, seg, index.model_copy(update={"approximate_above": 50}), spill))  # fmt: skip
    path = Path(segflow_pipeline(cfg))
    said = [r.getMessage() for r in caplog.records]
    spilled = [m for m in said if "the users index (200 vectors) written to" in m]
    assert spilled and str(Path(cfg.cache_dir)) in spilled[0]
    assert json.loads((path / "index" / "users" / "manifest.json").read_text())["kind"] == "hnsw"
    assert load_run(path).users.height == 200
    from embeddings.index import VectorIndex

    assert len(VectorIndex.load(path / "index" / "users").similar(load_run(path).users["user_id"][0], 5)) == 5
    assert not list(Path(cfg.cache_dir).glob("index-spill-*"))


def test_bad_parameters_are_refused():
    with pytest.raises(ParameterTypeError, match="min_cluster_size"):
        segflow_pipeline(config={"cluster": {"min_cluster_size": 0}})


def test_cli_bad_input_exits_2_without_traceback(tmp_path, cache_dir, capsys, first_run):
    _, out, path, _ = first_run
    latest_before = (out / "latest").resolve()
    (tmp_path / "r.csv").write_text("user_id,item_id,rating\n1,a,five\n")
    (tmp_path / "i.csv").write_text("item_id,title\na,Alpha\n")
    code = main(["run", "--ratings", str(tmp_path / "r.csv"), "--items", str(tmp_path / "i.csv"), "--time-col", "",
                 "--output", str(out), "--set", f"cache_dir='{cache_dir}'"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "r.csv" in err and "row 1 has 'five'" in err and "Traceback" not in err
    assert (out / "latest").resolve() == latest_before
    assert not list(out.glob(".partial-*"))


def test_cli_config_prints_effective_toml(capsys):
    assert main(["config", "--set", "seed=7"]) == 0
    assert "seed = 7" in capsys.readouterr().out


def test_assign_places_users_in_the_runs_segments_from_a_file(first_run, tmp_path, capsys):
    """``segflow assign``: the run's users, from the train rows the run saw, get the run's vectors bit for bit
    (the run's user space: its representation, category columns and mean user) and the segment their own
    neighbours give; users the run never saw are placed; a user with no item the run knows gets -1."""
    import polars as pl

    from embeddings.encoder import Embeddings
    from segmentation._errors import DataError
    from segmentation.represent import UserSpace, place_in_space

    cfg, out, path, _ = first_run
    split = split_ratings(load_dataset(cfg.data, cfg.cache_dir).interactions, cfg.data.split, seed=cfg.seed)
    run = load_run(path)
    ids, vectors = run.user_vectors()
    item_ids, item_vectors = run.item_vectors()
    some = sorted(split.train_full["user_id"].unique().to_list())[:30]
    train = split.train_full.filter(pl.col("user_id").is_in(some))
    placed = place_in_space(UserSpace.load(path / "embeddings"), train, Embeddings(item_ids, item_vectors, "run"))
    row = {u: i for i, u in enumerate(ids.tolist())}
    np.testing.assert_array_equal(placed.vectors, vectors[[row[u] for u in placed.ids]])
    # repeated (user, item) rows collapse as the run's loader collapsed them (the latest kept): the same placement
    assert run.place_users(pl.concat([train, train.head(5)])).equals(run.place_users(train))
    # a frame of ids and ratings alone will do; one without the ids is an error naming what is expected
    assert run.place_users(train.drop("timestamp")).equals(run.place_users(train))
    # without ratings every rating reads 1: their levels say nothing, so a move by choices reads the categories alone
    unrated, rated = run.place_users(train.drop("rating")), run.place_users(train)
    assert unrated["user_id"].equals(rated["user_id"]) and (unrated["nearest_segment"] >= 0).all()
    with pytest.raises(DataError, match=r"no column \['user_id'\]; expected user_id, item_id"):
        run.place_users(train.rename({"user_id": "user"}))
    # the file, in the run's own column names; new users are ML-100k users outside the run's 200
    everyone = load_dataset(cfg.data.model_copy(update={"max_users": None}), cfg.cache_dir).interactions
    new = everyone.filter(~pl.col("user_id").is_in(ids.tolist())).filter(
        pl.col("user_id").is_in(everyone["user_id"].unique().sort().to_list()[-400:])
    )  # fmt: skip
    new_ids = new["user_id"].unique().sort().to_list()[:20]
    ghost = pl.DataFrame({"user_id": ["ghost"], "item_id": ["no-such-item"], "rating": [4.0], "timestamp": [0]},
                         schema=train.schema)  # fmt: skip
    pl.concat([train, new.filter(pl.col("user_id").is_in(new_ids)), ghost]).write_csv(tmp_path / "new.csv")
    assert main(["assign", str(path), "--ratings", str(tmp_path / "new.csv"), "--out", str(tmp_path / "a.csv")]) == 0
    got = pl.read_csv(tmp_path / "a.csv", schema_overrides={"user_id": pl.String})
    outliers = got.filter((pl.col("segment_id") < 0) & (pl.col("nearest_segment") >= 0))
    assert f"Placed {50 - outliers.height} of 51 users" in capsys.readouterr().out
    assert got.columns == ["user_id", "segment_id", "segment", "nearest_segment", "confidence", "interactions",
                           "known_interactions"]  # fmt: skip
    assert got.height == 51 and set(new_ids) <= set(got["user_id"].to_list())
    segments = set(run.segments.filter(pl.col("segment_id") >= 0)["segment_id"].to_list())
    seen = got.filter(pl.col("user_id") != "ghost")
    assert set(seen["nearest_segment"].to_list()) <= segments and seen["confidence"].min() > 0
    assert set(seen["segment_id"].to_list()) <= segments | {-1}
    names = dict(zip(run.segments["segment_id"].to_list(), run.segments["name"].to_list()))
    assert outliers["segment"].to_list() == [f"outlier; nearest: {names[s]}" for s in outliers["nearest_segment"]]
    # the run's own users: the vote of their neighbours, which include themselves, mostly agrees with the run; the
    # run's outlier rule, kept in the run folder, mostly makes the same of them as the run did
    truth = dict(zip(run.users["user_id"].to_list(), run.users["nearest_segment"].to_list()))
    agree = np.mean([truth[u] == s for u, s in zip(seen["user_id"], seen["nearest_segment"]) if u in truth])
    assert agree >= 0.8, agree
    was_outlier = dict(zip(run.users["user_id"].to_list(), (run.users["segment_id"] < 0).to_list()))
    own = seen.filter(pl.col("user_id").is_in(list(truth)))
    assert np.mean([was_outlier[u] == (s < 0) for u, s in zip(own["user_id"], own["segment_id"])]) >= 0.8
    assert got.filter(pl.col("user_id") == "ghost").row(0, named=True) == {
        "user_id": "ghost", "segment_id": -1, "segment": "none: no item the run knows", "nearest_segment": -1,
        "confidence": 0.0, "interactions": 1, "known_interactions": 0}  # fmt: skip


def test_assign_bad_input_exits_2_naming_the_file(first_run, tmp_path, capsys):
    _, _, path, _ = first_run
    (tmp_path / "unknown.csv").write_text("user_id,item_id,rating\nu1,no-such-item,4\n")
    (tmp_path / "nocol.csv").write_text("user_id,item_id\nu1,1\n")
    (tmp_path / "bad.csv").write_text("user_id,item_id,rating\nu1,1,five\n")
    for name, expected in (("unknown.csv", "none of the 1 interactions is with an item of the run"),
                           ("nocol.csv", "rating"), ("bad.csv", "row 1 has 'five'")):  # fmt: skip
        code = main(["assign", str(path), "--ratings", str(tmp_path / name), "--out", str(tmp_path / "a.csv")])
        err = capsys.readouterr().err
        assert code == 2 and name in err and expected in err and "Traceback" not in err, err
        assert not (tmp_path / "a.csv").exists()
    assert main(["assign", str(tmp_path), "--ratings", str(tmp_path / "bad.csv")]) == 2
    assert "is not a complete segflow run folder" in capsys.readouterr().err
    (tmp_path / "good.csv").write_text("user_id,item_id,rating\nu1,1,4\n")
    for flags, expected in ((["--rating-col", ""], "the run was fitted on ratings, the flags read implicit feedback"),
                            (["--weight-col", "plays"], "are both set"),
                            (["--neighbours", "0"], "at least 1 of the run's users must vote"),
                            (["--out", str(tmp_path)], "cannot write it")):  # fmt: skip
        code = main(["assign", str(path), "--ratings", str(tmp_path / "good.csv"), *flags])
        err = capsys.readouterr().err
        assert code == 2 and expected in err and "Traceback" not in err, (flags, err)
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}.partial"))  # the --out directory case cleaned up
    # a damaged outlier rule in a copy of the run: exit 2 naming the file, nothing written
    damaged = tmp_path / "damaged-run"
    shutil.copytree(path, damaged, symlinks=True)
    (damaged / "embeddings" / "segment_envelopes.npz").write_bytes(b"truncated")
    code = main(["assign", str(damaged), "--ratings", str(tmp_path / "good.csv"), "--out", str(tmp_path / "a.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "segment_envelopes.npz cannot be read" in err and "Traceback" not in err, err
    assert not (tmp_path / "a.csv").exists()
