"""benchmarks/category_split.py on small segments: both kinds of segment, the cap side by side past it."""

import json

from bench_loader import load_benchmark


def test_rows_give_cost_and_outcome_for_one_and_two_groups_with_the_cap_beside_every_member(tmp_path, monkeypatch):
    bench = load_benchmark("category_split")
    import segmentation.mixture as mixture

    monkeypatch.setattr(mixture, "MAX_ROWS", 700)  # the cap below the larger size, so both fits run there
    out = tmp_path / "category_split.json"
    bench.main(["--sizes", "600,900", "--categories", "12", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["max_rows"] == 700 and result["command"].endswith(f"--out {out}")
    levels = {
        (r["members"], r["groups"]): r for r in result["rows"] if r.get("read") == "levels" and r["given"] == "sparse"
    }
    dense = {
        (r["members"], r["groups"]): r for r in result["rows"] if r.get("read") == "levels" and r["given"] == "dense"
    }
    rows = {(r["members"], r["groups"], r["fitted_on"]): r for r in result["rows"] if "read" not in r}
    assert set(rows) == {(600, "one", "default"), (600, "two", "default"), (900, "one", "default"),
                         (900, "one", "every member"), (900, "two", "default"), (900, "two", "every member")}  # fmt: skip
    for (_, kind, _), r in rows.items():
        assert r["seconds"] >= 0 and r["peak_mib_over_base"] >= 0
        if kind == "one":
            assert not r["split"] and r["ari"] is None
        else:  # two groups of 3-10 picks, each its own pair of categories: found
            assert r["split"] and r["bic_parts"] == 2 and r["ari"] > 0.85
    assert rows[(900, "two", "every member")]["max_rows"] == 900
    # the same test per (rating level, category): one group rating alike stays whole, two rating styles come apart
    assert set(levels) == {(600, "one"), (600, "two"), (900, "one"), (900, "two")} and result["levels"] == 5
    for (_, kind), r in levels.items():
        assert r["columns"] == 5 * 12 and r["seconds"] >= 0
        if kind == "one":
            assert not r["split"] and r["bic_parts"] == 1
        else:  # the categories alike, the levels not
            assert r["split"] and r["bic_parts"] == 2 and r["ari"] > 0.85 and list(r["stability"]) == ["2"]
        same = dense[(r["members"], kind)]  # the same fits on dense counts: the same outcome
        assert (same["split"], same["bic_parts"], same["ari"], same["stability"]) == (
            r["split"], r["bic_parts"], r["ari"], r["stability"])  # fmt: skip
