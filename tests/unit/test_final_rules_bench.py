"""benchmarks/final_rules.py on small draws: every step's cost beside the early rule, and what the final rule found."""

import json

from bench_loader import load_benchmark


def test_rows_give_each_steps_cost_beside_the_early_rule_and_the_noise_found(tmp_path):
    bench = load_benchmark("final_rules")
    out = tmp_path / "final_rules.json"
    bench.main(["--sizes", "3000", "--dim", "32", "--categories", "24", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["command"].endswith(f"--out {out}")
    rows = {r["step"]: r for r in result["rows"]}
    assert list(rows) == ["far_from_segment (early rule)", "reassign_by_categories", "judge_outliers"]
    for r in rows.values():
        assert r["users"] == 3000 and r["dim"] == 32 and r["seconds"] >= 0 and r["peak_mib_over_base"] >= 0
        assert r["count_nonzeros"] > 3000
    assert rows["far_from_segment (early rule)"]["ratio_to_early_rule"] == 1.0
    judged = rows["judge_outliers"]
    # the drawn noise users (5 %, each their own pair of categories, in segment 0 by HDBSCAN's hand) are found
    assert judged["noise_recall"] >= 0.8 and judged["noise_precision"] >= 0.5 and judged["outliers"] >= 150 * 0.8
    moves = rows["reassign_by_categories"]
    assert moves["level"] == 0.5 and moves["rating_levels"] == 4 and moves["applied"]  # the drawn groups' profiles
    assert moves["proposed_share"] <= 0.15  # describe them
