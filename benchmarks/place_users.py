"""New users placed in a fitted run's segments (``segflow assign``): as well as the run's own users are placed?

For each planted world (``segmentation.synthetic.world_log``; tuning and held-out alike: nothing is chosen here)
and seed, 10 % of the users (seeded) are set aside as *new*. The other 90 % are represented with the default
configuration (:func:`segmentation.represent.fit_user_vectors`, which also returns the run's ``UserSpace``) and
segmented as the flow's segment stage does (:func:`segmentation.cluster.segment_users`); a flat FAISS index over
their vectors is what a run folder keeps. Then every new user is placed from all their interactions by the vote of
their 15 nearest fitted users (:func:`segmentation.cluster.assign_by_neighbours`), from a vector built three ways,
side by side:

- ``user space``: :func:`segmentation.represent.place_in_space`, the run's category columns and the fitted users'
  mean user; and ``user space, moved by choices`` (what ``segflow assign`` does): the same vote, then the user moved
  as the run moved its members (:meth:`segmentation.cluster.SegmentEnvelopes.choose`, ``cluster.category_reassign``);
- ``own mean, 10 at a time``: ``build_user_vectors`` on batches of 10 new users with the run's settings, centred on
  the batch's own mean (what the library offered before ``UserSpace``);
- ``not centred``: ``build_user_vectors(centre=False)`` per new user (no mean to centre on).

Score: the ARI of the placed (nearest) segment against the planted segment over the new users that have one (noise
users left out), beside the same ARI of the fitted users' own ``nearest_segment`` (the segment their run gave them,
outliers' nearest included): the ratio says how much a new user loses against a user who was in the fit.

Outliers: ``segflow assign`` then applies the run's outlier rule (:func:`segmentation.runs.fit_segment_envelopes`,
the envelopes a run keeps in ``embeddings/segment_envelopes.npz``) to the users placed in the user space and moved
by their choices. Its
rows (``outliers``) give, for the new users and beside them for the fitted users as their run labelled them: the
share labelled outlier, the recall and precision of planted noise among the outliers, and the ARI over every user
(planted noise as one label, outliers as one label), the issue's measures.

    python benchmarks/place_users.py                      # five worlds, seeds 0-1, 10,000 users: ~15 min here
    python benchmarks/place_users.py --worlds taste --seeds 0 --users 3000

Rows go to ``benchmarks/results/place_users.json``.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # before benchmarks/, whose segmentation.py would hide the package

from benchmarks._results import command, write_json  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "place_users.json"
WORLDS = ("taste", "style", "light", "nested", "sparse-implicit")
NEW_SHARE = 0.1
BATCH = 10


def _ari(truth: np.ndarray, found: np.ndarray) -> float:
    from sklearn.metrics import adjusted_rand_score

    keep = truth >= 0
    return float(adjusted_rand_score(truth[keep], found[keep]))


def _outliers(truth: np.ndarray, labels: np.ndarray) -> dict:
    """Share labelled outlier, recall and precision of planted noise (``truth < 0``) among the outliers, and the
    ARI over every user (planted noise and outliers one label each)."""
    from sklearn.metrics import adjusted_rand_score

    noise, out = truth < 0, labels < 0
    both = int((noise & out).sum())
    return {"outlier_share": round(float(out.mean()), 4),
            "noise_recall": round(both / int(noise.sum()), 4) if noise.any() else None,
            "noise_precision": round(both / int(out.sum()), 4) if out.any() else None,
            "ari": round(float(adjusted_rand_score(truth, labels)), 4)}  # fmt: skip


def run(world: str, seed: int, n: int) -> dict:
    import polars as pl

    from benchmarks.segmentation import _world_catalogue
    from embeddings.encoder import Encoder
    from embeddings.index import VectorIndex
    from segmentation.cluster import assign_by_neighbours, segment_users
    from segmentation.config import ClusterConfig, ReduceConfig, RepresentConfig
    from segmentation.data import default_cache_dir
    from segmentation.represent import build_user_vectors, fit_user_vectors, place_in_space
    from segmentation.runs import fit_segment_envelopes
    from segmentation.synthetic import world_log

    t0 = time.perf_counter()
    enc = Encoder(cache_dir=default_cache_dir() / "embeddings", batch_size=128)
    log = world_log(world, n, seed=seed)
    items, iv = _world_catalogue(log, enc)
    truth_of = dict(zip(log.labels["user_id"].to_list(), log.labels["segment"].to_list(), strict=True))
    ids = sorted(truth_of)
    new = set(np.random.default_rng(seed).choice(ids, size=round(NEW_SHARE * len(ids)), replace=False).tolist())
    is_new = pl.col("user_id").is_in(list(new))
    fit_rows, new_rows = log.interactions.filter(~is_new), log.interactions.filter(is_new)
    rc = RepresentConfig()
    settings = {"method": rc.method, "items": items, "seed": seed, "centre": rc.centre, "weights": rc.weights,
                "evidence": rc.evidence, "max_categories": rc.max_categories, "rating_levels": rc.rating_levels}  # fmt: skip
    users, space = fit_user_vectors(fit_rows, iv, **settings)
    seg = segment_users(users, ReduceConfig(), ClusterConfig(), seed)
    index = VectorIndex("flat").fit(users.ids, users.vectors)
    a = seg.assignments
    fitted_seg = dict(zip(a["user_id"].to_list(), a["nearest_segment"].to_list(), strict=True))
    fitted_truth = np.array([truth_of[u] for u in users.ids])
    fitted_found = np.array([fitted_seg[u] for u in users.ids])
    row = {"world": world, "seed": seed, "n_users": n, "new_users": len(new), "segments": seg.n_segments,
           "fitted_ari": round(_ari(fitted_truth, fitted_found), 4), "ways": {}}  # fmt: skip

    def score(vectors_ids: np.ndarray, vectors: np.ndarray) -> float:
        voted = assign_by_neighbours(vectors, index, a)["segment_id"].to_numpy()
        return _ari(np.array([truth_of[u] for u in vectors_ids]), voted)

    t = time.perf_counter()
    placed = place_in_space(space, new_rows, iv)
    row["ways"]["user space"] = {"ari": round(score(placed.ids, placed.vectors), 4),
                                 "seconds": round(time.perf_counter() - t, 2)}  # fmt: skip
    envelopes = fit_segment_envelopes(seg, users, ClusterConfig())
    assert envelopes is not None, "the default configuration has an outlier distance"
    t = time.perf_counter()
    nearest = envelopes.choose(placed, assign_by_neighbours(placed.vectors, index, a)["segment_id"].to_numpy())
    row["ways"]["user space, moved by choices"] = {
        "ari": round(_ari(np.array([truth_of[u] for u in placed.ids]), nearest), 4),
        "seconds": round(time.perf_counter() - t + row["ways"]["user space"]["seconds"], 2),
    }
    new_labels = np.where(envelopes.far_users(placed, nearest), -1, nearest)  # as Run.place_users judges
    row["outliers"] = {"new users": _outliers(np.array([truth_of[u] for u in placed.ids]), new_labels),
                       "fitted users": _outliers(fitted_truth, a["segment_id"].to_numpy())}  # fmt: skip
    t = time.perf_counter()
    order = sorted(new)
    parts_ids, parts = [], []
    for lo in range(0, len(order), BATCH):
        rows = new_rows.filter(pl.col("user_id").is_in(order[lo : lo + BATCH]))
        v = build_user_vectors(rows, iv, **settings)
        parts_ids.append(v.ids)
        parts.append(v.vectors)
    row["ways"][f"own mean, {BATCH} at a time"] = {
        "ari": round(score(np.concatenate(parts_ids), np.vstack(parts)), 4), "seconds": round(time.perf_counter() - t, 2)
    }  # fmt: skip
    t = time.perf_counter()
    plain = build_user_vectors(new_rows, iv, **{**settings, "centre": False})
    row["ways"]["not centred"] = {"ari": round(score(plain.ids, plain.vectors), 4),
                                  "seconds": round(time.perf_counter() - t, 2)}  # fmt: skip
    for way in row["ways"].values():
        way["ratio_to_fitted"] = round(way["ari"] / row["fitted_ari"], 3) if row["fitted_ari"] > 0 else None
    row["seconds"] = round(time.perf_counter() - t0, 1)
    print(world, seed, row["fitted_ari"], {k: v["ari"] for k, v in row["ways"].items()}, row["outliers"], flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worlds", default=",".join(WORLDS))
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    rows = [run(w, int(s), a.users) for w in a.worlds.split(",") for s in a.seeds.split(",")]
    ways = list(rows[0]["ways"]) if rows else []
    summary = {
        w: {"mean_ari": round(float(np.mean([r["ways"][w]["ari"] for r in rows])), 4),
            "mean_ratio_to_fitted": round(float(np.mean([r["ways"][w]["ratio_to_fitted"] or 0 for r in rows])), 3)}
        for w in ways
    }  # fmt: skip
    summary["fitted users"] = {"mean_ari": round(float(np.mean([r["fitted_ari"] for r in rows])), 4)}

    def mean(who: str, key: str) -> float | None:
        vals = [r["outliers"][who][key] for r in rows if r["outliers"][who][key] is not None]
        return round(float(np.mean(vals)), 4) if vals else None

    summary["outliers"] = {who: {key: mean(who, key) for key in ("outlier_share", "noise_recall", "noise_precision",
                                                                 "ari")}
                           for who in ("new users", "fitted users")}  # fmt: skip
    write_json(a.out, {"command": command("place_users.py", argv), "rows": rows, "summary": summary})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
