"""The analyst-facing HTML report of a segflow run, and the page comparing two runs.

Both render from what the run folder holds (:class:`segmentation.run_folder.RunFolder`,
:func:`segmentation.compare.compare_runs`); nothing here computes a figure or a verdict.
"""

from reports.comparison_page import render_comparison
from reports.render import render_report

__all__ = ["render_comparison", "render_report"]
