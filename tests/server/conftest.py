"""A real Prefect server for the session, and helpers to talk to it as the UI does (REST).

The server runs ``prefect server start`` on 127.0.0.1 with a free port and a
temporary PREFECT_HOME, in its own process group, and is always stopped at the
end. Subprocesses (``segflow serve``, ``segflow run``) get ``PREFECT_API_URL``
pointing at it; everything they write goes under pytest's temporary folders, and
all of them share the session's ``cache_dir`` so embeddings and stages are reused.
"""

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server._server import BIN, TINY, RetryingClient, Server, free_port, stop_group, tail

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> Iterator[Server]:
    """``prefect server start`` on 127.0.0.1:<free port> with a temporary PREFECT_HOME; stopped at the end."""
    home = tmp_path_factory.mktemp("prefect-server")
    log = home / "server.log"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
               PREFECT_UI_URL=f"http://127.0.0.1:{port}")  # links in notifications (flow_run|ui_url)  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    client = RetryingClient(base_url=url, timeout=30)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prefect server exited with {proc.returncode}:\n{tail(log)}")
            try:
                if client.get("/health").json() is True:
                    break
            except (httpx.HTTPError, json.JSONDecodeError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prefect server not healthy after 180 s:\n{tail(log)}")
            time.sleep(0.5)
        yield Server(url, home, log, client)
    finally:
        client.close()
        stop_group(proc)


@pytest.fixture(scope="session")
def project_runs(tmp_path_factory) -> Path:
    """output_dir of the served deployment's runs."""
    return tmp_path_factory.mktemp("served") / "runs"


@pytest.fixture(scope="module")
def served(prefect_server: Server, cache_dir: Path, project_runs: Path, tmp_path_factory) -> Iterator[dict]:
    """``segflow serve`` with a cron schedule of every minute and the tiny configuration as default parameters."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    http_port = free_port()
    cmd = [str(BIN / "segflow"), "serve", "--name", "server-test", "--cron", "* * * * *", "--output", str(project_runs),
           "--http-port", str(http_port), "--set", f"cache_dir='{cache_dir}'"] + [a for s in TINY for a in ("--set", s)]  # fmt: skip
    env = prefect_server.env(TMPDIR=str(log.parent))  # serve leaves a runner_storage/<uuid> folder in TMPDIR
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                cwd=tmp_path_factory.mktemp("serve-cwd"))  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"segflow serve exited with {proc.returncode}:\n{tail(log)}")
            r = prefect_server.client.get("/deployments/name/segflow/server-test")
            if r.status_code == 200 and "Serving deployment" in log.read_text(errors="replace"):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"deployment segflow/server-test not served after 120 s:\n{tail(log)}")
            time.sleep(1)
        yield {"deployment": r.json(), "log": log, "proc": proc, "created": time.time(),
               "http": f"http://127.0.0.1:{http_port}"}  # fmt: skip
    finally:
        stop_group(proc)


@pytest.fixture(scope="session")
def yaml_deployment(prefect_server: Server, tmp_path_factory) -> dict:
    """``prefect deploy --all`` of the project's prefect.yaml to the process work pool segflow-pool (no worker)."""
    env = prefect_server.env(TMPDIR=str(tmp_path_factory.mktemp("deploy")))
    prefect = str(BIN / "prefect")
    for cmd in ([prefect, "work-pool", "create", "segflow-pool", "--type", "process"],
                [prefect, "--no-prompt", "deploy", "--all"]):  # fmt: skip
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
    return prefect_server.deployment("segflow", "segflow-nightly")
