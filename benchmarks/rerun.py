"""How much a rerun on unchanged data saves: `segflow run` twice in fresh processes, cold then warm.

    python benchmarks/rerun.py                         # default config (MovieLens 100k), temporary server
    python benchmarks/rerun.py --scheduled             # also: a cron run of `segflow serve`, trigger -> Completed
    python benchmarks/rerun.py --set data.max_users=200 --out /tmp/rerun.json   # a quick trial

Cold = an empty cache_dir (the dataset is copied in, every item embedded, every stage computed); warm = the
same command again, so every cached stage is a cache hit. Both runs talk to a temporary Prefect server on
127.0.0.1 (started and stopped here, its own PREFECT_HOME) unless --api-url names one, so the figures are the
pipeline's, not a temporary server's start-up. Writes benchmarks/results/rerun.json and prints a summary.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results" / "rerun.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            sys.exit(f"prefect server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=5).json() is True:
                return time.perf_counter() - t0
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    sys.exit(f"prefect server not healthy after {timeout} s")


def run_once(label: str, overrides: list[str], work: Path, env: dict[str, str]) -> dict:
    """One `segflow run` in a fresh process; wall time, cache hits and the run's own figures."""
    log = work / f"{label}.log"
    cmd = [str(BIN / "segflow"), "run", "--output", str(work / "runs")]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.perf_counter()
    with log.open("wb") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=work)
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"{label} run failed ({proc.returncode}):\n{text[-4000:]}")
    m = re.search(r"cache: (\d+) of (\d+) cached stages reused \(([^)]*)\); stages took ([\d.]+) s", text)
    run_dir = (work / "runs" / "latest").resolve()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    timings = metrics.get("timings", {})
    return {
        "wall_seconds": round(wall, 1),
        "flow_stage_seconds": float(m.group(4)) if m else None,
        "cache_hits": int(m.group(1)) if m else None,
        "cached_stages": int(m.group(2)) if m else None,
        "cache_hit_stages": [s.strip() for s in m.group(3).split(",")] if m and m.group(1) != "0" else [],
        "cached_state_log_lines": text.count("Finished in state Cached("),
        "items_embedded": timings.get("embedding", {}).get("embedded"),
        "stage_seconds": {k: v for k, v in timings.items() if isinstance(v, int | float)},
        "run_dir": str(run_dir),
        "log": str(log),
    }


def scheduled_run(overrides: list[str], work: Path, env: dict[str, str], api: str) -> dict:
    """`segflow serve` with a cron schedule of every minute: times of its first scheduled run."""
    log = work / "serve.log"
    cmd = [str(BIN / "segflow"), "serve", "--name", "rerun-bench", "--cron", "* * * * *", "--output",
           str(work / "runs")] + [a for o in overrides for a in ("--set", o)]  # fmt: skip
    with log.open("wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=work, start_new_session=True)
    try:
        client = httpx.Client(base_url=api, timeout=30)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            r = client.get("/deployments/name/segflow/rerun-bench")
            if r.status_code == 200:
                dep = r.json()
                runs = client.post(
                    "/flow_runs/filter",
                    json={
                        "flow_runs": {"deployment_id": {"any_": [dep["id"]]}},
                        "sort": "EXPECTED_START_TIME_ASC",
                        "limit": 5,
                    },
                ).json()
                done = [x for x in runs if x["auto_scheduled"] and x["state"]["type"] == "COMPLETED"]
                if done:
                    run = done[0]
                    exp = _ts(run["expected_start_time"])
                    return {"expected_start": run["expected_start_time"], "start": run["start_time"],
                            "end": run["end_time"], "start_delay_seconds": round(_ts(run["start_time"]) - exp, 1),
                            "trigger_to_completed_seconds": round(_ts(run["end_time"]) - exp, 1),
                            "running_seconds": round(run["total_run_time"], 1)}  # fmt: skip
            time.sleep(2)
        sys.exit(f"no scheduled run completed within 240 s:\n{log.read_text()[-3000:]}")
    finally:
        _stop(proc)


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="configuration override")
    ap.add_argument("--api-url", help="an existing Prefect server's API (default: start a temporary one)")
    ap.add_argument("--scheduled", action="store_true", help="also time a scheduled run of `segflow serve`")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (runs, cache, logs)")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"result file (default {RESULTS.relative_to(ROOT)})")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="segflow-rerun-"))
    cache = work / "cache"  # empty: the cold run starts from nothing
    overrides = [f"cache_dir='{cache}'", *args.set]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    (work / "tmp").mkdir()  # serve's runner_storage and the like, removed with the work folder
    env.update(
        PREFECT_HOME=str(work / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false", TMPDIR=str(work / "tmp")
    )
    server = None
    api = args.api_url
    server_seconds = None
    try:
        if api is None:
            port = _free_port()
            api = f"http://127.0.0.1:{port}/api"
            slog = work / "server.log"
            with slog.open("wb") as f:
                server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                                           str(port)], stdout=f, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)  # fmt: skip
            server_seconds = round(_wait_healthy(api, server, slog), 1)
        env["PREFECT_API_URL"] = api
        print(f"work folder {work}; Prefect API {api}", flush=True)
        cold = run_once("cold", overrides, work, env)
        print(f"cold: {cold['wall_seconds']} s ({cold['cache_hits']} cache hits)", flush=True)
        warm = run_once("warm", overrides, work, env)
        print(f"warm: {warm['wall_seconds']} s ({warm['cache_hits']} of {warm['cached_stages']} cached stages "
              "reused)", flush=True)  # fmt: skip
        same = _same_results(Path(cold["run_dir"]), Path(warm["run_dir"]))
        sched = scheduled_run(overrides, work, env, api) if args.scheduled else None
        result = {
            "what": "segflow run twice in fresh processes on unchanged data: cold (empty cache_dir), then warm",
            "config_overrides": args.set,
            "cold": cold,
            "warm": warm,
            "speedup_wall": round(cold["wall_seconds"] / warm["wall_seconds"], 2),
            "speedup_stages": round(cold["flow_stage_seconds"] / warm["flow_stage_seconds"], 2)
            if cold["flow_stage_seconds"] and warm["flow_stage_seconds"]
            else None,
            "identical_results": same,
            "scheduled_run": sched,
            "prefect_server_start_seconds": server_seconds,
            "machine": {
                "cpus": os.cpu_count(),
                "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },  # fmt: skip
            "versions": _versions(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: result[k] for k in ("speedup_wall", "speedup_stages", "identical_results")}))
        if sched:
            print(f"scheduled run: {sched['trigger_to_completed_seconds']} s from its scheduled time to Completed")
        print(f"wrote {args.out}")
    finally:
        if server is not None:
            _stop(server)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _same_results(a: Path, b: Path) -> bool:
    import polars as pl

    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
    strip = ("timings", "run_id")
    return (pl.read_parquet(a / "users.parquet").equals(pl.read_parquet(b / "users.parquet"))
            and pl.read_parquet(a / "segments.parquet").equals(pl.read_parquet(b / "segments.parquet"))
            and {k: v for k, v in ma.items() if k not in strip} == {k: v for k, v in mb.items() if k not in strip})  # fmt: skip


def _versions() -> dict:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("segflow", "prefect", "torch", "polars")}


if __name__ == "__main__":
    main()
