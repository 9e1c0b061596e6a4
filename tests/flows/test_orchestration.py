"""Orchestration pieces that need no flow run: task runners, cache keys, serve's parameters, comparison markdown."""

import builtins
import logging
from pathlib import Path

import pytest
from prefect.task_runners import ThreadPoolTaskRunner

from flows.artifacts import comparison_markdown
from flows.run_logs import _ThreadTimeoutNoteFilter
from flows.runners import make_task_runner, needs_own_runner
from flows.serve import _schedule, absolute_paths, deployment_parameters, serve
from flows.tasks import cache_key, code_digest
from segmentation._errors import ConfigError
from segmentation.config import PipelineConfig, load_config
from segmentation.runs import previous_run


def test_threads_by_default_and_dask_on_request():
    orch = PipelineConfig().orchestration
    assert orch.task_runner == "threads" and not needs_own_runner(orch)
    assert isinstance(make_task_runner(orch), ThreadPoolTaskRunner)
    one = load_config(None, ["orchestration.max_workers=1"]).orchestration
    assert needs_own_runner(one) and make_task_runner(one)._max_workers == 1
    pytest.importorskip("prefect_dask")
    from prefect_dask import DaskTaskRunner

    local = make_task_runner(load_config(None, ["orchestration.task_runner='dask'"]).orchestration)
    assert isinstance(local, DaskTaskRunner) and local.cluster_kwargs["host"] == "127.0.0.1"
    remote = load_config(None, ["orchestration.task_runner='dask'", "orchestration.scheduler_address='tcp://h:8786'"])
    assert make_task_runner(remote.orchestration).address == "tcp://h:8786"


def test_dask_without_prefect_dask_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_prefect_dask(name, *args, **kwargs):
        if name.startswith("prefect_dask"):
            raise ImportError("No module named 'prefect_dask'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_prefect_dask)
    with pytest.raises(ConfigError, match=r"pip install 'segflow\[dask\]'"):
        make_task_runner(load_config(None, ["orchestration.task_runner='dask'"]).orchestration)


def test_scheduler_address_needs_the_dask_runner():
    with pytest.raises(ConfigError, match="task_runner = 'dask'"):
        load_config(None, ["orchestration.scheduler_address='tcp://h:8786'"])


def test_cache_keys_ignore_where_and_how_a_run_runs_but_not_what_it_computes():
    key = cache_key("represent")
    base = PipelineConfig()
    moved = load_config(None, ["output_dir='/elsewhere'", "cache_dir='/c'", "orchestration.task_runner='dask'",
                               "orchestration.max_workers=8", "report.title='x'", "output.keep_last=3",
                               "cache.max_size='2GB'"])  # fmt: skip
    changed = load_config(None, ["represent.method='liked-mean'"])
    assert key(None, {"config": base}) == key(None, {"config": moved})
    assert key(None, {"config": base}) != key(None, {"config": changed})
    assert key(None, {"config": base}).startswith("represent-") and len(code_digest()) == 16


def test_serve_parameters_use_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["output_dir='runs'", "data.source='files'", "data.ratings='r.csv'", "data.items='i.csv'"])
    params = deployment_parameters(cfg)["config"]
    assert params["output_dir"] == str(tmp_path / "runs") and params["data"]["ratings"] == str(tmp_path / "r.csv")
    assert params["cache_dir"] is None  # the default cache of the process that runs the flow
    assert PipelineConfig.model_validate(params) == absolute_paths(cfg)


def test_serve_refuses_without_a_server_and_bad_schedules(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: None}):
        with pytest.raises(ConfigError, match="needs a running Prefect server"):
            serve(PipelineConfig())
    with pytest.raises(ConfigError, match="five fields"):
        _schedule("every night", "UTC")
    with pytest.raises(ConfigError, match="IANA"):
        _schedule("0 2 * * *", "Mars/Olympus")
    assert _schedule("", "UTC") is None and _schedule("0 2 * * *", "Europe/Berlin").timezone == "Europe/Berlin"


def test_thread_timeout_note_is_dropped_and_nothing_else():
    f = _ThreadTimeoutNoteFilter()

    def rec(msg: str) -> logging.LogRecord:
        return logging.LogRecord("prefect.task_runs", logging.WARNING, __file__, 1, msg, None, None)

    assert not f.filter(rec("Timeout of 60 seconds configured for this task, but the task is running in a worker "
                            "thread. Timeouts in worker threads cannot interrupt blocking operations"))  # fmt: skip
    assert f.filter(rec("Task run failed with exception: TimeoutError"))


def test_previous_run_and_comparison_markdown(tmp_path):
    for name in ["20260101-020000-aaaa", "20260102-020000-bbbb", ".partial-20260103-020000-cccc"]:
        (tmp_path / name).mkdir()
    assert previous_run(tmp_path, tmp_path / "20260102-020000-bbbb") == tmp_path / "20260101-020000-aaaa"
    assert previous_run(tmp_path, tmp_path / "20260101-020000-aaaa") is None
    result = {
        "run_a": "runs/20260101-020000-aaaa", "run_b": "runs/20260102-020000-bbbb",
        "summary": ["2 segments before, 2 now: 1 matched, 1 new, 1 gone."],
        "matches": [
            {"segment_a": 0, "segment_b": 1, "name_a": "Sci-Fi fans", "name_b": "Sci-Fi fans", "jaccard": 0.8,
             "size_a": 10, "size_b": 12, "size_change": 2, "rmse_a": 0.9, "rmse_b": None},
            {"segment_a": 1, "segment_b": None, "name_a": "Drama", "name_b": None, "jaccard": None,
             "size_a": 5, "size_b": 0, "size_change": -5, "rmse_a": None, "rmse_b": None},
            {"segment_a": -1, "segment_b": -1, "name_a": None, "name_b": None, "jaccard": None,
             "size_a": 1, "size_b": 2, "size_change": 1, "rmse_a": None, "rmse_b": None},
        ],
        "metric_drift": [{"metric": "rating.global.rmse", "a": 0.9, "b": 0.95, "change": 0.05},
                         {"metric": "data.n_users", "a": 16, "b": 16, "change": 0}],
    }  # fmt: skip
    md = comparison_markdown(result)
    assert "Previous run `20260101-020000-aaaa`, this run `20260102-020000-bbbb`." in md
    assert "| 0 · Sci-Fi fans | 1 · Sci-Fi fans | 0.80 | 10 | 12 | +2 | 0.9000 | – |" in md
    assert "| 1 · Drama | – | – | 5 | 0 | -5 | – | – |" in md and "| outliers | outliers |" in md
    assert "| `rating.global.rmse` | 0.9 | 0.95 | +0.05 |" in md and "(1 unchanged)" in md
    assert Path(result["run_b"]).name in md


def test_summary_carries_stability_and_the_control(tmp_path):
    import json

    from flows.artifacts import summary_markdown
    from segmentation.runs import SCHEMA_VERSION
    from tests.fixtures_report import make_report_input, write_run_folder

    data = make_report_input(n_users=80, n_segments=2)
    folder = write_run_folder(data, tmp_path / "20260101-020000-aaaa")
    (folder / "manifest.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION}))
    text = summary_markdown(folder)
    assert "segment stability (ARI, 1 = identical): between seeds 0.8700, on subsamples 0.9000" in text
    assert (
        "- Control: the same fine-tuning and gate on random partitions of the users, with the segments' sizes, "
        "changed RMSE by +0.0002" in text
    )  # the report's own sentence (verdicts.control)
    assert text.rstrip().endswith("index.html`")


def test_comparison_artifact_reuses_the_comparison_the_run_published(tmp_path, monkeypatch):
    import json

    import flows.artifacts as artifacts
    import segmentation.compare
    from tests.fixtures_report import make_run_pair

    a, b = make_run_pair(tmp_path)
    result = json.loads(json.dumps(segmentation.compare.compare_runs(a, b)))
    (b / "comparison.json").write_text(json.dumps(result))

    def recomputed(*args, **kwargs):
        raise AssertionError("the comparison was computed again")

    made = []
    monkeypatch.setattr(segmentation.compare, "compare_runs", recomputed)
    monkeypatch.setattr(artifacts, "create_markdown_artifact", lambda **kw: made.append(kw))
    assert artifacts.compare_with_previous(tmp_path, b) == result
    assert made and made[0]["markdown"] == artifacts.comparison_markdown(result)
    (b / "comparison.json").unlink()  # the first run, or a comparison that failed while publishing: a note, no work
    assert artifacts.compare_with_previous(tmp_path, b) is None
    assert "holds no comparison" in made[-1]["markdown"]


def test_the_flow_parameter_schema_takes_the_flat_predictor_keys_of_0_1_and_refuses_unknown_ones():
    """A deployment's parameters are checked against this schema by the Prefect server (enforce_parameter_schema):
    old deployments with the flat keys keep working, a misspelt key is still refused."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import is_valid

    from flows.pipeline import segflow_pipeline

    schema = parameter_schema(segflow_pipeline.fn).model_dump_for_openapi()
    old = {"model": "mf", "epochs": 30, "finetune": False, "gate_level": 0.9, "encoder_epochs": 3}
    assert is_valid({"config": {"predictor": old}}, schema)
    assert is_valid({"config": {"predictor": {"mf": {"epochs": 30}, "per_segment": {"enabled": False}}}}, schema)
    assert not is_valid({"config": {"predictor": {"epochz": 30}}}, schema)
    assert not is_valid({"config": {"predictor": {"mf": {"epochz": 30}}}}, schema)
    assert not is_valid({"config": {"predictor": {"epochs_x": 30}}}, schema)
    assert "epochs" not in schema["definitions"]["PredictorConfig"]["properties"]  # not in the run form
    cfg = segflow_pipeline.validate_parameters({"config": {"predictor": old}})["config"]
    assert cfg.predictor.mf.epochs == 30 and cfg.predictor.per_segment.enabled is False
