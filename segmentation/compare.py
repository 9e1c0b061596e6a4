"""Compare two runs: which segments are the same, where users moved, what drifted.

Segments are matched by the users they share. For segment ``i`` of run A and
``j`` of run B, Jaccard(i, j) = |A_i ∩ B_j| / |A_i ∪ B_j| over user ids; the
Hungarian algorithm picks the one-to-one matching with the largest total
Jaccard, and pairs below ``min_jaccard`` count as unmatched (a segment that
disappeared, or a new one). Outliers (-1) are never matched but are rows and
columns of the migration matrix.

Runs are read through :func:`segmentation.run_folder.load_run_folder`. The result is plain JSON data: the run
stores it as ``comparison.json`` (``RunFolder.comparison``), and the report (:mod:`reports.comparison_page`) and the
Prefect artifacts show it.
"""

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from segmentation.cluster import NOISE
from segmentation.run_folder import RunFolder, load_run_folder

__all__ = ["compare_runs"]

# metric paths left out of the drift table: per-segment detail, bookkeeping, timings
_SKIP_PARTS = {
    "per_segment",
    "sizes",
    "timings",
    "versions",
    "models",
    "seconds",
    "run_id",
    "ci",
    "notes",
    "verdicts",
    "sample_fits",
    "splits",
}


def _read_run(run: "RunFolder | Path | str") -> tuple[RunFolder, pl.DataFrame, dict[int, str], dict[str, Any]]:
    folder = run if isinstance(run, RunFolder) else load_run_folder(run)
    users = folder.assignments.select(pl.col("user_id").cast(pl.String), pl.col("segment_id").cast(pl.Int32))
    names = {int(p.segment_id): str(p.name) for p in folder.profiles}
    return folder, users, names, folder.metrics if isinstance(folder.metrics, dict) else {}


def _where(given: "RunFolder | Path | str", folder: RunFolder) -> str:
    """The folder as the caller named it (a path as given, a loaded run by its path)."""
    return str(folder.path if isinstance(given, RunFolder) else given)


def _name(names: dict[int, str], sid: int) -> str:
    if sid == NOISE:
        return names.get(sid, "Outliers")
    return names.get(sid, f"Segment {sid}")


def _numeric_leaves(d: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            if str(k) in _SKIP_PARTS or str(k).endswith("_ci"):
                continue
            out.update(_numeric_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(d, int | float) and not isinstance(d, bool) and math.isfinite(d):
        out[prefix] = float(d)
    return out


def _per_segment_rmse(metrics: dict[str, Any], sid: int) -> float | None:
    entry = (((metrics.get("rating") or {}).get("global") or {}).get("per_segment") or {}).get(str(sid))
    v = entry.get("rmse") if isinstance(entry, dict) else None
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def compare_runs(run_a: RunFolder | Path | str, run_b: RunFolder | Path | str, *,
                 min_jaccard: float = 0.1) -> dict[str, Any]:  # fmt: skip
    """Match the segments of run A (earlier) and run B (later) and measure what changed.

    Args:
        run_a: the earlier run: a :class:`RunFolder`, or a complete run folder to load.
        run_b: the later run, likewise.
        min_jaccard: matched pairs with a lower Jaccard overlap count as unmatched.

    Returns:
        JSON-ready dict: ``run_a``, ``run_b``, user counts (``n_users_a``, ``n_users_b``, ``n_common``),
        ``ari`` (adjusted Rand index of the two labelings on common users), ``stayed_share`` (common users
        in the segment matched to their old one), ``matches`` (one row per segment of either run:
        ``segment_a``, ``segment_b`` (None when unmatched), names, ``jaccard``, sizes, ``size_change``,
        ``rmse_a``/``rmse_b``), ``migration`` (``rows``/``cols`` segment ids and names, ``counts`` of common
        users from row segment in A to column segment in B), ``metric_drift`` (``metric``, ``a``, ``b``,
        ``change``) and ``summary`` (plain sentences).

    Raises:
        DataError: a folder is not a complete run (:func:`segmentation.run_folder.load_run_folder`).
    """
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import adjusted_rand_score

    fa, ua, names_a, metrics_a = _read_run(run_a)
    fb, ub, names_b, metrics_b = _read_run(run_b)
    ids_a = sorted(ua["segment_id"].unique().to_list(), key=lambda s: (s == NOISE, s))
    ids_b = sorted(ub["segment_id"].unique().to_list(), key=lambda s: (s == NOISE, s))
    size_a = dict(ua.group_by("segment_id").len().iter_rows())
    size_b = dict(ub.group_by("segment_id").len().iter_rows())

    common = ua.join(ub, on="user_id", how="inner", suffix="_b")
    pos_a, pos_b = {s: i for i, s in enumerate(ids_a)}, {s: j for j, s in enumerate(ids_b)}
    counts = np.zeros((len(ids_a), len(ids_b)), dtype=np.int64)
    for sa, sb, n in common.group_by("segment_id", "segment_id_b").len().iter_rows():
        counts[pos_a[sa], pos_b[sb]] = n

    # Jaccard over each run's own members: users missing from the other run widen the union
    sa_vec = np.array([size_a[s] for s in ids_a], dtype=np.float64)[:, None]
    sb_vec = np.array([size_b[s] for s in ids_b], dtype=np.float64)[None, :]
    jaccard = counts / np.maximum(sa_vec + sb_vec - counts, 1)
    real_a = [i for i, s in enumerate(ids_a) if s != NOISE]
    real_b = [j for j, s in enumerate(ids_b) if s != NOISE]
    pairs: list[tuple[int, int]] = []
    if real_a and real_b:
        sub = jaccard[np.ix_(real_a, real_b)]
        rows, cols = linear_sum_assignment(-sub)
        pairs = [(real_a[r], real_b[c]) for r, c in zip(rows, cols) if sub[r, c] >= min_jaccard]

    n_a, n_b = ua.height, ub.height
    matches: list[dict[str, Any]] = []

    def row(i: int | None, j: int | None) -> dict[str, Any]:
        a = ids_a[i] if i is not None else None
        b = ids_b[j] if j is not None else None
        sa, sb = (size_a[a] if a is not None else 0), (size_b[b] if b is not None else 0)
        return {
            "segment_a": a, "segment_b": b,
            "name_a": _name(names_a, a) if a is not None else None,
            "name_b": _name(names_b, b) if b is not None else None,
            "jaccard": round(float(jaccard[i, j]), 4) if i is not None and j is not None else None,
            "size_a": sa, "size_b": sb, "size_change": sb - sa,
            "share_a": round(sa / max(n_a, 1), 4), "share_b": round(sb / max(n_b, 1), 4),
            "rmse_a": _per_segment_rmse(metrics_a, a) if a is not None else None,
            "rmse_b": _per_segment_rmse(metrics_b, b) if b is not None else None,
        }  # fmt: skip

    matched_a = {i for i, _ in pairs}
    matched_b = {j for _, j in pairs}
    for i, j in sorted(pairs, key=lambda p: ids_a[p[0]]):
        matches.append(row(i, j))
    gone = [i for i in real_a if i not in matched_a]
    new = [j for j in real_b if j not in matched_b]
    matches += [row(i, None) for i in gone] + [row(None, j) for j in new]
    if NOISE in pos_a or NOISE in pos_b:
        matches.append(row(pos_a.get(NOISE), pos_b.get(NOISE)) | {"jaccard": None})

    # columns in the order of the rows they match, so that the matrix reads along its diagonal
    partner = {i: j for i, j in pairs}
    col_order = [partner[i] for i in range(len(ids_a)) if i in partner]
    col_order += [j for j in range(len(ids_b)) if j not in col_order and ids_b[j] != NOISE]
    col_order += [j for j in range(len(ids_b)) if ids_b[j] == NOISE]
    cols_sorted = [ids_b[j] for j in col_order]

    n_common = common.height
    stayed = sum(int(counts[i, j]) for i, j in pairs)
    noise_stay = int(counts[pos_a[NOISE], pos_b[NOISE]]) if NOISE in pos_a and NOISE in pos_b else 0
    ari = float(adjusted_rand_score(common["segment_id"], common["segment_id_b"])) if n_common else None

    la, lb = _numeric_leaves(metrics_a), _numeric_leaves(metrics_b)
    drift = [{"metric": k, "a": la[k], "b": lb[k], "change": lb[k] - la[k]} for k in la if k in lb]

    k_a, k_b = len(real_a), len(real_b)
    summary = [
        f"{k_a} segments before, {k_b} now: {len(pairs)} matched"
        + (f" (median overlap {np.median([jaccard[i, j] for i, j in pairs]):.2f} Jaccard)" if pairs else "")
        + f", {len(new)} new, {len(gone)} gone.",
    ]
    if n_common:
        summary.append(
            f"Of the {n_common:,} users in both runs, {100 * stayed / n_common:.0f} % stayed in the matching segment"
            f" and {100 * noise_stay / n_common:.0f} % stayed outliers (adjusted Rand index {ari:.2f})."
        )
    if n_a != n_b or n_common != n_a:
        summary.append(f"Users: {n_a:,} before, {n_b:,} now ({n_b - n_common:,} new, {n_a - n_common:,} gone).")
    return {
        "run_a": _where(run_a, fa), "run_b": _where(run_b, fb), "n_users_a": n_a, "n_users_b": n_b, "n_common": n_common,
        "ari": ari, "stayed_share": stayed / n_common if n_common else None, "min_jaccard": min_jaccard,
        "matches": matches,
        "migration": {"rows": ids_a, "cols": cols_sorted, "row_names": [_name(names_a, s) for s in ids_a],
                      "col_names": [_name(names_b, s) for s in cols_sorted], "counts": counts[:, col_order].tolist()},
        "metric_drift": drift, "summary": summary,
    }  # fmt: skip
