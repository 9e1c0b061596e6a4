"""Peak memory and time to load a large ratings file: segflow's loader vs a plain polars read, one run.

    python benchmarks/load_large.py [--rows 10000000]

Each system runs in its own child process; peak memory is the child's ru_maxrss.
Writes benchmarks/results/load_large.json and prints a table.
"""

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_files(folder: Path, rows: int, n_users: int, n_items: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    ratings, items = folder / "ratings.csv", folder / "items.csv"
    chunk = 2_000_000
    with ratings.open("w") as f:
        f.write("user_id,item_id,rating,timestamp\n")
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        df = pl.DataFrame({
            "user_id": rng.integers(0, n_users, n), "item_id": (n_items * rng.random(n) ** 1.5).astype(np.int64),  # skewed popularity, few repeats
            "rating": rng.integers(1, 6, n), "timestamp": 1_500_000_000 + rng.integers(0, 10**8, n),
        })  # fmt: skip
        with ratings.open("a") as f:
            df.write_csv(f, include_header=False)
    pl.DataFrame({"item_id": np.arange(n_items), "title": [f"Item {i}" for i in range(n_items)],
                  "categories": ["a|b"] * n_items}).write_csv(items)  # fmt: skip
    return ratings, items


def _segflow(ratings: Path, items: Path) -> dict:
    import warnings

    from segmentation.data import load_files

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_files(ratings, items)
    return {"rows": ds.interactions.height}


def _polars_eager(ratings: Path, items: Path) -> dict:
    df = pl.read_csv(ratings, schema_overrides={"user_id": pl.String, "item_id": pl.String})
    return {"rows": df.height}


def _child(name: str, ratings: str, items: str, q) -> None:
    t0 = time.perf_counter()
    out = {"_segflow": _segflow, "_polars_eager": _polars_eager}[name](Path(ratings), Path(items))
    out["seconds"] = time.perf_counter() - t0
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    q.put(out)


def run(name: str, ratings: Path, items: Path) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(name, str(ratings), str(items), q))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="segflow-large-") as tmp:
        t0 = time.perf_counter()
        ratings, items = make_files(Path(tmp), args.rows, n_users=max(1000, args.rows // 100), n_items=50_000)
        size_mib = ratings.stat().st_size / 2**20
        print(f"wrote {args.rows:,} rows ({size_mib:.0f} MiB) in {time.perf_counter() - t0:.0f}s", flush=True)
        rows = []
        for system, fn in [("polars-read-csv (typed, no validation)", "_polars_eager"),
                           ("segflow load_files (validated)", "_segflow")]:  # fmt: skip
            r = run(fn, ratings, items)
            rows.append({"system": system, "rows": args.rows, "file_mib": round(size_mib, 1),
                         "seconds": round(r["seconds"], 2), "peak_mib": round(r["peak_mib"], 1)})  # fmt: skip
            print(rows[-1], flush=True)
    base = rows[0]["peak_mib"]
    for r in rows:
        r["peak_ratio_vs_polars"] = round(r["peak_mib"] / base, 2)
    out = ROOT / "benchmarks" / "results" / "load_large.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(
        "\n| system | rows | file MiB | seconds | peak MiB | peak vs polars |\n| --- | ---: | ---: | ---: | ---: | ---: |"
    )
    for r in rows:
        print(
            f"| {r['system']} | {r['rows']:,} | {r['file_mib']} | {r['seconds']} | {r['peak_mib']} | {r['peak_ratio_vs_polars']} |"
        )


if __name__ == "__main__":
    main()
