"""Peak memory of persisting one cached stage's result: Prefect's own pickle serializer against segflow's data file
(flows/result_blobs.py), side by side in one run, each write and read in a fresh process (issue 13).

    python benchmarks/result_memory.py --users 1000000      # the represent stage's result at M's size

The result is what the represent stage returns at that size: ``Embeddings`` of n users x 432 float32 (ids, activity)
and the behaviour-profile frame (one sentence of about 120 characters per user), seeded random. For each serializer a
fresh process builds it, then writes it through ``prefect.results.ResultStore`` into a temporary folder (as a cached
task does) and reports the seconds and its peak RSS over the RSS just before the write (sampled every 10 ms); a
second fresh process reads it back and reports the same. Rows go to ``benchmarks/results/result_memory.json``.
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
OUT = ROOT / "benchmarks" / "results" / "result_memory.json"


def _child(serializer: str, folder: str, users: int, mode: str) -> None:
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import polars as pl
    from prefect.filesystems import LocalFileSystem
    from prefect.results import ResultStore
    from prefect.serializers import PickleSerializer

    from benchmarks._memory import PeakSampler
    from embeddings.encoder import Embeddings
    from flows.result_blobs import BlobSerializer

    peak = PeakSampler(every=0.01)
    ser = PickleSerializer() if serializer == "prefect-pickle" else BlobSerializer(folder=str(Path(folder) / "blobs"))
    store = ResultStore(result_storage=LocalFileSystem(basepath=folder), serializer=ser)
    if mode == "write":
        rng = np.random.default_rng(0)
        ids = np.array([f"u{i}" for i in range(users)], dtype=object)
        vectors = rng.standard_normal((users, 432)).astype(np.float32)
        result = (Embeddings(ids, vectors, "m", rng.integers(1, 200, users)),
                  pl.DataFrame({"user_id": ids.astype(str),
                                "profile": [f"Active user with {i % 300} ratings (mean 3.{i % 10}). Loves Title {i % 977}, "
                                            f"Title {i % 613}, Title {i % 131}. Favourite genres: Drama, Comedy."
                                            for i in range(users)]}))  # fmt: skip
    base = peak.start()
    t0 = time.perf_counter()
    if mode == "write":
        store.write(result, key="represent-bench")
    else:
        result = store.read("represent-bench").result
    seconds = time.perf_counter() - t0
    files = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    print(json.dumps({"seconds": round(seconds, 1), "peak_over_base_mib": peak.over_base, "base_mib": base,
                      "bytes_on_disk": files}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        serializer, folder, users, mode = args.child
        _child(serializer, folder, int(users), mode)
        return
    row: dict = {"users": args.users, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                 "load_avg_1min_before": os.getloadavg()[0]}  # fmt: skip
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    for serializer in ("prefect-pickle", "segflow-blob"):
        with tempfile.TemporaryDirectory(prefix="segflow-result-memory-") as tmp:
            for mode in ("write", "read"):
                proc = subprocess.run([sys.executable, __file__, "--child", serializer, tmp, str(args.users), mode],
                                      env=env, capture_output=True, text=True, check=True)  # fmt: skip
                row[f"{serializer} {mode}"] = json.loads(proc.stdout.strip().splitlines()[-1])
                print(serializer, mode, row[f"{serializer} {mode}"], flush=True)
    rows = json.loads(OUT.read_text()) if OUT.is_file() else []
    OUT.write_text(json.dumps([*rows, row], indent=1) + "\n")


if __name__ == "__main__":
    main()
