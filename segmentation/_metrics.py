"""Metric formulas: one small, pure, hand-checkable function per metric.

``segmentation.evaluate`` re-exports these and aggregates them over users, segments and
groups. Every function states its formula and a reference; empty input gives NaN (or 0.0
where the metric of an empty list is naturally zero, as stated per function).

Notation: ``L`` is a user's ranked top-k list (item ids, best first), ``R`` the user's
relevant held-out items, ``k`` the cut-off, ``rel_i = 1[L_i ∈ R]``.
"""

import functools
import math
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "average_precision_at_k",
    "bootstrap_ci",
    "calibration_kl",
    "catalogue_coverage",
    "expected_calibration_error",
    "gini_index",
    "group_gap",
    "hit_at_k",
    "intra_list_diversity",
    "mae",
    "ndcg_at_k",
    "ndcg_from_hits",
    "novelty",
    "paired_bootstrap_ci",
    "percentile_bootstrap",
    "popularity_bias",
    "precision_at_k",
    "rating_calibration",
    "recall_at_k",
    "reciprocal_rank_at_k",
    "rmse",
    "serendipity",
]

# ----------------------------------------------------------------------------- rating accuracy


def rmse(y: Sequence[float] | np.ndarray, pred: Sequence[float] | np.ndarray) -> float:
    """Root mean squared error, ``sqrt(mean((y - ŷ)²))``; NaN for empty input.

    Reference: Herlocker et al., "Evaluating collaborative filtering recommender systems", TOIS 2004.

    Args:
        y: (n,) observed ratings.
        pred: (n,) predicted ratings, aligned with ``y``.

    Raises:
        ValueError: the lengths differ.
    """
    a, b = _pair(y, pred)
    return float(np.sqrt(np.mean((a - b) ** 2))) if a.size else math.nan


def mae(y: Sequence[float] | np.ndarray, pred: Sequence[float] | np.ndarray) -> float:
    """Mean absolute error, ``mean(|y - ŷ|)``; NaN for empty input (Herlocker et al. 2004).

    Args:
        y: (n,) observed ratings.
        pred: (n,) predicted ratings, aligned with ``y``.
    """
    a, b = _pair(y, pred)
    return float(np.mean(np.abs(a - b))) if a.size else math.nan


def _pair(y: Sequence[float] | np.ndarray, pred: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(y, dtype=np.float64).ravel(), np.asarray(pred, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"observed ({a.size}) and predicted ({b.size}) ratings differ in length")
    return a, b


def rating_calibration(y: Sequence[float] | np.ndarray, pred: Sequence[float] | np.ndarray, *,
                       edges: Sequence[float] = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)) -> list[dict]:  # fmt: skip
    """Reliability table of predicted ratings: per bin of the prediction, mean predicted vs mean observed.

    Bin b holds predictions in ``[edges[b], edges[b+1])`` (the last bin is closed); predictions
    outside ``[edges[0], edges[-1]]`` fall into the first or last bin. Empty bins are left out.
    Reference: DeGroot & Fienberg, "The comparison and evaluation of forecasters", 1983
    (reliability diagrams), applied to ratings.

    Returns:
        One dict per non-empty bin: ``lo``, ``hi``, ``n``, ``predicted`` (mean ŷ), ``observed`` (mean y).
    """
    a, b = _pair(y, pred)
    e = np.asarray(edges, dtype=np.float64)
    if e.size < 2 or np.any(np.diff(e) <= 0):
        raise ValueError(f"edges must be at least two increasing values (given: {list(edges)})")
    idx = np.clip(np.searchsorted(e, b, side="right") - 1, 0, e.size - 2)
    out = []
    for j in range(e.size - 1):
        m = idx == j
        if m.any():
            out.append({"lo": float(e[j]), "hi": float(e[j + 1]), "n": int(m.sum()),
                        "predicted": float(b[m].mean()), "observed": float(a[m].mean())})  # fmt: skip
    return out


def expected_calibration_error(bins: Iterable[Mapping[str, float]]) -> float:
    """ECE over a reliability table: ``Σ_b (n_b / N) · |mean ŷ_b - mean y_b|``; NaN when empty.

    Reference: Naeini, Cooper & Hauskrecht, "Obtaining well calibrated probabilities using
    Bayesian binning", AAAI 2015 (here on the rating scale, in rating points).

    Args:
        bins: rows of :func:`rating_calibration` (``n``, ``predicted``, ``observed``).
    """
    rows = list(bins)
    total = sum(r["n"] for r in rows)
    if not total:
        return math.nan
    return float(sum(r["n"] * abs(r["predicted"] - r["observed"]) for r in rows) / total)


# ----------------------------------------------------------------------------- top-k accuracy


def _hits(ranked: Sequence[str], relevant: set[str] | frozenset[str], k: int) -> list[int]:
    if k < 1:
        raise ValueError(f"k must be >= 1 (given: {k})")
    return [1 if i in relevant else 0 for i in list(ranked)[:k]]


def precision_at_k(ranked: Sequence[str], relevant: set[str] | frozenset[str], k: int) -> float:
    """``|L[:k] ∩ R| / k`` (the divisor is k even when the list is shorter).

    Reference: Manning, Raghavan & Schütze, *Introduction to Information Retrieval*, 2008, §8.4.
    """
    return sum(_hits(ranked, relevant, k)) / k


def recall_at_k(ranked: Sequence[str], relevant: set[str] | frozenset[str], k: int) -> float:
    """``|L[:k] ∩ R| / |R|``; 0 when ``R`` is empty (Manning et al. 2008, §8.4)."""
    return sum(_hits(ranked, relevant, k)) / len(relevant) if relevant else 0.0


def hit_at_k(ranked: Sequence[str], relevant: set[str] | frozenset[str], k: int) -> float:
    """Hit rate ``1[|L[:k] ∩ R| > 0]`` (Deshpande & Karypis, "Item-based top-N recommendation", TOIS 2004)."""
    return float(any(_hits(ranked, relevant, k)))


def ndcg_at_k(ranked: Sequence[str], relevant: set[str] | frozenset[str], k: int) -> float:
    """Binary NDCG: ``DCG@k / IDCG@k``, ``DCG = Σ_{i≤k} rel_i / log2(i + 1)`` (i is the 1-based rank).

    ``IDCG`` is the DCG of ``min(k, |R|)`` hits at the top. 0 when ``R`` is empty.
    One user's row of :func:`ndcg_from_hits`.
    Reference: Järvelin & Kekäläinen, "Cumulated gain-based evaluation of IR techniques", TOIS 2002.
    """
    if not relevant:
        return 0.0
    hits = _hits(ranked, relevant, k)
    row = np.zeros((1, k))
    row[0, : len(hits)] = hits
    return float(ndcg_from_hits(row, np.array([len(relevant)]))[0])


@functools.lru_cache(maxsize=64)
def _discounts(k: int) -> np.ndarray:
    """``1 / log2(i + 2)`` for ranks ``i = 0..k-1`` (math.log2: np.log2 differs in the last bit for some i)."""
    out = np.array([1.0 / math.log2(i + 2) for i in range(k)])
    out.flags.writeable = False
    return out


def ndcg_from_hits(hits: np.ndarray, n_relevant: Sequence[int] | np.ndarray) -> np.ndarray:
    """Binary NDCG@k of many users at once, from their top-k hit matrix (k = the number of columns).

    ``hits[u, i]`` is 1 when user u's item at rank ``i + 1`` is relevant (0 past the end of a short
    list); ``n_relevant[u] = |R_u|``. ``DCG_u = Σ_i hits[u, i] / log2(i + 2)``, summed rank by rank;
    ``IDCG_u`` is the DCG of ``min(k, |R_u|)`` hits at the top. The one NDCG here: :func:`ndcg_at_k`
    and ``coldstart.ndcg_per_user`` call it.

    Returns:
        (n,) float64; NaN for users with no relevant item.
    """
    h = np.asarray(hits, dtype=np.float64)
    if h.ndim != 2:
        raise ValueError(f"hits must be a 2-d (users, k) matrix (given shape {h.shape})")
    n_rel = np.asarray(n_relevant, dtype=np.int64).ravel()
    if n_rel.size != h.shape[0]:
        raise ValueError(f"hits has {h.shape[0]} rows but n_relevant {n_rel.size} values")
    k = h.shape[1]
    disc = _discounts(k)
    dcg = np.zeros(h.shape[0])
    for i in range(k):  # rank by rank, so each user's sum is in rank order
        dcg += h[:, i] * disc[i]
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_rel, k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, dcg / ideal, np.nan)


def reciprocal_rank_at_k(ranked: Sequence[str], relevant: set[str] | frozenset[str], k: int) -> float:
    """``1 / rank`` of the first relevant item in ``L[:k]``, 0 if none (MRR@k is its mean over users).

    Reference: Voorhees, "The TREC-8 question answering track report", 1999.
    """
    for i, h in enumerate(_hits(ranked, relevant, k)):
        if h:
            return 1.0 / (i + 1)
    return 0.0


def average_precision_at_k(ranked: Sequence[str], relevant: set[str] | frozenset[str], k: int) -> float:
    """``AP@k = Σ_{i≤k} rel_i · P@i / min(k, |R|)``; 0 when ``R`` is empty (MAP@k is its mean over users).

    Reference: Manning et al. 2008, §8.4 (truncated at k as in the recommender literature).
    """
    if not relevant:
        return 0.0
    hits = _hits(ranked, relevant, k)
    total, found = 0.0, 0
    for i, h in enumerate(hits):
        if h:
            found += 1
            total += found / (i + 1)
    return total / min(k, len(relevant))


# ----------------------------------------------------------------------------- beyond accuracy


def catalogue_coverage(lists: Iterable[Sequence[str]], n_catalogue: int) -> float:
    """Share of the catalogue that appears in at least one list: ``|∪_u L_u| / |I|``; NaN for an empty catalogue.

    Reference: Ge, Delgado-Battenfeld & Jannach, "Beyond accuracy", RecSys 2010.
    """
    if n_catalogue <= 0:
        return math.nan
    return len({i for lst in lists for i in lst}) / n_catalogue


def gini_index(counts: Sequence[float] | np.ndarray, n_catalogue: int | None = None) -> float:
    """Gini index of how often each item is recommended: 0 = every item equally often, → 1 = one item only.

    ``G = Σ_j (2j - n - 1) · c_(j) / (n · Σ_j c_j)`` with ``c_(1) ≤ … ≤ c_(n)`` the sorted counts over
    the ``n`` catalogue items; items never recommended count as 0 (pass ``n_catalogue`` to add
    them). NaN when nothing was recommended.
    Reference: Fleder & Hosanagar, "Blockbuster culture's next rise or fall", Management Science 2009;
    Adomavicius & Kwon, "Improving aggregate recommendation diversity", TKDE 2012.
    """
    c = np.sort(np.asarray(counts, dtype=np.float64).ravel())
    if n_catalogue is not None:
        if n_catalogue < c.size:
            raise ValueError(f"n_catalogue ({n_catalogue}) is smaller than the number of counts ({c.size})")
        c = np.concatenate([np.zeros(n_catalogue - c.size), c])
    if c.size == 0 or c.sum() <= 0:
        return math.nan
    j = np.arange(1, c.size + 1)
    return float(((2 * j - c.size - 1) * c).sum() / (c.size * c.sum()))


def novelty(ranked: Sequence[str], popularity: Mapping[str, float], *, floor: float) -> float:
    """Mean self-information of a list: ``mean_{i∈L} -log2 φ(i)``; NaN for an empty list.

    ``φ(i)`` is the share of train users who interacted with ``i``; items absent from
    ``popularity`` get ``floor`` (e.g. ``1 / n_users``). Reference: Zhou et al., "Solving the
    apparent diversity-accuracy dilemma of recommender systems", PNAS 2010.
    """
    if not ranked:
        return math.nan
    return float(np.mean([-math.log2(popularity.get(i, floor)) for i in ranked]))


def intra_list_diversity(vectors: np.ndarray) -> float:
    """Mean pairwise cosine distance of a list's item vectors: ``2/(n(n-1)) Σ_{a<b} (1 - cos(v_a, v_b))``.

    NaN for fewer than two items. Reference: Ziegler et al., "Improving recommendation lists
    through topic diversification", WWW 2005.

    Args:
        vectors: (n, dim) item embeddings of one list (need not be normalised).
    """
    v = np.asarray(vectors, dtype=np.float64)
    n = v.shape[0]
    if n < 2:
        return math.nan
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    sims = v @ v.T
    return float(1.0 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))


def serendipity(ranked: Sequence[str], relevant: set[str] | frozenset[str], expected: Iterable[str], k: int) -> float:
    """Share of the top-k that is relevant and unexpected: ``|{i ∈ L[:k] : i ∈ R, i ∉ PM}| / k``.

    ``PM`` is what a primitive model would recommend (here the user's most-popular top-k).
    Reference: Ge, Delgado-Battenfeld & Jannach, "Beyond accuracy", RecSys 2010 (after
    Murakami et al. 2008).
    """
    pm = set(expected)
    return sum(1 for i, h in zip(list(ranked)[:k], _hits(ranked, relevant, k)) if h and i not in pm) / k


def popularity_bias(recommended: Sequence[float] | np.ndarray, profile: Sequence[float] | np.ndarray) -> float:
    """Ratio of the mean popularity of recommended items to that of the items in the users' profiles.

    ``Σ φ(rec) / |rec|  ÷  Σ φ(profile) / |profile|``: 1 = as mainstream as the users' own
    histories, > 1 = the recommender amplifies popularity. Computed per user group it is
    ``1 + ΔGAP`` (Abdollahpouri et al., "The unfairness of popularity bias in recommendation",
    RMSE workshop 2019); the mean over lists of ``φ`` is their ARP. NaN if either side is empty.

    Args:
        recommended: popularity φ of each recommended item (one value per list entry, or per-user means).
        profile: popularity φ of each train interaction (or per-user profile means).
    """
    r, p = np.asarray(recommended, dtype=np.float64), np.asarray(profile, dtype=np.float64)
    if r.size == 0 or p.size == 0 or p.mean() <= 0:
        return math.nan
    return float(r.mean() / p.mean())


def _genre_distribution(item_lists: Iterable[str], genres: Mapping[str, Sequence[str]]) -> dict[str, float]:
    dist: defaultdict[str, float] = defaultdict(float)
    for i in item_lists:
        gs = genres.get(i) or ()
        for g in gs:
            dist[g] += 1.0 / len(gs)
    return dist


def calibration_kl(history: Sequence[str], ranked: Sequence[str], genres: Mapping[str, Sequence[str]], *,
                   alpha: float = 0.01) -> float:  # fmt: skip
    """Miscalibration of a list: ``KL(p || q̃) = Σ_g p(g|u) log(p(g|u) / q̃(g|u))``, natural log.

    ``p(g|u)`` is the genre distribution of the user's history and ``q(g|u)`` that of the list,
    each item spreading weight 1 evenly over its genres; ``q̃ = (1 - α) q + α p`` keeps the KL
    finite. 0 = perfectly calibrated. NaN when the history has no genres.
    Reference: Steck, "Calibrated recommendations", RecSys 2018.
    """
    p = _genre_distribution(history, genres)
    q = _genre_distribution(ranked, genres)
    sp, sq = sum(p.values()), sum(q.values())
    if sp <= 0:
        return math.nan
    total = 0.0
    for g, pv in p.items():
        pg = pv / sp
        qg = (1 - alpha) * (q.get(g, 0.0) / sq if sq > 0 else 0.0) + alpha * pg
        total += pg * math.log(pg / qg)
    return float(total)


# ----------------------------------------------------------------------------- uncertainty and gaps


def _stat(num: np.ndarray, den: np.ndarray, transform: Callable[[float], float] | None) -> float:
    d = den.sum()
    if d <= 0:
        return math.nan
    v = float(num.sum() / d)
    return float(transform(v)) if transform else v


def _ratio(num: np.ndarray, den: np.ndarray, transform: Callable[[float], float] | None) -> np.ndarray:
    """``transform(Σ num / Σ den)`` along the last axis, NaN where the denominator sum is not positive."""
    s, d = num.sum(axis=-1), den.sum(axis=-1)
    v = np.divide(s, d, out=np.full(np.shape(s), np.nan), where=d > 0)
    if transform is None:
        return v
    return np.array([transform(x) if np.isfinite(x) else np.nan for x in v.ravel()]).reshape(v.shape)


def percentile_bootstrap(samples: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], *, n_boot: int,
                         seed: int, level: float = 0.95, paired: bool = False) -> list[float]:  # fmt: skip
    """Percentile bootstrap interval of ``statistic`` through :func:`scipy.stats.bootstrap`.

    The one resampling routine behind every interval here (:func:`bootstrap_ci`, :func:`group_gap`,
    ``coldstart.mean_diff_ci``). Observations lie along each sample's last axis; ``paired`` resamples
    the same rows of every sample, otherwise each sample is resampled on its own, in order, from one
    ``default_rng(seed)`` (scipy draws ``rng.integers(0, n, (n_boot, n))`` per sample). A sample with a
    single observation is held fixed (its resamples are all the same; scipy refuses it, and drawing
    from a range of one consumes no random numbers, so the other samples draw as they would).
    Resamples whose statistic is not finite are left out, and the interval is ``np.quantile`` of the
    rest (scipy's own ``stats.quantile`` can differ from it in the last bit).
    Reference: Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13.

    Args:
        samples: arrays with observations along the last axis.
        statistic: vectorised ``statistic(*samples)`` reducing the last axis.
        n_boot: number of resamples.
        seed: seed of the resampling.
        level: confidence level of the two-sided interval.
        paired: resample the samples' rows jointly (they must have the same length).

    Returns:
        ``[lo, hi]``; ``[nan, nan]`` when ``n_boot`` is 0, a sample is empty, or no resample is finite.
    """
    arrays = [np.asarray(x, dtype=np.float64) for x in samples]
    if n_boot <= 0 or any(a.shape[-1] == 0 for a in arrays):
        return [math.nan, math.nan]
    moving = [a.shape[-1] > 1 for a in arrays]
    if not any(moving):
        dist = np.atleast_1d(statistic(*arrays))
    else:
        from scipy.stats import DegenerateDataWarning, bootstrap

        def stat(*moved: np.ndarray, axis: int = -1) -> np.ndarray:
            it = iter(moved)
            return statistic(*(next(it) if m else a for a, m in zip(arrays, moving)))

        # axis counted from the front: scipy 1.17 refuses axis=-1 for unpaired samples of several rows
        with warnings.catch_warnings():  # resamples with a NaN statistic are dropped below, not warned about
            warnings.simplefilter("ignore", DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            res = bootstrap([a for a, m in zip(arrays, moving) if m], stat, n_resamples=n_boot, paired=paired,
                            vectorized=True, axis=arrays[0].ndim - 1, confidence_level=level, method="percentile",
                            rng=np.random.default_rng(seed))  # fmt: skip
        dist = np.asarray(res.bootstrap_distribution, dtype=np.float64)
    dist = dist[np.isfinite(dist)]
    if dist.size == 0:
        return [math.nan, math.nan]
    a = (1 - level) / 2
    return [float(np.quantile(dist, a)), float(np.quantile(dist, 1 - a))]


def bootstrap_ci(values: Sequence[float] | np.ndarray, *, denominators: Sequence[float] | np.ndarray | None = None,
                 transform: Callable[[float], float] | None = None, n_boot: int = 200, seed: int = 0,
                 level: float = 0.95) -> list[float]:  # fmt: skip
    """Percentile bootstrap CI over users of ``transform(Σ values / Σ denominators)`` (:func:`percentile_bootstrap`).

    With no ``denominators`` it is the CI of the mean of per-user values; with per-user squared
    error sums, rating counts and ``transform=math.sqrt`` it is the CI of the RMSE over rows.
    Users are resampled with replacement (values and denominators together).
    Reference: Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13.

    Returns:
        ``[lo, hi]``; ``[nan, nan]`` when there are no values or ``n_boot`` is 0.
    """
    num = np.asarray(values, dtype=np.float64).ravel()
    den = np.ones_like(num) if denominators is None else np.asarray(denominators, dtype=np.float64).ravel()
    if num.shape != den.shape:
        raise ValueError(f"values ({num.size}) and denominators ({den.size}) differ in length")
    return percentile_bootstrap([num, den], lambda n, d: _ratio(n, d, transform), n_boot=n_boot, seed=seed,
                                level=level, paired=True)  # fmt: skip


def group_gap(values: Sequence[float] | np.ndarray, groups: Sequence[object] | np.ndarray, *,
              denominators: Sequence[float] | np.ndarray | None = None,
              transform: Callable[[float], float] | None = None, n_boot: int = 200, seed: int = 0,
              min_group_size: int = 5, level: float = 0.95) -> dict:  # fmt: skip
    """Per-group values of a metric, their max-min gap and a bootstrap CI of the gap.

    Each group's value is ``transform(Σ values / Σ denominators)`` over its users (the mean of
    per-user values by default). The gap is ``max_g - min_g`` over groups with at least
    ``min_group_size`` users. Its CI is a percentile bootstrap (:func:`percentile_bootstrap`) of the
    difference between those two groups (best minus worst served, fixed by the point estimate),
    resampling users with replacement *within* each group so group sizes stay fixed. Unlike a
    bootstrap of the max-min over all groups, which is biased upwards and never reaches 0, this
    interval spans 0 when the extreme groups do not differ clearly; it ignores that the pair was
    picked as the extremes, so with many small groups read it as optimistic.
    Reference: group-wise utility gaps as in Ekstrand et al., "All the cool kids, how do they
    fit in?", FAccT 2018; bootstrap as in Efron & Tibshirani 1993.

    Args:
        values: (n_users,) per-user numerators (a metric value, or an error sum).
        groups: (n_users,) group label of each user; None labels are left out.
        denominators: (n_users,) per-user denominators (e.g. rating counts), default 1.

    Returns:
        ``{"groups": {label: value}, "n": {label: users}, "gap", "gap_ci", "max_group", "min_group"}``;
        ``gap``, the groups and ``gap_ci`` are None when fewer than two groups are large enough.
    """
    num = np.asarray(values, dtype=np.float64).ravel()
    den = np.ones_like(num) if denominators is None else np.asarray(denominators, dtype=np.float64).ravel()
    labels = np.asarray([None if g is None else str(g) for g in groups], dtype=object)
    if not (num.size == den.size == labels.size):
        raise ValueError(f"values ({num.size}), denominators ({den.size}) and groups ({labels.size}) differ in length")
    keys = sorted({g for g in labels if g is not None}, key=_label_key)
    members = {g: np.flatnonzero(labels == g) for g in keys}
    per = {g: _stat(num[m], den[m], transform) for g, m in members.items()}
    out: dict = {"groups": per, "n": {g: int(m.size) for g, m in members.items()},
                 "gap": None, "gap_ci": None, "max_group": None, "min_group": None}  # fmt: skip
    big = [g for g in keys if members[g].size >= min_group_size and np.isfinite(per[g])]
    if len(big) < 2:
        return out
    hi, lo = max(big, key=lambda g: per[g]), min(big, key=lambda g: per[g])
    out.update(gap=float(per[hi] - per[lo]), max_group=hi, min_group=lo)
    if n_boot > 0:
        # each group one sample of (numerator, denominator) rows, resampled on its own: hi first, then lo
        pair = [np.stack([num[members[g]], den[members[g]]]) for g in (hi, lo)]
        ci = percentile_bootstrap(pair, lambda a, b: _ratio(a[0], a[1], transform) - _ratio(b[0], b[1], transform),
                                  n_boot=n_boot, seed=seed, level=level)  # fmt: skip
        if np.isfinite(ci).all():
            out["gap_ci"] = ci
    return out


def paired_bootstrap_ci(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, groups: np.ndarray,
                        n_boot: int = 1000, seed: int = 0, *, level: float = 0.95) -> tuple[float, float, float]:  # fmt: skip
    """Paired bootstrap of ``RMSE(b) - RMSE(a)``, resampling groups (users) with replacement.

    Each resample draws as many groups as there are, with replacement, and takes all their rows, so
    the within-user correlation of errors is kept. Negative values mean ``b`` is better.
    The one interval here not drawn by :func:`percentile_bootstrap`: it draws each resample's group
    counts with ``rng.multinomial``, which scipy cannot reproduce, and its draws decide the per-segment
    fine-tuning gate (which models are kept), so another random stream would change fitted models.

    Args:
        y: (n,) true ratings.
        pred_a: (n,) predictions of the reference model.
        pred_b: (n,) predictions of the challenger.
        groups: (n,) group label of each row (e.g. user ids).
        n_boot: number of resamples.
        seed: seed of the resampling.
        level: confidence level of the percentile interval.

    Returns:
        ``(diff, lo, hi)``: the difference on all rows and the percentile interval. NaNs for empty input.
    """
    y = np.asarray(y, np.float64)
    ea = (np.asarray(pred_a, np.float64) - y) ** 2
    eb = (np.asarray(pred_b, np.float64) - y) ** 2
    if len(y) == 0:
        return float("nan"), float("nan"), float("nan")
    diff = float(np.sqrt(eb.mean()) - np.sqrt(ea.mean()))
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(g.max()) + 1
    sa = np.bincount(g, weights=ea, minlength=n_groups)
    sb = np.bincount(g, weights=eb, minlength=n_groups)
    cnt = np.bincount(g, minlength=n_groups).astype(np.float64)
    if n_boot <= 0:
        return diff, diff, diff
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for start in range(0, n_boot, 256):
        m = min(256, n_boot - start)
        w = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=m).astype(np.float64)
        n = w @ cnt
        diffs[start : start + m] = np.sqrt((w @ sb) / n) - np.sqrt((w @ sa) / n)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(diffs, [alpha, 1.0 - alpha])
    return diff, float(lo), float(hi)


def _label_key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)
