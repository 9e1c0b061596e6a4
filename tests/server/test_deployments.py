"""segflow deployed on a real Prefect server: the UI's run form (serve and prefect.yaml), the deployments'
server-side concurrency limit, custom and refused runs, the report served over HTTP, a cron schedule, Dask,
and `segflow alerts` (webhook notifications, one retry of a crashed run).

``segflow serve`` runs in a subprocess (fixture ``served``); runs are started through the REST API exactly as
the UI's "Custom run" form does (POST /deployments/{id}/create_flow_run with the whole parameter object).
"""

import json
import signal
import subprocess
import threading
import time
import tomllib
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from segmentation.config import PipelineConfig, load_config
from tests.server._server import BIN, TINY, stop_group, tail

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.server]

SECTIONS = ["data", "encoder", "represent", "index", "reduce", "cluster", "predictor", "ranker", "evaluate", "report",
            "orchestration"]  # fmt: skip


def _resolve(schema: dict, prop: dict) -> dict:
    ref = prop.get("$ref") or next((a["$ref"] for a in prop.get("allOf", []) if "$ref" in a), None)
    return schema["definitions"][ref.rsplit("/", 1)[-1]] if ref else prop


def test_deployment_form_has_titles_descriptions_and_defaults(served):
    dep = served["deployment"]
    assert dep["enforce_parameter_schema"] is True
    assert [s["schedule"].get("cron") for s in dep["schedules"]] == ["* * * * *"]
    schema = dep["parameter_openapi_schema"]
    config = schema["properties"]["config"]
    assert config["title"] == "config" and "orchestration" in config["description"]
    pipeline = _resolve(schema, config)
    assert pipeline["description"] and pipeline["additionalProperties"] is False
    for name in SECTIONS:  # every section renders as a nested group with a title and a description
        prop = pipeline["properties"][name]
        section = _resolve(schema, prop)
        assert prop.get("title"), name
        assert prop.get("description") or section.get("description"), name
        assert section["type"] == "object" and section["properties"], name
        for field, spec in section["properties"].items():
            assert spec.get("title"), f"{name}.{field}"
    runner = _resolve(schema, pipeline["properties"]["orchestration"])["properties"]["task_runner"]
    assert runner["enum"] == ["threads", "dask"] and runner["default"] == "threads" and runner["description"]
    # the form starts from the served configuration, with absolute paths
    params = dep["parameters"]["config"]
    assert params["data"]["max_users"] == 200 and params["predictor"]["model"] == "mf"
    assert Path(params["output_dir"]).is_absolute() and Path(params["cache_dir"]).is_absolute()


def _list_fields(model: BaseModel, prefix: str = "") -> list[tuple[str, str, str, list]]:
    """(dotted name, model class, field, default) of every list field of ``model`` and its sections."""
    out = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            out += _list_fields(value, f"{prefix}{name}.")
        elif isinstance(value, list | tuple):
            out.append((prefix + name, type(model).__name__, name, json.loads(json.dumps(value))))
    return out


def test_prefect_yaml_run_form_starts_every_list_field_at_its_default(yaml_deployment):
    """The prefect.yaml deployment gives only output_dir and seed: the UI's run form fills every other field from the
    parameter schema's defaults, so a list field without a default there would start (and run) empty."""
    dep = yaml_deployment
    assert dep["parameters"] == {"config": {"output_dir": str(ROOT / "runs"), "seed": 42}}
    definitions = dep["parameter_openapi_schema"]["definitions"]
    fields = _list_fields(PipelineConfig())
    assert len(fields) >= 10 and "ranker.rankers" in [f[0] for f in fields]  # the check covers the lists
    wrong = {dotted: definitions[cls]["properties"][name].get("default", "NO DEFAULT")
             for dotted, cls, name, default in fields if definitions[cls]["properties"][name].get("default") != default}  # fmt: skip
    assert not wrong, wrong
    # one run at a time, held by the server (a second run waits in AwaitingConcurrencySlot)
    assert dep["global_concurrency_limit"]["limit"] == 1 and dep["global_concurrency_limit"]["active"]
    assert (dep.get("concurrency_options") or {}).get("collision_strategy", "ENQUEUE") == "ENQUEUE"


def test_served_deployment_has_its_concurrency_limit_on_the_server(served, prefect_server):
    dep = prefect_server.deployment("segflow", "server-test")
    assert dep["global_concurrency_limit"]["limit"] == 1 and dep["global_concurrency_limit"]["active"]
    assert dep["global_concurrency_limit"]["name"] == f"deployment:{dep['id']}"
    assert (dep.get("concurrency_options") or {}).get("collision_strategy", "ENQUEUE") == "ENQUEUE"


def test_bad_parameters_are_refused_with_409(served, prefect_server):
    dep = served["deployment"]
    params = json.loads(json.dumps(dep["parameters"]))
    params["config"]["cluster"]["min_cluster_size"] = 1
    r = prefect_server.post(f"/deployments/{dep['id']}/create_flow_run", {"parameters": params})
    assert r.status_code == 409, r.text
    assert "config.cluster.min_cluster_size" in r.json()["detail"] and "minimum of 2" in r.json()["detail"]
    params["config"]["cluster"]["min_cluster_size"] = None
    params["config"]["orchestration"]["task_runner"] = "spark"
    r = prefect_server.post(f"/deployments/{dep['id']}/create_flow_run", {"parameters": params})
    assert r.status_code == 409 and "config.orchestration.task_runner" in r.json()["detail"], r.text


def test_custom_run_from_the_api_completes_with_artifacts_and_run_folder(served, prefect_server, project_runs):
    dep = served["deployment"]
    params = json.loads(json.dumps(dep["parameters"]))  # what the form shows, then edited
    params["config"]["report"]["title"] = "Custom run from the form"
    t0 = time.monotonic()
    r = prefect_server.post(f"/deployments/{dep['id']}/create_flow_run", {"parameters": params, "tags": ["custom"]})
    assert r.status_code == 201, r.text
    run = prefect_server.wait_for_run(r.json()["id"], timeout=360, log=served["log"])
    assert run["state"]["type"] == "COMPLETED", tail(served["log"])
    print(f"custom run: {time.monotonic() - t0:.1f} s from trigger to Completed")

    artifacts = prefect_server.artifacts(run["id"])
    assert {"segflow-summary", "segflow-segments", "segflow-report", "segflow-comparison"} <= set(artifacts)
    # the report link is served over HTTP by segflow serve: http://127.0.0.1:<port>/<run-id>/report/index.html
    link = artifacts["segflow-report"]["data"]
    url = link[link.index("(") + 1 : link.rindex(")")]
    assert url.startswith(served["http"] + "/") and url.endswith("/report/index.html"), link
    folder = project_runs / url.removeprefix(served["http"] + "/").split("/")[0]
    assert folder.name in artifacts["segflow-summary"]["data"]
    assert (folder / "report" / "index.html").is_file() and (project_runs / "latest").resolve() == folder
    page = httpx.get(url, timeout=30)
    assert page.status_code == 200 and "Custom run from the form" in page.text
    assert httpx.get(url.replace("index.html", "assets/report.js"), timeout=30).status_code == 200
    assert tomllib.loads((folder / "config.toml").read_text())["report"]["title"] == "Custom run from the form"
    table = json.loads(artifacts["segflow-segments"]["data"])
    assert table and {"segment", "name", "size"} <= set(table[0])

    # library logs reach the run's logs; the API handler ships them in batches, so allow it a few seconds
    deadline = time.monotonic() + 20
    while True:
        logs = prefect_server.logs([run["id"]])
        names = {entry["name"] for entry in logs}
        if {"segmentation.data.validation", "segmentation.runs"} <= names or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {"segmentation.data.validation", "segmentation.runs"} <= names, names
    assert any(e["message"].startswith("cache:") for e in logs)
    assert all("worker thread" not in e["message"] for e in logs)


def test_cron_schedule_creates_and_runs_a_flow_run_by_itself(served, prefect_server, project_runs):
    dep = served["deployment"]
    deadline = time.monotonic() + 90
    while True:  # the served process picks up the run the server's scheduler made for the next minute
        r = prefect_server.post("/flow_runs/filter", {
            "flow_runs": {"deployment_id": {"any_": [dep["id"]]},
                          "state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}},
            "sort": "EXPECTED_START_TIME_ASC", "limit": 20})  # fmt: skip
        r.raise_for_status()
        done = [run for run in r.json() if run["auto_scheduled"]]
        if done or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert done, f"no scheduled run finished within 90 s:\n{tail(served['log'])}"
    run = done[0]
    assert run["state"]["type"] == "COMPLETED", tail(served["log"])
    assert run["auto_scheduled"] and run["parameters"] == dep["parameters"]
    print(
        f"scheduled run: expected {run['expected_start_time']}, started {run['start_time']}, "
        f"ended {run['end_time']} ({run['total_run_time']:.1f} s running)"
    )
    artifacts = prefect_server.artifacts(run["id"])
    assert "segflow-comparison" in artifacts
    link = artifacts["segflow-report"]["data"]
    run_id = link[: link.index("/report/index.html")].rsplit("/", 1)[-1]
    # compared with the run published before it in the same output_dir, if any (run ids sort by publishing time;
    # the custom run may come before or after this one: it waits for the concurrency slot this one holds)
    if any(p.name < run_id for p in project_runs.glob("2*")):
        assert "Segment matching" in artifacts["segflow-comparison"]["data"]
    else:
        assert "first complete run" in artifacts["segflow-comparison"]["data"]


def test_prefect_yaml_deployment_on_a_process_worker_runs_the_stages_on_dask(prefect_server, yaml_deployment,
                                                                            cache_dir, tmp_path):  # fmt: skip
    """`prefect deploy` of prefect.yaml to a process work pool; a custom run puts the stages on a temporary Dask
    LocalCluster (2 worker processes on 127.0.0.1): load, publish and the comparison stay in the flow's process."""
    pytest.importorskip("prefect_dask")
    env = prefect_server.env(TMPDIR=str(tmp_path))
    prefect = str(BIN / "prefect")
    dep = yaml_deployment
    assert dep["work_pool_name"] == "segflow-pool" and dep["entrypoint"] == "flows/entrypoint.py:segflow_pipeline"
    assert dep["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
    assert dep["parameters"] == {"config": {"output_dir": str(ROOT / "runs"), "seed": 42}}
    assert [s["schedule"]["cron"] for s in dep["schedules"]] == ["0 2 * * *"] and dep["enforce_parameter_schema"]
    assert dep["job_variables"]["env"]["PREFECT_LOGGING_EXTRA_LOGGERS"] == "embeddings,segmentation,reports"

    out = tmp_path / "runs"
    cfg = load_config(None, [*TINY, f"output_dir='{out}'", f"cache_dir='{cache_dir}'",
                             "orchestration.task_runner='dask'", "evaluate.k=5"])  # fmt: skip
    log = tmp_path / "worker.log"
    with log.open("wb") as f:
        worker = subprocess.Popen([prefect, "worker", "start", "--pool", "segflow-pool"], stdout=f,
                                  stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)  # fmt: skip
    try:
        r = prefect_server.post(f"/deployments/{dep['id']}/create_flow_run",
                                {"parameters": {"config": cfg.model_dump(mode="json")}})  # fmt: skip
        assert r.status_code == 201, r.text
        run = prefect_server.wait_for_run(r.json()["id"], timeout=420, log=log)
    finally:
        stop_group(worker)
    text = log.read_text(errors="replace")
    assert run["state"]["type"] == "COMPLETED", tail(log)
    assert "Creating a new Dask cluster" in text and "127.0.0.1" in text
    subflows = prefect_server.child_runs(run["id"])
    assert [prefect_server.client.get(f"/flows/{f['flow_id']}").json()["name"] for f in subflows] == ["segflow-stages"]
    tasks = prefect_server.post("/task_runs/filter", {"task_runs": {"flow_run_id": {"any_": [subflows[0]["id"]]}}})
    states = {t["name"].rsplit("-", 1)[0]: t["state"] for t in tasks.json()}
    assert {"load", "split", "embed-items", "segment", "rank", "evaluate", "publish"} <= set(states), states
    assert {s["type"] for s in states.values()} == {"COMPLETED"}, states
    assert states["rank"]["name"] == "Completed" and states["evaluate"]["name"] == "Completed"  # k=5: computed
    metrics = json.loads((out / "latest" / "metrics.json").read_text())
    assert metrics["ranking"] and (out / "latest" / "report" / "index.html").is_file()


class _Webhook:
    """A webhook receiver on 127.0.0.1:<random port> that keeps the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard handler's name
                received.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/segflow-hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def about(self, run_name: str, state: str) -> list[dict]:
        return [m for m in self.received if m["subject"].startswith(f"segflow: run {run_name} ") and
                m["subject"].endswith(f" is {state}")]  # fmt: skip

    def wait_for(self, run_name: str, state: str, timeout: float, count: int = 1) -> list[dict]:
        """The notifications about ``run_name`` in ``state`` once ``count`` came (or at ``timeout``), plus any
        duplicate that follows within 3 s."""
        deadline = time.monotonic() + timeout
        while len(self.about(run_name, state)) < count and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)
        return self.about(run_name, state)


def _automations(prefect_server) -> list[dict]:
    r = prefect_server.post("/automations/filter", {})
    r.raise_for_status()
    return [a for a in r.json() if a["name"].startswith("segflow: ")]


def test_alerts_notify_a_webhook_of_failed_crashed_and_late_runs_and_retry_a_crash_once(served, prefect_server,
                                                                                      tmp_path):  # fmt: skip
    hook = _Webhook()
    env = prefect_server.env(TMPDIR=str(tmp_path))
    t0 = time.monotonic()
    for attempt in (1, 2):  # idempotent: the second call updates the same block and automations
        r = subprocess.run([str(BIN / "segflow"), "alerts", "--webhook", hook.url], env=env, capture_output=True,
                           text=True, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        assert ("update automation" in r.stdout) == (attempt == 2), r.stdout
    automations = _automations(prefect_server)
    assert sorted(a["name"] for a in automations) == ["segflow: notify on failed, crashed or late runs",
                                                      "segflow: retry a crashed run once"]  # fmt: skip
    try:
        # a real run of the served deployment that fails (its ratings file is missing): one notification
        params = json.loads(json.dumps(served["deployment"]["parameters"]))
        params["config"]["data"].update(source="files", ratings=str(tmp_path / "missing.csv"),
                                        items=str(tmp_path / "items.csv"))  # fmt: skip
        r = prefect_server.post(f"/deployments/{served['deployment']['id']}/create_flow_run", {"parameters": params})
        assert r.status_code == 201, r.text
        failed = prefect_server.wait_for_run(r.json()["id"], timeout=300, log=served["log"])
        assert failed["state"]["type"] == "FAILED", failed["state"]
        got = hook.wait_for(failed["name"], "Failed", timeout=60)
        assert len(got) == 1, hook.received
        body = got[0]["body"]
        assert "segflow/server-test is Failed" in body and "missing.csv" in body and "is not retried" in body
        assert f"Prefect UI: {prefect_server.url.removesuffix('/api')}/runs/flow-run/{failed['id']}" in body

        # a crash (the state a runner reports when a run's process dies), on a deployment that nothing runs:
        # rescheduled once, notified each time
        flow_id = served["deployment"]["flow_id"]
        dep = prefect_server.post("/deployments/", {"name": "crash-test", "flow_id": flow_id, "tags": ["segflow"]})
        dep.raise_for_status()
        run = prefect_server.post(f"/deployments/{dep.json()['id']}/create_flow_run", {}).json()

        def force(state_type: str, name: str) -> None:
            r = prefect_server.post(f"/flow_runs/{run['id']}/set_state",
                                    {"state": {"type": state_type, "name": name}, "force": True})  # fmt: skip
            assert r.status_code in (200, 201) and r.json()["status"] == "ACCEPT", r.text

        force("RUNNING", "Running")
        force("CRASHED", "Crashed")  # run count 1
        deadline = time.monotonic() + 60
        while (state := prefect_server.flow_run(run["id"])["state"])["type"] != "SCHEDULED":
            assert time.monotonic() < deadline, f"crashed run not rescheduled within 60 s: {state}"
            time.sleep(0.5)
        assert state["name"] == "AwaitingRetry" and "retried once automatically" in state["message"]
        assert len(hook.wait_for(run["name"], "Crashed", timeout=30)) == 1
        force("RUNNING", "Running")
        force("CRASHED", "Crashed")  # run count 2: left crashed
        assert len(hook.wait_for(run["name"], "Crashed", timeout=30, count=2)) == 2
        assert prefect_server.flow_run(run["id"])["state"]["type"] == "CRASHED"

        # a run nothing started 60 s after its time: Late, one notification
        due = (datetime.now(UTC) - timedelta(seconds=60)).isoformat()
        late = prefect_server.post(f"/deployments/{dep.json()['id']}/create_flow_run",
                                   {"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": due}}}).json()  # fmt: skip
        got = hook.wait_for(late["name"], "Late", timeout=60)
        assert len(got) == 1 and "check that one is running" in got[0]["body"], hook.received
        print(f"alerts: {time.monotonic() - t0:.1f} s for failed, crashed and late runs")
    finally:
        for a in _automations(prefect_server):  # later tests must not be retried or notified
            prefect_server.client.delete(f"/automations/{a['id']}")
        hook.httpd.shutdown()


def test_serve_stops_cleanly_on_sigterm_and_pauses_its_schedule(served, prefect_server):
    proc = served["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, tail(served["log"])
    assert "schedule of 'segflow/server-test' is paused" in served["log"].read_text()
    assert prefect_server.deployment("segflow", "server-test")["paused"] is True
