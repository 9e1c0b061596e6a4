"""One UMAP sample or the medoid of several, past ``reduce.sample_size`` users (issues 13 and 14)

    python benchmarks/sample_fits.py --run RUN_FOLDER --data DATA_FOLDER [--seeds 5] [--fits 3]

Past ``reduce.sample_size`` users the segment stage fits UMAP and HDBSCAN on a uniform sample and places every other
user by its neighbours in it. At 1M users the run's own sample merged planted segments 1 and 2 where other samples
split them (``benchmarks/sample_sensitivity.py``), so ``reduce.sample_fits`` fits several samples and keeps the one
that agrees most with the others (:func:`segmentation.cluster.most_agreeing`). This script measures that rule on a
finished large run of a planted log: it takes the run's user vectors (``embeddings/users.npy``) and ``config.toml``,
rebuilds each user's activity (train rows: the run's split of ``DATA_FOLDER/ratings.csv``, as the represent stage
counts them, for the outlier rules), fits the whole segment step (UMAP, parameter choice, HDBSCAN, outlier rules; no
picture) with one sample under ``--seeds`` consecutive seeds from the run's, and scores against the planted truth
(``DATA_FOLDER/labels.csv``, as ``SyntheticLog.write`` leaves it; noise users and outliers one label each, as
``benchmarks/scale.py`` scores a run) every single fit and the medoid of ``--fits`` consecutive seeds. The first
fit must reproduce the run's segments (``ari_with_the_run`` 1.0 when the run had one sample). Rows go to
``benchmarks/results/sample_fits.json``, keyed by the run's data size.
"""

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "sample_fits.json"


def activity_of(ids: np.ndarray, config, data: Path) -> np.ndarray:
    """Train rows per user (the represent stage's ``Embeddings.activity``) from the run's split of the data files."""
    from segmentation.data import load_dataset, split_ratings

    files = {k: data / f"{k}.csv" for k in ("ratings", "items", "users") if (data / f"{k}.csv").exists()}
    ds = load_dataset(config.data.model_copy(update=files))
    split = split_ratings(ds.interactions, config.data.split, valid_fraction=config.data.valid_fraction,
                          seed=config.seed)  # fmt: skip
    counts = split.train_full.join(ds.items.select("item_id"), on="item_id", how="semi").group_by("user_id").len()
    of = dict(zip(counts["user_id"].to_list(), counts["len"].to_list()))
    return np.array([of.get(u, 0) for u in ids.tolist()], dtype=np.int64)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a finished run folder of a planted log")
    p.add_argument("--data", type=Path, required=True, help="its ratings.csv, items.csv, users.csv and labels.csv")
    p.add_argument("--seeds", type=int, default=5, help="one-sample fits, from the run's seed on")
    p.add_argument("--fits", type=int, default=3, help="samples per medoid")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    from sklearn.metrics import adjusted_rand_score

    from benchmarks._results import command, write_json
    from embeddings.encoder import Embeddings
    from segmentation.cluster import fit_segments, most_agreeing
    from segmentation.config.files import load_config

    config = load_config(args.run / "config.toml")
    reduce = config.reduce.model_copy(update={"sample_fits": 1})
    ids = np.load(args.run / "embeddings" / "user_ids.npy", allow_pickle=True).astype(str)
    vectors = np.load(args.run / "embeddings" / "users.npy", mmap_mode="r")
    t = time.perf_counter()
    users = Embeddings(ids, np.ascontiguousarray(vectors), "run", activity_of(ids, config, args.data))
    print(f"{len(ids):,} users, activity rebuilt in {time.perf_counter() - t:.0f}s", flush=True)
    labels = pl.read_csv(args.data / "labels.csv", schema_overrides={"user_id": pl.String})
    of = dict(zip(labels["user_id"].to_list(), labels["segment"].to_list()))
    truth = np.array([of[u] for u in ids.tolist()])
    run = pl.read_parquet(args.run / "users.parquet").select("user_id", "segment_id")
    in_run = dict(zip(run["user_id"].to_list(), run["segment_id"].to_list()))
    run_labels = np.array([in_run[u] for u in ids.tolist()])
    fits: dict[int, np.ndarray] = {}
    rows, single = [], {}
    for s in range(config.seed, config.seed + args.seeds + args.fits - 1):
        t = time.perf_counter()
        seg = fit_segments(users, reduce, config.cluster, seed=s, picture=False)
        fits[s] = seg.assignments["segment_id"].to_numpy()
        row = {"procedure": "one sample", "seed": s, "kept_seed": s, "segments": seg.n_segments,
               "outlier_share": round(float((fits[s] < 0).mean()), 4),
               "ari": round(float(adjusted_rand_score(truth, fits[s])), 4),
               "ari_with_the_run": round(float(adjusted_rand_score(run_labels, fits[s])), 4),
               "seconds": round(time.perf_counter() - t, 1)}  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)
        single[s] = row
    for s in range(config.seed, config.seed + args.seeds):
        window = list(range(s, s + args.fits))
        best, _, mean = most_agreeing([fits[w] for w in window])
        kept = window[best]  # the medoid is one of the one-sample fits: its figures are that fit's
        row = {**{k: v for k, v in single[kept].items() if k != "seconds"}, "procedure": f"medoid of {args.fits}",
               "seed": s, "mean_ari_with_the_others": [round(float(v), 4) for v in mean]}  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)
    stored = json.loads(args.out.read_text()) if args.out.exists() else []
    entry = {"run": str(args.run), "n_users": len(ids), "sample_size": config.reduce.sample_size,
             "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
             "command": command("sample_fits.py", argv), "rows": rows}  # fmt: skip
    write_json(args.out, [e for e in stored if e["n_users"] != entry["n_users"]] + [entry])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
