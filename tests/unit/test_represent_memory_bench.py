"""benchmarks/represent_memory.py on XS: the re-tagged catalogue and the widths it reports for each row."""

import json

from benchmarks.represent_memory import main


def test_rows_report_the_cap_and_every_category_side_by_side(tmp_path):
    out = tmp_path / "represent_memory.json"
    main(["--size", "XS", "--categories", "300", "--out", str(out)])
    (result,) = json.loads(out.read_text())
    (row,) = result["rows"]
    assert 64 < row["categories"] <= 300  # the Zipf-like draw: most of the 300 tags occur, the rarest may not
    runs = row["runs"]
    old, capped, every, one_level = runs.values()
    assert capped["max_categories"] == 64 and capped["width"] == 384 + 3 * 64
    # the rating levels add the choice counts beside the category counts, and nothing to the vectors
    assert one_level["width"] == capped["width"] and one_level["rating_levels"] == 1 and capped["rating_levels"] == 5
    assert set(one_level["counts_nnz"]) == {"category_counts"}
    assert capped["counts_nnz"]["choice_counts"] >= capped["counts_nnz"]["category_counts"] > 0
    assert every["max_categories"] is None and every["width"] == 384 + 3 * row["categories"]
    assert old["width"] == 384 + row["categories"] and old["peak_ratio_to_old_default"] == 1.0
    assert all(r["users"] == 2_000 and r["seconds"] >= 0 and r["peak_over_base_mib"] >= 0 for r in runs.values())
    assert result["command"].endswith("--categories 300 --out " + str(out))
