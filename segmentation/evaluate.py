"""Evaluation: rating accuracy, top-k ranking, beyond-accuracy and fairness, overall and per segment.

The metric formulas live in :mod:`segmentation._metrics` (each with its formula and a
reference) and are re-exported here. This module aggregates them over users, segments and
user groups, adds bootstrap confidence intervals over users, and returns JSON-ready dicts
(plain ``float``/``int``/``str``/``None``; undefined values are ``None``, never NaN).

Conventions:

- Ranking metrics are averaged over the users with at least one relevant test item
  (test rating ``>= relevance_threshold``); a user with no list scores 0.
- Beyond-accuracy metrics are taken over every list in ``recs`` (cut to ``k``); serendipity,
  which needs relevance, over the users of the ranking metrics.
- Popularity ``φ(i)`` = share of train users who interacted with item ``i``.
- Fairness: for each grouping column (``segment_id``, ``gender``, ``age_band``, ``activity``)
  present in ``groups``, the per-group values of a metric, the max-min gap and its bootstrap
  95 % CI (:func:`group_gap`).

>>> import polars as pl
>>> test = pl.DataFrame({"user_id": ["a", "a"], "item_id": ["1", "2"], "rating": [5.0, 2.0]})
>>> recs = pl.DataFrame({"user_id": ["a", "a"], "item_id": ["1", "3"], "rank": [1, 2]})
>>> ranking_per_user(recs, test, k=2, relevance_threshold=4.0)["ndcg"].to_list()
[1.0]

:func:`evaluate_run` is the flow's evaluate stage: all of the above for one run, the segmented model's gain and
the random-partition control with paired bootstrap intervals, and :func:`segmentation_quality`.
"""

import logging
import math
import time
from collections.abc import Sequence

import numpy as np
import polars as pl

from embeddings.encoder import Embeddings
from segmentation._metrics import (
    average_precision_at_k,
    bootstrap_ci,
    calibration_kl,
    catalogue_coverage,
    expected_calibration_error,
    gini_index,
    group_gap,
    hit_at_k,
    intra_list_diversity,
    mae,
    ndcg_at_k,
    novelty,
    paired_bootstrap_ci,
    popularity_bias,
    precision_at_k,
    rating_calibration,
    recall_at_k,
    reciprocal_rank_at_k,
    rmse,
    serendipity,
)
from segmentation._polars import to_float
from segmentation.cluster import NOISE, Segmentation
from segmentation.config import EvalConfig
from segmentation.data import Dataset, Split
from segmentation.rank.base import Rankings, RankingSample
from segmentation.runs import json_safe

__all__ = [
    "GROUP_COLUMNS",
    "IMPLICIT_NO_RATINGS",
    "USER_GROUPS",
    "average_precision_at_k",
    "bootstrap_ci",
    "calibration_kl",
    "catalogue_coverage",
    "evaluate_cold_start",
    "evaluate_rankings",
    "evaluate_ratings",
    "evaluate_run",
    "expected_calibration_error",
    "gini_index",
    "group_gap",
    "hit_at_k",
    "intra_list_diversity",
    "mae",
    "ndcg_at_k",
    "novelty",
    "popularity_bias",
    "precision_at_k",
    "ranked_test",
    "ranking_per_user",
    "rating_calibration",
    "recall_at_k",
    "reciprocal_rank_at_k",
    "rmse",
    "segmentation_quality",
    "serendipity",
    "user_groups",
    "user_groups_frame",
]

logger = logging.getLogger(__name__)

#: Output of :func:`user_groups`; attributes a source lacks are null.
USER_GROUPS = pl.Schema({"user_id": pl.String, "gender": pl.String, "age_band": pl.String, "activity": pl.String})
#: Columns of ``groups`` that fairness gaps are computed across, when present and not all null.
GROUP_COLUMNS = ("segment_id", "gender", "age_band", "activity")
IMPLICIT_NO_RATINGS = ("implicit feedback: the data has no ratings to predict, so no rating model was trained and "
                       "no per-segment model was tried; the rankers are judged on every held-out interaction")  # fmt: skip
#: Age bands (lower bound inclusive) used when the users frame has a numeric ``age`` column.
AGE_BANDS = ((0, "<18"), (18, "18-24"), (25, "25-34"), (35, "35-44"), (45, "45-54"), (55, "55+"))
_RANK_METRICS = ("precision", "recall", "ndcg", "hit", "mrr", "map")


def _f(v: float | None) -> float | None:
    """A JSON-ready float: None for None/NaN/inf."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _ci(ci: list[float] | None) -> list[float] | None:
    if ci is None or not all(math.isfinite(c) for c in ci):
        return None
    return [float(c) for c in ci]


def _clean_gap(gap: dict) -> dict:
    return {
        "groups": {str(g): _f(v) for g, v in gap["groups"].items()},
        "n": {str(g): int(n) for g, n in gap["n"].items()},
        "gap": _f(gap["gap"]),
        "gap_ci": _ci(gap["gap_ci"]),
        "max_group": gap["max_group"],
        "min_group": gap["min_group"],
    }


# ----------------------------------------------------------------------------- user groups


def user_groups(users: pl.DataFrame | None, interactions: pl.DataFrame) -> pl.DataFrame:
    """Fairness groups of every user: gender, age band and activity quartile.

    Tolerates missing attributes: without a users frame, or without its ``gender`` / ``age``
    (or ready-made ``age_band``) column, that column is null. ``activity`` is the quartile of
    the user's interaction count in ``interactions`` (``Q1 (least active)`` … ``Q4 (most
    active)``; thresholds are the linearly interpolated 25/50/75 % quantiles, so equal counts share a quartile);
    users with no interactions get ``none``.

    Args:
        users: ``user_id`` plus attribute columns (String or numeric), or None.
        interactions: frame with at least ``user_id`` (schema ``segmentation.data.INTERACTIONS``).

    Returns:
        Frame with schema ``USER_GROUPS``, one row per user of ``interactions`` or ``users``,
        sorted by user id.
    """
    act = interactions.group_by("user_id").len()
    counts = act["len"].cast(pl.Float64)
    q = [float(counts.quantile(p, "linear") or 0.0) for p in (0.25, 0.5, 0.75)] if act.height else [0.0] * 3
    n = pl.col("len")
    activity = act.select(
        pl.col("user_id").cast(pl.String),
        pl.when(n <= q[0]).then(pl.lit("Q1 (least active)")).when(n <= q[1]).then(pl.lit("Q2"))
        .when(n <= q[2]).then(pl.lit("Q3")).otherwise(pl.lit("Q4 (most active)")).alias("activity"),
    )  # fmt: skip
    if users is None or "user_id" not in users.columns:
        attrs = pl.DataFrame(schema={"user_id": pl.String})
    else:
        attrs = users.select(pl.col("user_id").cast(pl.String)).with_columns(
            _gender(users).alias("gender"), _age_band(users).alias("age_band")
        )
    ids = pl.concat([activity.select("user_id"), attrs.select("user_id")]).unique()
    out = ids.join(activity, on="user_id", how="left").with_columns(pl.col("activity").fill_null("none"))
    if "gender" in attrs.columns:
        out = out.join(attrs.unique("user_id", keep="first"), on="user_id", how="left")
    out = out.with_columns(
        *(pl.lit(None, pl.String).alias(c) for c in ("gender", "age_band") if c not in out.columns)
    ).select(list(USER_GROUPS))
    key = out["user_id"].cast(pl.Int64, strict=False)
    if key.null_count() == 0:
        return out.with_columns(key.alias("_k")).sort("_k").drop("_k")
    return out.sort("user_id")


def _gender(users: pl.DataFrame) -> pl.Series:
    if "gender" not in users.columns:
        return pl.Series("gender", [None] * users.height, pl.String)
    g = users["gender"].cast(pl.String).str.strip_chars()
    return g.replace({"": None}).alias("gender")


def _age_band(users: pl.DataFrame) -> pl.Series:
    if "age_band" in users.columns:
        return users["age_band"].cast(pl.String).alias("age_band")
    if "age" not in users.columns:
        return pl.Series("age_band", [None] * users.height, pl.String)
    age = users["age"].cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    expr = pl.lit(None, pl.String)
    for lo, name in AGE_BANDS:  # ascending: the last (highest) band is tested first
        expr = pl.when(pl.col("a") >= lo).then(pl.lit(name)).otherwise(expr)
    return pl.DataFrame({"a": age}).select(expr.alias("age_band"))["age_band"]


def _check_groups(groups: pl.DataFrame) -> pl.DataFrame:
    if "user_id" not in groups.columns:
        raise ValueError(f"groups must have a user_id column (given columns: {groups.columns})")
    dup = groups.height - groups["user_id"].n_unique()
    if dup:
        raise ValueError(f"groups has {dup} duplicate user_id rows; give one row per user")
    cols = [c for c in GROUP_COLUMNS if c in groups.columns and groups[c].null_count() < groups.height]
    return groups.select("user_id", *(pl.col(c).cast(pl.String) for c in cols))


# ----------------------------------------------------------------------------- ratings


def evaluate_ratings(test: pl.DataFrame, predictions: dict[str, np.ndarray], groups: pl.DataFrame, *,
                     n_boot: int = 200, seed: int = 0, min_group_size: int = 5) -> dict:  # fmt: skip
    """Rating accuracy of each prediction system: overall with CIs, calibration, per segment and fairness.

    Args:
        test: held-out ratings (``user_id``, ``rating``, …).
        predictions: system name -> (n_test,) predicted ratings aligned with ``test``'s rows.
        groups: one row per user: ``user_id`` plus optional ``segment_id`` (Int32) and
            ``gender``/``age_band``/``activity`` (see :func:`user_groups`). Test users missing
            from it are left out of the per-group figures only.
        n_boot: bootstrap resamples (over users) for the CIs; 0 skips them.
        seed: seed of the bootstrap.
        min_group_size: groups with fewer users are reported but left out of the gaps.

    Returns:
        ``{system: {"rmse", "mae", "n", "n_users", "rmse_ci", "mae_ci", "calibration": {"ece",
        "mean_predicted", "mean_observed", "bins"}, "per_segment": {segment: {"rmse", "mae",
        "n", "rmse_ci"}}, "fairness": {column: {"rmse": gap}}}}`` where a gap is
        ``{"groups", "n", "gap", "gap_ci", "max_group", "min_group"}``.

    Raises:
        ValueError: a prediction array's length differs from ``test``'s, or holds NaN/inf.
    """
    t0 = time.perf_counter()
    g = _check_groups(groups)
    base = test.select(pl.col("user_id").cast(pl.String), pl.col("rating").cast(pl.Float64))
    out: dict = {}
    for name, pred in predictions.items():
        p = np.asarray(pred, dtype=np.float64).ravel()
        if p.size != test.height:
            raise ValueError(f"predictions[{name!r}] has {p.size} values; test has {test.height} rows")
        if not np.isfinite(p).all():
            raise ValueError(f"predictions[{name!r}] holds {int((~np.isfinite(p)).sum())} NaN or infinite values")
        f = base.with_columns(pl.Series("pred", p)).with_columns(
            ((pl.col("pred") - pl.col("rating")) ** 2).alias("se"),
            (pl.col("pred") - pl.col("rating")).abs().alias("ae"),
        )
        per_user = (f.group_by("user_id").agg(pl.col("se").sum(), pl.col("ae").sum(), pl.len().alias("n"))
                    .sort("user_id").join(g, on="user_id", how="left"))  # fmt: skip
        y = f["rating"].to_numpy()
        se, ae, n = per_user["se"].to_numpy(), per_user["ae"].to_numpy(), per_user["n"].to_numpy()
        bins = rating_calibration(y, p)
        res: dict = {
            "rmse": _f(rmse(y, p)),
            "mae": _f(mae(y, p)),
            "n": int(f.height),
            "n_users": int(per_user.height),
            "rmse_ci": _ci(bootstrap_ci(se, denominators=n, transform=math.sqrt, n_boot=n_boot, seed=seed)),
            "mae_ci": _ci(bootstrap_ci(ae, denominators=n, n_boot=n_boot, seed=seed)),
            "calibration": {
                "ece": _f(expected_calibration_error(bins)),
                "mean_predicted": _f(float(p.mean())) if p.size else None,
                "mean_observed": _f(float(y.mean())) if y.size else None,
                "bins": bins,
            },
            "per_segment": {},
            "fairness": {},
        }
        if "segment_id" in per_user.columns:
            for seg in _sorted_labels(per_user["segment_id"].drop_nulls().unique().to_list()):
                m = (per_user["segment_id"] == seg).fill_null(False).to_numpy()  # null: a test user with no train row
                tot = float(n[m].sum())
                res["per_segment"][str(seg)] = {
                    "rmse": _f(math.sqrt(se[m].sum() / tot)), "mae": _f(ae[m].sum() / tot), "n": int(tot),
                    "n_users": int(m.sum()),
                    "rmse_ci": _ci(bootstrap_ci(se[m], denominators=n[m], transform=math.sqrt, n_boot=n_boot, seed=seed)),
                }  # fmt: skip
        for col in (c for c in GROUP_COLUMNS if c in per_user.columns):
            labels = per_user[col].to_list()
            res["fairness"][col] = {"rmse": _clean_gap(group_gap(se, labels, denominators=n, transform=math.sqrt,
                                                                 n_boot=n_boot, seed=seed,
                                                                 min_group_size=min_group_size))}  # fmt: skip
        out[name] = res
    logger.info("rating evaluation of %d systems on %d rows in %.2fs", len(predictions), test.height,
                time.perf_counter() - t0)  # fmt: skip
    return out


def _sorted_labels(labels: list) -> list:
    try:
        return sorted(labels, key=float)
    except (TypeError, ValueError):
        return sorted(labels, key=str)


# ----------------------------------------------------------------------------- rankings


def _lists(recs: pl.DataFrame, k: int) -> dict[str, list[str]]:
    """Each user's top-k item ids, best first (by ``rank``)."""
    if not {"user_id", "item_id", "rank"} <= set(recs.columns):
        raise ValueError(f"recommendations need user_id, item_id and rank columns (given: {recs.columns})")
    top = (recs.filter(pl.col("rank") <= k).sort(["user_id", "rank"])
           .group_by("user_id", maintain_order=True).agg(pl.col("item_id")))  # fmt: skip
    return dict(zip(top["user_id"].to_list(), top["item_id"].to_list()))


def _relevant(test: pl.DataFrame, threshold: float | None) -> dict[str, set[str]]:
    """Each test user's relevant items: rated at or above ``threshold``, or every held-out item when it is None."""
    kept = test if threshold is None else test.filter(pl.col("rating") >= threshold)
    rel = kept.group_by("user_id").agg(pl.col("item_id"))
    return {u: set(items) for u, items in rel.iter_rows()}


def ranking_per_user(recs: pl.DataFrame, test: pl.DataFrame, *, k: int,
                     relevance_threshold: float | None) -> pl.DataFrame:  # fmt: skip
    """Per-user top-k accuracy for every user with at least one relevant test item.

    Args:
        recs: ``user_id``, ``item_id``, ``rank`` (1-based) rows (``segmentation.rank.RECOMMENDATIONS``).
        test: held-out ``user_id``, ``item_id``, ``rating`` rows.
        k: cut-off.
        relevance_threshold: test ratings at or above it are relevant; None: every held-out item is (implicit
            feedback).

    Returns:
        ``user_id``, ``precision``, ``recall``, ``ndcg``, ``hit``, ``mrr``, ``map`` (Float64), sorted by user.
    """
    lists = _lists(recs, k)
    rel = _relevant(test, relevance_threshold)
    rows = []
    for u in sorted(rel):
        lst, r = lists.get(u, []), rel[u]
        rows.append((u, precision_at_k(lst, r, k), recall_at_k(lst, r, k), ndcg_at_k(lst, r, k), hit_at_k(lst, r, k),
                     reciprocal_rank_at_k(lst, r, k), average_precision_at_k(lst, r, k)))  # fmt: skip
    schema = {"user_id": pl.String, **{m: pl.Float64 for m in _RANK_METRICS}}
    return pl.DataFrame(rows, schema=schema, orient="row")


def evaluate_rankings(recs: dict[str, pl.DataFrame], test: pl.DataFrame, train: pl.DataFrame, *, k: int,
                      relevance_threshold: float | None, item_embeddings: Embeddings | None, items: pl.DataFrame | None,
                      groups: pl.DataFrame, n_boot: int = 200, seed: int = 0, min_group_size: int = 5,
                      fairness_metrics: Sequence[str] = ("ndcg",)) -> tuple[dict, dict]:  # fmt: skip
    """Top-k accuracy and beyond-accuracy of each ranker, overall, per segment and per user group.

    Args:
        recs: ranker name -> recommendations (``user_id``, ``item_id``, ``rank``; longer lists are cut to ``k``).
        test: held-out ratings; relevant = rating ``>= relevance_threshold`` (every held-out item when None).
        train: the ratings the rankers were fitted on (popularity, user profiles, "seen" items).
        k: list length; metric labels carry it (``ndcg@10``).
        relevance_threshold: see ``test``.
        item_embeddings: item vectors for intra-list diversity, or None (``ils@k`` is then None).
        items: the catalogue (``item_id``, ``categories``) for coverage and genre calibration, or
            None (coverage is then over train items and ``calibration_kl`` is None).
        groups: one row per user: ``user_id`` plus optional ``segment_id`` and
            ``gender``/``age_band``/``activity``.
        n_boot: bootstrap resamples for the CIs; 0 skips them.
        seed: seed of the bootstrap.
        min_group_size: groups with fewer users are reported but left out of the gaps.
        fairness_metrics: which per-user ranking metrics (names without ``@k``) get fairness gaps.

    Returns:
        ``(ranking, beyond_accuracy)``. ``ranking[system]`` holds ``precision@k``, ``recall@k``,
        ``ndcg@k``, ``hit@k``, ``mrr@k``, ``map@k`` with ``*_ci``, ``n_users``, ``per_segment``
        (segment -> the same metrics, ``ndcg@k_ci`` and ``n``) and ``fairness`` (column -> metric
        label -> gap). ``beyond_accuracy[system]`` holds ``coverage``, ``gini``, ``novelty``,
        ``ils@k``, ``serendipity``, ``popularity_bias``, ``arp``, ``calibration_kl`` and
        ``per_segment``.
    """
    t0 = time.perf_counter()
    g = _check_groups(groups)
    bad = [m for m in fairness_metrics if m not in _RANK_METRICS]
    if bad:
        raise ValueError(f"unknown fairness metrics {bad}; expected some of {', '.join(_RANK_METRICS)}")
    ctx = _Context(train, items, item_embeddings, k)
    rel = _relevant(test, relevance_threshold)
    ranking, beyond = {}, {}
    for name, r in recs.items():
        per_user = ranking_per_user(r, test, k=k, relevance_threshold=relevance_threshold).join(
            g, on="user_id", how="left"
        )
        ranking[name] = _ranking_block(per_user, k, n_boot, seed, min_group_size, fairness_metrics)
        beyond[name] = _beyond_block(_lists(r, k), rel, ctx, g)
    logger.info("ranking evaluation of %d rankers in %.2fs", len(recs), time.perf_counter() - t0)
    return ranking, beyond


def _ranking_block(per_user: pl.DataFrame, k: int, n_boot: int, seed: int, min_group_size: int,
                   fairness_metrics: Sequence[str]) -> dict:  # fmt: skip
    out: dict = {}
    for m in _RANK_METRICS:
        v = per_user[m].to_numpy()
        out[f"{m}@{k}"] = _f(float(v.mean())) if v.size else None
        out[f"{m}@{k}_ci"] = _ci(bootstrap_ci(v, n_boot=n_boot, seed=seed))
    out["n_users"] = int(per_user.height)
    out["per_segment"] = {}
    if "segment_id" in per_user.columns:
        for seg in _sorted_labels(per_user["segment_id"].drop_nulls().unique().to_list()):
            sub = per_user.filter(pl.col("segment_id") == seg)
            entry: dict[str, object] = {f"{m}@{k}": _f(to_float(sub[m].mean())) for m in _RANK_METRICS}
            entry[f"ndcg@{k}_ci"] = _ci(bootstrap_ci(sub["ndcg"].to_numpy(), n_boot=n_boot, seed=seed))
            entry["n"] = int(sub.height)
            out["per_segment"][str(seg)] = entry
    out["fairness"] = {
        col: {f"{m}@{k}": _clean_gap(group_gap(per_user[m].to_numpy(), per_user[col].to_list(), n_boot=n_boot,
                                               seed=seed, min_group_size=min_group_size))
              for m in fairness_metrics}
        for col in GROUP_COLUMNS if col in per_user.columns
    }  # fmt: skip
    return out


class _Context:
    """What beyond-accuracy needs from train, the catalogue and the embeddings, computed once."""

    def __init__(self, train: pl.DataFrame, items: pl.DataFrame | None, emb: Embeddings | None, k: int) -> None:
        self.k = k
        pairs = train.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String)).unique()
        self.n_users = max(pairs["user_id"].n_unique(), 1)
        pop = pairs.group_by("item_id").len()
        self.popularity = dict(zip(pop["item_id"].to_list(), (pop["len"] / self.n_users).to_list()))
        self.floor = 1.0 / self.n_users
        hist = pairs.group_by("user_id").agg(pl.col("item_id"))
        self.history: dict[str, list[str]] = dict(zip(hist["user_id"].to_list(), hist["item_id"].to_list()))
        # the primitive (most-popular) ranking for serendipity: by popularity, ties by smaller id
        ids = list(self.popularity)
        self.pop_order = sorted(ids, key=lambda i: (-self.popularity[i], _id_key(i)))
        self.catalogue = set(ids)
        self.genres: dict[str, list[str]] | None = None
        if items is not None:
            self.catalogue |= set(items["item_id"].cast(pl.String).to_list())
            if "categories" in items.columns:
                self.genres = dict(zip(items["item_id"].cast(pl.String).to_list(), items["categories"].to_list()))
        self.emb = emb
        self.emb_pos = emb.index_of() if emb is not None else {}

    def expected(self, user: str) -> list[str]:
        seen = set(self.history.get(user, ()))
        out = []
        for i in self.pop_order:
            if i not in seen:
                out.append(i)
                if len(out) == self.k:
                    break
        return out


def _id_key(i: str) -> tuple[int, int, str]:
    return (0, int(i), i) if i.lstrip("-").isdigit() else (1, 0, i)


def _beyond_block(lists: dict[str, list[str]], rel: dict[str, set[str]], ctx: _Context, groups: pl.DataFrame) -> dict:
    rows = []
    for u, lst in lists.items():
        hist = ctx.history.get(u, [])
        ils = math.nan
        if ctx.emb is not None:
            pos = [ctx.emb_pos[i] for i in lst if i in ctx.emb_pos]
            ils = intra_list_diversity(ctx.emb.vectors[pos]) if len(pos) > 1 else math.nan
        rows.append({
            "user_id": u,
            "novelty": novelty(lst, ctx.popularity, floor=ctx.floor),
            "arp": float(np.mean([ctx.popularity.get(i, 0.0) for i in lst])) if lst else math.nan,
            "profile_pop": float(np.mean([ctx.popularity.get(i, 0.0) for i in hist])) if hist else math.nan,
            "ils": ils,
            "calibration_kl": calibration_kl(hist, lst, ctx.genres) if ctx.genres is not None and hist else math.nan,
            "serendipity": serendipity(lst, rel[u], ctx.expected(u), ctx.k) if u in rel else math.nan,
        })  # fmt: skip
    schema = {"user_id": pl.String, **{c: pl.Float64 for c in
              ("novelty", "arp", "profile_pop", "ils", "calibration_kl", "serendipity")}}  # fmt: skip
    per_user = pl.DataFrame(rows, schema=schema).fill_nan(None).join(groups, on="user_id", how="left")
    out = _beyond_summary(per_user, lists, ctx)
    out["per_segment"] = {}
    if "segment_id" in per_user.columns:
        for seg in _sorted_labels(per_user["segment_id"].drop_nulls().unique().to_list()):
            sub = per_user.filter(pl.col("segment_id") == seg)
            entry = _beyond_summary(sub, {u: lists[u] for u in sub["user_id"].to_list()}, ctx)
            entry.pop("gini", None)
            entry["n"] = int(sub.height)
            out["per_segment"][str(seg)] = entry
    return out


def _mean(s: pl.Series) -> float | None:
    s = s.drop_nulls()
    return _f(float(s.mean())) if s.len() else None  # type: ignore[arg-type]


def _beyond_summary(per_user: pl.DataFrame, lists: dict[str, list[str]], ctx: _Context) -> dict:
    counts: dict[str, int] = {}
    for lst in lists.values():
        for i in lst:
            counts[i] = counts.get(i, 0) + 1
    both = per_user.drop_nulls(["arp", "profile_pop"])
    return {
        "coverage": _f(catalogue_coverage(lists.values(), len(ctx.catalogue | set(counts)))),
        "gini": _f(gini_index(list(counts.values()), len(ctx.catalogue | set(counts)))),
        "novelty": _mean(per_user["novelty"]),
        f"ils@{ctx.k}": _mean(per_user["ils"]),
        "serendipity": _mean(per_user["serendipity"]),
        "popularity_bias": _f(popularity_bias(both["arp"].to_numpy(), both["profile_pop"].to_numpy())),
        "arp": _mean(per_user["arp"]),
        "calibration_kl": _mean(per_user["calibration_kl"]),
        "n_users": int(per_user.height),
    }


def user_groups_frame(dataset: Dataset, split: Split, segmentation: Segmentation) -> pl.DataFrame:
    """user_id, segment_id (nearest segment for outliers kept as -1) and fairness groups."""
    groups = user_groups(dataset.users, split.train_full)
    return segmentation.assignments.select("user_id", "segment_id").join(groups, on="user_id", how="left")


def ranked_test(test: pl.DataFrame, sample: RankingSample | None) -> tuple[pl.DataFrame, dict]:
    """The test rows of the users the top-k lists were made for (all of them, or the rank stage's seeded sample),
    and what ``metrics.json`` says about it under ``ranking_sample``."""
    if sample is None:
        n = test["user_id"].n_unique()
        sample = RankingSample(tuple(test["user_id"].unique().sort().to_list()), n, None)
    if not sample.sampled:
        return test, sample.summary()
    return test.filter(pl.col("user_id").is_in(pl.Series(sample.users, dtype=pl.String).implode())), sample.summary()


def evaluate_run(dataset: Dataset, split: Split, segmentation: Segmentation, global_model, segment_models,
                 rankings: Rankings, items: Embeddings, config: EvalConfig, seed: int, cold_start=None) -> dict:  # fmt: skip
    """The flow's evaluate stage: accuracy, per-segment gains with CIs, ranking, beyond-accuracy and fairness
    metrics, the segmentation's quality, and the sparse users' figures under ``cold_start``
    (:func:`evaluate_cold_start`: what the cold-start stage decided, and its sparse test users predicted with the
    prior it kept against the global model).

    Ranking and beyond-accuracy metrics are taken over the test users the rank stage listed (``rankings.sample``:
    every one, or above ``evaluate.ranking_max_users`` its seeded sample, whose test rows alone are scored), and
    ``ranking_sample`` says which (``sampled``, ``n_users``, ``n_test_users``, ``max_users``, ``note``).

    ``global_model`` and ``segment_models`` (``segmentation.predict.FineTuned``) are None for implicit feedback;
    ``cold_start`` (``segmentation.coldstart.ColdStart``) is None when the stage did not run.
    """

    test = split.test
    groups = user_groups_frame(dataset, split, segmentation)
    relevance = None if dataset.implicit else config.relevance_threshold  # implicit: every held-out interaction
    ranked, ranking_sample = ranked_test(test, rankings.sample)
    ranking, beyond = evaluate_rankings(rankings.recs, ranked, split.train_full, k=config.k,
                                        relevance_threshold=relevance, item_embeddings=items,
                                        items=dataset.items, groups=groups, n_boot=config.bootstrap, seed=seed)  # fmt: skip
    quality = segmentation_quality(segmentation)
    rated = global_model is not None  # implicit feedback trains no rating model
    rating = _rating_metrics(test, groups, global_model, segment_models, config, seed) if rated else {
        "skipped": IMPLICIT_NO_RATINGS}  # fmt: skip
    fairness = {}
    if rated:
        fairness["rating"] = {name: r.get("fairness", {}) for name, r in rating.items()
                              if isinstance(r, dict) and "fairness" in r}  # fmt: skip
    fairness["ranking"] = {name: r.get("fairness", {}) for name, r in ranking.items() if isinstance(r, dict)}
    cold = evaluate_cold_start(cold_start, test, global_model, rankings, ranked=ranked, k=config.k,
                               relevance_threshold=relevance, n_boot=config.bootstrap, seed=seed)  # fmt: skip
    return json_safe({"rating": rating, "ranking": ranking, "ranking_sample": ranking_sample,
                      "beyond_accuracy": beyond, "fairness": fairness, "segmentation_quality": quality,
                      "cold_start": cold})  # fmt: skip


def _rating_metrics(test: pl.DataFrame, groups: pl.DataFrame, global_model, segment_models, config: EvalConfig,
                    seed: int) -> dict:  # fmt: skip
    """Rating accuracy of the global and segmented models, the segmented gain and the random-partition control."""
    p_global = global_model.predict(test)
    p_seg = segment_models.models.predict(test)
    rating = evaluate_ratings(
        test, {"global": p_global, "segmented": p_seg}, groups, n_boot=config.bootstrap, seed=seed
    )
    y = test["rating"].to_numpy()
    diff, lo, hi = paired_bootstrap_ci(y, p_global, p_seg, test["user_id"].to_numpy(), n_boot=max(config.bootstrap, 50),
                                       seed=seed)  # fmt: skip
    per_segment: dict[str, dict] = {}
    gain = {
        "rmse_change": diff,
        "ci": [lo, hi],
        "helped": bool(hi < 0),
        "hurt": bool(lo > 0),
        "per_segment": per_segment,
    }
    seg_of = dict(zip(groups["user_id"], groups["segment_id"]))
    test_seg = np.array([seg_of.get(u, NOISE) for u in test["user_id"]])
    for s in sorted(set(test_seg.tolist())):
        m = test_seg == s
        d, a, b = paired_bootstrap_ci(y[m], p_global[m], p_seg[m], test["user_id"].to_numpy()[m],
                                      n_boot=max(config.bootstrap, 50), seed=seed)  # fmt: skip
        per_segment[str(s)] = {"rmse_change": d, "ci": [a, b], "n": int(m.sum())}
    rating["gain"] = gain
    if segment_models.control is not None:
        p_ctl = segment_models.control.predict(test)
        d, a, b = paired_bootstrap_ci(y, p_global, p_ctl, test["user_id"].to_numpy(), n_boot=max(config.bootstrap, 50),
                                      seed=seed)  # fmt: skip
        report = getattr(segment_models.control, "report_", None)
        rating["random_partition_control"] = {
            "rmse": rmse(y, p_ctl), "rmse_change": d, "ci": [a, b],
            "segments_kept": int(report["kept"].sum()) if report is not None else None,
            "note": "same fine-tuning and gate on random partitions of the same sizes",
        }  # fmt: skip
    return rating


def evaluate_cold_start(cold, test: pl.DataFrame, global_model, rankings: Rankings | None = None, *,
                        ranked: pl.DataFrame | None = None, k: int = 10, relevance_threshold: float | None = 4.0,
                        n_boot: int = 200, seed: int = 0) -> dict:  # fmt: skip
    """The cold-start block of ``metrics.json``: the stage's report plus, under ``test``, the sparse test users'
    RMSE with the model the gate chose for them against the global model's, with a paired user-bootstrap
    interval (evaluation on test, not a choice), overall and per k; and under ``ranking.test`` their NDCG@k with
    the lists the run gave them (``rankings.served()``: the kept blend's where the ranking gate kept one) against
    the primary ranker's own lists, with a paired user-bootstrap interval of the per-user change (:func:`_cold_ranking`).

    ``cold`` is the stage's :class:`segmentation.coldstart.ColdStart` (``report``, ``sparse``, ``predictor``);
    None (the stage did not run) gives ``{"skipped": ...}``. ``global_model`` None (implicit feedback): no rating
    figures. ``ranked``: the test rows of the users the rank stage listed (default: ``test``); ``k``,
    ``relevance_threshold``: as the run's ranking metrics (None: every held-out interaction is relevant).
    """
    if cold is None:
        return {"skipped": "predictor.cold_start.enabled is false"}
    out = dict(cold.report)
    if out.get("skipped"):
        return out
    if isinstance(out.get("ranking"), dict) and rankings is not None and rankings.primary in rankings.recs:
        out["ranking"] = {**out["ranking"], "test": _cold_ranking(cold, test if ranked is None else ranked, rankings,
                                                                  k, relevance_threshold, n_boot, seed)}  # fmt: skip
    if global_model is None or "by_k" not in out:
        return out
    users = test["user_id"].cast(pl.String)
    bucket = np.array([cold.sparse.get(u, 0) for u in users.to_list()])
    m = bucket > 0
    y = test["rating"].to_numpy()[m]
    groups = users.to_numpy()[m]
    sub = test.filter(pl.Series(m))
    p_global = np.asarray(global_model.predict(sub), dtype=np.float64)
    p_cold = cold.predictor.predict(sub) if cold.predictor is not None else p_global

    def block(mask: np.ndarray) -> dict:
        if not mask.any():
            return {"n_users": 0, "n_rows": 0, "rmse_global": None, "rmse_cold_start": None, "rmse_change": None,
                    "ci": None}  # fmt: skip
        d = paired_bootstrap_ci(y[mask], p_global[mask], p_cold[mask], groups[mask], n_boot=max(n_boot, 50), seed=seed)
        return {"n_users": len(set(groups[mask].tolist())), "n_rows": int(mask.sum()),
                "rmse_global": rmse(y[mask], p_global[mask]), "rmse_cold_start": rmse(y[mask], p_cold[mask]),
                "rmse_change": _f(d[0]), "ci": _ci([d[1], d[2]])}  # fmt: skip

    b = bucket[m]
    out["test"] = {**block(np.ones(len(y), bool)), "by_k": {str(k): block(b == k) for k in cold.report["ks"]}}
    return out


def _cold_ranking(cold, test: pl.DataFrame, rankings: Rankings, k: int, relevance_threshold: float | None,
                  n_boot: int, seed: int) -> dict:  # fmt: skip
    """NDCG@k of the sparse test users (with a relevant test item) with the lists the run gave them against the
    primary ranker's own, overall and per k: ``n_users``, ``ndcg_primary``, ``ndcg_cold_start``, ``ndcg_change``,
    ``ci`` (95 %, user bootstrap of the paired per-user change)."""
    sparse = pl.DataFrame({"user_id": list(cold.sparse), "bucket": list(cold.sparse.values())},
                          schema={"user_id": pl.String, "bucket": pl.Int64})  # fmt: skip
    sub = test.join(sparse.select("user_id"), on="user_id", how="semi")
    own = ranking_per_user(rankings.recs[rankings.primary], sub, k=k, relevance_threshold=relevance_threshold)
    used = ranking_per_user(rankings.served(), sub, k=k, relevance_threshold=relevance_threshold)
    both = own.select("user_id", pl.col("ndcg").alias("a")).join(used.select("user_id", pl.col("ndcg").alias("b")),
                                                                 on="user_id").join(sparse, on="user_id")  # fmt: skip

    def block(f: pl.DataFrame) -> dict:
        if f.height == 0:
            return {"n_users": 0, "ndcg_primary": None, "ndcg_cold_start": None, "ndcg_change": None, "ci": None}
        a, b = f["a"].to_numpy(), f["b"].to_numpy()
        diff = b - a  # paired per-user changes; their mean's interval as coldstart.mean_diff_ci (no import of it)
        d = float(diff.mean())
        lo, hi = (bootstrap_ci(diff, n_boot=max(n_boot, 50), seed=seed) if len(diff) > 1 and np.ptp(diff) > 0
                  else (d, d) if len(diff) > 1 else (math.nan, math.nan))  # fmt: skip
        return {"n_users": f.height, "ndcg_primary": _f(float(a.mean())), "ndcg_cold_start": _f(float(b.mean())),
                "ndcg_change": _f(d), "ci": _ci([lo, hi])}  # fmt: skip

    n_listed = 0 if rankings.cold_start is None else rankings.cold_start["user_id"].n_unique()
    return {**block(both), "listed_by_blend": n_listed, "k": k,
            "by_k": {str(b): block(both.filter(pl.col("bucket") == b)) for b in cold.report["ks"]}}  # fmt: skip


def segmentation_quality(segmentation: Segmentation) -> dict:
    """Label-free quality of the segments on their clustering coordinates (outliers excluded)."""
    from sklearn.metrics import calinski_harabasz_score, silhouette_score

    labels = segmentation.assignments["segment_id"].to_numpy()
    mask = labels != NOISE
    out: dict = {"n_segments": segmentation.n_segments, "noise_share": segmentation.noise_share}
    if segmentation.n_segments >= 2 and mask.sum() > segmentation.n_segments:
        x = segmentation.coords[mask]
        out["silhouette"] = float(
            silhouette_score(x, labels[mask], sample_size=min(5000, int(mask.sum())), random_state=0)
        )
        out["calinski_harabasz"] = float(calinski_harabasz_score(x, labels[mask]))
        try:
            from hdbscan.validity import validity_index

            if mask.sum() <= 5000:
                out["dbcv"] = float(validity_index(x.astype(np.float64), labels[mask]))
        except (ValueError, ZeroDivisionError, FloatingPointError) as err:  # DBCV is undefined for some shapes
            logger.warning("DBCV not computed: %s", err)
    return out
