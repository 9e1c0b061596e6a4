"""How many training ratings past its best epoch a rating model's validation RMSE has ever recovered, on tuning
worlds only: the evidence for the default of ``predictor.{mf,svdpp,autorec}.patience_ratings`` (issue 13).

    python benchmarks/patience.py                                  # the default worlds and models
    python benchmarks/patience.py --sizes 10000 --models mf        # a quicker look

Each world is split random90 (seed 0) and each model (``predictor.model`` = svdpp or mf, no refit; SVD++
without item side features, as no texts are embedded) is fitted once with ``patience = --patience`` epochs and
no ratings bound, so it trains well past its best epoch. From the per-epoch validation RMSE the script finds:

- ``recoveries``: every time a new best epoch came after one or more epochs without a better validation RMSE,
  with how many training ratings had passed since the previous best (epochs x training ratings per epoch);
  ``longest_recovery_ratings`` the largest (0: the RMSE never came back once it had got worse);
- per candidate bound (``--bounds``, with ``patience`` = 5 as the flow's default): the epoch training would
  stop at, the best epoch it would keep, that epoch's validation RMSE against the long run's best (``regret``)
  and the epochs it saves. Early stopping only ends training sooner, so these are read off the one long run:
  the epochs before the stop are the same fit.

The worlds are the planted tuning worlds only (``segmentation.synthetic.WORLDS`` with role ``tuning``: taste,
style, light; ``world_log(name, n, n_items=max(3000, n // 5), seed=--seed)``) at ``--sizes`` users, never the
held-out worlds nor the reported S and M logs (``synthetic_log`` seed 0). MovieLens 100k is left out: at about 81k
training ratings per epoch, patience = 5 ends its fits after at most 405k ratings, under every bound tried. Rows go
to ``benchmarks/results/patience.json``.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._results import command, write_json  # noqa: E402
from segmentation._predict_mf import early_stop  # noqa: E402
from segmentation.config import PredictorConfig  # noqa: E402
from segmentation.data import Split, split_ratings  # noqa: E402
from segmentation.predict import fit_global_predictor  # noqa: E402
from segmentation.synthetic import WORLDS, world_log  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "patience.json"

BOUNDS = [20_000_000, 10_000_000, 5_000_000, 3_000_000, 2_000_000, 1_000_000, 500_000]


def recoveries(valid: list[float], n_train: int) -> list[dict]:
    """Each new best that came after epochs without one: the epoch, the previous best and the ratings between."""
    out, best, best_epoch = [], valid[0], 0
    for epoch, score in enumerate(valid[1:], start=1):
        if score < best:
            since = epoch - 1 - best_epoch
            if since >= 1:
                out.append({"epoch": epoch, "previous_best": best_epoch, "epochs_without": since,
                            "ratings_without": since * n_train, "gain": round(best - score, 6)})  # fmt: skip
            best, best_epoch = score, epoch
    return out


def replay(valid: list[float], n_train: int, patience: int, bound: int | None) -> dict:
    """Where early stopping with these bounds ends on this history (``valid[0]``: before training)."""
    best, best_epoch, stop_epoch = valid[0], 0, len(valid) - 1
    for epoch, score in enumerate(valid[1:], start=1):
        if score < best:
            best, best_epoch = score, epoch
        elif early_stop(epoch, best_epoch, n_train, patience, bound):
            stop_epoch = epoch
            break
    return {"bound": bound, "stop_epoch": stop_epoch, "best_epoch": best_epoch, "valid_rmse": round(best, 6),
            "regret": round(best - min(valid), 6), "epochs_saved": len(valid) - 1 - stop_epoch}  # fmt: skip


def fit_history(split: Split, model: str, patience: int) -> tuple[list[float], float]:
    """The validation RMSE per epoch (index 0: before training) of one long fit, and its seconds."""
    section: dict = {"patience": patience, "patience_ratings": None}
    if model == "svdpp":
        section["side_features"] = False
    config = PredictorConfig.model_validate({"model": model, "refit": False, model: section})
    t0 = time.perf_counter()
    fitted = fit_global_predictor(split, config, seed=42)
    seconds = time.perf_counter() - t0
    history = [h for h in fitted.history_ if h.get("valid_rmse") is not None]
    valid = [float(h["valid_rmse"]) for h in sorted(history, key=lambda h: h["epoch"])]
    if history[0]["epoch"] != 0:  # SVD++ records no epoch 0: the long run's first epoch is the first to beat
        valid = [float("inf"), *valid]
    return valid, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[2_000, 10_000, 30_000])
    tuning = [name for name, w in WORLDS.items() if w.role == "tuning"]
    ap.add_argument("--worlds", nargs="+", default=tuning, choices=tuning)
    ap.add_argument("--models", nargs="+", default=["svdpp", "mf"], choices=["svdpp", "mf"])
    ap.add_argument("--patience", type=int, default=10, help="epochs past the best the long run trains")
    ap.add_argument("--seed", type=int, default=1, help="the worlds' seed")
    ap.add_argument("--bounds", nargs="+", type=int, default=BOUNDS)
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        for world in args.worlds:
            name = f"{world}, {n:,} users, seed {args.seed}"
            log = world_log(world, n, n_items=max(3000, n // 5), seed=args.seed).interactions
            split = split_ratings(log, "random90", seed=0)
            for model in args.models:
                valid, seconds = fit_history(split, model, args.patience)
                n_train = split.train.height
                rec = recoveries(valid, n_train)
                row = {"world": name, "model": model, "train_ratings_per_epoch": n_train, "epochs": len(valid) - 1,
                       "seconds": round(seconds, 1), "valid_rmse": [round(v, 6) for v in valid if np.isfinite(v)],
                       "best_epoch": int(np.argmin(valid)), "recoveries": rec,
                       "longest_recovery_ratings": max((r["ratings_without"] for r in rec), default=0),
                       "replay": [replay(valid, n_train, 5, b) for b in [None, *args.bounds]]}  # fmt: skip
                print(f"{name}, {model}: {row['epochs']} epochs of {n_train:,} ratings in {seconds:.0f} s, best epoch "
                      f"{row['best_epoch']}, longest recovery {row['longest_recovery_ratings']:,} ratings", flush=True)  # fmt: skip
                rows.append(row)
    longest = max(r["longest_recovery_ratings"] for r in rows)
    write_json(OUT, {"command": command("patience.py", None), "patience": args.patience, "seed": args.seed,
                                 "longest_recovery_ratings": longest, "rows": rows})  # fmt: skip
    print(f"longest recovery over every world and model: {longest:,} training ratings")


if __name__ == "__main__":
    main()
