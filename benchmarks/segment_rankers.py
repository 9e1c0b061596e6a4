"""Recommending within segments (issue 16, item 4): segment-conditioned rankers against the global ranker.

    python benchmarks/segment_rankers.py [--data ml100k planted] [--rankers ease segflow] [--quick]

Protocol: ``random90`` (BENCHMARK_PROTOCOL.md) gives train (train + valid rows) and test. Segments:

* ``ml100k``: the benchmark's own segmentation of the train users, as ``benchmarks/cold_start.py`` does (the
  pipeline's default representation, UMAP + HDBSCAN, outliers in their nearest segment);
* ``planted``: :func:`segmentation.coldstart.planted_segment_behaviour` over the ML-100k catalogue (segments that
  differ in categories, rating style and single-item taste), segments = the planted truth (noise users: -1).

Global rankers (``ease``, ``segflow``) are fitted on train with their hyper-parameters chosen on their own
validation carve. Each :class:`~segmentation.rank.SegmentConditionedRanker` kind (segment popularity blend,
segment-restricted candidates, EASE refitted per segment) chooses its setting per segment on that carve and is
kept per segment by the gate (paired bootstrap of validation NDCG@10, 95 % Bonferroni-corrected over segments);
``*-ungated`` uses every tested segment's chosen setting; ``*-control`` is the same procedure on a random
partition of the same sizes (gated; its per-segment figures are per random group). Test is only scored: NDCG@10
(relevant = rating >= 4), catalogue coverage and novelty by :func:`segmentation.evaluate.evaluate_rankings`, and
the paired user-bootstrap 95 % CI of the NDCG@10 change against the global ranker, overall and per segment.

Writes ``benchmarks/results/segment_rankers.json``: one row per (data, ranker, system).
"""

import argparse
import json
import logging
import platform
import sys
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segmentation._metrics import bootstrap_ci  # noqa: E402
from segmentation.coldstart import planted_segment_behaviour  # noqa: E402
from segmentation.config import RankerConfig  # noqa: E402
from segmentation.data import load_movielens_100k, split_ratings  # noqa: E402
from segmentation.evaluate import evaluate_rankings, ranking_per_user  # noqa: E402
from segmentation.predict import random_partition  # noqa: E402
from segmentation.rank import CONDITIONED_KINDS, SegmentConditionedRanker, make_ranker  # noqa: E402

logger = logging.getLogger("benchmarks.segment_rankers")

K = 10
THRESHOLD = 4.0
N_BOOT = 1000


def r5(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 5)


def load(name: str, quick: bool, emb) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, dict]:  # noqa: ANN001
    """(train, test, items, assignments user_id/segment_id, info)."""
    ds = load_movielens_100k()
    if name == "ml100k":
        split = split_ratings(ds.interactions, "random90")
        from segmentation.cluster import fit_segments
        from segmentation.config import PipelineConfig
        from segmentation.represent import DEFAULT_METHOD, build_user_vectors

        cfg = PipelineConfig()
        t0 = time.perf_counter()
        users = build_user_vectors(split.train_full, emb, method=DEFAULT_METHOD, items=ds.items, seed=0)
        seg = fit_segments(users, cfg.reduce, cfg.cluster, seed=0, picture=False)
        a = seg.assignments.select("user_id", pl.col("nearest_segment").cast(pl.Int32).alias("segment_id"))
        return split.train_full, split.test, ds.items, a, {"n_segments": seg.n_segments,
                                                           "segment_seconds": round(time.perf_counter() - t0, 1),
                                                           "segments": "UMAP + HDBSCAN (default representation)"}  # fmt: skip
    counts = ds.interactions.group_by("item_id").len()
    pop = ds.items.join(counts, on="item_id", how="left")["len"].fill_null(0).to_numpy() + 1.0
    n_users = 1200 if quick else 2500
    planted, _ = planted_segment_behaviour(ds.items, n_users, rng=np.random.default_rng(0), item_popularity=pop)
    split = split_ratings(planted.interactions, "random90")
    a = planted.truth.filter(pl.col("user_id").is_in(split.train_full["user_id"].unique().to_list()))
    info = {"n_segments": int((a["segment_id"].unique() >= 0).sum()), "planted_users": n_users,
            "segments": "planted truth (noise users: -1, global ranker)"}  # fmt: skip
    return split.train_full, split.test, ds.items, a.select("user_id", pl.col("segment_id").cast(pl.Int32)), info


def paired(per_user: dict[str, pl.DataFrame], name: str, ref: str = "global") -> pl.DataFrame:
    """user_id, segment_id, ndcg of ``ref`` and of ``name``, for users with a relevant test item."""
    return (
        per_user[ref]
        .select("user_id", "segment_id", pl.col("ndcg").alias("ref"))
        .join(per_user[name].select("user_id", pl.col("ndcg").alias("sys")), on="user_id")
    )


def change(p: pl.DataFrame, seed: int = 0) -> tuple[float, list[float | None]]:
    d = (p["sys"] - p["ref"]).to_numpy()
    if len(d) < 2:
        return float("nan"), [None, None]
    if np.ptp(d) == 0:
        return float(d[0]), [r5(d[0]), r5(d[0])]
    lo, hi = bootstrap_ci(d, n_boot=N_BOOT, seed=seed)
    return float(d.mean()), [r5(lo), r5(hi)]


def run(name: str, rankers: list[str], quick: bool, emb) -> list[dict]:  # noqa: ANN001
    train, test, items, assign, info = load(name, quick, emb)
    logger.info("%s: %d train rows, %d test rows, %s", name, train.height, test.height, info)
    test_users = test["user_id"].unique().sort().to_list()
    groups = assign.select("user_id", "segment_id")
    control_assign = random_partition(assign.filter(pl.col("segment_id") >= 0), seed=0)
    control_assign = pl.concat([control_assign.with_columns(pl.col("segment_id").cast(pl.Int32)),
                                assign.filter(pl.col("segment_id") < 0)])  # fmt: skip
    rows: list[dict] = []
    for rname in rankers:
        t0 = time.perf_counter()
        base = make_ranker(rname, RankerConfig()).fit(train, items=items, item_embeddings=emb, seed=0)
        fit_s = time.perf_counter() - t0
        recs = {"global": base.recommend(test_users, K)}
        fitted: dict[str, tuple[SegmentConditionedRanker, float]] = {}
        for kind in CONDITIONED_KINDS:
            for label, a in ((kind, assign), (f"{kind}-control", control_assign)):
                t0 = time.perf_counter()
                cond = SegmentConditionedRanker(base, kind).fit(train, a, items=items, item_embeddings=emb, seed=0)
                fitted[label] = (cond, time.perf_counter() - t0)
                recs[label] = cond.recommend(test_users, K)
                if label == kind:
                    recs[f"{kind}-ungated"] = cond.recommend(test_users, K, gated=False)
        ranking, beyond = evaluate_rankings(recs, test, train, k=K, relevance_threshold=THRESHOLD, item_embeddings=None,
                                            items=items, groups=groups, n_boot=200, seed=0)  # fmt: skip
        per_user = {s: ranking_per_user(r, test, k=K, relevance_threshold=THRESHOLD).join(groups, on="user_id",
                                                                                         how="left")
                    for s, r in recs.items()}  # fmt: skip
        for system in recs:
            p = paired(per_user, system)
            if system.endswith("-control"):  # per segment = per random group, the segments its gate judged
                p = p.drop("segment_id").join(control_assign, on="user_id", how="left")
            d, ci = change(p)
            cond, secs = fitted.get(system.removesuffix("-ungated"), (None, 0.0))
            report = cond.report_ if cond is not None else None
            per_seg = {}
            for s in sorted(p["segment_id"].drop_nulls().unique().to_list()):
                ps = p.filter(pl.col("segment_id") == s)
                ds, cis = change(ps)
                entry = {"n": ps.height, "ndcg@10": r5(float(ps["sys"].mean())), "ndcg_change": r5(ds),
                         "ndcg_ci95": cis}  # fmt: skip
                if report is not None and s >= 0:
                    rr = report.filter(pl.col("segment_id") == s)
                    if rr.height:
                        entry.update(kept=bool(rr["kept"][0]), setting=rr["setting"][0],
                                     valid_gain=r5((rr["valid_ndcg_segment"] - rr["valid_ndcg_global"])[0]),
                                     gate_ci=[r5(rr["gate_ci_low"][0]), r5(rr["gate_ci_high"][0])])  # fmt: skip
                if not system.endswith("-control"):  # evaluate_rankings groups by the real segments
                    bs = beyond[system]["per_segment"].get(str(s), {})
                    entry.update(coverage=r5(bs.get("coverage")), novelty=r5(bs.get("novelty")))
                per_seg[str(s)] = entry
            row = {"data": name, "ranker": rname, "system": system, "split": "random90", "k": K,
                   "ndcg@10": r5(ranking[system]["ndcg@10"]), "ndcg@10_ci": ranking[system]["ndcg@10_ci"],
                   "precision@10": r5(ranking[system]["precision@10"]), "recall@10": r5(ranking[system]["recall@10"]),
                   "hit@10": r5(ranking[system]["hit@10"]),
                   "ndcg_change": r5(d), "ndcg_change_ci95": ci, "coverage": r5(beyond[system]["coverage"]),
                   "novelty": r5(beyond[system]["novelty"]), "n_users": ranking[system]["n_users"],
                   "global_fit_seconds": round(fit_s, 1), "seconds": round(secs, 1),
                   "params": base.params_, **info}  # fmt: skip
            if report is not None:
                row.update(segments_tested=int(report["setting"].is_not_null().sum()),
                           segments_kept=int(report["kept"].sum()), n_segments_report=report.height)  # fmt: skip
            row["per_segment"] = per_seg
            rows.append(row)
            logger.info("%-7s %-8s %-28s NDCG %.4f (%+.4f %s) coverage %.3f novelty %.2f kept %s", name, rname, system,
                        row["ndcg@10"], d, ci, row["coverage"], row["novelty"], row.get("segments_kept"))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["ml100k", "planted"], choices=["ml100k", "planted"])
    parser.add_argument("--rankers", nargs="+", default=["ease", "segflow"], choices=["ease", "segflow"])
    parser.add_argument("--quick", action="store_true", help="1,200 planted users instead of 2,500; EASE only")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "segment_rankers.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("segmentation", "embeddings", "numba", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("segmentation.rank.conditioned").setLevel(logging.INFO)
    warnings.filterwarnings("ignore", category=UserWarning)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from rating import item_embeddings

    rankers = ["ease"] if args.quick else args.rankers
    emb = item_embeddings(load_movielens_100k().items)
    meta = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, 2 shared cores",
            "command": " ".join(["python", "benchmarks/segment_rankers.py", *sys.argv[1:]])}  # fmt: skip
    rows: list[dict] = []
    t0 = time.perf_counter()
    for name in args.data:
        rows += [{**r, **meta} for r in run(name, rankers, args.quick, emb)]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")  # after each data set
    print(
        f"\n{'data':8s} {'ranker':8s} {'system':30s} {'NDCG@10':>8s} {'dNDCG [95% CI]':>28s} {'cov':>6s} {'nov':>6s} kept"
    )
    for r in rows:
        ci = r["ndcg_change_ci95"]
        kept = f"{r['segments_kept']}/{r['segments_tested']}" if "segments_kept" in r else ""
        print(f"{r['data']:8s} {r['ranker']:8s} {r['system']:30s} {r['ndcg@10']:8.4f} {r['ndcg_change']:+8.4f} "
              f"[{ci[0]:+.4f}, {ci[1]:+.4f}] {r['coverage']:6.3f} {r['novelty']:6.2f} {kept}")  # fmt: skip
    print(f"\nwrote {args.out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
