"""The HTML report, without a browser: files, escaping, links, offline assets, missing metrics."""

import copy
import dataclasses
import html
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/fixtures_report.py from any start directory

from reports import render_report  # noqa: E402
from reports._charts import MAX_MAP_POINTS, fig_map  # noqa: E402
from reports.overview import splits_text, stability_view  # noqa: E402
from reports.render import segment_filename  # noqa: E402
from segmentation.verdicts import control_text, rating_verdict  # noqa: E402
from tests.fixtures_report import HOSTILE_NAME, HOSTILE_TITLE, make_report_input  # noqa: E402


class _Refs(HTMLParser):
    """Collects href/src attributes and <script> tags of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.refs += [v for k, v in attrs if k in ("href", "src") and v]
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "script":
            self.scripts.append(a)


def _parse(page: Path) -> _Refs:
    p = _Refs()
    p.feed(page.read_text(encoding="utf-8"))
    return p


def _figures(page: Path) -> dict:
    m = re.search(r'<script type="application/json" id="figures">(.*?)</script>', page.read_text(), re.S)
    assert m, f"{page.name} has no figure block"
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    return render_report(make_report_input(n_users=150, n_segments=4), tmp_path_factory.mktemp("report"))


def test_writes_overview_segment_pages_and_assets(report):
    out = report.parent
    assert report == out / "index.html"
    names = {p.name for p in out.glob("*.html")}
    assert names == {"index.html", "segment-0.html", "segment-1.html", "segment-2.html", "segment-3.html",
                     "segment-outliers.html"}  # fmt: skip
    assert {p.name for p in (out / "assets").iterdir()} == {"plotly.min.js", "style.css", "report.js"}
    assert segment_filename(-1) == "segment-outliers.html" and segment_filename(7) == "segment-7.html"


def test_plotly_js_is_shipped_exactly_once(report):
    out = report.parent
    copies = [p for p in out.rglob("*") if p.is_file() and "Copyright 2012" in p.read_text(errors="ignore")[:400]]
    assert [p.relative_to(out).as_posix() for p in copies] == ["assets/plotly.min.js"]
    for page in out.glob("*.html"):
        srcs = [s.get("src") for s in _parse(page).scripts if s.get("src")]
        assert srcs == ["assets/plotly.min.js", "assets/report.js"], page.name
        assert page.stat().st_size < 300_000, f"{page.name} is {page.stat().st_size} bytes: is plotly.js inlined?"


def test_every_link_resolves_and_nothing_points_outside(report):
    out = report.parent
    for page in out.glob("*.html"):
        for ref in _parse(page).refs:
            url = urlparse(ref)
            assert not url.scheme and not url.netloc, f"{page.name} refers outside the report: {ref}"
            assert (out / url.path).is_file(), f"{page.name}: broken link {ref}"
    css = (out / "assets" / "style.css").read_text()
    assert "url(" not in css and "@import" not in css and "@font-face" not in css


def test_strings_from_data_are_escaped(report):
    out = report.parent
    pages = {p.name: p.read_text(encoding="utf-8") for p in out.glob("*.html")}
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["segment-0.html"]  # the title, as text
    for name, text in pages.items():
        assert HOSTILE_TITLE not in text, name
        assert HOSTILE_NAME not in text and "<i>Horror</i>" not in text, name
        assert len(_parse(out / name).scripts) == 3, name  # figures (JSON), plotly.min.js, report.js
    assert "Sci-Fi &amp; &lt;i&gt;Horror&lt;/i&gt; fans" in pages["index.html"]
    # plotly reads a little HTML: names drawn in charts are entity-escaped inside the JSON too
    figs = json.dumps(_figures(out / "index.html"))
    assert "&lt;i&gt;Horror&lt;/i&gt;" in figs and "<i>Horror" not in figs


def test_every_chart_div_has_a_figure(report):
    for page in report.parent.glob("*.html"):
        figs = _figures(page)
        charts = [i for i in _parse(page).ids if i.startswith("chart-")]
        assert charts and set(charts) == set(figs), page.name
        for spec in figs.values():
            assert spec["data"] and spec["layout"]["title"]["text"]


def test_overview_says_plainly_when_segmentation_did_not_help(report):
    text = report.read_text()
    assert "No segment kept its own model, so segmentation did not change rating accuracy." in text  # none kept
    assert "95 % CI −0.0011 to +0.0005" in text


def test_verdicts_follow_the_confidence_interval():
    m = copy.deepcopy(make_report_input().metrics)
    m["rating"]["gain"] = {"rmse_change": -0.02, "ci": [-0.03, -0.01]}
    m["rating"]["segmented"]["rmse"] = m["rating"]["global"]["rmse"] - 0.02
    assert rating_verdict(m, {}).kind == "good"
    m["rating"]["gain"] = {"rmse_change": 0.02, "ci": [0.01, 0.03]}
    m["rating"]["segmented"]["rmse"] = m["rating"]["global"]["rmse"] + 0.02
    assert rating_verdict(m, {}).kind == "bad"
    # a gain recorded as global - segmented is turned around, not misread
    m["rating"]["gain"] = {"rmse_change": -0.02, "ci": [-0.03, -0.01]}
    v = rating_verdict(m, {})
    assert v.kind == "bad" and "+0.0200" in v.detail
    del m["rating"]["gain"]
    m["rating"]["segmented"]["rmse"] = m["rating"]["global"]["rmse"] - 0.0004
    assert rating_verdict(m, {}).headline == "Segmentation did not improve rating accuracy."
    assert rating_verdict({}, {}).kind == "missing"


def test_overview_shows_stability_parameter_choice_and_control(report):
    text = html.unescape(report.read_text())
    assert "ARI with other seeds" in text and "0.870" in text and "ARI with 80.0 % subsamples" in text
    assert "stable" in text
    assert "How the segment settings were chosen" in text
    assert "Chosen: segments of at least 15 users, leaf selection; min_cluster_size 15 with leaf" in text
    assert "✔ 15 · leaf" in text and "15 · eom" in text
    assert "Control: the same fine-tuning and gate on random partitions" in text
    assert "did no better than random groups" in text


def test_control_text_tells_segments_apart_from_random_groups():
    m = copy.deepcopy(make_report_input().metrics)
    m["rating"]["gain"] = {"rmse_change": -0.02, "ci": [-0.03, -0.012]}
    m["rating"]["random_partition_control"] = {"rmse_change": -0.001, "ci": [-0.004, 0.002], "segments_kept": 1}
    text = control_text(m)
    assert "carry real signal" in text and "1 random group kept" in text
    m["rating"]["random_partition_control"]["ci"] = [-0.025, -0.001]
    assert "did no better than random groups" in control_text(m)
    m["rating"]["random_partition_control"]["ci"] = [-0.004, 0.002]
    m["rating"]["gain"]["ci"] = [-0.03, -0.002]
    assert "likely, not proven" in control_text(m)  # helped, the control did not, but the intervals overlap
    m["rating"]["gain"] = {"rmse_change": 0.0, "ci": [0.0, 0.0]}
    m["rating"]["random_partition_control"] = {"rmse_change": 0.0, "ci": [0.0, 0.0], "segments_kept": 0}
    assert "both predict as the global model does" in control_text(m)
    del m["rating"]["random_partition_control"]
    assert control_text(m) is None


def test_stability_view_flags_unstable_segments():
    seg = {"stability": {"seed_ari": {"mean": 0.41, "min": 0.3, "values": [0.52, 0.3]}, "fraction": 0.8,
                         "n_users": 500, "seconds": 3.0}}  # fmt: skip
    sentence, table = stability_view(seg)
    assert "unstable" in sentence and len(table.rows) == 1
    assert stability_view({"stability": {"skipped": "off"}}) == ("Not measured: off.", None)
    assert stability_view({}) == (None, None)


def test_segment_stability_on_pages_and_tentative_marked(report):
    out = report.parent
    overview = html.unescape(report.read_text())
    # the overview's table has a stability column, and the tentative segment (1, Jaccard 0.45) a badge
    table = overview[overview.index('id="segments"') : overview.index("</table>", overview.index('id="segments"'))]
    assert "Stability" in table and "0.45" in table and "0.90" in table
    assert table.count('class="badge"') == 1 and ">tentative</span>" in table
    # the overview says which segments are unstable, and why
    name1 = re.search(r'<a href="segment-1.html">([^<]*)</a>', overview).group(1)
    name2 = re.search(r'<a href="segment-2.html">([^<]*)</a>', overview).group(1)
    summary = overview[overview.index('id="unstable"') :]
    summary = summary[: summary.index("</p>")]
    assert "1 of 4 segments are tentative" in summary and f"{name1} (0.45: it merges with {name2})" in summary
    # every segment page states its stability in a sentence; only segment 1 is marked tentative
    for sid in range(4):
        page = html.unescape((out / f"segment-{sid}.html").read_text())
        sentence = page[page.index('id="stability"') :]
        assert ("Stability 0.45 (tentative)" if sid == 1 else "Stability 0.90 (highly stable)") in sentence
        assert "4 refits" in sentence
        assert ("dissolves or merges" in page) == (sid == 1)
        main = page[page.index("<main") :]
        assert ('class="badge"' in main) == (sid == 1)
        assert page[: page.index("<main")].count('class="badge"') == 1  # the segment menu marks segment 1
    seg1 = html.unescape((out / "segment-1.html").read_text())
    assert f"Where it did not come back, it merges with {name2}." in seg1
    outliers = (out / "segment-outliers.html").read_text()
    outliers = outliers[outliers.index("<main") :]
    assert 'id="stability"' not in outliers and "tentative" not in outliers


def test_split_segments_are_named_in_the_settings_section(tmp_path):
    data = make_report_input(n_users=150, n_segments=4)
    metrics = copy.deepcopy(data.metrics)
    metrics["segmentation"]["splits"] = {"split_stability": 0.9, "min_size": 15, "tested": [
        {"segment": 0, "users": 90, "split": True, "stability": 0.987, "parts": 2, "sizes": [60, 30], "segments": [0, 3]},
        {"segment": 1, "users": 40, "split": False, "stability": 0.612, "parts": 3, "segments": [1],
         "outcome": "unstable", "why": "the parts did not come back"},
        {"segment": 2, "users": 20, "split": False, "outcome": "not tested", "why": "under 500 users: not tested",
         "segments": [2]},
        {"segment": 3, "users": 30, "split": False, "stability": 0.97, "parts": 2, "segments": [3],
         "outcome": "parts too small", "why": "stability 0.97, but fewer than two parts of at least 15 users"}]}  # fmt: skip
    index = render_report(dataclasses.replace(data, metrics=metrics), tmp_path)
    text = html.unescape(index.read_text())
    names = {p.segment_id: p.name for p in data.profiles}
    para = text[text.index('<p id="splits">') :].split("</p>")[0]
    assert f"90 users came apart into “{names[0]}”, “{names[3]}” (stability 0.987)" in para
    # a test that failed on the parts' size is not counted as held together (its 0.97 would contradict the bar)
    assert "1 segment held together (stability at most 0.612)" in para and "at least 0.90" in para
    assert "understate" in para  # the quality scores and the map are the first fit's
    assert "Splits" not in text.split('id="selection"')[0].split("Quality")[-1]  # not dumped in the quality table
    # no test made (every segment too small), or an older run: no paragraph
    assert (
        splits_text({"splits": {"split_stability": 0.9, "tested": [metrics["segmentation"]["splits"]["tested"][2]]}})
        is None
    )
    assert splits_text({}) is None
    # a split by the categories its users chose says so, and says once what that test is
    by_categories = {"segment": 0, "users": 900, "split": True, "test": "categories", "stability": 0.981,
                     "parts": 2, "sizes": [600, 300], "segments": [0, 4],
                     "layout": {"outcome": "unstable", "stability": 0.7}}  # fmt: skip
    said = splits_text({"splits": {"split_stability": 0.9, "tested": [by_categories]}}, {0: "Rock fans"})
    assert (
        "900 users came apart by the categories its users chose into “Rock fans”, segment 4 (stability 0.981)" in said
    )
    assert said.count("mixture of category profiles") == 1
    assert "how they rated" not in said  # no split by the levels: that test is not described
    assert "categories its users chose" not in para  # the layout split above says nothing of it
    # a split by what its users chose and how they rated it (the levels): both tests described, the split named so
    by_ratings = {**by_categories, "test": "layout, then ratings", "segments": [0, 4]}
    said = splits_text({"splits": {"split_stability": 0.9, "tested": [by_ratings]}}, {0: "Rock fans"})
    assert said.count("mixture of category profiles") == 1 and "tested once more on what its users chose" in said
    assert ("900 users came apart in its own layout, then by what its users chose and how they rated it into “Rock "
            "fans”, segment 4 (stability 0.981)") in said  # fmt: skip
    # a run from before ``outcome`` was recorded: its ``why`` tells a failed stability
    legacy = {
        "segment": 1,
        "users": 40,
        "split": False,
        "stability": 0.612,
        "why": "stability 0.612 of 3 parts below 0.9",
    }
    assert "1 segment held together (stability at most 0.612)" in splits_text({"splits": {"tested": [legacy]}})
    assert 'id="splits"' not in render_report(data, tmp_path / "old").read_text()
    # settings given, so no parameter selection: the paragraph still shows, without the selection's hint
    del metrics["segmentation"]["selection"]
    given = render_report(dataclasses.replace(data, metrics=metrics), tmp_path / "given").read_text()
    assert 'id="splits"' in given and "each candidate setting was scored" not in given


def test_stability_not_measured_says_so(tmp_path):
    data = make_report_input(n_users=150, n_segments=4)
    data = dataclasses.replace(data, profiles=[dataclasses.replace(p, stability=None) for p in data.profiles])
    index = render_report(data, tmp_path)
    assert 'id="unstable"' not in index.read_text() and "badge" not in index.read_text().split("<table")[1]
    assert "Stability: not measured in this run." in (tmp_path / "segment-0.html").read_text()


def test_minimal_input_renders_not_computed(tmp_path):
    index = render_report(make_report_input(complete=False), tmp_path)
    text = index.read_text()
    assert "Rating accuracy was not computed in this run." in text
    assert text.count("Not computed in this run.") >= 5
    page = (tmp_path / "segment-0.html").read_text()
    assert "Not computed in this run." in page


@pytest.mark.parametrize("section", ["data", "segmentation", "rating", "ranking", "beyond_accuracy", "fairness",
                                     "timings", "versions", "models"])  # fmt: skip
def test_each_metrics_section_may_be_missing(tmp_path, section):
    data = make_report_input(n_users=60, n_segments=2)
    metrics = {k: v for k, v in data.metrics.items() if k != section}
    render_report(dataclasses.replace(data, metrics=metrics), tmp_path)
    assert len(list(tmp_path.glob("*.html"))) == 4


def test_ranking_on_a_sample_says_so_and_on_everyone_says_nothing(tmp_path):
    data = make_report_input(n_users=60, n_segments=2)
    note = ("ranking and beyond-accuracy figures are over a uniform sample of 50,000 of the 1,000,000 test users "
            "drawn with the run's seed (evaluate.ranking_max_users = 50,000)")  # fmt: skip
    sampled = {**data.metrics, "ranking_sample": {"sampled": True, "n_users": 50_000, "note": note}}
    text = render_report(dataclasses.replace(data, metrics=sampled), tmp_path / "a").read_text()
    assert (
        "On a sample: ranking and beyond-accuracy figures are over a uniform sample of 50,000 of the 1,000,000" in text
    )
    everyone = {**data.metrics, "ranking_sample": {"sampled": False, "n_users": 60, "note": "every test user"}}
    assert "On a sample" not in render_report(dataclasses.replace(data, metrics=everyone), tmp_path / "b").read_text()


def test_odd_metric_shapes_do_not_crash(tmp_path):
    data = make_report_input(n_users=60, n_segments=2)
    metrics = {
        "rating": {"global": {"rmse": None, "per_segment": {"0": None}}, "segmented": "n/a", "gain": [1, 2]},
        "ranking": {"item-knn": {"ndcg@10": float("nan"), "per_segment": {"5": {"ndcg@10": 0.1}}}, "note": "x"},
        "beyond_accuracy": [], "fairness": {"gap": 0.1, "by_group": {"a": [1, 2]}}, "segmentation": {"n_segments": "2"},
        "timings": {"load": "fast"}, "versions": {"python": 3.11},
    }  # fmt: skip
    render_report(dataclasses.replace(data, metrics=metrics, segment_models=pl.DataFrame(), config={"seed": None}),
                  tmp_path)  # fmt: skip
    assert (tmp_path / "segment-outliers.html").is_file()


def test_rerender_removes_stale_segment_pages(tmp_path):
    render_report(make_report_input(n_users=80, n_segments=4), tmp_path)
    assert (tmp_path / "segment-3.html").is_file()
    render_report(make_report_input(n_users=80, n_segments=2), tmp_path)
    assert not (tmp_path / "segment-3.html").exists()
    assert len(list((tmp_path / "assets").glob("plotly*"))) == 1


def test_segment_page_nav_and_content(report):
    out = report.parent
    first = (out / "segment-0.html").read_text()
    assert 'href="segment-1.html"' in first and 'href="index.html"' in first
    last = (out / "segment-outliers.html").read_text()
    assert 'href="segment-3.html"' in last and "nearest segment" in last
    assert "What to recommend to them" in first and "Representative users" in first


def test_large_maps_are_sampled(monkeypatch):
    data = make_report_input(n_users=400, n_segments=3)
    monkeypatch.setattr("reports._charts.MAX_MAP_POINTS", 100)
    from reports._segments import _segments

    fig = fig_map(data, _segments(data))
    assert sum(len(t.x) for t in fig.data) == 100
    assert "sample of 100 of" in fig.layout.title.text
    assert MAX_MAP_POINTS >= 5_000


def test_ml100k_sized_report_is_small(tmp_path):
    render_report(make_report_input(n_users=943, n_segments=12), tmp_path)
    total = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert total < 10_000_000, total
    assert len(list(tmp_path.glob("*.html"))) == 14


def test_reports_package_does_not_import_prefect():
    import subprocess

    code = "import sys, reports; assert 'prefect' not in sys.modules; print(reports.__all__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "render_report" in out.stdout


# ----------------------------------------------------------------------------- run comparison (issue 6)


def test_compare_runs_matches_renumbered_segments_by_overlap(tmp_path):
    from segmentation.compare import compare_runs
    from tests.fixtures_report import make_run_pair

    a, b = make_run_pair(tmp_path, n_users=200, moved=0.15)
    r = compare_runs(a, b)
    json.dumps(r)  # plain data, storable in a run folder
    pairs = {m["segment_a"]: m["segment_b"] for m in r["matches"]}
    assert pairs == {0: 0, 1: 2, 2: 1, 3: 3, -1: -1}  # B renumbered 1 <-> 2
    assert all(m["jaccard"] > 0.6 for m in r["matches"] if m["segment_a"] != -1)
    mig = r["migration"]
    assert sum(map(sum, mig["counts"])) == r["n_common"] == 190
    assert mig["cols"] == [0, 2, 1, 3, -1]  # ordered to read along the diagonal
    diag = sum(mig["counts"][i][i] for i in range(4))
    assert diag / r["n_common"] == pytest.approx(r["stayed_share"])
    assert 0.6 < r["ari"] < 1
    drift = {d["metric"]: d for d in r["metric_drift"]}
    assert drift["rating.global.rmse"]["change"] == pytest.approx(0.01)
    assert not any("per_segment" in k or k.startswith("timings") for k in drift)
    assert r["summary"][0].startswith("4 segments before, 4 now: 4 matched")


def test_compare_runs_reports_gone_and_new_segments(tmp_path):
    from segmentation.compare import compare_runs
    from tests.fixtures_report import make_report_input, write_run_folder

    a = make_report_input(n_users=150, n_segments=3)
    seg = a.assignments["segment_id"]
    merged = a.assignments.with_columns(pl.when(seg == 2).then(0).otherwise(seg).cast(pl.Int32).alias("segment_id"))
    r = compare_runs(write_run_folder(a, tmp_path / "a"), write_run_folder(dataclasses.replace(a, assignments=merged),
                                                                           tmp_path / "b"))  # fmt: skip
    gone = [m for m in r["matches"] if m["segment_b"] is None]
    assert [m["segment_a"] for m in gone] == [2]
    r2 = compare_runs(tmp_path / "b", tmp_path / "a")
    assert [m["segment_b"] for m in r2["matches"] if m["segment_a"] is None] == [2]
    assert "1 new" in r2["summary"][0]


def test_compare_runs_names_a_folder_that_is_not_a_run(tmp_path):
    from segmentation._errors import DataError
    from segmentation.compare import compare_runs

    with pytest.raises(DataError, match="users.parquet"):
        compare_runs(tmp_path, tmp_path)


def test_comparison_page_standalone_and_inside_a_report(tmp_path):
    from reports import render_comparison
    from segmentation.compare import compare_runs
    from tests.fixtures_report import make_run_pair

    a, b = make_run_pair(tmp_path / "runs")
    result = compare_runs(a, b)
    page = render_comparison(result, tmp_path / "standalone")
    assert page.name == "comparison.html" and (page.parent / "assets" / "plotly.min.js").is_file()
    assert set(_figures(page)) == {"chart-sankey", "chart-migration"}
    assert all(not urlparse(ref).scheme for ref in _parse(page).refs)
    assert 'href="index.html"' not in page.read_text()  # no overview to go back to

    data = dataclasses.replace(make_report_input(n_users=200, n_segments=4), comparison=result)
    index = render_report(data, tmp_path / "report")
    assert 'href="comparison.html"' in index.read_text()
    for ref in _parse(tmp_path / "report" / "comparison.html").refs:
        assert (tmp_path / "report" / ref).is_file(), ref
    render_report(dataclasses.replace(data, comparison=None), tmp_path / "report")
    assert not (tmp_path / "report" / "comparison.html").exists()


def test_report_rendered_again_from_the_run_folder_is_byte_identical(tmp_path):
    """The report's inputs survive the run folder: rendering from the folder (read by load_run_folder) gives the same
    pages as rendering from the objects in memory (what `segflow report RUN_DIR` relies on)."""
    import dataclasses

    from segmentation.run_folder import load_run_folder, rating_summary
    from tests.fixtures_report import make_report_input, write_run_folder

    base = make_report_input(150, 3, seed=4)
    ratings = pl.DataFrame({"user_id": ["u1", "u1", "u2", "u3"], "rating": [4.0, 2.0, 5.0, 3.5]})
    data = dataclasses.replace(base, rating_summary=rating_summary(ratings),
                               comparison={"summary": ["nothing moved"], "matches": [], "drift": []})  # fmt: skip
    folder = write_run_folder(data, tmp_path / "run")
    assert "u1" not in (folder / "report_input.json").read_text()  # a summary of the ratings, not the ratings
    render_report(data, tmp_path / "memory")
    render_report(load_run_folder(folder), tmp_path / "folder")
    pages = sorted(p.name for p in (tmp_path / "memory").glob("*.html"))
    assert pages == sorted(p.name for p in (tmp_path / "folder").glob("*.html")) and len(pages) >= 4
    for name in pages:
        assert (tmp_path / "memory" / name).read_bytes() == (tmp_path / "folder" / name).read_bytes(), name


def test_report_command_refuses_a_run_without_report_input(tmp_path, capsys):
    from flows.cli import main
    from tests.fixtures_report import make_report_input, write_run_folder

    folder = write_run_folder(make_report_input(60, 2, seed=1), tmp_path / "old-run")
    (folder / "report_input.json").unlink()
    assert main(["report", str(folder)]) == 2
    assert "has no report_input.json" in capsys.readouterr().err


def test_a_skipped_cold_start_says_why_without_empty_tables(tmp_path):
    """A run with no sparse user skips the cold-start gate: the section gives the reason, and no empty table."""
    data = make_report_input(n_users=150, n_segments=3)
    reason = "no user has 5 or fewer train ratings, so no prediction would change in this run"
    metrics = {k: v for k, v in data.metrics.items() if k != "verdicts"} | {"cold_start": {"skipped": reason}}
    text = html.unescape(render_report(dataclasses.replace(data, metrics=metrics), tmp_path).read_text())
    section = text[text.index('<div id="cold-start">') :]
    section = section[: section.index("</div>")]
    assert reason in section and "Not computed in this run." not in section and "<table" not in section


def test_settings_table_tells_the_representations_weights_evidence_and_category_cap(tmp_path):
    data = make_report_input(n_users=150, n_segments=4)
    config = copy.deepcopy(data.config)
    config["represent"] = {"method": "item-mean+category-hist+liked-category-hist+category-rating",
                           "weights": {"category-rating": 0.5}, "evidence": 5.0, "max_categories": 64}  # fmt: skip
    text = html.unescape(render_report(dataclasses.replace(data, config=config), tmp_path / "four").read_text())
    assert "item-mean 1, category-hist 1, liked-category-hist 1, category-rating 0.5" in text
    assert "scaled by n / (n + 5) for a user with n interactions" in text
    assert re.search(r"Categories read, at most</td>\s*<td[^>]*>64<", text)
    config["represent"] = {"method": "item-mean", "weights": {"category-rating": 0.5}, "evidence": None}
    text = html.unescape(render_report(dataclasses.replace(data, config=config), tmp_path / "one").read_text())
    assert "– (one part)" in text and "not scaled" in text and "category-rating 0.5" not in text
    config["represent"]["evidence"] = 5.0
    text = html.unescape(render_report(dataclasses.replace(data, config=config), tmp_path / "mean").read_text())
    assert "– (no category part in a fusion)" in text


def test_the_outliers_page_says_why_they_are_outliers(tmp_path):
    from reports.segment_page import outliers_text

    data = make_report_input(n_users=150, n_segments=4)
    metrics = copy.deepcopy(data.metrics)
    metrics["segmentation"]["outliers"] = {"outlier_distance": 3.25, "reads_categories": True, "outliers": 12,
                                           "demoted": 5, "joined": 7}  # fmt: skip
    render_report(dataclasses.replace(data, metrics=metrics), tmp_path)
    page = html.unescape((tmp_path / "segment-outliers.html").read_text())
    said = page[page.index('<p id="outliers-why">') :].split("</p>")[0]
    assert "how unlike its category profile the categories they chose are, for the number of interactions" in said
    assert (
        "the two scores together lie more than 3.25 robust standard deviations out (cluster.outlier_distance): 12"
        in said
    )
    assert "7 users that the clustering had left out were close enough to join their nearest segment" in said
    alone = outliers_text({"outlier_distance": 3.5, "outlier_evidence": False, "reads_categories": False,
                           "outliers": 3, "joined": 0})  # fmt: skip
    assert alone is not None and "category" not in alone and "join" not in alone and "interactions" not in alone
    assert (
        "when that score lies more than 3.50 robust standard deviations out (cluster.outlier_distance): 3 users"
        in alone
    )
    # a run without the record (older, or the rule off): no sentence, on the page or from the function
    assert outliers_text(None) is None and outliers_text({"joined": 3}) is None
    render_report(data, tmp_path / "old")
    assert 'id="outliers-why"' not in (tmp_path / "old" / "segment-outliers.html").read_text()


def test_members_moved_by_their_categories_are_told_in_the_settings_section(tmp_path):
    from reports.overview import reassigned_text

    data = make_report_input(n_users=150, n_segments=4)
    metrics = copy.deepcopy(data.metrics)
    metrics["segmentation"]["reassigned"] = {"moved": 9, "refused": 2, "level": 0.2}
    metrics["segmentation"]["outliers"] = {"outlier_distance": 3.25, "reads_categories": True, "outliers": 12,
                                           "demoted": 5, "joined": 7}  # fmt: skip
    text = html.unescape(render_report(dataclasses.replace(data, metrics=metrics), tmp_path).read_text())
    said = text[text.index('<p id="reassigned">') :].split("</p>")[0]
    n_users = metrics["segmentation"]["n_users"]
    assert f"9 members ({100 * 9 / n_users:.1f} % of the users) moved to the segment whose profile best explains " \
           "what they chose (the categories)" in said  # fmt: skip
    assert "posterior was below 0.20" in said and "2 such moves were not made" in said
    # the records are told in words, not dumped into the quality table
    quality = text[text.index('id="quality"') :] if 'id="quality"' in text else text
    assert "Reassigned" not in quality and "Refused" not in quality and "Joined" not in quality
    assert reassigned_text({"reassigned": {"moved": 0, "refused": 0, "level": 0.2}, "n_users": 10}).startswith(
        "Once the segments were final, 0 members (0.0 % of the users)"
    )
    leveled = {"moved": 4, "refused": 0, "level": 0.5, "rating_levels": 4, "applied": True}
    assert "what they chose (the categories, at 4 rating levels): their own segment's posterior was below 0.50" in \
        reassigned_text({"reassigned": leveled, "n_users": 10})  # fmt: skip
    held = {**leveled, "moved": 0, "applied": False, "proposed_share": 0.278, "max_share": 0.15}
    assert reassigned_text({"reassigned": held, "n_users": 10}) == (
        "Once the segments were final, moving members to the segment whose profile best explains what they chose (the "
        "categories, at 4 rating levels) would have moved 27.8 % of them, more than cluster.category_reassign_max_share "
        "(15.0 %): these segments are set apart by more than what their members chose, so nobody moved."
    )
    assert reassigned_text({}) is None and reassigned_text({"reassigned": {"moved": 3}}) is None
    assert 'id="reassigned"' not in render_report(data, tmp_path / "old").read_text()
