"""segflow at scale: the documented CLI end to end on synthetic logs of growing size (issue 13, item 7).

    python benchmarks/scale.py [--sizes XS 5k 20k] [--feedback explicit implicit] [--set KEY=VALUE ...]
    python benchmarks/scale.py --table          # print the tables of benchmarks/results/scale.json

For each requested size (a name of :data:`SIZES`), a log with planted segments is drawn with
``segmentation.synthetic.synthetic_log`` (seed 0) and written as CSV in the shape of a real export (ratings,
items, user attributes; the planted truth kept aside). Then the command a user would type runs in a fresh
process under ``/usr/bin/time -v``, with a fresh cache folder (so every text is embedded and every stage
computed) and the default configuration::

    python -m flows.cli run --ratings ratings.csv --items items.csv --users users.csv \\
        --user-col user --item-col item --rating-col stars --time-col time \\
        --item-id-col item_id --title-col name --category-col categories --text-cols description \\
        --output OUT --set cache_dir='FRESH'

(implicit logs: ``--user-col userID --item-col artistID --rating-col '' --weight-col weight --item-id-col id
--category-col tags``). One row per run is appended to ``benchmarks/results/scale.json``:

- ``n_items``: the items that occur in the log (``n_catalogue``: the items file's rows);
- ``seconds``: wall clock of the command (``/usr/bin/time``'s elapsed), process start and Prefect's temporary
  server included; ``peak_mib``: its "Maximum resident set size" (the largest single process of the tree,
  which is the flow's own process);
- ``stage_seconds``: the run's ``metrics.json`` ``timings`` (seconds per stage from when its inputs were
  ready; ``flow`` is the whole flow), ``rankers_seconds`` the fit seconds per ranker;
- ``ari``: adjusted Rand index of the run's segments (``users.parquet``, outliers -1) against the planted
  segments (noise users -1), over every user; ``ari_excl_noise`` over the users whose truth is a segment;
  ``truth_breakdown`` where each planted segment went (its majority found segment, the shares, that segment's
  purity);
- ``ndcg@10``: the run's primary ranker's NDCG@10 on the test split (``primary_ranker``: the segflow ranker, or
  ALS where the dense rankers are over ``ranker.dense_budget_mib``; ``ndcg@10_popularity`` the most-popular
  floor's; ``rankers`` which rankers the run chose); ``rmse``: the global rating model's test RMSE
  (``rmse_segmented`` with the per-segment models); null where absent (implicit feedback has no RMSE).

The tables printed at the end (and by ``--table``): one row per run, and the growth between consecutive
sizes of the same feedback and shape (XS and mls-shape left out: their item/user ratios differ): the ratio of interactions, of seconds
and of peak MiB, each with its log-log slope against interactions (1 = linear), and per stage the ratio of
its seconds. The child's stdout and stderr are kept in ``benchmarks/results/scale_logs/<data>.log`` only with ``--keep-logs``.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segmentation.synthetic import CLI_COLUMNS, synthetic_log  # noqa: E402
from segmentation.synthetic import SIZES as NAMED  # noqa: E402

#: Sizes: XS as the generator names it, then S's ratios (1 item per 5 users, 30
#: interactions per user on average) at growing user counts, then S and M themselves.
SIZES: dict[str, dict[str, int]] = {
    "XS": NAMED["XS"],
    "5k": {"n_users": 5_000, "n_items": 1_000, "mean_per_user": 30},
    "10k": {"n_users": 10_000, "n_items": 2_000, "mean_per_user": 30},
    "20k": {"n_users": 20_000, "n_items": 4_000, "mean_per_user": 30},
    "50k": {"n_users": 50_000, "n_items": 10_000, "mean_per_user": 30},
    "S": NAMED["S"],
    "M": NAMED["M"],
    # MovieLens latest-small's shape (610 users, 9,742 items, 100,836 ratings; the data set itself is not reachable
    # from this machine): few users with long histories over a wide catalogue, where items-cubed fits hurt
    "mls-shape": {"n_users": 610, "n_items": 9_742, "mean_per_user": 260},  # 101,555 interactions
}
#: Sizes of another shape than S's (items per user, interactions per user): left out of the growth table.
OTHER_SHAPES = ("XS", "mls-shape")
OUT = ROOT / "benchmarks" / "results" / "scale.json"


def _time_v(stderr: str) -> tuple[float | None, float | None]:
    """Elapsed seconds and maximum RSS (MiB) from ``/usr/bin/time -v``'s report."""
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", stderr)
    seconds = None
    if wall:
        parts = [float(p) for p in wall.group(1).split(":")]
        seconds = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    return seconds, (int(peak.group(1)) / 1024 if peak else None)


def _ari(run: Path, labels: pl.DataFrame) -> dict:
    from sklearn.metrics import adjusted_rand_score

    found = pl.read_parquet(run / "users.parquet").select("user_id", "segment_id")
    both = labels.join(found, on="user_id", how="inner")
    truth, seg = both["segment"].to_numpy(), both["segment_id"].to_numpy()
    keep = truth >= 0
    return {"ari": round(float(adjusted_rand_score(truth, seg)), 4),
            "ari_excl_noise": round(float(adjusted_rand_score(truth[keep], seg[keep])), 4),
            "n_segments": int(len(np.unique(seg[seg >= 0]))), "outlier_share": round(float((seg < 0).mean()), 4),
            "users_scored": int(both.height), "truth_breakdown": _breakdown(truth, seg)}  # fmt: skip


def _breakdown(truth: np.ndarray, seg: np.ndarray) -> list[dict]:
    """Where each planted segment (and the noise users, -1) went: its size, the found segment holding most of it
    and that segment's share of it, its share labelled outlier, and the found segment's purity (the share of
    that segment's users from this planted segment): a merge shows as two planted segments with one majority."""
    out = []
    for t in np.unique(truth):
        mine = seg[truth == t]
        clustered = mine[mine >= 0]
        major = int(np.bincount(clustered).argmax()) if len(clustered) else -1
        in_major = int((mine == major).sum()) if major >= 0 else 0
        out.append({"planted": int(t), "n": int(len(mine)), "majority_segment": major,
                    "majority_share": round(in_major / len(mine), 4), "outlier_share": round(float((mine < 0).mean()), 4),
                    "majority_purity": round(in_major / max(int((seg == major).sum()), 1), 4) if major >= 0 else None})  # fmt: skip
    return out


def _num(x):
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def one(name: str, feedback: str, extra: list[str], keep_logs: bool, work: Path) -> dict:
    size = SIZES[name]
    t0 = time.perf_counter()
    log = synthetic_log(size["n_users"], size["n_items"], mean_per_user=size["mean_per_user"], feedback=feedback,
                        seed=0)  # fmt: skip
    folder = work / f"{name}-{feedback}"
    files = log.write(folder / "data", fmt="csv")
    drawn = time.perf_counter() - t0
    out, cache = folder / "runs", folder / "cache"
    argv = ["/usr/bin/time", "-v", sys.executable, "-m", "flows.cli", "run", "--ratings", str(files["ratings"]),
            "--items", str(files["items"]), "--users", str(files["users"]), *CLI_COLUMNS[feedback], "--output", str(out),
            "--set", f"cache_dir='{cache}'", *(a for s in extra for a in ("--set", s))]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1"}
    load_before = os.getloadavg()[0]
    print(f"[{name} {feedback}] {log.interactions.height:,} interactions drawn and written in {drawn:.1f}s; running",
          flush=True)  # fmt: skip
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds, peak = _time_v(proc.stderr)
    if keep_logs:
        logs = OUT.parent / "scale_logs"
        logs.mkdir(exist_ok=True)
        (logs / f"{name}-{feedback}.log").write_text(proc.stdout + proc.stderr)
    row = {"system": "segflow run (defaults)" + (f" + {' '.join(extra)}" if extra else ""),
           "data": f"synthetic_log {name}, {feedback}, seed 0", "size": name, "feedback": feedback,
           "n_users": size["n_users"], "n_items": int(log.interactions["item_id"].n_unique()),
           "n_catalogue": size["n_items"],
           "n_interactions": int(log.interactions.height), "seconds": round(seconds, 1) if seconds else None,
           "peak_mib": round(peak) if peak else None, "stage_seconds": None, "rankers_seconds": None,
           "ari": None, "ari_excl_noise": None, "ndcg@10": None, "ndcg@10_popularity": None, "rankers": None,
           "primary_ranker": None,
           "rmse": None, "rmse_segmented": None, "exit": proc.returncode,
           "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores", "load_avg_1min_before": round(load_before, 2),
           "load_avg_1min_after": round(os.getloadavg()[0], 2)}  # fmt: skip
    run = out / "latest"
    if proc.returncode != 0 or not (run / "metrics.json").is_file():
        print(proc.stderr[-3000:], file=sys.stderr)
        return row
    m = json.loads((run / "metrics.json").read_text())
    timings = m.get("timings", {})
    row["stage_seconds"] = {k: v for k, v in timings.items() if _num(v) is not None}
    row["rankers_seconds"] = timings.get("rankers")
    row.update(_ari(run, log.labels))
    ranking = m.get("ranking", {})
    row["rankers"] = [k for k, v in ranking.items() if isinstance(v, dict) and "ndcg@10" in v]
    row["primary_ranker"] = row["rankers"][-1] if row["rankers"] else None  # the run's primary ranker is its last
    row["ndcg@10"] = _num(ranking.get(row["primary_ranker"], {}).get("ndcg@10"))
    row["ndcg@10_popularity"] = _num(ranking.get("most-popular", {}).get("ndcg@10"))
    rating = m.get("rating", {})
    row["rmse"] = _num(rating.get("global", {}).get("rmse"))
    row["rmse_segmented"] = _num(rating.get("segmented", {}).get("rmse"))
    return row


def table(rows: list[dict]) -> str:
    def f(x, fmt=".3f"):
        return "" if x is None else format(x, fmt)

    lines = ["| data | users | items | interactions | seconds | peak MiB | ARI | NDCG@10 (pop.) | RMSE | slowest stages |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]  # fmt: skip
    for r in rows:
        st = r.get("stage_seconds") or {}
        top = sorted(((v, k) for k, v in st.items() if k != "flow"), reverse=True)[:3]
        failed = f" (failed, exit {r['exit']})" if r.get("exit") else ""
        failed += f" ({_overrides(r)})" if _overrides(r) else ""
        lines.append(f"| {r['size']} {r['feedback']}{failed} | {r['n_users']:,} | {r['n_items']:,} | {r['n_interactions']:,} | "
                     f"{f(r['seconds'], '.0f')} | {f(r['peak_mib'], ',')} | {f(r['ari'])} | "
                     f"{f(r['ndcg@10'])} ({f(r['ndcg@10_popularity'])}) | {f(r['rmse'])} | "
                     + ", ".join(f"{k} {v:.0f}" for v, k in top) + " |")  # fmt: skip
    return "\n".join(lines)


def _overrides(row: dict) -> str:
    """The ``--set`` overrides a row was run with ("" for the defaults), from its ``system``."""
    return row.get("system", "").partition(" + ")[2]


def growth(rows: list[dict]) -> str:
    """Growth between consecutive sizes of the same feedback: ratios and log-log slopes against interactions
    (rows run with ``--set`` overrides left out: another configuration, not another size; of a size run more than
    once, its latest row)."""
    lines = ["| from → to | interactions x | seconds x (slope) | peak MiB x (slope) | s per 1k interactions | "
             "MiB per 1k interactions | stages, seconds x |", "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]  # fmt: skip
    latest: dict[tuple, dict] = {}  # a size run again replaces its earlier row: one version of segflow per size
    for r in rows:
        if r.get("exit") == 0 and r.get("seconds") and r.get("peak_mib") and not _overrides(r):
            latest[(r["size"], r["feedback"])] = r
    done = list(latest.values())
    for fb in ("explicit", "implicit"):
        ok = sorted(
            (r for r in done if r["feedback"] == fb and r["size"] not in OTHER_SHAPES),
            key=lambda r: r["n_interactions"],
        )
        for a, b in zip(ok, ok[1:]):
            x = b["n_interactions"] / a["n_interactions"]
            ts, tm = b["seconds"] / a["seconds"], b["peak_mib"] / a["peak_mib"]
            sa, sb = a.get("stage_seconds") or {}, b.get("stage_seconds") or {}
            stages = ", ".join(f"{k} {sb[k] / sa[k]:.1f}" for k in sorted(sb, key=lambda k: -sb[k])
                               if k != "flow" and sa.get(k, 0) >= 1 and sb[k] >= 5)  # fmt: skip
            lines.append(f"| {a['size']} → {b['size']} {fb} | {x:.2f} | {ts:.2f} ({np.log(ts) / np.log(x):.2f}) | "
                         f"{tm:.2f} ({np.log(tm) / np.log(x):.2f}) | "
                         f"{1000 * a['seconds'] / a['n_interactions']:.2f} → {1000 * b['seconds'] / b['n_interactions']:.2f} | "
                         f"{1000 * a['peak_mib'] / a['n_interactions']:.1f} → {1000 * b['peak_mib'] / b['n_interactions']:.1f} | "
                         f"{stages} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["XS", "5k", "20k"], choices=list(SIZES))
    ap.add_argument("--feedback", nargs="+", default=["explicit"], choices=["explicit", "implicit"])
    ap.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a configuration override passed to every run (recorded in the row's system)",
    )
    ap.add_argument("--keep-logs", action="store_true")
    ap.add_argument("--table", action="store_true", help="print the table of the stored rows and exit")
    args = ap.parse_args()
    rows = json.loads(OUT.read_text()) if OUT.is_file() else []
    if args.table:
        print(table(rows), growth(rows), sep="\n\n")
        return
    work = Path(tempfile.mkdtemp(prefix="segflow-scale-"))
    try:
        for name in args.sizes:
            for feedback in args.feedback:
                row = one(name, feedback, args.extra, args.keep_logs, work)
                rows.append(row)
                OUT.parent.mkdir(parents=True, exist_ok=True)
                OUT.write_text(json.dumps(rows, indent=1) + "\n")  # after every run: a later one may not finish
                print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(rows), growth(rows), sep="\n\n")


if __name__ == "__main__":
    main()
