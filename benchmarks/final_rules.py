"""Cost of the segment stage's last two steps at the users' scale: :func:`segmentation.cluster.reassign_by_categories`
and :func:`segmentation.cluster.judge_outliers` (both read every user), side by side in one run with the rule that
acted alone before them, :func:`segmentation.cluster.far_from_segment` (the early rule right after HDBSCAN): seconds,
peak RSS over the RSS before the call, and the ratio to the early rule.

    python benchmarks/final_rules.py                       # 10k, 100k and 1M users: ~3 min here
    python benchmarks/final_rules.py --sizes 50000 --dim 384

Users are drawn in ``--segments`` groups with Zipf-like sizes: a user's vector is their group's direction plus noise
shrinking with their interactions (3-10, and a tail of heavier users), their category counts picks from their group's
two categories (probability 0.75) or by Zipf popularity over ``--categories``, each pick at one of 4 rating levels
(uniform; the choice counts the reassignment reads, ``represent.rating_levels``), 5 % of them noise users with no
group. The decisions are not the point (the planted worlds' benchmark measures those); the cost is. Rows go to
``benchmarks/results/final_rules.json``.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._memory import PeakSampler  # noqa: E402
from benchmarks._results import command, write_json  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "final_rules.json"


def draw(n: int, dim: int, k: int, categories: int, seed: int = 0, levels: int = 4):
    """(vectors (n, dim) float32, counts (n, categories) sparse float32, labels (n,) int32 with -1 for noise,
    activity (n,) int64, choice counts (n, levels * categories) sparse float32, level-major)."""
    import scipy.sparse as sp

    from segmentation.planted import zipf_sizes

    rng = np.random.default_rng(seed)
    n_noise = n // 20
    labels = np.r_[np.repeat(np.arange(k, dtype=np.int32), zipf_sizes(n - n_noise, k, ratio=5.0)),
                   np.full(n_noise, -1, np.int32)]  # fmt: skip
    activity = (3 + rng.integers(0, 8, n) + (rng.random(n) < 0.1) * rng.integers(0, 200, n)).astype(np.int64)
    directions = rng.normal(0, 1, (k + 1, dim)).astype(np.float32)
    vectors = np.empty((n, dim), np.float32)
    for lo in range(0, n, 65_536):
        hi = min(lo + 65_536, n)
        g = np.where(labels[lo:hi] >= 0, labels[lo:hi], k)
        noise = rng.normal(0, 1, (hi - lo, dim)).astype(np.float32) * (3 / np.sqrt(activity[lo:hi]))[:, None]
        vectors[lo:hi] = directions[g] + noise
    popularity = 1 / np.arange(1, categories + 1)
    popularity /= popularity.sum()
    user = np.repeat(np.arange(n), activity)
    own = np.stack([(2 * labels) % categories, (2 * labels + 1) % categories], axis=1)
    own[labels < 0] = rng.integers(0, categories, (int((labels < 0).sum()), 2))  # noise: a pair of their own
    taste = rng.random(len(user)) < 0.75
    cat = rng.choice(categories, len(user), p=popularity)
    cat[taste] = own[user[taste], rng.integers(0, 2, int(taste.sum()))]
    counts = sp.csr_matrix((np.ones(len(user), np.float32), (user, cat)), shape=(n, categories))
    counts.sum_duplicates()
    cells = rng.integers(0, levels, len(user)) * categories + cat
    choice = sp.csr_matrix((np.ones(len(user), np.float32), (user, cells)), shape=(n, levels * categories))
    choice.sum_duplicates()
    return vectors, counts, labels, activity, choice


def main(argv: list[str] | None = None) -> int:
    import polars as pl

    from embeddings.encoder import Embeddings
    from segmentation.cluster import ASSIGNMENTS, far_from_segment, judge_outliers, reassign_by_categories
    from segmentation.config import ClusterConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--dim", type=int, default=528, help="user vector width (the default representation's: 528)")
    p.add_argument("--segments", type=int, default=12)
    p.add_argument("--categories", type=int, default=64)
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    cluster = ClusterConfig()  # the defaults: the reassignment on
    assert cluster.category_reassign is not None
    assert cluster.outlier_distance is not None and cluster.early_outlier_distance is not None
    sampler = PeakSampler()
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        vectors, counts, truth, activity, choice = draw(n, a.dim, a.segments, a.categories)
        users = Embeddings(np.array([f"u{i}" for i in range(n)], dtype=object), vectors, "drawn", activity, counts,
                           choice)  # fmt: skip
        # as HDBSCAN leaves them: every user in a segment, noise users in the nearest by direction (here: segment 0)
        labels = np.where(truth >= 0, truth, 0).astype(np.int32)
        frame = pl.DataFrame({"user_id": users.ids.astype(str), "segment_id": labels,
                              "membership": np.ones(n, np.float32), "nearest_segment": labels,
                              "nearest_membership": np.ones(n, np.float32), "soft_assigned": np.zeros(n, bool),
                              "x": np.zeros(n, np.float32), "y": np.zeros(n, np.float32)}, schema=ASSIGNMENTS)  # fmt: skip
        base = None
        for name in ("far_from_segment (early rule)", "reassign_by_categories", "judge_outliers"):
            sampler.start()
            t = time.perf_counter()
            if name == "judge_outliers":
                out = judge_outliers(users, frame, cluster, a.segments)
            elif name == "reassign_by_categories":
                out = reassign_by_categories(frame, users, cluster, a.segments)
            else:
                out = far_from_segment(vectors, labels, cluster.early_outlier_distance, activity=activity)
            seconds = time.perf_counter() - t
            base = base or seconds
            detail = {}
            if name == "judge_outliers":
                final = out[0]["segment_id"].to_numpy()
                noise = truth < 0
                both = int(((final < 0) & noise).sum())
                detail = {"outliers": int((final < 0).sum()), "noise_recall": round(both / max(int(noise.sum()), 1), 3),
                          "noise_precision": round(both / max(int((final < 0).sum()), 1), 3)}  # fmt: skip
            elif name == "reassign_by_categories":
                detail = out[1]
            row = {"users": n, "dim": a.dim, "segments": a.segments, "categories": a.categories,
                   "count_nonzeros": int(counts.nnz), "step": name, "seconds": round(seconds, 3),
                   "ratio_to_early_rule": round(seconds / base, 2), "peak_mib_over_base": sampler.over_base,
                   **detail}  # fmt: skip
            print(row, flush=True)
            rows.append(row)
        del vectors, counts, choice, users, frame
    write_json(a.out, {"command": command("final_rules.py", argv), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
