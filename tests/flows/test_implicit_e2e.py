"""Implicit feedback end to end: a listening log through the CLI and the flow (issue 17).

The data is shaped like Last.fm's ``user_artists.dat`` + ``artists.dat`` (tab-separated, quotes left in the names
as they are; 2,000 users, 12,000 artists, about 55,000 user-artist pairs with long-tailed play counts in a weight
column, no timestamps, no categories), drawn by
``segmentation.synthetic.synthetic_log``. The command is the one a user ran (README's column flags and
``--rating-col ''``, plus ``--weight-col weight``), with settings that keep it to a few minutes here: dense rankers on the 2,000 most popular
artists, two rankers, no stability refits.

The first run is made to fail in its last compute stage (evaluation) with an unexpected error, after every
expensive stage finished; the rerun must resume from the cached stages and publish.
"""

import contextlib
import io
import json
from pathlib import Path

import polars as pl
import pytest

from flows import pipeline
from flows.cli import main
from segmentation.runs import load_run
from segmentation.synthetic import synthetic_log

pytestmark = [pytest.mark.umap, pytest.mark.usefixtures("prefect_harness")]

FAST = ["ranker.max_items=2000", "ranker.rankers=['most-popular','segflow']", "evaluate.stability_seeds=0",
        "evaluate.stability_subsamples=0", "evaluate.bootstrap=50", "cluster.selection_resamples=2"]  # fmt: skip


@pytest.fixture(scope="module")
def listening_log(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("lastfm")
    log = synthetic_log(2_000, 12_000, mean_per_user=30, feedback="implicit", seed=3)
    files = log.write(folder, fmt="dat", timestamps=False)
    assert '"' in files["items"].read_text(encoding="utf-8")  # raw quotes, as in Last.fm's artists.dat
    assert any('"' in n for n in log.items["name"]), "the catalogue must carry names with quotes"
    return files


def _argv(files: dict[str, Path], out: Path, cache: Path) -> list[str]:
    return ["run", "--ratings", str(files["ratings"]), "--items", str(files["items"]), "--user-col", "userID",
            "--item-col", "artistID", "--rating-col", "", "--weight-col", "weight", "--time-col", "", "--item-id-col", "id", "--title-col",
            "name", "--category-col", "", "--output", str(out),
            "--set", f"cache_dir='{cache}'", *(a for s in FAST for a in ("--set", s))]  # fmt: skip


@pytest.fixture(scope="module")
def implicit_runs(listening_log, tmp_path_factory):
    """A first run that fails in evaluation (unexpected error), then the rerun; returns what each left."""
    root = tmp_path_factory.mktemp("implicit")
    out, cache = root / "runs", root / "cache"
    argv = _argv(listening_log, out, cache)
    real = pipeline.evaluate_run

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation broke after the long stages (planted by the test)")

    pipeline.evaluate_run = broken
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            first = main(argv)
    finally:
        pipeline.evaluate_run = real
    store = cache / "prefect-results"
    after_failure = {p.name for p in store.iterdir()} if store.exists() else set()
    second = main(argv)
    after_rerun = {p.name for p in store.iterdir()}
    return {"first": first, "first_stderr": err.getvalue(), "second": second, "out": out,
            "after_failure": after_failure, "after_rerun": after_rerun}  # fmt: skip


def test_failed_run_publishes_nothing_and_keeps_finished_stages(implicit_runs):
    assert implicit_runs["first"] == 1  # an unexpected error: exit 1, as for any bug
    stderr = implicit_runs["first_stderr"]
    assert "RuntimeError: evaluation broke" in stderr and "Traceback" in stderr  # a bug shows where it happened
    assert "Nothing was published" in stderr and "a rerun with the same data and configuration resumes" in stderr
    cached = {name.rsplit("-", 1)[0] for name in implicit_runs["after_failure"]}
    for stage in ("split", "represent", "segment", "describe", "rank"):
        assert stage in cached, f"stage {stage!r} was not kept in the cache after the failure: {sorted(cached)}"
    assert "evaluate" not in cached


def test_rerun_resumes_from_the_cache_and_publishes(implicit_runs):
    assert implicit_runs["second"] == 0
    new = implicit_runs["after_rerun"] - implicit_runs["after_failure"]
    new_stages = {name.rsplit("-", 1)[0] for name in new}
    assert new_stages == {"evaluate"}, f"the rerun recomputed more than the failed stage: {sorted(new_stages)}"
    out: Path = implicit_runs["out"]
    assert (out / "latest" / "report" / "index.html").is_file()
    assert not list(out.glob(".partial-*"))


def test_implicit_metrics_have_no_rating_model_and_rank_every_held_out_item(implicit_runs):
    run = load_run(implicit_runs["out"] / "latest")
    m = run.metrics
    assert m["data"]["implicit"] is True
    assert m["data"]["rating_mean"] > 2.0  # the play counts arrived as weights, not as 1.0
    assert set(m["rating"]) == {"skipped"} and "implicit feedback" in m["rating"]["skipped"]
    assert m["models"]["global"] is None and m["models"]["segments"] == []
    assert not (implicit_runs["out"] / "latest" / "models").exists()
    n_test_users = m["data"]["n_test_users"]
    for name in ("most-popular", "segflow"):
        r = m["ranking"][name]
        # every test user has a relevant item when every held-out interaction counts
        assert r["n_users"] == n_test_users
        assert 0.0 < r["ndcg@10"] < 1.0
    assert m["ranking"]["segflow"]["ndcg@10"] > m["ranking"]["most-popular"]["ndcg@10"]
    assert m["segmentation"]["n_segments"] >= 2
    # new and sparse users (90 users with 5 or fewer interactions): no rating prior, the lists' gate runs
    cs = m["cold_start"]
    assert "implicit feedback" in cs["rating_skipped"] and "by_k" not in cs and cs["sparse_users"] > 0
    r = cs["ranking"]
    assert r["primary"] == "segflow" and r["relevance"] == "every held-out interaction"
    assert set(r["by_k"]) == {"1", "3", "5"} and all(d["used"] in ("segment", "popularity", "primary")
                                                      for d in r["by_k"].values())  # fmt: skip
    assert r["test"]["n_users"] > 0


def test_implicit_segments_and_report_speak_of_choices_not_ratings(implicit_runs):
    path = implicit_runs["out"] / "latest"
    segments = pl.read_parquet(path / "segments.parquet")
    for text in segments["description"]:
        assert "They rate" not in text and "items each" in text and "mean weight" in text
    assert not any("critics" in n or "generous" in n for n in segments["name"])
    index = (path / "report" / "index.html").read_text()
    assert "implicit feedback" in index
    assert "RMSE" not in index
    assert "New and sparse users" in index and "Top-10 lists: " in index


def test_show_states_the_implicit_case(implicit_runs, capsys):
    assert main(["show", str(implicit_runs["out"] / "latest")]) == 0
    text = capsys.readouterr().out
    assert "implicit feedback" in text and "RMSE" not in text
    assert "Top-10 lists: " in text  # the cold-start lists' decision
    assert json.loads((implicit_runs["out"] / "latest" / "metrics.json").read_text())["rating"]["skipped"]
