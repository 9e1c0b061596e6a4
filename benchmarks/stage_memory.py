"""Peak memory and seconds of the per-user stages that set a large run's peak, this code against a git revision,
side by side in one run (issue 13: the M run's peak was set by describe_users, build_user_vectors and
describe_segments).

    python benchmarks/stage_memory.py --rev 79bc30e --data FOLDER      # a SyntheticLog.write folder (CSV)
    python benchmarks/stage_memory.py --rev 79bc30e --size S            # draws synthetic_log S first

``FOLDER`` holds ``ratings.csv``, ``items.csv``, ``users.csv`` and ``labels.csv`` as ``SyntheticLog.write`` leaves
them (the scale benchmark's files). For each code version a fresh process loads them through ``load_files`` with
``segflow run``'s column flags, keeps random90's train rows (seed 0), and calls in turn ``describe_users``,
``build_user_vectors`` (the default representation, centred, over seeded random 384-d item vectors: memory and time
do not depend on what the vectors say) and ``describe_segments`` (the planted labels as segments). It prints each
call's seconds and its peak RSS over the process's RSS just before the call (sampled every 20 ms). The revision's
code is exported with ``git archive`` into a temporary folder. Rows go to ``benchmarks/results/stage_memory.json``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "stage_memory.json"


def _rss_mib() -> int:
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) // 1024


def _child(code: str, folder: str) -> None:
    sys.path.insert(0, code)
    import numpy as np
    import polars as pl

    from embeddings.encoder import Embeddings
    from embeddings.text import describe_items, describe_users
    from segmentation.config import ColumnMapping
    from segmentation.data import load_files, split_ratings
    from segmentation.describe import describe_segments
    from segmentation.represent import build_user_vectors

    high = [0]

    def watch() -> None:
        while True:
            high[0] = max(high[0], _rss_mib())
            time.sleep(0.02)

    threading.Thread(target=watch, daemon=True).start()
    data = Path(folder)
    cols = ColumnMapping(user="user", item="item", rating="stars", timestamp="time", item_id="item_id", title="name",
                         categories="categories", text=["description"])  # fmt: skip
    ds = load_files(data / "ratings.csv", data / "items.csv", data / "users.csv", columns=cols)
    train = split_ratings(ds.interactions, "random90").train_full
    ids = np.asarray(sorted(ds.items["item_id"].to_list()), dtype=object)
    items = Embeddings(ids, np.random.default_rng(0).standard_normal((len(ids), 384)).astype(np.float32), "random")
    labels = pl.read_csv(data / "labels.csv", schema_overrides={"user_id": pl.String})
    seg = labels["segment"].cast(pl.Int32)
    assignments = labels.select("user_id").with_columns(segment_id=seg, membership=pl.lit(1.0, pl.Float32), nearest_segment=seg,
                                      nearest_membership=pl.lit(1.0, pl.Float32))  # fmt: skip
    texts = describe_items(ds.items)
    calls = {
        "describe_users": lambda: describe_users(train, ds.items),
        "build_user_vectors": lambda: build_user_vectors(
            train, items, method="item-mean+liked-category-hist", items=ds.items, centre=True
        ),  # fmt: skip
        "describe_segments": lambda: describe_segments(assignments, train, ds.items, texts, ds.users),
    }
    out = {"train_rows": train.height}
    for name, call in calls.items():
        base = _rss_mib()
        high[0] = base
        t0 = time.perf_counter()
        result = call()
        out[name] = {"seconds": round(time.perf_counter() - t0, 1), "peak_over_base_mib": high[0] - base,
                     "base_mib": base}  # fmt: skip
        del result
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", required=True, help="the git revision to compare with")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="a folder SyntheticLog.write wrote (CSV)")
    src.add_argument("--size", choices=["XS", "S", "M"], help="draw synthetic_log of this named size first")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="segflow-stage-memory-") as tmp:
        folder = args.data
        if folder is None:
            sys.path.insert(0, str(ROOT))
            from segmentation.synthetic import SIZES, synthetic_log

            s = SIZES[args.size]
            folder = Path(tmp) / "data"
            synthetic_log(s["n_users"], s["n_items"], mean_per_user=s["mean_per_user"], seed=0).write(folder, fmt="csv")
        old = Path(tmp) / "old"
        old.mkdir()
        archive = subprocess.run(["git", "archive", args.rev, "segmentation", "embeddings"], cwd=ROOT, check=True,
                                 capture_output=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        row = {
            "data": str(args.data) if args.data else f"synthetic_log {args.size}, seed 0",
            "rev": args.rev,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load_avg_1min_before": os.getloadavg()[0],
        }
        env = {**os.environ, "PYTHONPATH": ""}
        for label, code in (("this", str(ROOT)), (args.rev, str(old))):
            proc = subprocess.run([sys.executable, __file__, "--rev", args.rev, "--data", str(folder), "--child", code,
                                   str(folder)], env=env, capture_output=True, text=True, check=True)  # fmt: skip
            row[label] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(label, row[label], flush=True)
    rows = json.loads(OUT.read_text()) if OUT.is_file() else []
    OUT.write_text(json.dumps([*rows, row], indent=1) + "\n")


if __name__ == "__main__":
    main()
