"""benchmarks/scale.py: what it reads from /usr/bin/time and a run folder, the growth table, the stored rows' shape."""

import json
from pathlib import Path

import polars as pl
import pytest
from bench_loader import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
ROW_KEYS = [
    "system",
    "data",
    "n_users",
    "n_items",
    "n_interactions",
    "seconds",
    "peak_mib",
    "stage_seconds",
    "ari",
    "ndcg@10",
    "rmse",
]  # fmt: skip  (issue 13, item 7)


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("scale")


def test_time_v_report_is_read(bench):
    report = ("\tUser time (seconds): 280.45\n\tElapsed (wall clock) time (h:mm:ss or m:ss): 4:59.23\n"
              "\tMaximum resident set size (kbytes): 5315952\n")  # fmt: skip
    seconds, peak = bench._time_v(report)
    assert seconds == pytest.approx(299.23) and peak == pytest.approx(5315952 / 1024)
    hours = bench._time_v("Elapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03\n")
    assert hours == (pytest.approx(3723.0), None)


def test_ari_against_the_planted_truth(bench, tmp_path):
    labels = pl.DataFrame(
        {"user_id": ["a", "b", "c", "d", "e"], "segment": pl.Series([0, 0, 1, 1, -1], dtype=pl.Int32)}
    )
    pl.DataFrame({"user_id": ["a", "b", "c", "d", "e"], "segment_id": [5, 5, 7, 7, -1]}).write_parquet(
        tmp_path / "users.parquet")  # fmt: skip
    same = bench._ari(tmp_path, labels)
    assert same["ari"] == 1.0 and same["n_segments"] == 2 and same["outlier_share"] == 0.2
    assert [(b["planted"], b["majority_segment"], b["majority_share"], b["majority_purity"]) for b in
            same["truth_breakdown"]] == [(-1, -1, 0.0, None), (0, 5, 1.0, 1.0), (1, 7, 1.0, 1.0)]  # fmt: skip
    pl.DataFrame({"user_id": ["a", "b", "c", "d", "e"], "segment_id": [5, 7, 5, 7, 5]}).write_parquet(
        tmp_path / "users.parquet")  # fmt: skip
    merged = bench._ari(tmp_path, labels)
    assert merged["ari"] < 0.5
    # planted 0 and 1 both have half their users in 5 and half in 7 (ties go to the smaller id); the noise user
    # went to 5, which therefore holds 1 of 3 users from planted 1
    assert [(b["planted"], b["majority_segment"], b["majority_share"], b["outlier_share"], b["majority_purity"])
            for b in merged["truth_breakdown"]] == [(-1, 5, 1.0, 0.0, 0.3333), (0, 5, 0.5, 0.0, 0.3333),
                                                   (1, 5, 0.5, 0.0, 0.3333)]  # fmt: skip


def test_growth_slopes(bench):
    def row(size, n, seconds, peak, rank):
        return {"size": size, "feedback": "explicit", "exit": 0, "n_interactions": n, "seconds": seconds,
                "peak_mib": peak, "stage_seconds": {"rank": rank, "flow": seconds}}  # fmt: skip

    overridden = {**row("a", 1000, 30.0, 90.0, 10.0), "system": "segflow run (defaults) + encoder.quantize=int8"}
    text = bench.growth([row("XS", 50, 1.0, 1.0, 1.0), row("a", 1000, 10.0, 100.0, 10.0), overridden,
                         row("mls-shape", 2000, 90.0, 50.0, 5.0), row("b", 4000, 40.0, 200.0, 160.0)])  # fmt: skip
    lines = text.splitlines()
    assert len(lines) == 3, "one growth row between consecutive sizes, XS, mls-shape and --set runs left out"
    assert "| a → b explicit | 4.00 | 4.00 (1.00) | 2.00 (0.50) |" in lines[2] and "rank 16.0" in lines[2]
    # a size run again: its latest row stands for it, and it is not compared with itself
    again = bench.growth([row("a", 1000, 10.0, 100.0, 10.0), row("b", 4000, 80.0, 400.0, 160.0),
                          row("a", 1000, 20.0, 100.0, 10.0), row("b", 4000, 40.0, 200.0, 160.0)])  # fmt: skip
    lines = again.splitlines()
    assert len(lines) == 3 and "| a → b explicit | 4.00 | 2.00 (0.50) | 2.00 (0.50) |" in lines[2]


def test_stored_rows_have_the_issue_shape():
    rows = json.loads((ROOT / "benchmarks" / "results" / "scale.json").read_text())
    assert isinstance(rows, list) and rows
    for i, r in enumerate(rows):
        assert not [k for k in ROW_KEYS if k not in r], f"row {i} lacks keys"
        if r["exit"] == 0:
            assert isinstance(r["stage_seconds"], dict) and r["stage_seconds"]
            assert 0 < r["ari"] <= 1 and r["seconds"] > 0 and r["peak_mib"] > 0
        assert (r["rmse"] is None) == (r["feedback"] == "implicit" or r["exit"] != 0)
