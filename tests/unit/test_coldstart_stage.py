"""The flow's cold-start stage: the validation gate keeps the segment prior where planted segments differ and
never on random segments; sparse users get the kept prior on test, everyone else the global model unchanged."""

import numpy as np
import polars as pl
import pytest

from segmentation.coldstart import cold_start_users
from segmentation.config import IndexConfig, MFConfig, PredictorConfig, RepresentConfig
from segmentation.data import Split, split_ratings
from segmentation.evaluate import evaluate_cold_start
from segmentation.predict import fit_global_predictor, random_partition
from tests.fixtures_coldstart import run_folder_with, segmentation_of, sparse_world

CONFIG = PredictorConfig(model="mf", refit=False, mf=MFConfig(embedding_size=16, epochs=40),
                         cold_start={"ks": [1, 3, 5], "gate_bootstrap": 300})  # fmt: skip
REPRESENT = RepresentConfig(method="item-mean+liked-category-hist", centre=False)  # as these tests were first written


@pytest.fixture(scope="module")
def world(ml100k):
    """1,500 planted users in 6 segments that differ in rating style and item taste; 150 test users cut to their
    first 2 train rows (the run's sparse users); item vectors from the categories (no encoder)."""
    w = sparse_world(ml100k.items, keep_rows=2)
    model = fit_global_predictor(w.split, CONFIG, item_embeddings=w.item_vectors, seed=0)
    return ml100k.items, w.split, w.item_vectors, model, w.truth, w.sparse


def _stage(world, labels: pl.DataFrame):
    items, split, emb, model, _, _ = world
    return cold_start_users(split, items, emb, segmentation_of(labels), model, CONFIG, REPRESENT, IndexConfig(), 0)


@pytest.fixture(scope="module")
def planted_run(world):
    return _stage(world, world[4])


def test_gate_keeps_the_segment_prior_where_planted_segments_differ(planted_run):
    rep = planted_run.report
    assert rep["ks"] == [1, 3, 5] and rep["simulated_users"] >= 200
    used = {k: d["used"] for k, d in rep["by_k"].items()}
    assert "segment" in used.values(), used
    for d in rep["by_k"].values():
        if d["used"] == "segment":  # kept only with both intervals below zero (Bonferroni level)
            assert d["segment_vs_global"]["ci"][1] < 0 and d["segment_vs_all_users"]["ci"][1] < 0
            assert rep["gate_level"] == pytest.approx(1 - 0.05 / 3)
        assert set(d["per_segment"]) <= {str(s) for s in range(6)}
        for s in d["per_segment"].values():
            assert s["used"] == (d["used"] == "segment")
            assert (s["ci"] is None) == (s["n_users"] < CONFIG.cold_start.min_users)


def test_gate_keeps_no_segment_prior_on_random_segments(world):
    rep = _stage(world, random_partition(world[4], seed=3)).report
    used = {k: d["used"] for k, d in rep["by_k"].items()}
    assert "segment" not in used.values(), used
    # the prior itself helps here (so a gate against the global model alone would keep the random segments)
    assert any(d["segment_vs_global"]["ci"][1] < 0 for d in rep["by_k"].values())


def test_sparse_users_get_the_kept_prior_and_everyone_else_is_unchanged(world, planted_run):
    _, split, _, model, _, sparse = world
    assert set(planted_run.sparse) == sparse and set(planted_run.sparse.values()) == {3}  # 2 rows: under k = 3
    assert planted_run.report["by_k"]["3"]["used"] == "segment"
    assert planted_run.predictor is not None and planted_run.predictor.users == sparse
    test = split.test
    full = ~test["user_id"].is_in(list(sparse)).to_numpy()
    p_global, p_cold = model.predict(test), planted_run.predictor.predict(test)
    np.testing.assert_array_equal(p_cold[full], p_global[full])  # users with full history: identical
    assert not np.allclose(p_cold[~full], p_global[~full])
    block = evaluate_cold_start(planted_run, test, model, n_boot=200, seed=0)["test"]
    assert block["n_users"] == len(sparse) and block["n_rows"] == int((~full).sum())
    assert block["rmse_cold_start"] < block["rmse_global"] and block["ci"][1] < 0
    assert block["by_k"]["3"]["n_users"] == len(sparse) and block["by_k"]["1"]["n_users"] == 0


def test_too_few_users_to_simulate_skips_with_the_reason(world):
    items, split, emb, model, truth, _ = world
    few = split_ratings(split.train_full.filter(pl.col("user_id").is_in(truth["user_id"].head(30).to_list())),
                        "random90", seed=0)  # fmt: skip
    out = cold_start_users(few, items, emb, segmentation_of(truth), model, CONFIG, REPRESENT, IndexConfig(), 0)
    assert out.predictor is None and "fewer than predictor.cold_start.min_users = 10" in out.report["skipped"]
    assert evaluate_cold_start(out, few.test, model)["skipped"] == out.report["skipped"]
    assert evaluate_cold_start(None, few.test, model) == {"skipped": "predictor.cold_start.enabled is false"}


def test_a_run_without_sparse_users_skips_the_gate_and_says_why(world):
    """No user at or under the largest k (MovieLens 100k: every user has 20 ratings or more): no prediction could
    change, so no model is fitted for the gate; the report says why."""
    items, split, emb, model, truth, sparse = world
    full = Split(split.train.filter(~pl.col("user_id").is_in(list(sparse))), split.valid, split.test, split.method)
    assert full.train_full.group_by("user_id").len()["len"].min() > 5
    out = cold_start_users(full, items, emb, segmentation_of(truth), model, CONFIG, REPRESENT, IndexConfig(), 0)
    assert out.predictor is None and out.report["sparse_users"] == 0 and "by_k" not in out.report
    assert out.report["skipped"].startswith("no user has 5 or fewer train ratings")


def test_the_gate_is_judged_on_at_most_gate_max_users(world):
    """At any size the gate's fits see a seeded sample of at most gate_max_users users: its cost does not grow."""
    items, split, emb, model, truth, _ = world
    cfg = CONFIG.model_copy(update={"cold_start": CONFIG.cold_start.model_copy(update={"gate_max_users": 600})})
    out = cold_start_users(split, items, emb, segmentation_of(truth), model, cfg, REPRESENT, IndexConfig(), 0)
    rep = out.report
    assert rep["warm_users"] > 1000 and rep["gate_users"] == 600 and rep["simulated_users"] == 120
    assert all(d["n_users"] == 120 for d in rep["by_k"].values())


def test_the_block_round_trips_through_the_run_folder_and_the_report_says_it(world, planted_run, tmp_path):
    import html
    import json

    from flows.artifacts import summary_markdown
    from reports import render_report
    from segmentation.run_folder import load_run_folder
    from segmentation.runs import json_safe

    _, split, _, model, _, _ = world
    block = json_safe(evaluate_cold_start(planted_run, split.test, model, n_boot=100, seed=0))
    run_dir, metrics = run_folder_with(block, tmp_path / "20260101-020000-aaaa")
    run = load_run_folder(run_dir)
    cs = run.cold_start
    assert cs is not None and cs.skipped is None and cs.ks == [1, 3, 5] and len(cs.gates) == 3
    gate3 = next(g for g in cs.gates if g.k == 3)
    assert gate3.used == "segment" and gate3.changes["segment_vs_all_users"][1][1] < 0
    assert gate3.test is not None and gate3.test["n_users"] == 150 and cs.covered_users == 150
    assert all(isinstance(s, int) for s in gate3.per_segment)

    index = html.unescape(render_report(run, tmp_path / "report").read_text())
    words = run.verdicts["cold_start"]
    assert "New and sparse users" in index and words["summary"] in index and words["test"] in index
    assert "the segment prior is used for k = " in words["summary"]
    assert (
        all(line in index for line in words["by_k"])
        and "Users with at most 3 train ratings: the segment prior" in index
    )
    seg_page = html.unescape((tmp_path / "report" / "segment-0.html").read_text())
    assert "New users placed here" in seg_page and words["segments"]["0"][0] in seg_page
    assert words["summary"] in summary_markdown(run_dir)

    # a run folder written before the stage existed still loads and renders, without the section
    old = {k: v for k, v in metrics.items() if k != "cold_start"}
    old["verdicts"] = {k: v for k, v in metrics["verdicts"].items() if k != "cold_start"}
    (run_dir / "metrics.json").write_text(json.dumps(old))
    run = load_run_folder(run_dir)
    assert run.cold_start is None and run.verdicts.get("cold_start") is None
    index = render_report(run, tmp_path / "old").read_text()
    assert (
        "New and sparse users" not in index
        and "New users placed here" not in (tmp_path / "old" / "segment-0.html").read_text()
    )
    assert "New and sparse users" not in summary_markdown(run_dir)


def test_the_runs_user_vectors_place_the_sparse_users_as_rebuilding_them_does(world, planted_run):
    """Given the represent stage's vectors (same train rows, same representation), the stage places the run's
    sparse users with them instead of building every user's vector again: the same predictions."""
    from segmentation.represent import build_user_vectors

    items, split, emb, model, truth, _ = world
    assert any(d["used"] == "segment" for d in planted_run.report["by_k"].values())
    vectors = build_user_vectors(split.train_full, emb, method=REPRESENT.method, items=items, seed=0)
    out = cold_start_users(split, items, emb, segmentation_of(truth), model, CONFIG, REPRESENT, IndexConfig(), 0,
                           user_vectors=vectors)  # fmt: skip
    np.testing.assert_array_equal(out.predictor.predict(split.test), planted_run.predictor.predict(split.test))


def test_placement_vectors_are_built_with_every_represent_setting_of_the_run(world, monkeypatch):
    """The stage builds its placement vectors with the run's whole ``represent`` section (method, centre,
    weights, evidence, category cap), as the represent stage built the run's user vectors (stopped at the first
    build: the rest of the stage is the other tests')."""
    import segmentation.represent as represent

    items, split, emb, model, truth, _ = world
    seen = []

    class Built(Exception):
        pass

    def spy(*args, **kwargs):
        seen.append(kwargs)
        raise Built

    monkeypatch.setattr(represent, "build_user_vectors", spy)
    given = RepresentConfig(method="item-mean+category-hist", centre=False, weights={"category-hist": 0.7},
                            evidence=None, max_categories=3)  # fmt: skip
    with pytest.raises(Built):
        cold_start_users(split, items, emb, segmentation_of(truth), model, CONFIG, given, IndexConfig(), 0)
    (kwargs,) = seen
    assert kwargs["method"] == "item-mean+category-hist" and kwargs["centre"] is False
    assert kwargs["weights"]["category-hist"] == 0.7 and kwargs["evidence"] is None
    assert kwargs["max_categories"] == 3 and kwargs["items"] is items
