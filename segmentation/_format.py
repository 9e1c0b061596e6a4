"""Tolerant look-ups in the metrics dict of a run and the formatting of its figures in plain words.

Shared by the verdicts (:mod:`segmentation.verdicts`, written into ``metrics.json``) and the report
(:mod:`reports._format` imports these names), so that both print a number the same way. Every look-up takes
a missing key or an odd shape and returns ``None`` (or ``default``); :func:`fmt` turns a missing value into an
en dash.
"""

import math
from typing import Any

__all__ = ["fmt"]


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def fmt(v: Any, kind: str = "auto") -> str:
    """Format a metric value for a table; missing values become an en dash."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if kind == "pct" and isinstance(v, int | float):
        return f"{100 * v:.1f} %"
    if kind == "signed" and isinstance(v, int):
        return f"{v:+,}".replace("-", "−")
    if kind == "signed" and isinstance(v, float):
        return f"{v:+.4f}".replace("-", "−")
    if kind.startswith("d") and isinstance(v, float):
        return f"{v:,.{int(kind[1:])}f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        a = abs(v)
        if a == 0:
            return "0"
        if a >= 100:
            return f"{v:,.0f}" if a >= 1000 or v.is_integer() else f"{v:.1f}"
        if a >= 10:
            return f"{v:.2f}"
        return f"{v:.4f}" if a >= 0.001 else f"{v:.2e}"
    if isinstance(v, list | tuple):
        return ", ".join(fmt(x) for x in v) if v else "–"
    return str(v)


def _get(d: Any, *path: str | int, default: Any = None) -> Any:
    """``d[p0][p1]...`` with string/int keys interchangeable; ``default`` when any step is missing."""
    for p in path:
        if not isinstance(d, dict):
            return default
        if p in d:
            d = d[p]
        elif str(p) in d:
            d = d[str(p)]
        else:
            return default
    return d


def _ci(d: Any, key: str) -> tuple[float, float] | None:
    """The 95 % CI of ``d[key]``: ``d[key + "_ci"]``, or ``d[key]["ci"]`` when the value is a dict."""
    c = _get(d, f"{key}_ci")
    if c is None:
        c = _get(d, key, "ci")
    if isinstance(c, dict):
        c = [c.get("lo", c.get("low")), c.get("hi", c.get("high"))]
    if isinstance(c, list | tuple) and len(c) == 2 and all(_num(x) is not None for x in c):
        return float(c[0]), float(c[1])
    return None


def _as_ci(c: Any) -> tuple[float, float] | None:
    if isinstance(c, list | tuple) and len(c) == 2 and all(_num(x) is not None for x in c):
        return float(c[0]), float(c[1])
    return None


def _value(d: Any, key: str) -> Any:
    v = _get(d, key)
    if isinstance(v, dict):
        v = v.get("value", v.get("mean"))
    return v
