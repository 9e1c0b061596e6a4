"""Does a large run's segmentation depend on which users its UMAP sample holds? (issue 14 at issue 13's sizes)

    python benchmarks/sample_sensitivity.py --run RUN_FOLDER --labels labels.csv [--samples 3] [--umap-seeds 7 8]

Past ``reduce.sample_size`` users, UMAP and HDBSCAN are fitted on one uniform sample and every other user is placed by
its neighbours in it. This script takes a finished run's user vectors (``embeddings/users.npy``) and its
``config.toml`` (seed and ``[reduce]`` settings), and the planted truth of a synthetic log (``labels.csv`` as
``SyntheticLog.write`` leaves it). It refits UMAP, with the run's settings, on the run's own sample (the draw
``Reducer`` makes from the run's seed) under the run's UMAP seed and each of ``--umap-seeds``, and on ``--samples``
other uniform samples of the same size (seeds 1, 2, ...). On each layout HDBSCAN (eom, ``min_samples`` 10, the run's
``min_cluster_size`` on the fitted users from ``metrics.json``) clusters the sample, and it prints the segments found,
the outlier share and the ARI against the planted truth on the sample's users (noise users and outliers as one label
each, before the run's noise rules). Rows go to ``benchmarks/results/sample_sensitivity.json``.

``benchmarks/scale.py`` removes its work folder at the end: keep the run folder (and the data's ``labels.csv``) by
copying it before it does, or run the CLI on ``SyntheticLog.write``'s files yourself.
"""

import argparse
import json
import sys
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "sample_sensitivity.json"


def main() -> None:
    import hdbscan
    from sklearn.metrics import adjusted_rand_score

    from benchmarks._results import write_json
    from segmentation.reduce import Reducer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a finished run folder")
    ap.add_argument("--labels", type=Path, required=True, help="the planted truth: user_id,segment (noise -1)")
    ap.add_argument("--samples", type=int, default=3, help="other uniform samples to refit on")
    ap.add_argument("--umap-seeds", type=int, nargs="*", default=[7, 8], help="more UMAP seeds on the run's sample")
    args = ap.parse_args()
    config = tomllib.loads((args.run / "config.toml").read_text())
    seed, red = int(config["seed"]), config["reduce"]
    metrics = json.loads((args.run / "metrics.json").read_text())
    mcs = int(metrics["segmentation"]["min_cluster_size"])
    ids = np.load(args.run / "embeddings" / "user_ids.npy", allow_pickle=True).astype(str)
    vectors = np.load(args.run / "embeddings" / "users.npy", mmap_mode="r")
    truth = pl.read_csv(args.labels, schema_overrides={"user_id": pl.String})
    y = (pl.DataFrame({"user_id": ids}).join(truth, on="user_id", how="left")["segment"]
         .fill_null(-1).to_numpy())  # fmt: skip
    n, size = len(ids), min(int(red["sample_size"]), len(ids))

    def refit(sample: np.ndarray, umap_seed: int, what: str) -> dict:
        t0 = time.perf_counter()
        coords = Reducer(int(red["n_components"]), n_neighbors=int(red["n_neighbors"]),
                         min_dist=float(red["min_dist"]), metric=str(red["metric"]), sample_size=size,
                         random_state=umap_seed).fit_transform(np.asarray(vectors[sample]))  # fmt: skip
        labels = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=10).fit_predict(coords)
        row = {"sample": what, "umap_seed": umap_seed, "n_segments": int(labels.max()) + 1,
               "outlier_share": round(float((labels < 0).mean()), 4),
               "ari": round(float(adjusted_rand_score(y[sample], labels)), 4),
               "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        print(json.dumps(row), flush=True)
        return row

    own = np.sort(np.random.default_rng(seed).choice(n, size, replace=False))  # Reducer's own draw
    rows = [refit(own, s, "the run's") for s in (seed, *args.umap_seeds)]
    for k in range(1, args.samples + 1):
        rows.append(refit(np.sort(np.random.default_rng(k).choice(n, size, replace=False)), seed, f"uniform, seed {k}"))
    stored = json.loads(OUT.read_text()) if OUT.is_file() else []
    stored.append({"run": str(args.run), "n_users": n, "sample_size": size, "min_cluster_size": mcs,
                   "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "rows": rows})  # fmt: skip
    write_json(OUT, stored)


if __name__ == "__main__":
    main()
