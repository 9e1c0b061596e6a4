"""Time from `segflow run` to the error message for a bad ratings file: now, and on an older commit.

    python benchmarks/fail_fast.py [--rows 100000] [--repeats 5] [--before 55e09a7] [--no-flow]

Builds a ratings CSV of ``--rows`` rows (plus an items CSV) with one non-numeric rating 10 rows before the
end, then runs the real CLI in fresh processes, ``python -m flows.cli run --ratings ... --items ...``,
``--repeats`` times per system, and records the seconds until ``segflow: error:`` appears on stderr, the exit
status and whether the message names the row. Systems:

* ``segflow run (this checkout)``: checks the data before Prefect starts;
* ``segflow run (<commit>)``: the same command on ``--before`` (extracted with ``git archive``, no stash);
* ``flow called directly (this checkout)``: ``segflow_pipeline(config)``, the path a deployment's run takes,
  which has no check before Prefect (skip with ``--no-flow``);
* ``load_dataset (this checkout, valid file)``: one in-process read and validation of the file without the
  bad row, the cost a second read in the flow would add (``segflow run`` hands the checked data over instead).

Each process gets its own PREFECT_HOME, no PREFECT_API_URL (Prefect's temporary server, as on a laptop).
Writes benchmarks/results/fail_fast.json and prints a table; the load average is recorded before and after.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
BAD = "five"


def make_files(folder: Path, rows: int, n_users: int = 5000, n_items: int = 2000, seed: int = 0) -> dict[str, Path]:
    """``ratings.csv`` (valid), ``ratings-bad.csv`` (the same with a non-numeric rating 10 rows from the end)."""
    rng = np.random.default_rng(seed)
    df = pl.DataFrame({
        "user_id": rng.integers(0, n_users, rows).astype(str), "item_id": rng.integers(0, n_items, rows).astype(str),
        "rating": rng.integers(1, 6, rows).astype(str), "timestamp": 1_500_000_000 + rng.integers(0, 10**8, rows),
    })  # fmt: skip
    out = {"ratings": folder / "ratings.csv", "bad": folder / "ratings-bad.csv", "items": folder / "items.csv"}
    df.write_csv(out["ratings"])
    df.with_columns(pl.when(pl.int_range(pl.len()) == rows - 10).then(pl.lit(BAD)).otherwise(pl.col("rating"))
                    .alias("rating")).write_csv(out["bad"])  # fmt: skip
    pl.DataFrame({"item_id": np.arange(n_items).astype(str), "title": [f"Item {i}" for i in range(n_items)],
                  "categories": ["Drama|Comedy"] * n_items}).write_csv(out["items"])  # fmt: skip
    return out


def _env(src: Path, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(src), PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    return env


def time_to_error(cmd: list[str], src: Path, work: Path) -> dict:
    """Run ``cmd`` in ``src``; seconds until the first ``segflow: error:`` line (or any error line) and to exit."""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=src, env=_env(src, home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    first, message = None, ""
    assert proc.stderr is not None
    for line in proc.stderr:
        if first is None and ("segflow: error:" in line or "DataError" in line):
            first, message = time.perf_counter() - t0, line.strip()
    code = proc.wait()
    end = time.perf_counter() - t0
    return {"to_error": first if first is not None else end, "to_exit": end, "exit": code, "message": message}


def _cli(files: dict[str, Path], work: Path) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "run", "--ratings", str(files["bad"]), "--items", str(files["items"]),
            "--output", str(work / "runs"), "--set", f"cache_dir='{work / 'cache'}'"]  # fmt: skip


FLOW = """
import sys
from flows.pipeline import segflow_pipeline
from segmentation.config import load_config

ratings, items, out, cache = sys.argv[1:]
cfg = load_config(None, ["data.source=files", f"data.ratings='{ratings}'", f"data.items='{items}'",
                         f"output_dir='{out}'", f"cache_dir='{cache}'"])
try:
    segflow_pipeline(cfg)
except Exception as e:
    print("segflow: error: " + str(e), file=sys.stderr)
    sys.exit(2)
"""

LOAD = """
import sys, time, warnings
from segmentation.config import DataConfig
from segmentation.data import load_dataset

warnings.simplefilter("ignore")
t = time.perf_counter()
load_dataset(DataConfig(source="files", ratings=sys.argv[1], items=sys.argv[2]))
print(time.perf_counter() - t)
"""


def _flow(files: dict[str, Path], work: Path) -> list[str]:
    return [sys.executable, "-c", FLOW, str(files["bad"]), str(files["items"]), str(work / "runs"), str(work / "cache")]


def _load(files: dict[str, Path], src: Path, work: Path) -> float:
    out = subprocess.run([sys.executable, "-c", LOAD, str(files["ratings"]), str(files["items"])], cwd=src,
                         env=_env(src, work / "home-load"), capture_output=True, text=True, check=True)  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def summarise(system: str, commit: str, results: list[dict], rows: int, expect: str) -> dict:
    to_error = [r["to_error"] for r in results]
    return {
        "system": system,
        "commit": commit,
        "rows": rows,
        "repeats": len(results),
        "seconds": round(statistics.median(to_error), 2),
        "seconds_to_error_min": round(min(to_error), 2),
        "seconds_to_error_median": round(statistics.median(to_error), 2),
        "seconds_to_exit_median": round(statistics.median(r["to_exit"] for r in results), 2),
        "exit_codes": sorted({r["exit"] for r in results}),
        "message_names_the_row": all(expect in r["message"] for r in results),
        "message": results[-1]["message"][:300],
    }


def _commit(src: Path) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=src, capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--before", default="55e09a7", help="commit to compare with ('' to skip)")
    ap.add_argument("--no-flow", action="store_true", help="skip the flow called directly")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fail_fast.json")
    args = ap.parse_args()

    load_before = os.getloadavg()
    rows_out = []
    with tempfile.TemporaryDirectory(prefix="segflow-failfast-") as tmp:
        work = Path(tmp)
        (work / "data").mkdir()
        files = make_files(work / "data", args.rows)
        expect = f"row {args.rows - 9} has '{BAD}'"
        systems = [(f"segflow run (this checkout, {_commit(ROOT)})", _commit(ROOT), ROOT, _cli)]
        if args.before:
            old = work / "before"
            old.mkdir()
            archive = subprocess.run(["git", "archive", args.before], cwd=ROOT, capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            systems.append((f"segflow run ({args.before})", args.before, old, _cli))
        if not args.no_flow:
            systems.append((f"flow called directly (this checkout, {_commit(ROOT)})", _commit(ROOT), ROOT, _flow))
        for name, commit, src, make in systems:
            results = []
            for i in range(args.repeats):
                run_dir = work / f"run-{len(rows_out)}-{i}"
                run_dir.mkdir()
                results.append(time_to_error(make(files, run_dir), src, run_dir))
                print(f"  {name} #{i + 1}: {results[-1]['to_error']:.2f} s, exit {results[-1]['exit']}", flush=True)
            rows_out.append(summarise(name, commit, results, args.rows, expect))
        loads = [_load(files, ROOT, work) for _ in range(3)]
        rows_out.append({"system": "load_dataset (this checkout, valid file, in-process)", "commit": _commit(ROOT),
                         "rows": args.rows, "repeats": 3, "seconds": round(statistics.median(loads), 3),
                         "seconds_min": round(min(loads), 3)})  # fmt: skip
    load_after = os.getloadavg()
    machine = {"load_average_before": [round(x, 2) for x in load_before],
               "load_average_after": [round(x, 2) for x in load_after], "cpus": os.cpu_count(),
               "python": platform.python_version()}  # fmt: skip
    for r in rows_out:
        r["machine"] = machine
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows_out, indent=2) + "\n")
    print(f"\n{'system':<58} {'to error min':>12} {'median':>8} {'exit':>6}")
    for r in rows_out:
        lo = r.get("seconds_to_error_min", r.get("seconds_min"))
        print(f"{r['system']:<58} {lo:>12.2f} {r['seconds']:>8.2f} {str(r.get('exit_codes', '')):>6}")
    print(f"load average before {machine['load_average_before']}, after {machine['load_average_after']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
