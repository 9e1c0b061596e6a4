"""benchmarks/patience.py: the recoveries it finds, where its replay stops, and the stored evidence behind the
default of ``patience_ratings``."""

import json
from pathlib import Path

import pytest
from bench_loader import load_benchmark

from segmentation.config.predictor import PATIENCE_RATINGS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("patience")


def test_a_recovery_is_a_new_best_after_epochs_without_one(bench):
    # epoch 0 (before training) 1.0; bests at 1, 2; 3 and 4 worse; 5 a new best after 2 epochs without; 6 worse
    valid = [1.0, 0.9, 0.8, 0.85, 0.81, 0.79, 0.8]
    assert bench.recoveries(valid, 100) == [
        {"epoch": 5, "previous_best": 2, "epochs_without": 2, "ratings_without": 200, "gain": 0.01}
    ]
    assert bench.recoveries([1.0, 0.9, 0.8, 0.7], 100) == []


def test_replay_stops_where_early_stopping_would(bench):
    valid = [1.0, 0.9, 0.8, 0.85, 0.81, 0.79, 0.8, 0.82, 0.83, 0.84, 0.85, 0.86]
    long = bench.replay(valid, 100, 5, None)  # patience alone: 5 epochs past the best epoch 5
    assert (long["stop_epoch"], long["best_epoch"], long["regret"], long["epochs_saved"]) == (10, 5, 0.0, 1)
    # a bound of 200 ratings stops 2 epochs past epoch 2, before the recovery at epoch 5
    short = bench.replay(valid, 100, 5, 200)
    assert (short["stop_epoch"], short["best_epoch"], short["valid_rmse"]) == (4, 2, 0.8)
    assert short["regret"] == pytest.approx(0.01) and short["epochs_saved"] == 7
    assert bench.replay(valid, 100, 5, 300)["best_epoch"] == 5  # 3 epochs' ratings: it waits for the recovery


def test_the_default_bound_stops_no_tuning_fit_before_its_best_epoch():
    stored = json.loads((ROOT / "benchmarks" / "results" / "patience.json").read_text())
    rows = stored["rows"]
    assert {r["model"] for r in rows} == {"svdpp", "mf"} and len({r["world"] for r in rows}) >= 6
    assert all(r["world"].split(",")[0] in {"taste", "style", "light"} for r in rows)  # tuning worlds only
    assert PATIENCE_RATINGS > stored["longest_recovery_ratings"]
    for r in rows:
        by_bound = {e["bound"]: e for e in r["replay"]}
        alone = by_bound[None]  # patience = 5 epochs alone
        assert alone["regret"] >= 0.0 and alone["stop_epoch"] == alone["best_epoch"] + 5 <= r["epochs"]
        default = by_bound[PATIENCE_RATINGS]
        assert (default["best_epoch"], default["regret"]) == (alone["best_epoch"], alone["regret"]), r["world"]
        assert default["stop_epoch"] <= alone["stop_epoch"]
