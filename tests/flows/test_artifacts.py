"""The run's artifacts speak plainly: the summary's rating verdict is the report's own sentence, and the report
link points where a browser can open it (report.base_url, the HTTP server of segflow serve, file:// last)."""

import copy
import dataclasses
import html
import json
from pathlib import Path

import pytest

from flows.artifacts import BASE_DIR_ENV, BASE_URL_ENV, report_link, summary_markdown
from reports import render_report
from segmentation.verdicts import rating_verdict
from tests.fixtures_report import make_report_input, write_run_folder

RUN_ID = "20260101-020000-aaaa"


def _metrics(kept: list[bool], change: float, ci: list[float], control: dict | None = None) -> dict:
    m = copy.deepcopy(make_report_input(n_users=80, n_segments=2).metrics)
    m["rating"]["segmented"]["rmse"] = m["rating"]["global"]["rmse"] + change
    m["rating"]["gain"] = {"rmse_change": change, "ci": ci}
    m["models"]["segments"] = [{"segment_id": i, "kept": k, "valid_rmse_global": 0.9, "valid_rmse_segment": 0.9}
                               for i, k in enumerate(kept)]  # fmt: skip
    if control is None:
        m["rating"].pop("random_partition_control", None)
    else:
        m["rating"]["random_partition_control"] = control
    return m


def _run(tmp_path: Path, metrics: dict, base_url: str | None = None, data=None) -> Path:
    data = data or make_report_input(n_users=80, n_segments=2)
    if base_url is not None:  # the run's configuration, as the run folder keeps it
        data = dataclasses.replace(
            data, config={**data.config, "report": {**data.config["report"], "base_url": base_url}}
        )
    folder = write_run_folder(data, tmp_path / RUN_ID)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def _rating_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("- rating accuracy:"))


def test_no_segment_kept_says_so_instead_of_a_zero_change(tmp_path):
    text = summary_markdown(_run(tmp_path, _metrics([False, False], 0.0, [0.0, 0.0])))
    line = _rating_line(text)
    assert "**No segment kept its own model, so segmentation did not change rating accuracy.**" in line
    assert "passed the validation gate in none of the 2 segments, so every segment uses the global model" in line
    assert "change 0" not in line and "CI" not in line and "[0.0, 0.0]" not in text


def test_some_kept_and_helped(tmp_path):
    line = _rating_line(summary_markdown(_run(tmp_path, _metrics([True, False], -0.02, [-0.03, -0.01]))))
    assert "**Per-segment models improved rating accuracy.**" in line
    assert "change −0.0200, 95 % CI −0.0300 to −0.0100" in line
    assert "1 of 2 segments kept their own fine-tuned model; the others use the global model." in line


def test_some_kept_but_no_significant_change(tmp_path):
    line = _rating_line(summary_markdown(_run(tmp_path, _metrics([True, True], -0.0003, [-0.0011, 0.0005]))))
    assert "**Segmentation did not improve rating accuracy.**" in line
    assert "95 % CI −0.0011 to +0.0005: the interval includes zero, so the difference is noise" in line
    assert "2 of 2 segments kept" in line


def test_random_partition_control_is_the_reports_sentence(tmp_path):
    control = {"rmse_change": -0.0002, "ci": [-0.0006, 0.0003], "segments_kept": 1}
    text = summary_markdown(_run(tmp_path, _metrics([True, False], -0.0003, [-0.0011, 0.0005], control)))
    assert (
        "- Control: the same fine-tuning and gate on random partitions of the users, with the segments' sizes, "
        "changed RMSE by −0.0002 (95 % CI −0.0006 to +0.0003); 1 random group kept a fine-tuned model."
    ) in text
    assert "did no better than random groups of the same sizes" in text
    none = {"rmse_change": 0.0, "ci": [0.0, 0.0], "segments_kept": 0}
    text = summary_markdown(_run(tmp_path / "b", _metrics([False, False], 0.0, [0.0, 0.0], none)))
    assert "Neither the segments nor the random groups kept a fine-tuned model that passed the gate" in text


def test_summary_and_report_say_the_same_verdict(tmp_path):
    """One function (segmentation.verdicts.rating_verdict) makes both sentences: what the report shows is in the artifact."""
    metrics = _metrics([False, False], 0.0, [0.0, 0.0])
    data = make_report_input(n_users=80, n_segments=2)
    page = render_report(dataclasses.replace(data, metrics=metrics, segment_models=None), tmp_path / "report")
    verdict = rating_verdict(metrics)
    shown = html.unescape(page.read_text())
    assert verdict.headline in shown and verdict.detail in shown
    line = _rating_line(summary_markdown(_run(tmp_path, metrics)))
    assert line == f"- rating accuracy: **{verdict.headline}** {verdict.detail}"


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    monkeypatch.delenv(BASE_DIR_ENV, raising=False)
    return monkeypatch


def test_report_link_prefers_base_url_then_the_served_folder_then_file(tmp_path, no_env):
    run = tmp_path / "runs" / RUN_ID
    link, where = report_link(run, "https://reports.example.com/segflow/runs/")
    assert link == f"https://reports.example.com/segflow/runs/{RUN_ID}/report/index.html"
    assert where == "served at report.base_url"

    link, where = report_link(run)
    assert link == (run / "report" / "index.html").resolve().as_uri()
    assert "last resort" in where and "file://" in where

    no_env.setenv(BASE_URL_ENV, "http://127.0.0.1:4280")
    no_env.setenv(BASE_DIR_ENV, str(tmp_path / "runs"))
    assert report_link(run)[0] == f"http://127.0.0.1:4280/{RUN_ID}/report/index.html"
    other = tmp_path / "elsewhere" / RUN_ID  # a custom run into another output_dir: not in the served folder
    assert report_link(other)[0].startswith("file://")
    assert report_link(other, "https://r.example.com")[0] == f"https://r.example.com/{RUN_ID}/report/index.html"


def test_published_link_artifact_uses_the_runs_base_url(tmp_path, no_env, monkeypatch):
    import flows.artifacts as artifacts

    made = {}
    monkeypatch.setattr(artifacts, "create_markdown_artifact", lambda **kw: None)
    monkeypatch.setattr(artifacts, "create_table_artifact", lambda **kw: None)
    monkeypatch.setattr(artifacts, "create_link_artifact", lambda **kw: made.update(kw))
    run = _run(tmp_path, _metrics([True], -0.02, [-0.03, -0.01]), "https://reports.example.com/runs")
    artifacts.publish_artifacts(run)
    assert made["link"] == f"https://reports.example.com/runs/{RUN_ID}/report/index.html"
    run = _run(tmp_path / "b", _metrics([True], -0.02, [-0.03, -0.01]))
    artifacts.publish_artifacts(run)
    assert made["link"].startswith("file://") and "last resort" in made["description"]


def test_summary_names_the_tentative_segments(tmp_path):
    """A segment below the report's 'tentative' stability line is named in the summary, as on its page."""
    data = make_report_input(n_users=80, n_segments=2)
    ids = [p.segment_id for p in data.profiles]

    def with_stability(weak: float) -> object:
        return dataclasses.replace(data, profiles=[dataclasses.replace(p, stability=None if p.segment_id < 0 else (
            weak if p.segment_id == max(ids) else 0.9)) for p in data.profiles])  # fmt: skip

    metrics = _metrics([False, False], 0.0, [-0.001, 0.001])
    text = summary_markdown(_run(tmp_path / "a", metrics, data=with_stability(0.41)))
    weak = next(p.name for p in data.profiles if p.segment_id == max(ids))
    line = next(x for x in text.splitlines() if x.startswith("- tentative segments"))
    assert f"{weak} (0.41)" in line and line.count("(0.") == 1
    assert "tentative" not in summary_markdown(_run(tmp_path / "b", metrics, data=with_stability(0.9)))


def test_summary_says_when_ranking_was_scored_on_a_sample(tmp_path):
    """Past evaluate.ranking_max_users the NDCG line is followed by the sample's note; on all users, nothing."""
    metrics = _metrics([False, False], 0.0, [0.0, 0.0])
    assert metrics.get("ranking"), "the fixture's metrics have ranking figures"
    note = "ranking and beyond-accuracy figures are over a uniform sample of 50 of the 80 test users"
    metrics["ranking_sample"] = {"sampled": True, "n_users": 50, "n_test_users": 80, "max_users": 50, "note": note}
    lines = summary_markdown(_run(tmp_path / "a", metrics)).splitlines()
    ndcg = next(i for i, x in enumerate(lines) if x.startswith("- top-"))
    assert lines[ndcg + 1] == f"  ({note})"
    metrics["ranking_sample"] = {"sampled": False, "n_users": 80, "n_test_users": 80, "max_users": None, "note": None}
    assert "uniform sample" not in summary_markdown(_run(tmp_path / "b", metrics))
