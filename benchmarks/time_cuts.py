"""The two time cuts for M scale (issue 13), old against new in one process on a scale run's files: the rating model's
early stopping in training ratings (``predictor.mf.patience_ratings``) and ALS's validation grid on a sample of users
(``ranker.grid_max_users``).

    python benchmarks/time_cuts.py --data /tmp/s22/memS/data                  # S: caps forced so it behaves as M would
    python benchmarks/time_cuts.py --data FOLDER --patience-ratings 0 --grid-max-users 0   # the defaults

``FOLDER`` holds ``ratings.csv``, ``items.csv`` and ``users.csv`` as ``SyntheticLog.write`` leaves them (the scale
benchmark's files). They are loaded through ``load_files`` with ``segflow run``'s column flags and split as a run
splits them (random90, valid 10 % of train, seed 42, the run's default seed). Then, each twice in turn, old (the cap
off) and new (the cap given):

- the global rating model as the M run fitted it (MF: the blend there was MF alone), default settings, refitted on
  train + valid with the best epoch, seed 42: seconds (fit and refit), epochs run, best epoch, valid RMSE, test RMSE,
  and whether the test predictions are bit-identical. ``--patience-ratings`` defaults to S's training ratings per
  epoch, so that S stops one epoch past its best as M (23.5M per epoch) did under the default of then, 20M (2M since);
- ALS as the rank stage fits it (random90's train + valid, the catalogue, seed 42, ``ranker.threads`` = 0): seconds of
  the fit (grid and final fit), the chosen point, its validation NDCG@10 (on the carve's scored users: not comparable
  between the two when the grid sampled), and NDCG@10 on the test split over the run's seeded sample of at most
  50,000 test users (``evaluate.ranking_max_users``), relevance at rating 4 or above.

0 for either cap uses the configured default instead of forcing one. A row goes to ``benchmarks/results/
time_cuts.json`` (appended).
"""

import argparse
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "time_cuts.json"
SEED = 42


def _rating(split, patience_ratings: int | None | str) -> tuple[dict, np.ndarray]:
    from segmentation._metrics import rmse
    from segmentation.config import PredictorConfig
    from segmentation.predict import fit_global_predictor

    mf = {} if patience_ratings == "default" else {"patience_ratings": patience_ratings}
    config = PredictorConfig.model_validate({"model": "mf", "mf": mf})
    t0 = time.perf_counter()
    model = fit_global_predictor(split, config, seed=SEED)
    seconds = time.perf_counter() - t0
    pred = model.predict(split.test)
    valid = [h["valid_rmse"] for h in model.history_ if h.get("valid_rmse") is not None]
    return {
        "patience": config.mf.patience, "patience_ratings": config.mf.patience_ratings,
        "seconds": round(seconds, 1), "epochs_run": len(model.history_), "best_epoch": model.best_epoch_,
        "valid_rmse": round(model.valid_rmse_["model"], 5), "valid_rmse_by_epoch": [round(v, 5) for v in valid],
        "test_rmse": round(rmse(split.test["rating"].to_numpy(), pred), 5),
    }, pred  # fmt: skip


def _als(split, dataset, grid_max_users: int | None | str, test_users: list[str]) -> tuple[dict, Any]:
    from segmentation.config import RankerConfig
    from segmentation.evaluate import ranking_per_user
    from segmentation.rank import ALS

    config = RankerConfig() if grid_max_users == "default" else RankerConfig(grid_max_users=grid_max_users)
    t0 = time.perf_counter()
    ranker = ALS(config).fit(split.train_full, items=dataset.items, seed=SEED, implicit=dataset.implicit)
    seconds = time.perf_counter() - t0
    recs = ranker.recommend(test_users, 10)
    ndcg = ranking_per_user(recs, split.test.filter(split.test["user_id"].is_in(test_users)), k=10,
                            relevance_threshold=4.0)["ndcg"].mean()  # fmt: skip
    best = max(ranker.validation_, key=lambda v: v["ndcg@10"])
    return {
        "grid_max_users": config.grid_max_users, "seconds": round(seconds, 1),
        "chosen": {k: ranker.params_[k] for k in ("factors", "reg", "iterations")},
        "valid_ndcg@10": best["ndcg@10"], "test_ndcg@10": round(float(ndcg), 5),
        "validation": ranker.validation_,
    }, recs  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a folder SyntheticLog.write wrote (CSV)")
    ap.add_argument("--patience-ratings", type=int, default=None,
                    help="the new run's predictor.mf.patience_ratings (default: the log's training ratings per epoch, "
                    "one epoch; 0: the configured default)")  # fmt: skip
    ap.add_argument(
        "--grid-max-users",
        type=int,
        default=20_000,
        help="the new run's ranker.grid_max_users (0: the configured default)",
    )
    ap.add_argument("--parts", nargs="+", default=["rating", "als"], choices=["rating", "als"])
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from segmentation.config import ColumnMapping
    from segmentation.data import load_files, split_ratings
    from segmentation.rank.stage import sample_test_users

    t0 = time.perf_counter()
    data = args.data
    cols = ColumnMapping(user="user", item="item", rating="stars", timestamp="time", item_id="item_id", title="name",
                         categories="categories", text=["description"])  # fmt: skip
    dataset = load_files(data / "ratings.csv", data / "items.csv", data / "users.csv", columns=cols)
    split = split_ratings(dataset.interactions, "random90", valid_fraction=0.1, seed=SEED)
    row: dict = {
        "data": str(data), "n_users": dataset.interactions["user_id"].n_unique(),
        "n_items": dataset.interactions["item_id"].n_unique(), "n_interactions": dataset.interactions.height,
        "train_rows": split.train.height, "valid_rows": split.valid.height, "test_rows": split.test.height,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "load_avg_1min_before": round(os.getloadavg()[0], 2),
        "load_seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    print(json.dumps(row), flush=True)
    if "rating" in args.parts:
        cap = args.patience_ratings
        new_cap: int | str = split.train.height if cap is None else (cap or "default")
        old, old_pred = _rating(split, None)
        print(json.dumps({"mf_old": old}), flush=True)
        new, new_pred = _rating(split, new_cap)
        print(json.dumps({"mf_new": new}), flush=True)
        row["mf"] = {"old": old, "new": new, "same_test_predictions": bool(np.array_equal(old_pred, new_pred)),
                     "seconds_saved": round(old["seconds"] - new["seconds"], 1)}  # fmt: skip
    if "als" in args.parts:
        test_users = list(sample_test_users(split.test, 50_000, SEED).users)
        old, old_recs = _als(split, dataset, None, test_users)
        print(json.dumps({"als_old": old}), flush=True)
        new, new_recs = _als(split, dataset, args.grid_max_users or "default", test_users)
        print(json.dumps({"als_new": new}), flush=True)
        row["als"] = {"old": old, "new": new, "n_test_users": len(test_users),
                      "same_lists": bool(old_recs.equals(new_recs)),
                      "seconds_saved": round(old["seconds"] - new["seconds"], 1)}  # fmt: skip
    row["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(row), flush=True)
    rows = json.loads(OUT.read_text()) if OUT.is_file() else []
    OUT.write_text(json.dumps([*rows, row], indent=1) + "\n")


if __name__ == "__main__":
    main()
