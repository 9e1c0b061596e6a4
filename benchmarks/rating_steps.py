"""Seconds per training epoch of the global rating models as the log grows: this code against a git revision,
side by side in one run (issue 13: an epoch must grow with the interactions, not with their product with users).

    python benchmarks/rating_steps.py --rev 670add0                       # 10k, 30k and 100k users, SVD++ and MF
    python benchmarks/rating_steps.py --rev 670add0 --sizes 10000 --models svdpp

For each size (users; items = users / 5, 30 interactions per user on average, as ``benchmarks/scale.py``), a fresh
process per code version draws ``synthetic_log(n_users, n_users // 5, mean_per_user=30, seed=0)``, splits it
random90 (seed 0) and fits ``predictor.model`` = svdpp or mf for a fixed number of epochs (``--epochs``, no early
stop, no refit; SVD++ without item side features, as no texts are embedded), and prints the seconds per epoch and
the validation RMSE after those epochs. The revision's code is exported with ``git archive`` into a temporary
folder. Rows go to ``benchmarks/results/rating_steps.json``; the ratio is the revision's seconds over this code's.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "rating_steps.json"


def _child(code: str, model: str, n_users: int, epochs: int) -> None:
    sys.path.insert(0, code)
    from segmentation.config import PredictorConfig
    from segmentation.data import split_ratings
    from segmentation.predict import fit_global_predictor
    from segmentation.synthetic import synthetic_log

    split = split_ratings(synthetic_log(n_users, n_users // 5, mean_per_user=30, seed=0).interactions, "random90",
                          seed=0)  # fmt: skip
    section = {"epochs": epochs, "patience": epochs}
    if model == "svdpp":
        section["side_features"] = False
    config = PredictorConfig.model_validate({"model": model, "refit": False, model: section})
    t0 = time.perf_counter()
    fitted = fit_global_predictor(split, config, seed=42)
    seconds = time.perf_counter() - t0
    valid = [h["valid_rmse"] for h in fitted.history_ if h.get("valid_rmse") is not None]
    print(json.dumps({"train_rows": split.train.height, "seconds": round(seconds, 2),
                      "seconds_per_epoch": round(seconds / epochs, 2), "valid_rmse": round(valid[-1], 5)}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", required=True, help="the git revision to compare with")
    ap.add_argument("--sizes", nargs="+", type=int, default=[10_000, 30_000, 100_000])
    ap.add_argument("--models", nargs="+", default=["svdpp", "mf"], choices=["svdpp", "mf"])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], int(args.child[2]), int(args.child[3]))
        return
    old = Path(tempfile.mkdtemp(prefix="segflow-rev-"))
    archive = subprocess.run(["git", "archive", args.rev, "segmentation", "embeddings"], cwd=ROOT, check=True,
                             capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    env = {**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1"}
    rows = []
    for n_users in args.sizes:
        for model in args.models:
            row = {"model": model, "n_users": n_users, "n_items": n_users // 5, "epochs": args.epochs,
                   "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                   "load_avg_1min_before": round(os.getloadavg()[0], 2)}  # fmt: skip
            for label, code in (("this", ROOT), (args.rev, old)):
                proc = subprocess.run([sys.executable, __file__, "--rev", args.rev, "--child", str(code), model,
                                       str(n_users), str(args.epochs)], capture_output=True, text=True, env=env)  # fmt: skip
                if proc.returncode != 0:
                    sys.exit(f"{label} code, {model} at {n_users:,} users failed:\n{proc.stderr[-2000:]}")
                row[label] = json.loads(proc.stdout.strip().splitlines()[-1])
            row["ratio"] = round(row[args.rev]["seconds_per_epoch"] / row["this"]["seconds_per_epoch"], 2)
            print(json.dumps(row), flush=True)
            rows.append(row)
    OUT.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
