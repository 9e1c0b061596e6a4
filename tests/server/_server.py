"""Helpers of the server tests: the server handle (REST as the UI uses it), process-group stop, log tails."""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent
# The tiny configuration of every run here: 200 users, a fast rating model, few resamples.
TINY = ["data.max_users=200", "predictor.model='mf'", "predictor.mf.epochs=5", "evaluate.bootstrap=20"]
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"({path} not readable)"


def stop_group(proc: subprocess.Popen, *, grace: float = 30.0) -> None:
    """SIGTERM the process group ``proc`` leads, then SIGKILL what is left after ``grace`` seconds."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # children the leader left behind (or a leader that ignored SIGTERM)
    except ProcessLookupError:
        pass
    proc.wait(10)


class RetryingClient(httpx.Client):
    """An httpx client that retries 502/503/429 as Prefect's own client (and the UI) do: SQLite on a busy machine
    answers "database is locked" as a retryable 503."""

    def send(self, request: httpx.Request, **kwargs) -> httpx.Response:
        for attempt in range(6):
            response = super().send(request, **kwargs)
            if response.status_code not in (429, 502, 503) or attempt == 5:
                return response
            response.close()
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")


@dataclass
class Server:
    url: str  # http://127.0.0.1:<port>/api
    home: Path
    log: Path
    client: httpx.Client

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a client subprocess of this server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
        env.update(PREFECT_API_URL=self.url, PREFECT_HOME=str(self.home / "client"),
                   PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1", **extra)  # fmt: skip
        return env

    def post(self, path: str, body: dict | None = None) -> httpx.Response:
        return self.client.post(path, json=body or {})

    def deployment(self, flow: str, name: str) -> dict:
        r = self.client.get(f"/deployments/name/{flow}/{name}")
        r.raise_for_status()
        return r.json()

    def flow_run(self, run_id: str) -> dict:
        r = self.client.get(f"/flow_runs/{run_id}")
        r.raise_for_status()
        return r.json()

    def wait_for_run(self, run_id: str, timeout: float, *, log: Path | None = None) -> dict:
        """Poll until the flow run is final; fail with the run's state and the runner's log on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.flow_run(run_id)
            if run["state"]["type"] in TERMINAL:
                return run
            if time.monotonic() > deadline:
                pytest.fail(f"flow run {run_id} not finished after {timeout:.0f} s: state {run['state']['type']}\n"
                            + (tail(log) if log else ""))  # fmt: skip
            time.sleep(2)

    def logs(self, flow_run_ids: list[str]) -> list[dict]:
        r = self.post("/logs/filter", {"logs": {"flow_run_id": {"any_": flow_run_ids}}, "sort": "TIMESTAMP_ASC",
                                       "limit": 200})  # fmt: skip
        r.raise_for_status()
        return r.json()

    def artifacts(self, flow_run_id: str) -> dict[str, dict]:
        r = self.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
        r.raise_for_status()
        return {a["key"]: a for a in r.json()}

    def child_runs(self, flow_run_id: str) -> list[dict]:
        """Subflow runs of ``flow_run_id``."""
        r = self.post("/task_runs/filter", {"task_runs": {"flow_run_id": {"any_": [flow_run_id]}}})
        r.raise_for_status()
        parents = [t["id"] for t in r.json()]
        if not parents:
            return []
        r = self.post("/flow_runs/filter", {"flow_runs": {"parent_task_run_id": {"any_": parents}}})
        r.raise_for_status()
        return r.json()
