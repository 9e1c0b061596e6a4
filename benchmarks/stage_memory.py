"""Peak memory and seconds of the per-user stages that set a large run's peak, this code against a git revision,
side by side in one run (issue 13: the M run's peak was set by describe_users, build_user_vectors and
describe_segments).

    python benchmarks/stage_memory.py --rev 79bc30e --data FOLDER      # a SyntheticLog.write folder (CSV)
    python benchmarks/stage_memory.py --rev 79bc30e --size S            # draws synthetic_log S first

``FOLDER`` holds ``ratings.csv``, ``items.csv``, ``users.csv`` and ``labels.csv`` as ``SyntheticLog.write`` leaves
them (the scale benchmark's files). One process loads them through ``load_files`` with ``segflow run``'s column
flags, keeps random90's train rows (seed 0) and writes them, the items, the users and the planted labels as
Parquet. Then each stage runs in a fresh process per code version, which reads those files and calls it:
``describe_users``, ``build_user_vectors`` (the default representation, centred, over seeded random 384-d item
vectors: memory and time do not depend on what the vectors say) or ``describe_segments`` (the planted labels as
segments, with seeded random 432-d user vectors for its representative users). It prints the call's seconds and
its peak RSS over the process's RSS just before the call (sampled every 20 ms). Reading Parquet leaves little
freed-but-kept memory behind, which a stage would reuse unseen: measured after the loader itself in one process,
``describe_segments`` at M seemed to need 2.7 GiB in both versions. The revision's code is exported with
``git archive`` into a temporary folder. Rows go to ``benchmarks/results/stage_memory.json``.
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
STAGES = ("describe_users", "build_user_vectors", "describe_segments")
OUT = ROOT / "benchmarks" / "results" / "stage_memory.json"


def _prepare(folder: str, out: str) -> None:
    """Load the scale run's files as ``segflow run`` does, keep random90's train rows, and write what the stages
    read as Parquet: each measuring process then starts from a plain read, not from the loader's garbage (a
    freshly loaded process holds gigabytes its allocator has freed but kept, which a stage reuses unseen)."""
    sys.path.insert(0, str(ROOT))
    import polars as pl

    from embeddings.text import describe_items
    from segmentation.config import ColumnMapping
    from segmentation.data import load_files, split_ratings

    data, dest = Path(folder), Path(out)
    cols = ColumnMapping(user="user", item="item", rating="stars", timestamp="time", item_id="item_id", title="name",
                         categories="categories", text=["description"])  # fmt: skip
    ds = load_files(data / "ratings.csv", data / "items.csv", data / "users.csv", columns=cols)
    split_ratings(ds.interactions, "random90").train_full.write_parquet(dest / "train.parquet")
    ds.items.write_parquet(dest / "items.parquet")
    describe_items(ds.items).write_parquet(dest / "texts.parquet")
    if ds.users is not None:
        ds.users.write_parquet(dest / "users.parquet")
    labels = pl.read_csv(data / "labels.csv", schema_overrides={"user_id": pl.String})
    seg = labels["segment"].cast(pl.Int32)
    labels.select("user_id").with_columns(segment_id=seg, membership=pl.lit(1.0, pl.Float32), nearest_segment=seg,
                                          nearest_membership=pl.lit(1.0, pl.Float32)).write_parquet(
        dest / "assignments.parquet")  # fmt: skip


def _child(code: str, prepared: str, stage: str) -> None:
    sys.path.append(str(ROOT))  # last: the sampler from here, the stages from ``code``
    from benchmarks._memory import PeakSampler

    sys.path.insert(0, code)
    import numpy as np
    import polars as pl

    from embeddings.encoder import Embeddings
    from embeddings.text import describe_users
    from segmentation.describe import describe_segments
    from segmentation.represent import build_user_vectors

    peak = PeakSampler(every=0.02)
    src = Path(prepared)
    train = pl.read_parquet(src / "train.parquet")
    items_frame = pl.read_parquet(src / "items.parquet")
    users = pl.read_parquet(src / "users.parquet") if (src / "users.parquet").is_file() else None
    ids = np.asarray(sorted(items_frame["item_id"].to_list()), dtype=object)
    items = Embeddings(ids, np.random.default_rng(0).standard_normal((len(ids), 384)).astype(np.float32), "random")
    calls = {
        "describe_users": lambda: describe_users(train, items_frame),
        "build_user_vectors": lambda: build_user_vectors(
            train, items, method="item-mean+liked-category-hist", items=items_frame, centre=True
        ),  # fmt: skip
    }
    if stage == "describe_segments":
        assignments = pl.read_parquet(src / "assignments.parquet")
        texts = pl.read_parquet(src / "texts.parquet")
        # user vectors as the flow's describe stage passes them (representative users): 432-d, the default
        # representation's width at 384-d item vectors
        vectors = np.random.default_rng(1).standard_normal((assignments.height, 432)).astype(np.float32)
        calls["describe_segments"] = lambda: describe_segments(assignments, train, items_frame, texts, users,
                                                               user_vectors=vectors)  # fmt: skip
    base = peak.start()
    t0 = time.perf_counter()
    result = calls[stage]()
    print(json.dumps({"train_rows": train.height, stage: {"seconds": round(time.perf_counter() - t0, 1),
                                                          "peak_over_base_mib": peak.over_base,
                                                          "base_mib": base}}))  # fmt: skip
    del result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", required=True, help="the git revision to compare with")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="a folder SyntheticLog.write wrote (CSV)")
    src.add_argument("--size", choices=["XS", "S", "M"], help="draw synthetic_log of this named size first")
    ap.add_argument(
        "--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)} (default: all)"
    )
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--prepare", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    if args.prepare:
        _prepare(str(args.data), args.prepare)
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
            "stages": args.stages,
        }
        env = {**os.environ, "PYTHONPATH": ""}
        prepared = Path(tmp) / "prepared"
        prepared.mkdir()
        subprocess.run([sys.executable, __file__, "--rev", args.rev, "--data", str(folder), "--prepare",
                        str(prepared)], env=env, check=True)  # fmt: skip
        for label, code in (("this", str(ROOT)), (args.rev, str(old))):
            row[label] = {}
            for stage in args.stages.split(","):  # each stage in a fresh process
                proc = subprocess.run([sys.executable, __file__, "--rev", args.rev, "--data", str(folder), "--child",
                                       code, str(prepared), stage], env=env, capture_output=True, text=True,
                                      check=True)  # fmt: skip
                got = json.loads(proc.stdout.strip().splitlines()[-1])
                row[label] |= got
                print(label, got, flush=True)
    rows = json.loads(OUT.read_text()) if OUT.is_file() else []
    OUT.write_text(json.dumps([*rows, row], indent=1) + "\n")


if __name__ == "__main__":
    main()
