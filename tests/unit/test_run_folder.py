"""The run folder is the contract between computing and presenting: one typed loader, verdicts computed once.

Every reader (the report, `segflow show`, `segflow report RUN_DIR`, the Prefect artifacts, the run comparison)
goes through :func:`segmentation.run_folder.load_run_folder`; an incomplete folder is a DataError that names the
file and what is missing; the verdicts stored in metrics.json are what the report and the summary print.
"""

import dataclasses
import html
import json
import shutil
from pathlib import Path

import grimp
import polars as pl
import pytest

from flows.artifacts import summary_markdown
from flows.cli import main
from reports import render_report
from segmentation._errors import DataError
from segmentation.run_folder import RunFolder, load_run_folder
from segmentation.verdicts import run_verdicts
from tests.fixtures_report import make_report_input, write_run_folder

RUN_ID = "20260101-020000-aaaa"


def _stored(data: RunFolder) -> RunFolder:
    """``data`` with its verdicts in metrics.json, as a run writes them (segmentation.publish.write_run)."""
    verdicts = run_verdicts(data.metrics, data.config, [(p.segment_id, p.name, p.stability) for p in data.profiles],
                            data.models_by_segment())  # fmt: skip
    return dataclasses.replace(data, metrics={**data.metrics, "verdicts": verdicts})


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return write_run_folder(_stored(make_report_input(n_users=90, n_segments=3, seed=2)), tmp_path / RUN_ID)


def test_loader_reads_every_part_back(run_dir):
    data = _stored(make_report_input(n_users=90, n_segments=3, seed=2))
    run = load_run_folder(run_dir)
    assert run.path == run_dir.resolve() and run.run_id == data.run_id and run.title == data.title
    assert run.metrics == json.loads(json.dumps(data.metrics)) and run.config == data.config
    assert run.assignments.equals(data.assignments) and run.segments is not None
    assert run.segments["segment_id"].to_list() == [p.segment_id for p in data.profiles]
    assert run.profiles == data.profiles
    assert run.recommendations == {k: [tuple(r) for r in v] for k, v in data.recommendations.items()}
    assert run.neighbours == data.neighbours
    assert run.segment_models is not None and run.segment_models.equals(data.segment_models)
    assert run.verdicts == data.metrics["verdicts"] and run.manifest["schema_version"] == 1


def test_a_run_folder_written_before_verdicts_were_stored_still_loads(tmp_path):
    """Run folders of the current schema without metrics.json 'verdicts' get them from the same function."""
    data = make_report_input(n_users=90, n_segments=3, seed=2)
    assert "verdicts" not in data.metrics
    run = load_run_folder(write_run_folder(data, tmp_path / RUN_ID))
    assert run.verdicts == _stored(data).metrics["verdicts"]
    assert run.verdicts["rating"]["headline"].startswith("No segment kept its own model")  # none kept at seed 2
    assert [t["segment_id"] for t in run.verdicts["tentative"]] == [1]  # the fixture's unstable segment


def test_a_run_written_with_the_flat_predictor_keys_shows_them_under_the_nested_names(run_dir, tmp_path, caplog):
    """Runs written before the predictor section was nested (segflow 0.1) keep rendering their key settings
    (per-segment fine-tuning was dropped from the report's settings table before), without deprecation warnings."""

    def flatten(data):
        data["config"]["predictor"] = {"model": "mf", "finetune": False, "embedding_size": 32, "epochs": 7}

    _edit_json("report_input.json", flatten)(run_dir)
    with caplog.at_level("WARNING"):
        predictor = load_run_folder(run_dir).config["predictor"]
    assert predictor["model"] == "mf" and predictor["per_segment"] == {"enabled": False}
    assert predictor["mf"]["embedding_size"] == 32 and predictor["mf"]["epochs"] == 7 == predictor["svdpp"]["epochs"]
    assert "deprecated" not in caplog.text
    render_report(load_run_folder(run_dir), tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text()
    assert 'title="predictor.per_segment.enabled">Per-segment fine-tuning</td><td class="val">no' in page


def test_the_report_and_the_summary_print_the_stored_verdicts(run_dir, tmp_path):
    """What metrics.json says is what the report and `segflow show` print, word for word."""
    run = load_run_folder(run_dir)
    v = run.verdicts
    index = html.unescape(render_report(run, tmp_path / "report").read_text())
    assert v["rating"]["headline"] in index and v["rating"]["detail"] in index and v["control"] in index
    summary = summary_markdown(run_dir)
    assert f"**{v['rating']['headline']}** {v['rating']['detail']}" in summary and f"- {v['control']}" in summary
    tentative = [t["name"] for t in v["tentative"]]
    assert tentative and all(n in summary for n in tentative)
    page = html.unescape((tmp_path / "report" / "segment-1.html").read_text())
    assert "Tentative: when the users are resampled" in page

    # they print, they do not decide: change the stored verdicts and the pages and the summary follow
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["verdicts"]["rating"] = {"kind": "good", "headline": "STORED HEADLINE", "detail": "STORED DETAIL"}
    metrics["verdicts"]["control"] = "STORED CONTROL"
    metrics["verdicts"]["tentative"] = []
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    index = render_report(load_run_folder(run_dir), tmp_path / "again").read_text()
    assert "STORED HEADLINE" in index and "STORED DETAIL" in index and "STORED CONTROL" in index
    assert "Tentative: when" not in (tmp_path / "again" / "segment-1.html").read_text()
    summary = summary_markdown(run_dir)
    assert "**STORED HEADLINE** STORED DETAIL" in summary and "- STORED CONTROL" in summary
    assert "tentative" not in summary


def _drop(path: Path) -> None:
    path.unlink()


def _write(name: str, text: str):
    return lambda folder: (folder / name).write_text(text)


def _edit_json(name: str, edit):
    def apply(folder: Path) -> None:
        data = json.loads((folder / name).read_text())
        edit(data)
        (folder / name).write_text(json.dumps(data))

    return apply


def _drop_columns(folder: Path) -> None:
    pl.read_parquet(folder / "users.parquet").drop("x", "y").write_parquet(folder / "users.parquet")


BROKEN = {
    "no users.parquet": (lambda f: _drop(f / "users.parquet"), r"not a complete segflow run folder \(missing \['users.parquet'\]\)"),
    "no metrics.json": (lambda f: _drop(f / "metrics.json"), r"missing \['metrics.json'\]"),
    "no manifest.json": (lambda f: _drop(f / "manifest.json"), r"missing \['manifest.json'\]"),
    "damaged metrics.json": (_write("metrics.json", '{"data": '), r"metrics.json is not readable JSON"),
    "metrics.json not an object": (_write("metrics.json", "[1, 2]"), r"metrics.json holds list, not a JSON object"),
    "older schema": (_edit_json("manifest.json", lambda d: d.update(schema_version=0)), r"run schema version 0 is not 1"),
    "users.parquet without the map": (_drop_columns, r"users.parquet lacks the column\(s\) \['x', 'y'\]"),
    "no report_input.json": (lambda f: _drop(f / "report_input.json"), r"has no report_input.json: .* rerun it instead"),
    "damaged report_input.json": (_write("report_input.json", "{"), r"report_input.json is not readable JSON"),
    "other details version": (_edit_json("report_input.json", lambda d: d.update(format_version=2)),
                              r"report_input.json has format version 2; this segflow reads version 1"),
    "details without profiles": (_edit_json("report_input.json", lambda d: d.pop("profiles")),
                                 r"report_input.json lacks \['profiles'\]; rerun the run"),
    "damaged comparison.json": (_write("comparison.json", "not json"), r"comparison.json is not readable JSON"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_an_incomplete_folder_is_a_data_error_naming_the_file(run_dir, case):
    damage, message = BROKEN[case]
    damage(run_dir)
    with pytest.raises(DataError, match=message):
        load_run_folder(run_dir)


@pytest.mark.parametrize("command", ["show", "report"])
def test_show_and_report_exit_2_on_an_incomplete_folder_and_change_nothing(run_dir, command, capsys):
    (run_dir / "metrics.json").write_text('{"data": ')
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert main([command, str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "metrics.json is not readable JSON" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_a_partial_folder_is_read_only_by_its_own_writer(run_dir):
    partial = run_dir.parent / f".partial-{RUN_ID}"
    shutil.copytree(run_dir, partial)
    with pytest.raises(DataError, match="is an unfinished run"):
        load_run_folder(partial)
    assert load_run_folder(partial, allow_partial=True).run_id == load_run_folder(run_dir).run_id


def test_comparison_reads_runs_through_the_loader(tmp_path):
    from segmentation.compare import compare_runs

    a = write_run_folder(make_report_input(n_users=90, n_segments=3, seed=2), tmp_path / "a")
    b = write_run_folder(make_report_input(n_users=90, n_segments=3, seed=2), tmp_path / "b")
    (b / "report_input.json").unlink()
    with pytest.raises(DataError, match="has no report_input.json"):
        compare_runs(a, b)
    from_paths = compare_runs(a, a)
    from_folders = compare_runs(load_run_folder(a), load_run_folder(a))
    assert from_paths["ari"] == from_folders["ari"] == 1.0
    assert {k: v for k, v in from_paths.items() if k not in ("run_a", "run_b")} == {
        k: v for k, v in from_folders.items() if k not in ("run_a", "run_b")}  # fmt: skip


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("reports", "segmentation", "embeddings", "flows")


def test_the_library_never_imports_the_report():
    """Rendering left the library: nothing in segmentation imports reports, not even inside a function."""
    assert not _graph().chain_exists(importer="segmentation", imported="reports", as_packages=True)


def test_report_modules_import_each_other_without_a_cycle():
    graph = _graph()
    modules = {m for m in graph.modules if m.startswith("reports.")}
    edges = {m: {x for x in graph.find_modules_directly_imported_by(m) if x in modules} for m in modules}
    cyclic = [(a, b) for a in modules for b in edges[a]
              if graph.chain_exists(importer=b, imported=a)]  # fmt: skip
    assert not cyclic, cyclic
