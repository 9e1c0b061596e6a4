"""Top-10 ranking on MovieLens 100k: segflow's ranker side by side with most-popular, item-kNN, EASE and RP3beta.

    python benchmarks/ranking.py [--split random90] [--rankers ...] [--seeds 0 1 2] [--ablations]
                                 [--repeats 1] [--boot 1000]

Protocol (BENCHMARK_PROTOCOL.md, "Top-10 ranking"): fit on train (train + valid rows of the split);
relevant = test rating >= 4; rank every catalogue item the user has not rated in train; ties break by
the smaller item id; NDCG@10 = DCG of the top 10 over the ideal DCG of min(10, relevant) hits;
averaged over the users with a relevant test item (862 on random90). Hyper-parameters are chosen
inside ``fit`` on a 10 % validation carve of train (seeded); test rows are read only to score.

Item embeddings: MiniLM (all-MiniLM-L6-v2) of one description per item, ``embeddings.text.describe_items``
("Toy Story (1995). Genres: Animation, Children's, Comedy"), cached on disk by text hash.

Writes ``benchmarks/results/ranking.json`` (a list of rows: system, split, precision@10, recall@10,
ndcg@10, hit@10, mrr@10, map@10, coverage, gini, novelty, ils@10, serendipity, popularity_bias,
calibration_kl, the chosen hyper-parameters, fit and recommend seconds, and for every system the
paired user-bootstrap 95 % CI of its NDCG@10 difference to EASE) and prints a table. ``--seeds``
refits segflow with other validation-carve seeds; ``--ablations`` adds segflow variants with parts
switched off (fixed at the seed-0 choice). Timings are wall seconds on a shared 2-core machine with
the 1-minute load average beside them.
"""

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embeddings.encoder import Embeddings  # noqa: E402
from segmentation.config import RankerConfig  # noqa: E402
from segmentation.data import load_movielens_100k, split_ratings  # noqa: E402
from segmentation.evaluate import bootstrap_ci, evaluate_rankings, ranking_per_user, user_groups  # noqa: E402
from segmentation.rank import RANKERS, make_ranker  # noqa: E402

logger = logging.getLogger("benchmarks.ranking")

K = 10
THRESHOLD = 4.0
#: BENCHMARK_PROTOCOL.md's figures, to check that the baselines reproduce.
PROTOCOL_NDCG = {"most-popular": 0.125, "item-knn": 0.273, "rp3beta": 0.264, "ease": 0.306}


def item_embeddings(items: pl.DataFrame) -> Embeddings:
    """MiniLM embeddings of one description per item (cached on disk by text hash)."""
    from embeddings.encoder import Encoder

    try:
        from embeddings.text import describe_items

        texts = describe_items(items)["description"].to_list()
    except ImportError:  # the text module not there: "Title (year). Genres: ..."
        texts = [
            f"{t} ({y}). Genres: {', '.join(c)}" for t, y, c in items.select("title", "year", "categories").iter_rows()
        ]
    vectors = Encoder("all-MiniLM-L6-v2", cache_dir=Path.home() / ".cache/segflow/embeddings").encode(texts)
    return Embeddings(items["item_id"].to_numpy().astype(object), np.asarray(vectors, np.float32), "all-MiniLM-L6-v2")


def paired_ci(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int = 0) -> tuple[float, float, float]:
    """Mean of per-user ``a - b`` and its percentile bootstrap 95 % CI (users resampled; ``bootstrap_ci``)."""
    d = a - b
    lo, hi = bootstrap_ci(d, n_boot=n_boot, seed=seed)
    return float(d.mean()), lo, hi


def load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="random90", choices=["random90", "random80", "temporal"])
    ap.add_argument("--rankers", nargs="+", default=list(RANKERS), choices=list(RANKERS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="validation-carve seeds for segflow")
    ap.add_argument("--ablations", action="store_true", help="add segflow variants with parts switched off")
    ap.add_argument("--repeats", type=int, default=1, help="fit each ranker this many times (min/median seconds)")
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap resamples for the CIs")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ranking.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    ds = load_movielens_100k()
    split = split_ratings(ds.interactions, args.split, valid_fraction=0.1, seed=0)
    train, test = split.train_full, split.test
    emb = item_embeddings(ds.items)
    users = sorted(test["user_id"].unique().to_list(), key=int)
    groups = user_groups(ds.users, train)

    systems: list[tuple[str, str, RankerConfig, int]] = [(n, n, RankerConfig(), 0) for n in args.rankers]
    if "segflow" in args.rankers:
        systems += [(f"segflow (seed {s})", "segflow", RankerConfig(), s) for s in args.seeds if s != 0]

    recs: dict[str, pl.DataFrame] = {}
    info: dict[str, dict] = {}

    def run(label: str, name: str, config: RankerConfig, seed: int) -> object:
        times, ranker = [], None
        for _ in range(max(args.repeats, 1)):
            t0 = time.perf_counter()
            ranker = make_ranker(name, config).fit(train, items=ds.items, item_embeddings=emb, seed=seed)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        recs[label] = ranker.recommend(users, K, exclude_seen=True)
        info[label] = {"params": getattr(ranker, "params_", {}), "fit_seconds": round(min(times), 2),
                       "fit_seconds_median": round(statistics.median(times), 2),
                       "recommend_seconds": round(time.perf_counter() - t0, 2), "load_avg_1min": load_avg()}  # fmt: skip
        logger.info("%s: fit %.1fs, params %s", label, min(times), info[label]["params"])
        return ranker

    fitted = {label: run(label, name, cfg, seed) for label, name, cfg, seed in systems}
    if args.ablations and "segflow" in fitted:
        p = fitted["segflow"].params_
        fixed = {"segflow_like_weights": [p["a"]], "segflow_reg_grid": [p["reg"]], "segflow_dropouts": [p["dropout"]],
                 "segflow_target_weights": [p["w"]], "segflow_content_weights": [p["beta"]]}  # fmt: skip
        variants = {
            "segflow - content blend": {"segflow_content_weights": [0.0]},
            "segflow - likes in input": {"segflow_like_weights": [0.0]},
            "segflow - likes in target": {"segflow_target_weights": [0.0]},
            "segflow - likes (EASE + content blend)": {
                "segflow_like_weights": [0.0],
                "segflow_target_weights": [0.0],
            },
            "segflow + dropout 0.5": {"segflow_dropouts": [0.5]},
        }
        for label, change in variants.items():
            run(label, "segflow", RankerConfig(**{**fixed, **change}), 0)

    ranking, beyond = evaluate_rankings(recs, test, train, k=K, relevance_threshold=THRESHOLD, item_embeddings=emb,
                                        items=ds.items, groups=groups, n_boot=args.boot, seed=0)  # fmt: skip
    per_user = {
        s: ranking_per_user(r, test, k=K, relevance_threshold=THRESHOLD)["ndcg"].to_numpy() for s, r in recs.items()
    }
    rows = []
    for s in recs:
        r, b = ranking[s], beyond[s]
        row = {"system": s, "split": args.split, "k": K, "n_users": r["n_users"]}
        row |= {m: round(r[f"{m}@{K}"], 4) for m in ("precision", "recall", "ndcg", "hit", "mrr", "map")}
        row = {
            (f"{k}@{K}" if k in ("precision", "recall", "ndcg", "hit", "mrr", "map") else k): v for k, v in row.items()
        }
        row[f"ndcg@{K}_ci"] = [round(c, 4) for c in r[f"ndcg@{K}_ci"]]
        row |= {m: (round(b[m], 4) if b[m] is not None else None) for m in
                ("coverage", "gini", "novelty", f"ils@{K}", "serendipity", "popularity_bias", "arp", "calibration_kl")}  # fmt: skip
        if "ease" in per_user and s != "ease":
            d, lo, hi = paired_ci(per_user[s], per_user["ease"], args.boot)
            row["ndcg_change_vs_ease"] = round(d, 4)
            row["ndcg_change_vs_ease_ci"] = [round(lo, 4), round(hi, 4)]
        gap = r["fairness"].get("activity", {}).get(f"ndcg@{K}", {})
        row["ndcg_activity_gap"] = None if gap.get("gap") is None else round(gap["gap"], 4)
        row["ndcg_activity_gap_ci"] = None if gap.get("gap_ci") is None else [round(c, 4) for c in gap["gap_ci"]]
        row["ndcg_by_activity"] = {g: round(v, 4) for g, v in gap.get("groups", {}).items() if v is not None}
        row["protocol_ndcg"] = PROTOCOL_NDCG.get(s) if args.split == "random90" else None
        row |= info[s]
        row["date"] = date.today().isoformat()
        row["machine"] = f"{platform.machine()}, {os.cpu_count()} cpus, {platform.python_version()}"
        rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")

    cols = ["system", "precision@10", "recall@10", "ndcg@10", "hit@10", "coverage", "novelty", "ils@10",
            "serendipity", "popularity_bias", "fit_seconds"]  # fmt: skip
    print(f"\nsplit {args.split}: {rows[0]['n_users']} users with a relevant test item")
    print(" | ".join(f"{c:>12}" if i else f"{c:<44}" for i, c in enumerate(cols)))
    for row in rows:
        print(" | ".join(f"{row[c]:>12}" if i else f"{row[c]:<44}" for i, c in enumerate(cols)))
    for row in rows:
        if "ndcg_change_vs_ease" in row:
            lo, hi = row["ndcg_change_vs_ease_ci"]
            print(f"{row['system']:<44} NDCG@10 - EASE: {row['ndcg_change_vs_ease']:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
