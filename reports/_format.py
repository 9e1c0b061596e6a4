"""Text formatting and the table model of the HTML report.

Number formatting (:func:`fmt`, :func:`with_ci`, :func:`seconds`), readable metric labels and help texts
(:func:`label`, ``_HELP``), tolerant look-ups in the optional metrics dict (:func:`_get`, :func:`_value`,
:func:`_ci`; they and :func:`fmt` live in :mod:`segmentation._format`, shared with the verdicts), the escaping of text drawn by plotly (:func:`_plain`), the :class:`Table` / :class:`Column` /
:class:`Cell` model the templates draw, and the builders of generic metric tables (:func:`systems_table`,
:func:`per_segment_table`, :func:`key_value_table`, :func:`nested_table`). Imports only
:mod:`reports._segments` from ``reports``, so every page module can import it.
"""

import html
from dataclasses import dataclass, field
from typing import Any

from reports._segments import Seg
from segmentation._format import _as_ci, _ci, _get, _num, _value, fmt  # noqa: F401  (the report's look-ups, here)

_LABELS = {
    "rmse": "RMSE", "mae": "MAE", "ndcg": "NDCG", "ils": "ILS", "mrr": "MRR", "map": "MAP", "hit": "Hit rate",
    "ari": "ARI", "nmi": "NMI", "dbcv": "DBCV", "precision": "Precision", "recall": "Recall", "n": "n",
    "coverage": "Catalogue coverage", "novelty": "Novelty", "silhouette": "Silhouette",
    "calinski_harabasz": "Calinski-Harabasz", "noise_share": "Outlier share", "n_segments": "Segments",
    "n_users": "Users", "soft_assigned": "Outliers moved into a segment", "min_cluster_size": "Smallest segment allowed",
    "mean_membership": "Mean membership strength", "seconds": "Seconds",
}  # fmt: skip
_ACRONYMS = {
    w: w.upper() for w in ("rmse", "mae", "ndcg", "ils", "mrr", "map", "ari", "nmi", "dbcv", "ci", "umap", "id")
}
_HELP = {
    "rmse": "Root mean squared error of predicted star ratings on held-out ratings; lower is better.",
    "mae": "Mean absolute error of predicted star ratings; lower is better.",
    "ndcg": "How high the held-out liked items appear in the top-k list (0-1); higher is better.",
    "precision": "Share of the top-k list the user liked in the held-out data; higher is better.",
    "recall": "Share of the user's held-out liked items found in the top-k list; higher is better.",
    "hit": "Share of users with at least one held-out liked item in their top-k list.",
    "coverage": "Share of the catalogue recommended to at least one user; higher means less concentration.",
    "novelty": "How unpopular the recommended items are (mean self-information, bits); higher is more surprising.",
    "ils": "Intra-list similarity: how alike the items in one list are (0-1); lower means more diverse lists.",
    "silhouette": "How well separated segments are (-1 to 1); above 0.25 is reasonable, above 0.5 strong.",
    "dbcv": "Density-based cluster validity (-1 to 1); higher means denser, better separated segments.",
    "calinski_harabasz": "Between- over within-segment dispersion; higher is better, only comparable within a run size.",
    "noise_share": "Share of users that fit no segment well (shown grey on the map).",
    "mean_membership": "Average HDBSCAN membership strength of segment members (0-1).",
    "ari": "Adjusted Rand index: agreement of two segmentations (1 identical, 0 chance).",
    "jaccard": "Users in both segments over users in either (0-1); 1 means the same people.",
}  # fmt: skip


# ----------------------------------------------------------------------------- small helpers


def _plain(value: object, limit: int | None = None) -> str:
    """Text for plotly, which reads a subset of HTML: escape it so it shows as typed."""
    s = str(value)
    if limit and len(s) > limit:
        s = s[: limit - 1].rstrip() + "…"
    return html.escape(s, quote=False)


def column_kind(values: list[Any]) -> str:
    """One number format for a whole column, so that its decimals line up."""
    nums = [abs(x) for x in (_num(v) for v in values) if x is not None]
    if not nums or all(isinstance(v, int) for v in values if _num(v) is not None):
        return "auto"
    top = max(nums)
    if top < 0.001 and top > 0:
        return "auto"
    return "d4" if top < 10 else "d2" if top < 100 else "d1" if top < 1000 else "d0"


def label(key: str) -> str:
    """Readable label of a metric key: ``ndcg@10`` -> ``NDCG@10``, ``n_items`` -> ``Items``."""
    base, at, k = str(key).partition("@")
    if base not in _LABELS and base.startswith("n_"):
        base = base[2:]
    text = _LABELS.get(base)
    if text is None:
        words = [_ACRONYMS.get(w, w) for w in base.replace("-", "_").split("_") if w]
        text = " ".join(words)[:1].upper() + " ".join(words)[1:] if words else str(key)
    return f"{text}@{k}" if at else text


def _help(key: str) -> str | None:
    return _HELP.get(str(key).partition("@")[0])


def with_ci(v: Any, ci: tuple[float, float] | None, kind: str = "auto") -> str:
    text = fmt(v, kind)
    if ci is not None and text != "–":
        kind = "d4" if kind == "auto" else kind
        text += f" ({fmt(ci[0], kind)} to {fmt(ci[1], kind)})"
    return text


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dict -> [(dotted key, leaf)]; lists of scalars stay leaves."""
    if not isinstance(d, dict):
        return [(prefix, d)]
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.extend(_flatten(v, key) if isinstance(v, dict) and v else [(key, v)])
    return out


# ----------------------------------------------------------------------------- table model


@dataclass(frozen=True)
class Cell:
    """One table cell; all text is escaped by the template."""

    text: str
    href: str | None = None
    cls: str = ""
    title: str | None = None
    sort: float | None = None
    swatch: str | None = None
    bar: float | None = None  # 0..1, drawn as a small inline bar
    chips: list[str] = field(default_factory=list)
    note: str | None = None
    badge: str | None = None  # a short label after the text, e.g. "tentative"


@dataclass(frozen=True)
class Column:
    label: str
    num: bool = False
    title: str | None = None


@dataclass(frozen=True)
class Table:
    columns: list[Column]
    rows: list[list[Cell]]
    caption: str | None = None
    id: str | None = None
    groups: list[tuple[str, int]] = field(default_factory=list)  # a header row above: (label, columns spanned)
    wide: bool = False  # stretch to the page width


def _c(v: Any, kind: str = "auto", **kw: Any) -> Cell:
    n = _num(v)
    return Cell(fmt(v, kind), cls=kw.pop("cls", "num" if n is not None else ""), sort=n, **kw)


# ----------------------------------------------------------------------------- metric tables


def _metric_keys(entries: list[Any]) -> list[str]:
    keys: list[str] = []
    for e in entries:
        for k, v in (e or {}).items() if isinstance(e, dict) else []:
            if k in keys or k.endswith("_ci") or k in ("per_segment", "fairness", "ci"):
                continue
            if _num(v) is not None or (isinstance(v, dict) and _num(v.get("value", v.get("mean"))) is not None):
                keys.append(k)
    return keys


def systems_table(section: Any, *, first: str = "System") -> Table | None:
    """Rows = systems (models, rankers), columns = their scalar metrics, CIs in brackets."""
    if not isinstance(section, dict):
        return None
    systems = {k: v for k, v in section.items() if isinstance(v, dict) and k not in ("gain", "per_segment")}
    keys = _metric_keys(list(systems.values()))
    if not systems or not keys:
        return None
    cols = [Column(first)] + [Column(label(k), num=True, title=_help(k)) for k in keys]
    kinds = {k: column_kind([_value(m, k) for m in systems.values()]) for k in keys}
    rows = [[Cell(str(name))] + [Cell(with_ci(_value(m, k), _ci(m, k), kinds[k]), cls="num", sort=_num(_value(m, k)))
                                  for k in keys] for name, m in systems.items()]  # fmt: skip
    return Table(cols, rows, caption="95 % confidence intervals in brackets where computed.")


def _primary(keys: list[str], wanted: tuple[str, ...]) -> list[str]:
    out = [k for w in wanted for k in keys if k.partition("@")[0] == w]
    return list(dict.fromkeys(out)) or keys[:1]


def per_segment_table(section: Any, segs: list[Seg], wanted: tuple[str, ...]) -> Table | None:
    """Rows = segments, columns = (system, headline metric) pairs."""
    if not isinstance(section, dict):
        return None
    systems = {k: v for k, v in section.items() if isinstance(v, dict) and isinstance(v.get("per_segment"), dict)}
    if not systems:
        return None
    entries = [e for s in systems.values() for e in s["per_segment"].values()]
    keys = _primary(_metric_keys(entries), wanted)
    if not keys:
        return None
    pairs = [(name, k) for k in keys for name in systems]
    cols = [Column("Segment")] + [Column(f"{name} · {label(k)}", num=True, title=_help(k)) for name, k in pairs]
    kinds = {k: column_kind([_value(e, k) for e in entries]) for k in keys}
    rows = []
    for s in segs:
        vals = [_get(systems[name], "per_segment", s.id) for name, _ in pairs]
        if all(v is None for v in vals):
            continue
        rows.append([Cell(s.name, href=s.href, swatch=s.color)]
                    + [Cell(with_ci(_value(v, k), _ci(v, k), kinds[k]), cls="num", sort=_num(_value(v, k)))
                       for v, (_, k) in zip(vals, pairs)])  # fmt: skip
    return Table(cols, rows) if rows else None


def key_value_table(d: Any, skip: tuple[str, ...] = (), *, raw_keys: bool = False,
                    header: tuple[str, str] = ("Measure", "Value")) -> Table | None:  # fmt: skip
    """Flattened ``key -> value`` table with readable labels and help texts."""
    if not isinstance(d, dict):
        return None
    rows = []
    for k, v in _flatten({k: v for k, v in d.items() if k not in skip}):
        if isinstance(v, list) and v and not all(_num(x) is not None or isinstance(x, str) for x in v):
            continue
        leaf = k.rsplit(".", 1)[-1]
        text = k if raw_keys else " · ".join(label(p) for p in k.split("."))
        rows.append([Cell(text, title=_help(leaf)), Cell(_kv_text(leaf, v), cls="val", sort=_num(v))])
    return Table([Column(header[0]), Column(header[1])], rows) if rows else None


def _kv_text(key: str, v: Any) -> str:
    if key.endswith("share") and _num(v) is not None:
        return fmt(v, "pct")
    if key in ("seconds", "time", "duration") and _num(v) is not None:
        return seconds(v)
    return fmt(v)


def seconds(v: Any) -> str:
    x = _num(v)
    if x is None:
        return fmt(v)
    if x >= 60:
        return f"{int(x // 60)} min {x % 60:.0f} s"
    return f"{x:.2f} s" if x < 10 else f"{x:.1f} s"


def nested_table(d: Any) -> Table | None:
    """``{column: nested dict}`` -> rows = flattened keys, columns = top-level keys (for fairness)."""
    if not isinstance(d, dict) or not d:
        return None
    if not all(isinstance(v, dict) for v in d.values()):
        return key_value_table(d)
    flat = {c: dict(_flatten(v)) for c, v in d.items()}
    keys = list(dict.fromkeys(k for f in flat.values() for k in f if not k.endswith("_ci")))
    if not keys:
        return None
    cols = [Column("Measure")] + [Column(str(c), num=True) for c in flat]
    kind = column_kind([f.get(k) for f in flat.values() for k in keys])
    rows = [[Cell(" · ".join(label(p) if p.islower() else p for p in k.split(".")), title=_help(k.rsplit(".", 1)[-1]))]
            + [Cell(with_ci(f.get(k), _as_ci(f.get(f"{k}_ci")), kind), cls="num", sort=_num(f.get(k)))
               for f in flat.values()]
            for k in keys]  # fmt: skip
    return Table(cols, rows)


def _change_cell(change: float | None, ci: tuple[float, float] | None) -> Cell:
    if change is None:
        return Cell("–", cls="num muted")
    if ci is None:
        return Cell(fmt(change, "signed"), cls="num", sort=change, title="no confidence interval computed")
    cls = "good" if ci[1] < 0 else "bad" if ci[0] > 0 else "muted"
    word = "better" if ci[1] < 0 else "worse" if ci[0] > 0 else "no clear change"
    return Cell(fmt(change, "signed"), cls=f"num {cls}", sort=change,
                note=f"{fmt(ci[0], 'signed')} to {fmt(ci[1], 'signed')} · {word}")  # fmt: skip
