"""The analyst-facing HTML report of a segflow run, and the comparison of two runs."""

from reports.compare import compare_runs, render_comparison
from reports.render import render_report

__all__ = ["compare_runs", "render_comparison", "render_report"]
