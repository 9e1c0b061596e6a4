"""Open every page of a rendered report in headless Chromium and check what a reader would see.

Checks: no console error or page error, no request leaves ``file://``, every
link resolves to a file, every chart draws data, hostile text stays text.
Screenshots of the overview and one segment page go to tests/browser/screenshots/.
"""

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests.fixtures_report import HOSTILE_NAME, HOSTILE_TITLE, make_report_input, make_run_pair

pytestmark = pytest.mark.browser

# a real report to check as well: $SEGFLOW_REPORT_DIR, else the newest run's
LATEST = Path(
    os.environ.get("SEGFLOW_REPORT_DIR") or Path(__file__).resolve().parents[2] / "runs" / "latest" / "report"
)

SHOT_PAGES = {"index.html", "segment-0.html", "segment-outliers.html", "comparison.html"}

# every chart div must hold plotly's SVG and at least one drawn datum
CHART_STATE = """() => Array.from(document.querySelectorAll('.chart')).map(el => ({
    id: el.id,
    svg: el.querySelectorAll('.main-svg').length,
    marks: el.querySelectorAll('.point, .hm image, .heatmaplayer image, .sankey-node').length,
}))"""


@pytest.fixture(scope="session")
def synthetic_report(tmp_path_factory) -> Path:
    """A 300-user, 5-segment report with a comparison page (run pair from the fixtures)."""
    import dataclasses

    from reports import render_report
    from segmentation.compare import compare_runs

    runs = make_run_pair(tmp_path_factory.mktemp("runs"), n_users=300)
    data = dataclasses.replace(make_report_input(n_users=300, n_segments=5), comparison=compare_runs(*runs))
    return render_report(data, tmp_path_factory.mktemp("report")).parent


class Visit:
    """One page load with everything the page tried to do recorded."""

    def __init__(self, browser, url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.dialogs: list[str] = []

        def guard(route):
            if route.request.url.startswith("file://"):
                route.continue_()
            else:
                self.outside.append(route.request.url)
                route.abort()

        self.context.route("**/*", guard)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("requestfailed", lambda r: r.url.startswith("file://") and self.errors.append(f"missing: {r.url}"))

        def on_dialog(d):
            self.dialogs.append(d.message)
            d.dismiss()

        self.page.on("dialog", on_dialog)
        self.page.goto(url, wait_until="load")
        self.page.wait_for_function(
            "() => Array.from(document.querySelectorAll('.chart')).every(el => el.querySelector('.main-svg'))",
            timeout=20_000,
        )

    def close(self) -> None:
        self.context.close()


@pytest.mark.parametrize("which", ["synthetic", "latest"])
def test_every_page_loads_clean(browser, synthetic_report, shots_dir, which):
    """Every page: no error, no network, links resolve, charts drawn; screenshots of the key pages."""
    folder = synthetic_report if which == "synthetic" else LATEST
    if which == "latest" and not (LATEST / "index.html").is_file():
        pytest.skip(f"no report at {LATEST} (run the pipeline first, or set SEGFLOW_REPORT_DIR)")
    pages = sorted(folder.glob("*.html"))
    assert len(pages) >= 2
    for page in pages:
        v = Visit(browser, page.as_uri())
        try:
            assert v.errors == [], f"{page.name}: {v.errors}"
            assert v.outside == [], f"{page.name} tried the network: {v.outside}"
            assert v.dialogs == [], f"{page.name} opened a dialog: {v.dialogs}"
            charts = v.page.evaluate(CHART_STATE)
            empty = [c["id"] for c in charts if not c["svg"] or not c["marks"]]
            assert not empty, f"{page.name}: charts without data: {empty}"
            for href in v.page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
                url = urlparse(href)
                assert url.scheme == "file", f"{page.name} links outside the report: {href}"
                assert Path(unquote(url.path)).is_file(), f"{page.name}: broken link {href}"
            if page.name in SHOT_PAGES:
                out = shots_dir / f"{which}-{page.stem}.png"
                v.page.screenshot(path=str(out), full_page=True)
                assert out.stat().st_size > 20_000
        finally:
            v.close()


def test_the_checks_catch_errors_and_network_requests(browser, tmp_path):
    """Negative control: a page that errs and reaches out is caught by ``Visit``."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!doctype html><img src="https://cdn.example.com/x.png"><script>undefinedFunction()</script>')
    v = Visit(browser, bad.as_uri())
    try:
        assert any("undefinedFunction" in e for e in v.errors)
        assert v.outside == ["https://cdn.example.com/x.png"]
    finally:
        v.close()


def test_hostile_text_stays_text(browser, synthetic_report):
    v = Visit(browser, (synthetic_report / "segment-0.html").as_uri())
    try:
        body = v.page.locator("main").text_content()
        assert HOSTILE_TITLE in body  # shown literally, not run
        assert HOSTILE_NAME in v.page.locator("h1").text_content()
        assert v.page.locator("main script").count() == 0
        assert v.dialogs == []
        # plotly draws the segment name as text too (category chart on the overview)
    finally:
        v.close()
    v = Visit(browser, (synthetic_report / "index.html").as_uri())
    try:
        svg_text = " ".join(v.page.eval_on_selector_all("#chart-sizes text", "els => els.map(e => e.textContent)"))
        assert "<i>Horror</i>" in svg_text
        assert v.dialogs == []
    finally:
        v.close()


def test_tentative_segment_is_marked_where_a_reader_looks(browser, synthetic_report):
    """Segment 1 of the fixture has stability 0.45: a visible badge in the overview's table and its page's title,
    the explanation on its page, and the overview's sentence naming it; a stable segment has none."""
    v = Visit(browser, (synthetic_report / "index.html").as_uri())
    try:
        badges = v.page.locator("#segments .badge")
        assert badges.count() == 1 and badges.first.is_visible() and badges.first.text_content() == "tentative"
        row = v.page.locator("#segments tbody tr", has=v.page.locator(".badge"))
        assert row.locator("a").get_attribute("href") == "segment-1.html"
        assert v.page.locator("#unstable").is_visible()
        assert "1 of 5 segments are tentative" in v.page.locator("#unstable").text_content()
    finally:
        v.close()
    v = Visit(browser, (synthetic_report / "segment-1.html").as_uri())
    try:
        assert v.page.locator("h1 .badge").is_visible()
        assert (
            v.page.locator("#tentative").is_visible()
            and "dissolves or merges" in v.page.locator("#tentative").text_content()
        )
        assert "Stability 0.45 (tentative)" in v.page.locator("#stability").text_content()
    finally:
        v.close()
    v = Visit(browser, (synthetic_report / "segment-0.html").as_uri())
    try:
        assert v.page.locator("h1 .badge").count() == 0 and v.page.locator("#tentative").count() == 0
        assert "Stability 0.90 (highly stable)" in v.page.locator("#stability").text_content()
    finally:
        v.close()


# per chart: the toolbar's and the title's boxes, and every bar label's box against the chart's
CHART_BOXES = """() => Array.from(document.querySelectorAll('.chart')).map(el => {
    const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
    const bar = el.querySelector('.modebar'), title = el.querySelector('.gtitle');
    return {id: el.id, chart: box(el), toolbar: bar ? box(bar) : null, title: title ? box(title) : null,
            labels: Array.from(el.querySelectorAll('.bartext')).map(box)};
})"""


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("which", ["synthetic", "latest"])
def test_charts_and_tables_fit_where_a_reader_looks(browser, synthetic_report, which):
    """At 1400 px: no chart's toolbar covers its title, every bar's label lies inside its chart, and the segments
    table is as wide as its card (no column scrolled out of sight)."""
    folder = synthetic_report if which == "synthetic" else LATEST
    if which == "latest" and not (LATEST / "index.html").is_file():
        pytest.skip(f"no report at {LATEST} (run the pipeline first, or set SEGFLOW_REPORT_DIR)")
    for page in sorted(folder.glob("*.html")):
        v = Visit(browser, page.as_uri())
        try:
            for c in v.page.evaluate(CHART_BOXES):
                if c["toolbar"] and c["title"]:
                    assert not _overlap(c["toolbar"], c["title"]), f"{page.name} {c['id']}: toolbar over the title"
                for label in c["labels"]:
                    assert c["chart"][0] <= label[0] and label[2] <= c["chart"][2], (
                        f"{page.name} {c['id']}: a bar label {label} runs out of the chart {c['chart']}"
                    )
            if page.name == "index.html":
                wrap = v.page.evaluate("() => { const w = document.querySelector('#segments').closest('.table-wrap');"
                                       " return [w.scrollWidth, w.clientWidth]; }")  # fmt: skip
                assert wrap[0] <= wrap[1], f"the segments table is {wrap[0]} px wide in a {wrap[1]} px card"
        finally:
            v.close()
