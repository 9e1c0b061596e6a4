"""How far does float noise in the user vectors move MovieLens 100k's segments? (issue 14, "hold still")

    python benchmarks/float_noise.py [--seeds 8] [--noise 1e-7] [--draws 2] [--medoid 3 5] [--run RUN_FOLDER]

The demo's segments differ between machines: on 2026-12-03 (an Intel Xeon host) ``make demo`` gave 5 segments of
266, 260, 191, 111 and 74 users and a seed-to-seed ARI of 0.983; on 2026-12-04 (an AMD EPYC host), with the same code
and library versions, 262, 261, 191, 112 and 74 users and 0.778. Item embeddings computed on another CPU differ in their
last bits, so this script asks how much such a difference can move the segments. It builds the demo's user vectors
(MovieLens 100k, random90's train rows, the default representation and seed; ``--run`` checks them against a demo
run's ``embeddings/users.npy``), then fits the segment stage (UMAP + parameter choice + HDBSCAN + the outlier rules,
without the 2-d picture) under ``--seeds`` consecutive seeds from the run's, on the vectors as built and on ``--draws``
copies with Gaussian noise of standard deviation ``--noise`` added to every coordinate (then re-normalised).

For each version it prints the segments per seed, the ARI between every pair of seeds (outliers as one label, as the
stability stage measures it) and the ARI of each seed's segments with the unperturbed vectors' at the same seed. It
scores a candidate remedy the same way: the *medoid* of ``k`` fits (seeds s .. s+k-1; the fit with the highest mean
ARI to the others), for each ``k`` in ``--medoid``. Rows go to ``benchmarks/results/float_noise.json``.
"""

import argparse
import itertools
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "float_noise.json"


def medoid(labels: dict[int, np.ndarray], seeds: list[int]) -> int:
    """The seed whose labels have the highest mean ARI to the other seeds' (the first on a tie): the rule
    ``reduce.sample_fits`` applies past ``reduce.sample_size`` users (:func:`segmentation.cluster.most_agreeing`)."""
    from segmentation.cluster import most_agreeing

    return seeds[most_agreeing([labels[s] for s in seeds])[0]]


def pairwise(labels: list[np.ndarray]) -> list[float]:
    from segmentation.selection import _ari

    return [round(_ari(a, b), 4) for a, b in itertools.combinations(labels, 2)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=8, help="procedure seeds, from the run's seed on")
    p.add_argument("--noise", type=float, default=1e-7, help="standard deviation of the noise per coordinate")
    p.add_argument("--draws", type=int, default=2, help="noisy copies of the vectors")
    p.add_argument("--medoid", type=int, nargs="*", default=[3, 5], help="fits per medoid (the remedy scored)")
    p.add_argument("--run", type=Path, help="a demo run folder whose user vectors must equal the ones built here")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    from benchmarks._results import command, write_json
    from benchmarks.segmentation import _item_embeddings
    from embeddings.encoder import Embeddings
    from segmentation.cluster import fit_segments
    from segmentation.config.files import load_config
    from segmentation.data import split_ratings
    from segmentation.represent import build_user_vectors
    from segmentation.selection import _ari

    config = load_config()
    ds, items = _item_embeddings(None)
    split = split_ratings(
        ds.interactions, config.data.split, valid_fraction=config.data.valid_fraction, seed=config.seed
    )
    users = build_user_vectors(split.train_full, items, method=config.represent.method, items=ds.items,
                               seed=config.seed, centre=config.represent.centre)  # fmt: skip
    same_as_run = None
    if args.run is not None:
        run_vectors = np.load(args.run / "embeddings" / "users.npy")
        run_ids = np.load(args.run / "embeddings" / "user_ids.npy", allow_pickle=True)
        same_as_run = bool(np.array_equal(run_ids.astype(str), users.ids.astype(str)) and
                           np.array_equal(run_vectors, users.vectors))  # fmt: skip
        print(f"user vectors equal to {args.run}'s: {same_as_run}", flush=True)
    top = max([1, *args.medoid])
    seeds = list(range(config.seed, config.seed + args.seeds + top - 1))
    procedure = seeds[: args.seeds]
    versions = [("as built", users)]
    for d in range(args.draws):
        v = users.vectors + np.random.default_rng(d).normal(0, args.noise, users.vectors.shape).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        versions.append((f"noise {args.noise:g} draw {d}", Embeddings(users.ids, v, users.model, users.activity)))
    rows, reference = [], {}
    for name, u in versions:
        t = time.perf_counter()
        labels = {s: fit_segments(u, config.reduce, config.cluster, seed=s, picture=False)
                  .assignments["segment_id"].to_numpy() for s in seeds}  # fmt: skip
        seconds = time.perf_counter() - t
        for k in [1, *args.medoid]:
            chosen = [s if k == 1 else medoid(labels, list(range(s, s + k))) for s in procedure]
            got = [labels[c] for c in chosen]
            key = "single fit" if k == 1 else f"medoid of {k}"
            if name == "as built":
                reference[key] = got
            pairs = pairwise(got)
            row = {"data": "movielens-100k", "vectors": name, "procedure": key, "seeds": procedure,
                   "segments": [int(len(set(x.tolist()) - {-1})) for x in got],
                   "outlier_share": [round(float((x < 0).mean()), 4) for x in got],
                   "pairwise_ari_mean": round(float(np.mean(pairs)), 4), "pairwise_ari_min": min(pairs),
                   "ari_with_as_built": [round(_ari(a, b), 4) for a, b in zip(reference[key], got)],
                   "fit_seconds": round(seconds / len(seeds), 2)}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    write_json(args.out, {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "command": command("float_noise.py", argv),
                          "vectors_equal_to_run": same_as_run, "rows": rows})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
