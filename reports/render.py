"""Render a run's self-contained HTML report: ``index.html`` plus one page per segment.

The report opens from ``file://`` with no network: plotly.js is copied once into
``assets/`` beside the pages, charts are plotly figure specs embedded as JSON and
drawn by ``assets/report.js``, and every string that comes from data is escaped
(Jinja2 autoescape for HTML, :func:`reports._format._plain` for text drawn by plotly).

The report reads a :class:`segmentation.run_folder.RunFolder`: the run's folder read back by
:func:`segmentation.run_folder.load_run_folder` (or a bundle built in memory for a preview or a test). Every
metrics section and key is optional: what is missing is shown as "not computed", never an error. The verdicts
are the run's own (``metrics.json`` → ``verdicts``); the report prints them.

One module per page: :mod:`reports.overview`, :mod:`reports.segment_page`, :mod:`reports.comparison_page`; the
page chrome and assets in :mod:`reports._page`, the charts in :mod:`reports._charts`, formatting and the table
model in :mod:`reports._format`, the segments as shown in :mod:`reports._segments`.
"""

import logging
from pathlib import Path

from reports._page import _ENV, _copy_assets
from reports._segments import _overall, _segments, segment_filename
from reports.comparison_page import _has_migration, comparison_page
from reports.overview import _overview
from reports.segment_page import _segment_page
from segmentation.run_folder import RunFolder

__all__ = ["render_report", "segment_filename"]

logger = logging.getLogger(__name__)


def render_report(data: RunFolder, out_dir: Path) -> Path:
    """Write the report: ``index.html``, one ``segment-<id>.html`` per segment, and ``assets/``.

    Args:
        data: everything the report shows (:class:`segmentation.run_folder.RunFolder`, read back by
            :func:`segmentation.run_folder.load_run_folder`).
        out_dir: folder to write into (created; earlier segment pages in it are replaced).

    Returns:
        The path of ``index.html``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _copy_assets(out_dir)
    segs = _segments(data)
    overall = _overall(data, segs)
    common = {"title": data.title, "run_id": data.run_id, "segs": segs, "home": "index.html"}
    pages = {"index.html": _ENV.get_template("overview.html.j2").render(**common, **_overview(data, segs, overall))}
    for i, s in enumerate(segs):
        ctx = _segment_page(data, segs, i, overall)
        pages[s.href] = _ENV.get_template("segment.html.j2").render(**common, **ctx)
    for old in [*out_dir.glob("segment-*.html"), out_dir / "comparison.html"]:
        if old.name not in pages and old.exists():
            old.unlink()
    for name, text in pages.items():
        (out_dir / name).write_text(text, encoding="utf-8")
    if _has_migration(data.comparison):
        comparison_page(data.comparison, out_dir, title=f"{data.title}: what changed since the previous run",
                        run_id=data.run_id, segs=segs, home="index.html")  # fmt: skip
    logger.info("report: %d pages in %s", len(pages) + _has_migration(data.comparison), out_dir)
    return out_dir / "index.html"
