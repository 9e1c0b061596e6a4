"""Evaluation: rating accuracy, top-k ranking, beyond-accuracy and fairness, overall and per segment.

Formulas (k = list length, R_u = relevant test items of user u, L_u = the user's top-k list):

- RMSE = sqrt(mean((y - ŷ)²)); MAE = mean(|y - ŷ|).
- precision@k = |L_u ∩ R_u| / k; recall@k = |L_u ∩ R_u| / |R_u|; hit@k = 1[|L_u ∩ R_u| > 0].
- NDCG@k = DCG@k / IDCG@k with DCG = Σ_{i ≤ k} rel_i / log2(i + 1) and IDCG over min(k, |R_u|) hits
  (Järvelin & Kekäläinen 2002). Averaged over users with at least one relevant test item.
- coverage = distinct recommended items / catalogue items seen in train.
- novelty = mean over recommended items of -log2(popularity share of the item in train users)
  (Zhou et al. 2010).
- ILS@k = mean pairwise cosine distance between the embeddings of a list's items (Ziegler et al. 2005).
"""

import logging

import numpy as np
import polars as pl

from embeddings.encoder import Embeddings

__all__ = [
    "bootstrap_ci",
    "evaluate_rankings",
    "evaluate_ratings",
    "mae",
    "ndcg_at_k",
    "rmse",
    "user_groups",
]

logger = logging.getLogger(__name__)


def rmse(y: np.ndarray, pred: np.ndarray) -> float:
    """Root mean squared error; NaN for empty input."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    return float(np.sqrt(np.mean((y - pred) ** 2))) if len(y) else float("nan")


def mae(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean absolute error; NaN for empty input."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    return float(np.mean(np.abs(y - pred))) if len(y) else float("nan")


def ndcg_at_k(ranked: list[str], relevant: set[str], k: int) -> float:
    """NDCG@k of one list with binary relevance; 0 when nothing is relevant."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / np.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in relevant)
    idcg = sum(1.0 / np.log2(i + 2) for i in range(min(k, len(relevant))))
    return float(dcg / idcg)


def bootstrap_ci(values_by_user: dict[str, float] | np.ndarray, *, n_boot: int = 200, seed: int = 0,
                 alpha: float = 0.05) -> list[float]:  # fmt: skip
    """Percentile bootstrap CI of the mean of per-user values."""
    v = np.asarray(list(values_by_user.values()) if isinstance(values_by_user, dict) else values_by_user, float)
    if len(v) == 0 or n_boot == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(axis=1)
    return [float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))]


def user_groups(users: pl.DataFrame | None, interactions: pl.DataFrame) -> pl.DataFrame:
    """user_id with fairness groups: gender, age_band and activity quartile (missing attributes skipped)."""
    act = interactions.group_by("user_id").len()
    q = [float(act["len"].quantile(p) or 0) for p in (0.25, 0.5, 0.75)]
    out = act.select(
        "user_id",
        pl.when(pl.col("len") <= q[0]).then(pl.lit("Q1 (least active)"))
        .when(pl.col("len") <= q[1]).then(pl.lit("Q2"))
        .when(pl.col("len") <= q[2]).then(pl.lit("Q3"))
        .otherwise(pl.lit("Q4 (most active)")).alias("activity"),
    )  # fmt: skip
    if users is not None:
        cols = [pl.col("user_id")]
        if "gender" in users.columns:
            cols.append(pl.col("gender").cast(pl.String))
        if "age" in users.columns:
            age = pl.col("age").cast(pl.Float64, strict=False)
            cols.append(
                pl.when(age < 25).then(pl.lit("<25")).when(age < 35).then(pl.lit("25-34"))
                .when(age < 50).then(pl.lit("35-49")).when(age.is_not_null()).then(pl.lit("50+"))
                .otherwise(pl.lit("unknown")).alias("age_band")
            )  # fmt: skip
        out = out.join(users.select(cols), on="user_id", how="left")
    return out


def _gap(per_group: dict[str, dict], metric: str) -> dict:
    vals = {g: v[metric] for g, v in per_group.items() if v.get("n", 0) >= 5 and np.isfinite(v[metric])}
    if len(vals) < 2:
        return {"groups": per_group, "gap": None}
    hi, lo = max(vals, key=vals.get), min(vals, key=vals.get)
    return {"groups": per_group, "gap": float(vals[hi] - vals[lo]), "max_group": hi, "min_group": lo}


def _per_user_gap_ci(per_user: pl.DataFrame, column: str, value: str, *, n_boot: int, seed: int) -> list[float]:
    """Bootstrap (over users) CI of the max-min gap of a per-user metric's group means."""
    frame = per_user.drop_nulls(column)
    if frame[column].n_unique() < 2 or n_boot == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    groups = frame[column].to_numpy()
    vals = frame[value].to_numpy()
    labels = np.unique(groups)
    gaps = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(vals), len(vals))
        g, v = groups[idx], vals[idx]
        means = [v[g == lab].mean() for lab in labels if (g == lab).sum() >= 5]
        if len(means) >= 2:
            gaps.append(max(means) - min(means))
    return [float(np.quantile(gaps, 0.025)), float(np.quantile(gaps, 0.975))] if gaps else [float("nan")] * 2


def evaluate_ratings(test: pl.DataFrame, predictions: dict[str, np.ndarray], groups: pl.DataFrame, *,
                     n_boot: int = 200, seed: int = 0) -> dict:  # fmt: skip
    """RMSE/MAE with CIs, calibration, per segment and fairness gaps, for each prediction system."""
    frame = test.select("user_id", "rating").join(groups, on="user_id", how="left", maintain_order="left")
    group_cols = [c for c in ("segment_id", "gender", "age_band", "activity") if c in frame.columns]
    out = {}
    for name, pred in predictions.items():
        f = frame.with_columns(pl.Series("pred", np.asarray(pred, float)), ((pl.Series("pred", np.asarray(pred, float)) - pl.col("rating")) ** 2).alias("se"))
        per_user = f.group_by(["user_id", *group_cols]).agg(pl.col("se").mean().alias("mse"))
        res = {"rmse": rmse(f["rating"], f["pred"]), "mae": mae(f["rating"], f["pred"]), "n": f.height}
        rng = np.random.default_rng(seed)
        users = f["user_id"].unique().sort()
        if n_boot and users.len():
            pos = {u: i for i, u in enumerate(users)}
            uidx = np.fromiter((pos[u] for u in f["user_id"]), np.int64, f.height)
            se = f["se"].to_numpy()
            sums = np.bincount(uidx, se, len(users))
            cnts = np.bincount(uidx, minlength=len(users))
            boots = []
            for _ in range(n_boot):
                w = np.bincount(rng.integers(0, len(users), len(users)), minlength=len(users))
                boots.append(np.sqrt((w * sums).sum() / max((w * cnts).sum(), 1)))
            res["rmse_ci"] = [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))]
        # calibration of predicted ratings: mean observed per predicted bin
        bins = f.with_columns(pl.col("pred").round(0).clip(1, 5).alias("bin")).group_by("bin").agg(
            pl.col("pred").mean().alias("predicted"), pl.col("rating").mean().alias("observed"), pl.len().alias("n")
        ).sort("bin")
        res["calibration"] = {
            "bins": bins.to_dicts(),
            "ece": float((bins["n"] * (bins["predicted"] - bins["observed"]).abs()).sum() / max(bins["n"].sum(), 1)),
        }
        res["per_segment"] = {
            str(s): {"rmse": rmse(g["rating"], g["pred"]), "mae": mae(g["rating"], g["pred"]), "n": g.height}
            for (s,), g in f.group_by("segment_id", maintain_order=True)
        } if "segment_id" in f.columns else {}  # fmt: skip
        fair = {}
        for col in group_cols:
            per_group = {str(k): {"rmse": rmse(g["rating"], g["pred"]), "n": g["user_id"].n_unique()}
                         for (k,), g in f.drop_nulls(col).group_by(col)}  # fmt: skip
            fair[col] = _gap(per_group, "rmse")
            fair[col]["gap_ci"] = _per_user_gap_ci(per_user.with_columns(pl.col("mse").sqrt()), col, "mse",
                                                   n_boot=min(n_boot, 200), seed=seed)  # fmt: skip
        res["fairness"] = fair
        out[name] = res
    return out


def _ranking_per_user(recs: pl.DataFrame, test: pl.DataFrame, k: int, threshold: float) -> pl.DataFrame:
    relevant = test.filter(pl.col("rating") >= threshold).group_by("user_id").agg(pl.col("item_id").alias("rel"))
    lists = recs.filter(pl.col("rank") <= k).sort(["user_id", "rank"]).group_by("user_id").agg(pl.col("item_id").alias("top"))
    rows = []
    for u, rel, top in relevant.join(lists, on="user_id", how="left").iter_rows():
        top = top or []
        rel_set = set(rel)
        hits = [i for i in top if i in rel_set]
        rr = next((1.0 / (r + 1) for r, i in enumerate(top) if i in rel_set), 0.0)
        ap = sum((n + 1) / (r + 1) for n, r in enumerate(r for r, i in enumerate(top) if i in rel_set)) / min(k, len(rel_set))
        rows.append((u, len(hits) / k, len(hits) / len(rel_set), ndcg_at_k(top, rel_set, k), float(bool(hits)), rr, ap))
    return pl.DataFrame(rows, schema=["user_id", "precision", "recall", "ndcg", "hit", "mrr", "map"], orient="row")


def evaluate_rankings(recs: dict[str, pl.DataFrame], test: pl.DataFrame, train: pl.DataFrame, *, k: int,
                      relevance_threshold: float, item_embeddings: Embeddings | None, items: pl.DataFrame | None,
                      groups: pl.DataFrame, n_boot: int = 200, seed: int = 0) -> tuple[dict, dict]:  # fmt: skip
    """Top-k accuracy and beyond-accuracy of each ranker, overall, per segment and per user group."""
    pop = train.group_by("item_id").agg(pl.col("user_id").n_unique().alias("n"))
    n_users = train["user_id"].n_unique()
    pop_share = dict(zip(pop["item_id"], (pop["n"] / n_users).to_list()))
    n_catalogue = pop.height
    emb_pos = item_embeddings.index_of() if item_embeddings is not None else {}
    ranking, beyond = {}, {}
    for name, r in recs.items():
        per_user = _ranking_per_user(r, test, k, relevance_threshold).join(groups, on="user_id", how="left")
        metrics = {f"{m}@{k}": float(per_user[m].mean() or 0) for m in ("precision", "recall", "ndcg", "hit", "mrr", "map")}
        metrics["n_users"] = per_user.height
        metrics[f"ndcg@{k}_ci"] = bootstrap_ci(per_user["ndcg"].to_numpy(), n_boot=n_boot, seed=seed)
        if "segment_id" in per_user.columns:
            metrics["per_segment"] = {str(s): {f"ndcg@{k}": float(g["ndcg"].mean()), f"recall@{k}": float(g["recall"].mean()),
                                               "n": g.height}
                                      for (s,), g in per_user.group_by("segment_id", maintain_order=True)}  # fmt: skip
        fair = {}
        for col in ("segment_id", "gender", "age_band", "activity"):
            if col in per_user.columns:
                per_group = {str(kk): {f"ndcg@{k}": float(g["ndcg"].mean()), "n": g.height}
                             for (kk,), g in per_user.drop_nulls(col).group_by(col)}  # fmt: skip
                fair[col] = _gap(per_group, f"ndcg@{k}")
                fair[col]["gap_ci"] = _per_user_gap_ci(per_user, col, "ndcg", n_boot=min(n_boot, 200), seed=seed)
        metrics["fairness"] = fair
        ranking[name] = metrics
        lists = r.filter(pl.col("rank") <= k)
        nov = lists.with_columns(pl.col("item_id").replace_strict(pop_share, default=1.0 / n_users, return_dtype=pl.Float64).alias("p"))
        b = {
            "coverage": lists["item_id"].n_unique() / max(n_catalogue, 1),
            "novelty": float((-np.log2(nov["p"].to_numpy())).mean()) if nov.height else float("nan"),
            "popularity_bias": float(nov["p"].mean() or 0),
        }
        counts = np.sort(lists.group_by("item_id").len()["len"].to_numpy().astype(float))
        full = np.concatenate([np.zeros(max(n_catalogue - len(counts), 0)), counts])
        if full.sum():
            idx = np.arange(1, len(full) + 1)
            b["gini"] = float(((2 * idx - len(full) - 1) * full).sum() / (len(full) * full.sum()))
        if emb_pos:
            ils = []
            for (_u,), g in lists.group_by("user_id"):
                rows = [emb_pos[i] for i in g["item_id"] if i in emb_pos]
                if len(rows) > 1:
                    v = item_embeddings.vectors[rows]
                    s = v @ v.T
                    n = len(rows)
                    ils.append(float(1 - (s.sum() - n) / (n * (n - 1))))
            b[f"ils@{k}"] = float(np.mean(ils)) if ils else float("nan")
        beyond[name] = b
    return ranking, beyond
