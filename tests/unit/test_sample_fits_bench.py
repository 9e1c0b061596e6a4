"""benchmarks/sample_fits.py: the stored rows say what was fitted, and the first fit reproduced the run it refits."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_stored_rows_are_one_sample_fits_then_medoids_of_them():
    stored = json.loads((ROOT / "benchmarks" / "results" / "sample_fits.json").read_text())
    assert stored and all(e["n_users"] > e["sample_size"] for e in stored)  # only past the sample size
    for e in stored:
        single = {r["seed"]: r for r in e["rows"] if r["procedure"] == "one sample"}
        medoids = [r for r in e["rows"] if r["procedure"].startswith("medoid of ")]
        assert single and medoids and all(r["kept_seed"] == r["seed"] for r in single.values())
        for r in medoids:
            k = int(r["procedure"].rsplit(" ", 1)[1])
            window = list(range(r["seed"], r["seed"] + k))
            assert r["kept_seed"] in window and len(r["mean_ari_with_the_others"]) == k
            kept = window.index(r["kept_seed"])
            assert r["mean_ari_with_the_others"][kept] == max(r["mean_ari_with_the_others"])
            assert r["ari"] == single[r["kept_seed"]]["ari"]  # the medoid is one of the one-sample fits
