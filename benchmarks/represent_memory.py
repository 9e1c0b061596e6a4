"""Peak memory, seconds and width of ``build_user_vectors`` by representation and category count, side by side in
one run: the default before 2026-12-05 (``item-mean+liked-category-hist``), the default (three dense users x
categories parts beside the embedding mean) with ``represent.max_categories`` at its default, and the default with
every category read; and the default with one rating level (``represent.rating_levels`` 1: the category counts
alone, as before 2026-12-05's eleventh round) beside the default's 5 levels (counts per rating level and category).

    python benchmarks/represent_memory.py                         # S: 100k users, 20k items; 58 and 1,000 categories
    python benchmarks/represent_memory.py --size M --categories 58

The log is ``synthetic_log`` of the named size (seed 0). With ``--categories`` equal to its own count (58: 40 main
categories and 18 attributes) the items keep theirs; any other count re-tags every item with 1-4 tag-like categories
drawn Zipf-like (exponent 1.1, seed 0) from that many, as a catalogue whose categories are user tags would have.
One process writes the interactions and items as Parquet; each (representation, cap) then runs in a fresh process
that reads them, builds seeded random 384-d item vectors (memory and time do not depend on what they say) and calls
``build_user_vectors`` with ``centre=True`` as a run does. It prints the call's seconds and its peak RSS over the
process's RSS just before the call (sampled every 20 ms). Rows go to ``benchmarks/results/represent_memory.json``,
with each peak as a ratio to the old default's on the same data.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._results import command, write_json  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "represent_memory.json"
OLD = "item-mean+liked-category-hist"


def _prepare(size: str, n_categories: int, dest: Path) -> int:
    """Write the log's interactions and (re-tagged) items as Parquet; the number of categories the items carry."""
    import numpy as np
    import polars as pl

    from segmentation.synthetic import SIZES, synthetic_log

    s = SIZES[size]
    log = synthetic_log(s["n_users"], s["n_items"], mean_per_user=s["mean_per_user"], seed=0)
    items = log.items.select("item_id", pl.col("categories").str.split("|").list.unique(maintain_order=True))
    native = items.select(pl.col("categories").explode().n_unique()).item()
    if n_categories != native:
        rng = np.random.default_rng(0)
        p = 1.0 / np.arange(1, n_categories + 1) ** 1.1
        p /= p.sum()
        tags = []
        for k in rng.integers(1, 5, items.height):
            tags.append([f"tag{t}" for t in sorted(set(rng.choice(n_categories, size=k, p=p).tolist()))])
        items = items.with_columns(pl.Series("categories", tags, dtype=pl.List(pl.String)))
    items.write_parquet(dest / "items.parquet")
    log.interactions.select("user_id", "item_id", "rating", "timestamp").write_parquet(dest / "train.parquet")
    return items.select(pl.col("categories").explode().n_unique()).item()


def _child(prepared: str, method: str, cap: str, levels: str) -> None:
    import numpy as np
    import polars as pl

    from benchmarks._memory import PeakSampler
    from embeddings.encoder import Embeddings
    from segmentation.represent import build_user_vectors

    peak = PeakSampler(every=0.02)
    src = Path(prepared)
    train = pl.read_parquet(src / "train.parquet")
    items_frame = pl.read_parquet(src / "items.parquet")
    ids = np.asarray(sorted(items_frame["item_id"].to_list()), dtype=object)
    items = Embeddings(ids, np.random.default_rng(0).standard_normal((len(ids), 384)).astype(np.float32), "random")
    max_categories = None if cap == "none" else int(cap)
    base = peak.start()
    t0 = time.perf_counter()
    users = build_user_vectors(train, items, method=method, items=items_frame, centre=True,
                               max_categories=max_categories, rating_levels=int(levels))  # fmt: skip
    seconds = time.perf_counter() - t0
    nnz = {name: int(c.nnz) for name, c in (("category_counts", users.category_counts),
                                             ("choice_counts", users.choice_counts)) if c is not None}  # fmt: skip
    print(json.dumps({"users": len(users.ids), "width": users.dim, "seconds": round(seconds, 1),
                      "peak_over_base_mib": peak.over_base, "base_mib": base, "counts_nnz": nnz}))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["XS", "S", "M"], default="S")
    ap.add_argument("--categories", default="58,1000", help="comma-separated category counts (58: the log's own)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        _child(*a.child)
        return
    from segmentation.config.embedding import DEFAULT_MAX_CATEGORIES, DEFAULT_RATING_LEVELS
    from segmentation.represent import DEFAULT_METHOD

    cap, levels = str(DEFAULT_MAX_CATEGORIES), str(DEFAULT_RATING_LEVELS)
    runs = [("default before 2026-12-05", OLD, "none", "1"),
            (f"default, max_categories {DEFAULT_MAX_CATEGORIES}", DEFAULT_METHOD, cap, levels),
            ("default, every category", DEFAULT_METHOD, "none", levels),
            ("default, one rating level", DEFAULT_METHOD, cap, "1")]  # fmt: skip
    rows = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for n in (int(c) for c in a.categories.split(",")):
        with tempfile.TemporaryDirectory(prefix="segflow-represent-memory-") as tmp:
            carried = _prepare(a.size, n, Path(tmp))
            row = {"size": a.size, "categories": carried, "load_avg_1min_before": os.getloadavg()[0], "runs": {}}
            for label, method, cap, levels in runs:
                proc = subprocess.run([sys.executable, __file__, "--child", tmp, method, cap, levels], env=env,
                                      capture_output=True, text=True)  # fmt: skip
                if proc.returncode:
                    got = {"failed": proc.returncode, "stderr_tail": proc.stderr[-400:]}
                else:
                    got = json.loads(proc.stdout.strip().splitlines()[-1])
                row["runs"][label] = {"method": method, "max_categories": None if cap == "none" else int(cap),
                                      "rating_levels": int(levels), **got}  # fmt: skip
                print(a.size, carried, label, got, flush=True)
            old = row["runs"][runs[0][0]].get("peak_over_base_mib")
            for r in row["runs"].values():
                if old and "peak_over_base_mib" in r:
                    r["peak_ratio_to_old_default"] = round(r["peak_over_base_mib"] / old, 2)
            rows.append(row)
    result = {"command": command("represent_memory.py", argv), "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
              "rows": rows}  # fmt: skip
    previous = json.loads(a.out.read_text()) if a.out.is_file() else []
    write_json(a.out, [*previous, result])


if __name__ == "__main__":
    main()
