"""benchmarks/split_stability.py: how it calls a segment merged, applies a bar to recorded tests, and the stored
evidence behind the default of ``cluster.split_stability``."""

import json
from pathlib import Path

import numpy as np
import pytest
from bench_loader import load_benchmark

from segmentation.config import ClusterConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("split_stability")


def test_a_segment_is_merged_when_its_second_planted_segment_holds_a_fifth(bench):
    assert bench.kind(np.array([0] * 80 + [1] * 20 + [-1] * 50)) == ("merged", [0.8, 0.2])
    assert bench.kind(np.array([0] * 81 + [1] * 19)) == ("single", [0.81, 0.19])
    assert bench.kind(np.array([3] * 10 + [-1] * 5)) == ("single", [1.0, 0.0])  # noise users are not a segment


def test_a_bar_keeps_only_the_splits_that_reach_it(bench):
    before = np.array([0, 0, 0, 0, 1, 1])
    after = np.array([0, 0, 2, 2, 1, 1])
    tested = [{"segment": 0, "split": True, "stability": 0.93}, {"segment": 1, "split": False, "stability": 0.5}]
    assert bench.with_bar(before, after, tested, 0.9).tolist() == after.tolist()
    undone = bench.with_bar(before, after, tested, 0.95)
    assert len(set(undone[:4])) == 1 and undone[4] == 1  # the split undone, the other segment as it was


def test_only_tuning_worlds_are_accepted(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--worlds", "nested", "--out", "/dev/null"])
    assert "tuning worlds only" in capsys.readouterr().err


def test_the_stored_run_supports_the_default_bar():
    data = json.loads((ROOT / "benchmarks" / "results" / "split_stability.json").read_text())
    s, bar = data["summary"], ClusterConfig().split_stability
    assert all(r["role"] == "tuning" for r in data["rows"]) and len(data["rows"]) == 9
    # the default lies above every segment of one planted segment and below every merged pair that comes apart, at
    # the middle of that gap rounded to 0.05
    assert s["highest_single"] < bar < s["lowest_merged_above"] and s["merged_above"] >= 3
    assert round(s["gap_middle"] * 20) / 20 == bar
    # and loses no run's ARI against the fit without the test
    for r in data["rows"]:
        assert r["ari_with_bar"][str(bar)] >= r["ari_without_splits"] - 1e-9


def test_a_cli_runs_splits_are_undone_from_its_own_record():
    seg = load_benchmark("segmentation")
    labels = np.array([0, 0, 3, 3, 1, 1, -1, 2])
    splits = {"tested": [{"segment": 0, "split": True, "segments": [0, 3], "users": 4, "stability": 0.95,
                          "sizes": [2, 2]},
                         {"segment": 1, "split": False, "segments": [1]}, {"segment": 2, "split": False, "segments": [2]}]}  # fmt: skip
    assert seg.unsplit(labels, splits).tolist() == [0, 0, 0, 0, 1, 1, -1, 2]
    truth = np.array([0, 0, 0, 0, 1, 1, -1, 2])
    effect = seg.split_effect(truth, labels, splits)
    assert effect["ari_without_splits"] == 1.0 and effect["splits"] == [
        {"users": 4, "stability": 0.95, "sizes": [2, 2]}
    ]
    assert seg.split_effect(truth, labels, None) == {}
