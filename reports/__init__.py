"""The analyst-facing HTML report of a segflow run, and the comparison of two runs."""

from reports.compare import compare_runs, render_comparison
from reports.render import Verdict, control_text, rating_verdict, render_report

__all__ = ["Verdict", "compare_runs", "control_text", "rating_verdict", "render_comparison", "render_report"]
