"""Rankers at scale: EASE's validation grid by one eigendecomposition against one inverse per lambda, ALS, popularity.

    python benchmarks/rankers_scale.py [--users 6000] [--items 3000] [--per-user 30] [--ml100k]

Data: a synthetic explicit log (``segmentation.synthetic.synthetic_log``, seed 0: a tuning log, planted
segments, Zipf-like item popularity). Every system is fitted in its own process (so that ``ru_maxrss`` is its
own peak) on the same log with the default ``RankerConfig`` grids, and scored on the same validation carve
of train that the rankers choose their hyper-parameters on (10 % of the rows, seed 0, NDCG@10 of the held-out
liked items): no test split is read. Systems:

- ``ease (inverse per lambda)``: one ``numpy.linalg.inv`` of the Gram matrix per candidate (EASE as it was, and
  EASE now for grids shorter than ``EIGH_FROM``: the default grid has 6);
- ``ease (one eigh)``: one ``eigh`` of the carve's Gram matrix for every candidate, one inverse at the end (EASE's
  path for grids of ``EIGH_FROM`` lambdas or more; forced here);
- the same two on a 24-lambda grid (``numpy.geomspace(50, 5000, 24)``), synthetic log only;
- ``als``: ALS from ``implicit`` (``ranker.threads`` = 0: every core);
- ``most-popular``: the floor (popularity counted on the carve's fit part).

``--ml100k`` adds MovieLens 100k (``random90`` train): EASE by eigh against EASE by inverse (same lambda, same
validation table, same top-10 lists for every test user, checked here) and ALS's validation NDCG.

``--digest [--code DIR]`` prints the default rankers' chosen parameters and a hash of their top-10 lists on
MovieLens 100k (imported from ``DIR``, another checkout, when given): equal digests before and after a change
mean the default comparison did not move.

Writes ``benchmarks/results/rankers_scale.json`` (``runs``: one per command, with its rows, one per system and data:
seconds, peak MiB, the process's MiB before fitting, validation NDCG@10, the chosen parameters, the 1-minute load
average; ``--append`` adds a run) and prints a table.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
# --code DIR: import segflow from another checkout (the --digest comparison with an older commit)
sys.path.insert(0, sys.argv[sys.argv.index("--code") + 1] if "--code" in sys.argv[:-1] else str(ROOT))

from segmentation.config import RankerConfig  # noqa: E402

SYSTEMS = ("most-popular", "ease (inverse per lambda)", "ease (one eigh)", "als")
#: The same two EASE paths on a 24-lambda grid (synthetic log only): where one eigendecomposition pays.
LONG_GRID = ("ease (inverse per lambda), 24 lambdas", "ease (one eigh), 24 lambdas")


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_data(name: str, users: int, items: int, per_user: float) -> pl.DataFrame:
    if name == "ml100k":
        from segmentation.data import load_movielens_100k, split_ratings

        return split_ratings(load_movielens_100k().interactions, "random90", valid_fraction=0.1, seed=0).train_full
    from segmentation.synthetic import synthetic_log

    return synthetic_log(users, items, mean_per_user=per_user, seed=0).interactions


def one(system: str, data: str, users: int, items: int, per_user: float) -> dict:
    """Fit one system in this process; the row of the table."""
    from segmentation.rank import ALS, EASE, MostPopular
    from segmentation.rank import ease as ease_module
    from segmentation.rank.base import validation_ndcg

    train = load_data(data, users, items, per_user)
    config = RankerConfig()
    if system.endswith("24 lambdas"):
        config = RankerConfig(ease_reg_grid=[float(r) for r in np.geomspace(50, 5000, 24)])
    if "eigh" in system:
        ease_module.EIGH_FROM = 1  # force the shared decomposition
    elif system.startswith("ease"):
        ease_module.EIGH_FROM = 10**9
    before = rss_mib()
    cls = {"most-popular": MostPopular, "als": ALS}.get(system, EASE)
    t0 = time.perf_counter()
    ranker = cls(config).fit(train, seed=0)
    seconds = time.perf_counter() - t0
    peak = rss_mib()
    if system == "most-popular":  # no grid: score popularity on the carve the others choose on
        ranker._train = train.with_columns(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String))
        carve = ranker._carve(0)
        pop = np.asarray(carve.fit.x.sum(axis=0)).ravel().astype(np.float64)
        valid = validation_ndcg(np.tile(pop, (len(carve.users), 1)), carve.fit.x[carve.users], carve.relevant)
    else:
        valid = max(v["ndcg@10"] for v in ranker.validation_)
    row = {"system": system, "data": data, "n_users": len(ranker.users_), "n_items": len(ranker.items_),
           "n_interactions": int(ranker.data_.x.nnz), "seconds": round(seconds, 2), "peak_mib": round(peak),
           "mib_before_fit": round(before), "valid_ndcg@10": round(float(valid), 4),
           "params": getattr(ranker, "params_", {}), "load_avg_1min": round(os.getloadavg()[0], 2)}  # fmt: skip
    if data == "ml100k" and system.startswith("ease"):
        from segmentation.data import load_movielens_100k, split_ratings

        test = split_ratings(load_movielens_100k().interactions, "random90", valid_fraction=0.1, seed=0).test
        lists = ranker.recommend(sorted(test["user_id"].unique().to_list(), key=int), 10)
        row["lists"] = lists.select("user_id", "item_id").rows()
        row["validation"] = ranker.validation_
    return row


def digest() -> dict:
    """Chosen parameters and a hash of the top-10 lists of the default rankers on MovieLens 100k random90 (test users).

    The segflow ranker is fitted without description embeddings (its content path is not what this compares).
    """
    import hashlib

    from segmentation.data import load_movielens_100k, split_ratings
    from segmentation.rank import make_ranker

    ds = load_movielens_100k()
    split = split_ratings(ds.interactions, "random90", valid_fraction=0.1, seed=0)
    users = sorted(split.test["user_id"].unique().to_list(), key=int)
    out = {}
    for name in RankerConfig().rankers:
        r = make_ranker(name, RankerConfig()).fit(split.train_full, items=ds.items, seed=0)
        lists = r.recommend(users, 10).write_csv().encode()
        out[name] = {"params": getattr(r, "params_", {}), "lists_sha256": hashlib.sha256(lists).hexdigest()[:16]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=6000)
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--per-user", type=float, default=30.0)
    ap.add_argument("--ml100k", action="store_true", help="add the MovieLens 100k check")
    ap.add_argument("--systems", nargs="+", choices=SYSTEMS + LONG_GRID, help="only these (default: all)")
    ap.add_argument("--append", action="store_true", help="add the rows to --out instead of replacing it")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--data", default="synthetic", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/rankers_scale.json")
    ap.add_argument("--digest", action="store_true", help="print the default rankers' MovieLens 100k digest")
    ap.add_argument("--code", help="with --digest: the checkout to import segflow from")
    args = ap.parse_args()
    if args.digest:
        print(json.dumps(digest()))
        return
    from segmentation.rank import choose_rankers  # not in checkouts before this script (--code)

    if args.one:  # child process: one system, its row as JSON on the last line
        print(json.dumps(one(args.one, args.data, args.users, args.items, args.per_user)))
        return

    def child(system: str, data: str) -> dict:
        cmd = [sys.executable, __file__, "--one", system, "--data", data, "--users", str(args.users),
               "--items", str(args.items), "--per-user", str(args.per_user)]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    rows = []
    for data in ["synthetic"] + (["ml100k"] if args.ml100k else []):
        for system in SYSTEMS + (LONG_GRID if data == "synthetic" else ()):
            if args.systems and system not in args.systems:
                continue
            row = child(system, data)
            print(f"{data:10} {system:27} {row['n_users']:>6} x {row['n_items']:>5} {row['seconds']:>8.1f} s "
                  f"{row['peak_mib']:>6} MiB (before fit {row['mib_before_fit']}) NDCG@10 {row['valid_ndcg@10']:.4f} "
                  f"{row['params']}", flush=True)  # fmt: skip
            rows.append(row)
        choice = choose_rankers(RankerConfig(), rows[-1]["n_users"], rows[-1]["n_items"])
        print(f"{data}: a run would fit {choice.names} ({choice.reason})")
    check = {}
    if args.ml100k:
        inv, eig = (next(r for r in rows if r["data"] == "ml100k" and r["system"] == s) for s in SYSTEMS[1:3])
        check = {"same_lambda": inv["params"] == eig["params"],
                 "same_validation_table": inv["validation"] == eig["validation"],
                 "same_top10_lists": inv["lists"] == eig["lists"], "test_users": len({u for u, _ in inv["lists"]})}  # fmt: skip
        print("MovieLens 100k, EASE by eigh against by inverse:", check)
        for r in rows:
            r.pop("lists", None)
    for r in rows:
        r.pop("validation", None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    run = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "command": " ".join(["python", *sys.argv]), "ml100k_ease_check": check, "rows": rows}  # fmt: skip
    runs = json.loads(args.out.read_text())["runs"] if args.append and args.out.exists() else []
    args.out.write_text(json.dumps({"runs": [*runs, run]}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
