"""benchmarks/float_noise.py: the medoid it scores, the pairwise ARI and the stored rows' shape."""

import json
from pathlib import Path

import numpy as np
import pytest
from bench_loader import load_benchmark

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("float_noise")


def test_the_medoid_is_the_labelling_the_others_agree_with(bench):
    merged = np.array([0] * 20 + [1] * 10)
    split = np.array([0] * 10 + [2] * 10 + [1] * 10)
    renamed = np.array([5] * 10 + [7] * 10 + [6] * 10)  # the split under other ids: the same partition
    assert bench.medoid({1: merged, 2: split, 3: renamed}, [1, 2, 3]) in (2, 3)
    assert bench.medoid({1: split, 2: merged, 3: merged}, [1, 2, 3]) == 2  # a tie goes to the first seed
    assert bench.pairwise([split, renamed, merged]) == [1.0, pytest.approx(0.5, abs=0.2), pytest.approx(0.5, abs=0.2)]


def test_stored_rows_say_what_was_fitted():
    stored = json.loads((ROOT / "benchmarks" / "results" / "float_noise.json").read_text())
    assert stored["vectors_equal_to_run"] in (True, None)
    rows = stored["rows"]
    assert {r["procedure"] for r in rows} >= {"single fit"} and {r["vectors"] for r in rows} >= {"as built"}
    for r in rows:
        n = len(r["seeds"])
        assert len(r["segments"]) == len(r["outlier_share"]) == len(r["ari_with_as_built"]) == n
        assert r["pairwise_ari_min"] <= r["pairwise_ari_mean"] <= 1.0
        if r["vectors"] == "as built":
            assert r["ari_with_as_built"] == [1.0] * n
