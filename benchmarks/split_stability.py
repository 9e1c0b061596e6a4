"""The bar of the split test (``cluster.split_stability``), chosen on the tuning worlds.

After the fit, :func:`segmentation.cluster.split_merged` fits each segment of 500 users or more again on its own
members and splits it when its parts reproduce on subsamples at a stability of at least the bar. This script shows
where the bar can lie: per tuning world (taste, style, light; held-out worlds are refused) and seed, the default
segment step on the CLI's view of the log (the train rows of ``random90``, as ``segflow run`` segments them) with the
split test off, then every segment's test, with the planted truth beside it: a segment is ``merged`` when its
second-largest planted segment holds at least :data:`MERGED_SHARE` of its planted users, else ``single``. A bar
above every single segment's stability splits no real segment; the merged segments above that come apart with any bar
below their stability (some merged pairs do not come apart at all: they stay merged whatever the bar). The default
is the middle of the gap between the highest single segment and the lowest merged one above it, rounded to 0.05,
to leave room both ways on data the tuning did not see. Then the ARI (outliers as one more label) of the fit with
each bar of :data:`BARS` applied, from the same tests.

``python benchmarks/split_stability.py`` (10,000 users, seeds 0-2: about 10 minutes on 2 cores, the item texts
embedded once per world and seed); rows in ``benchmarks/results/split_stability.json``.
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # before benchmarks/, whose segmentation.py would hide the package

from benchmarks._results import command, tuning_world_args, write_json  # noqa: E402

TUNING = ("taste", "style", "light")
BARS = (0.8, 0.85, 0.9, 0.95, 0.99)
MERGED_SHARE = 0.2
RESULTS = ROOT / "benchmarks" / "results" / "split_stability.json"


def kind(truth: np.ndarray) -> tuple[str, list[float]]:
    """``merged`` or ``single`` for a segment's members' planted labels, and the two largest planted shares."""
    planted = truth[truth >= 0]
    shares = sorted(np.bincount(planted).tolist(), reverse=True) if len(planted) else [0]
    top = [round(s / max(len(planted), 1), 3) for s in (shares + [0])[:2]]
    return ("merged" if top[1] >= MERGED_SHARE else "single"), top


def with_bar(before: np.ndarray, after: np.ndarray, tested: list[dict], bar: float) -> np.ndarray:
    """The labels with only the splits whose stability reaches ``bar`` (tests run with the lowest bar)."""
    out = after.copy()
    for t in tested:
        if t["split"] and t["stability"] < bar:
            rows = before == t["segment"]
            out[rows] = 100_000 + t["segment"]  # back to the one segment it was
    return out


def run(worlds: list[str], seeds: list[int], n: int) -> list[dict]:
    from benchmarks.segmentation import _warm_umap, _world_catalogue
    from embeddings.encoder import Encoder
    from segmentation.cluster import fit_segments, split_merged
    from segmentation.config import ClusterConfig, ReduceConfig, RepresentConfig
    from segmentation.data import default_cache_dir, split_ratings
    from segmentation.represent import build_user_vectors
    from segmentation.synthetic import world_log

    _warm_umap()
    enc = Encoder(cache_dir=default_cache_dir() / "embeddings", batch_size=128)
    rc, reduce = RepresentConfig(), ReduceConfig()
    rows = []
    for seed in seeds:
        for name in worlds:
            t0 = time.perf_counter()
            log = world_log(name, n, seed=seed)
            items, iv = _world_catalogue(log, enc)
            train = split_ratings(log.interactions, "random90", seed=seed).train_full
            users = build_user_vectors(train, iv, method=rc.method, items=items, seed=seed, centre=rc.centre)
            pos = dict(zip(log.labels["user_id"].to_list(), log.labels["segment"].to_list(), strict=True))
            truth = np.array([pos[u] for u in users.ids])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seg = fit_segments(users, reduce, ClusterConfig(split_stability=None), seed=seed, picture=False)
                cluster = ClusterConfig(split_stability=min(BARS))
                min_size = seg.min_cluster_size * len(truth) / max(seg.n_fitted, 1)
                out, _, tested = split_merged(users, seg.assignments, reduce, cluster, min_size, seed=seed)
            before = seg.assignments["segment_id"].to_numpy()
            after = out["segment_id"].to_numpy()
            for t in tested:
                t["kind"], t["planted_shares"] = kind(truth[before == t["segment"]])
            aris = {str(b): round(float(adjusted_rand_score(truth, with_bar(before, after, tested, b))), 4)
                    for b in BARS}  # fmt: skip
            row = {"world": name, "role": "tuning", "seed": seed, "n_users": len(truth),
                   "ari_without_splits": round(float(adjusted_rand_score(truth, before)), 4), "ari_with_bar": aris,
                   "segments": seg.n_segments, "min_size": round(min_size), "tested": tested,
                   "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
            stabs = [(t["kind"][0], t.get("stability")) for t in tested if t.get("stability") is not None]
            print(f"{name} seed {seed}: ARI {row['ari_without_splits']:.3f} -> {aris} tested "
                  f"{[(k, round(s, 3)) for k, s in stabs]}", flush=True)  # fmt: skip
            rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    """Where the bar can lie: the highest stability of a single segment, the merged segments that come apart above it
    (the lowest of them) and those that do not, the middle of the gap, and each bar's mean (min) ARI."""
    tests = [t for r in rows for t in r["tested"] if t.get("stability") is not None]
    single = [t["stability"] for t in tests if t["kind"] == "single"]
    top = max(single, default=0.0)
    apart = [t["stability"] for t in tests if t["kind"] == "merged" and t["stability"] > top]
    held = sorted(t["stability"] for t in tests if t["kind"] == "merged" and t["stability"] <= top)
    out = {"highest_single": top, "lowest_merged_above": min(apart, default=None), "merged_above": len(apart),
           "merged_held_together": held, "n_single": len(single),
           "gap_middle": round((top + min(apart)) / 2, 3) if apart else None,
           "ari_without_splits": [round(float(np.mean([r["ari_without_splits"] for r in rows])), 4),
                                  min(r["ari_without_splits"] for r in rows)]}  # fmt: skip
    for b in BARS:
        v = [r["ari_with_bar"][str(b)] for r in rows]
        out[f"ari_bar_{b}"] = [round(float(np.mean(v)), 4), min(v)]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a, worlds = tuning_world_args(p, argv, TUNING, RESULTS, "the bar is chosen")
    rows = run(worlds, [int(s) for s in a.seeds.split(",")], a.users)
    s = summary(rows)
    print(s)
    write_json(a.out, {"command": command("split_stability.py", argv), "merged_share": MERGED_SHARE,
                       "summary": s, "rows": rows})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
