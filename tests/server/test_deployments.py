"""segflow deployed on a real Prefect server: the UI's run form, custom and refused runs, a cron schedule, Dask.

``segflow serve`` runs in a subprocess (fixture ``served``); runs are started through the REST API exactly as
the UI's "Custom run" form does (POST /deployments/{id}/create_flow_run with the whole parameter object).
"""

import json
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from segmentation.config import load_config
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
    link = artifacts["segflow-report"]["data"]
    folder = Path(link[link.index("file://") + len("file://") : link.index("/report/index.html")])
    assert folder.parent == project_runs and folder.name in artifacts["segflow-summary"]["data"]
    assert (folder / "report" / "index.html").is_file() and (project_runs / "latest").resolve() == folder
    assert tomllib.loads((folder / "config.toml").read_text())["report"]["title"] == "Custom run from the form"
    table = json.loads(artifacts["segflow-segments"]["data"])
    assert table and {"segment", "name", "size"} <= set(table[0])

    # library logs reach the run's logs; the API handler ships them in batches, so allow it a few seconds
    deadline = time.monotonic() + 20
    while True:
        logs = prefect_server.logs([run["id"]])
        names = {entry["name"] for entry in logs}
        if {"segmentation.data", "segmentation.runs"} <= names or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {"segmentation.data", "segmentation.runs"} <= names, names
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
    if len(list(project_runs.glob("2*"))) > 1:  # a run before it in the same output_dir: compared with it
        assert "Segment matching" in artifacts["segflow-comparison"]["data"]


def test_prefect_yaml_deployment_on_a_process_worker_runs_the_stages_on_dask(prefect_server, cache_dir, tmp_path):
    """`prefect deploy` of prefect.yaml to a process work pool; a custom run puts the stages on a temporary Dask
    LocalCluster (2 worker processes on 127.0.0.1): load, publish and the comparison stay in the flow's process."""
    pytest.importorskip("prefect_dask")
    env = prefect_server.env(TMPDIR=str(tmp_path))
    prefect = str(BIN / "prefect")
    for cmd in ([prefect, "work-pool", "create", "segflow-pool", "--type", "process"],
                [prefect, "--no-prompt", "deploy", "--all"]):  # fmt: skip
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
    dep = prefect_server.deployment("segflow", "segflow-nightly")
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


def test_serve_stops_cleanly_on_sigterm_and_pauses_its_schedule(served, prefect_server):
    proc = served["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, tail(served["log"])
    assert "schedule of 'segflow/server-test' is paused" in served["log"].read_text()
    assert prefect_server.deployment("segflow", "server-test")["paused"] is True
