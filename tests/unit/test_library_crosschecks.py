"""The library-backed metric functions against the hand-written versions they replaced.

Each hand version below is the code segflow used before (issue 12, "libs"), kept here only as a
cross-check: the library-backed function must give the same numbers (bit for bit where the draws
and formulas agree, to 1e-9 where only rounding can differ), so the figures of a run do not move.
"""

import math

import numpy as np
import pytest
import scipy.stats

from segmentation._metrics import bootstrap_ci, group_gap, percentile_bootstrap, rmse
from segmentation.coldstart import mean_diff_ci

# ----------------------------------------------------------------------------- the hand versions


def _hand_bootstrap_ci(values, *, denominators=None, transform=None, n_boot=200, seed=0, level=0.95):
    num = np.asarray(values, dtype=np.float64).ravel()
    den = np.ones_like(num) if denominators is None else np.asarray(denominators, dtype=np.float64).ravel()
    if num.size == 0 or n_boot <= 0:
        return [math.nan, math.nan]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num.size, (n_boot, num.size))
    sums, dens = num[idx].sum(axis=1), den[idx].sum(axis=1)
    stats = np.divide(sums, dens, out=np.full(n_boot, np.nan), where=dens > 0)
    if transform is not None:
        stats = np.array([transform(s) if np.isfinite(s) else np.nan for s in stats])
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return [math.nan, math.nan]
    a = (1 - level) / 2
    return [float(np.quantile(stats, a)), float(np.quantile(stats, 1 - a))]


def _hand_gap_ci(num, den, hi_rows, lo_rows, transform, n_boot, seed, level=0.95):
    """The within-group bootstrap of the best-minus-worst gap that ``group_gap`` drew by hand."""
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, 2))
    for j, m in enumerate((hi_rows, lo_rows)):
        idx = m[rng.integers(0, m.size, (n_boot, m.size))]
        s, d = num[idx].sum(axis=1), den[idx].sum(axis=1)
        v = np.divide(s, d, out=np.full(n_boot, np.nan), where=d > 0)
        boot[:, j] = [transform(x) if np.isfinite(x) else np.nan for x in v] if transform else v
    gaps = boot[:, 0] - boot[:, 1]
    gaps = gaps[np.isfinite(gaps)]
    a = (1 - level) / 2
    return [float(np.quantile(gaps, a)), float(np.quantile(gaps, 1 - a))] if gaps.size else None


def _hand_mean_ci(d, n_boot, seed):
    """benchmarks/ranking.py's paired_ci before it used bootstrap_ci."""
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, (n_boot, d.size))].mean(axis=1)
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


def _hand_rmse(y, pred):
    """segmentation._predict_mf.rmse before it was folded into _metrics.rmse."""
    if len(y) == 0:
        return float("nan")
    return float(np.sqrt(np.mean((np.asarray(y, np.float64) - np.asarray(pred, np.float64)) ** 2)))


def _same(a, b) -> bool:
    return all((x == y) or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


# ----------------------------------------------------------------------------- bootstrap intervals


@pytest.mark.parametrize("seed", range(8))
def test_bootstrap_ci_equals_the_hand_bootstrap_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for n in (1, 2, 3, 17, 250):
        v = rng.gamma(2.0, 1.0, n)
        d = rng.integers(0 if seed % 2 else 1, 6, n).astype(float)  # odd seeds: some users with no rows
        for kw in ({}, {"denominators": d}, {"denominators": d, "transform": math.sqrt}):
            for n_boot in (0, 1, 50, 200):
                got = bootstrap_ci(v, n_boot=n_boot, seed=seed, **kw)
                assert _same(got, _hand_bootstrap_ci(v, n_boot=n_boot, seed=seed, **kw)), (n, kw.keys(), n_boot)


@pytest.mark.parametrize("seed", range(6))
def test_group_gap_ci_equals_the_hand_bootstrap_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = 120
    num, den = rng.gamma(2.0, 1.0, n), rng.integers(1, 6, n).astype(float)
    groups = rng.choice(["a", "b", "c"], n, p=[0.5, 0.45, 0.05]).tolist()
    groups[0] = "solo"  # a group of one: held fixed, draws nothing
    for transform, dens in ((None, None), (math.sqrt, den)):
        out = group_gap(num, groups, denominators=dens, transform=transform, n_boot=300, seed=seed, min_group_size=1)
        labels = np.asarray(groups, dtype=object)
        rows = {g: np.flatnonzero(labels == g) for g in out["groups"]}
        want = _hand_gap_ci(num, np.ones(n) if dens is None else dens, rows[out["max_group"]], rows[out["min_group"]],
                            transform, 300, seed)  # fmt: skip
        assert out["gap_ci"] == want


def test_ranking_benchmark_interval_and_coldstart_interval_match_their_hand_versions() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.random(400), rng.random(400) * 0.9
    # the same draws; a resample's mean is Σ/n here and np.mean there, which can differ in the last bit
    assert bootstrap_ci(a - b, n_boot=500, seed=3) == pytest.approx(_hand_mean_ci(a - b, 500, 3), abs=1e-12)
    # coldstart.mean_diff_ci called scipy.stats.bootstrap(np.mean) directly; its quantile may differ in the last bit
    old = scipy.stats.bootstrap((b - a,), np.mean, n_resamples=1000, confidence_level=0.95, method="percentile",
                                rng=np.random.default_rng(0)).confidence_interval  # fmt: skip
    d, lo, hi = mean_diff_ci(a, b, seed=0)
    assert d == pytest.approx(float(np.mean(b - a)), abs=1e-15)
    assert lo == pytest.approx(old.low, abs=1e-12) and hi == pytest.approx(old.high, abs=1e-12)


def test_percentile_bootstrap_drops_resamples_whose_statistic_is_not_finite() -> None:
    # the only user with rows has weight 1 of 3: resamples that miss it have a 0/0 statistic and are left out
    num, den = np.array([4.0, 0.0, 0.0]), np.array([2.0, 0.0, 0.0])
    lo, hi = percentile_bootstrap([num, den], lambda n, d: n.sum(-1) / np.where(d.sum(-1) > 0, d.sum(-1), np.nan),
                                  n_boot=100, seed=0, paired=True)  # fmt: skip
    assert lo == hi == 2.0
    assert _same(percentile_bootstrap([np.array([])], lambda x: x.sum(-1), n_boot=10, seed=0), [math.nan, math.nan])


# ----------------------------------------------------------------------------- RMSE


def test_rmse_is_the_rating_models_hand_rmse() -> None:
    rng = np.random.default_rng(1)
    for n in (1, 5, 10_000):
        y, p = rng.integers(1, 6, n).astype(float), rng.normal(3.5, 1.0, n).astype(np.float32)
        assert rmse(y, p) == _hand_rmse(y, p)
    assert math.isnan(rmse([], []))


# ----------------------------------------------------------------------------- the ridge blend


def _hand_ridge(x, y, reg, prior=None):
    """segmentation._predict_global._ridge before scikit-learn: the normal equations solved directly."""
    xa = np.column_stack([np.ones(len(x)), x])
    penalty = np.eye(xa.shape[1]) * reg
    if prior is None:
        penalty[0, 0] = 0.0
        prior = np.zeros(xa.shape[1])
    return np.linalg.solve(xa.T @ xa + penalty, xa.T @ y + penalty @ prior)


def _blend_like(rng, n=9000, c=4):
    """Component predictions like a real blend's: strongly correlated, on the rating scale."""
    y = rng.integers(1, 6, n).astype(float)
    truth = y + rng.normal(0, 0.9, n)
    preds = np.column_stack([0.8 * truth + 0.7 + rng.normal(0, 0.3, n) for _ in range(c)])
    return preds, y


@pytest.mark.parametrize("seed", range(4))
def test_ridge_blend_weights_equal_the_normal_equations(seed: int) -> None:
    from segmentation._predict_global import _ridge

    rng = np.random.default_rng(seed)
    preds, y = _blend_like(rng)
    for reg in (0.0, 1.0, 200.0):
        np.testing.assert_allclose(_ridge(preds, y, reg), _hand_ridge(preds, y, reg), rtol=0, atol=1e-9)
    # the per-segment recalibration: the intercept penalised too, toward the global weights
    prior = _hand_ridge(preds, y, 1.0)
    for reg in (1.0, 200.0):
        np.testing.assert_allclose(_ridge(preds[:300], y[:300], reg, prior=prior),
                                   _hand_ridge(preds[:300], y[:300], reg, prior), rtol=0, atol=1e-9)  # fmt: skip
        two = np.column_stack([np.ones(300), preds[:300, 0]])
        np.testing.assert_allclose(_ridge(two[:, 1:], y[:300], reg, prior=np.array([0.0, 1.0])),
                                   _hand_ridge(two[:, 1:], y[:300], reg, np.array([0.0, 1.0])), rtol=0, atol=1e-9)  # fmt: skip


def test_blend_cross_validation_equals_the_hand_folds() -> None:
    from segmentation._predict_common import _child_seed
    from segmentation._predict_global import GlobalPredictor
    from segmentation.config import PredictorConfig

    rng = np.random.default_rng(5)
    preds, y = _blend_like(rng, n=2000, c=3)
    model = GlobalPredictor(PredictorConfig(model="blend", blend_reg=1.0), seed=11)
    model.components_ = [type("C", (), {"name": n})() for n in ("a", "b", "c")]
    model._fit_blend(preds, y)
    folds = np.array_split(np.random.default_rng(_child_seed(11, "blend-cv")).permutation(len(y)), 5)
    cv = np.zeros(len(y))
    for fold in folds:
        rest = np.ones(len(y), bool)
        rest[fold] = False
        w = _hand_ridge(preds[rest], y[rest], 1.0)
        cv[fold] = w[0] + preds[fold] @ w[1:]
    np.testing.assert_allclose(model.weights_, _hand_ridge(preds, y, 1.0), rtol=0, atol=1e-9)
    assert model.valid_rmse_["model"] == pytest.approx(rmse(y, np.clip(cv, 1.0, 5.0)), abs=1e-12)


# ----------------------------------------------------------------------------- NDCG


def _hand_ndcg_at_k(ranked, relevant, k):
    """_metrics.ndcg_at_k before it became a row of ndcg_from_hits."""
    if not relevant:
        return 0.0
    hits = [1 if i in relevant else 0 for i in list(ranked)[:k]]
    dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hits))
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / idcg


def _hand_ndcg_per_user(scores, seen, relevant, k=10):
    """coldstart.ndcg_per_user before it called ndcg_from_hits."""
    s = np.where(seen, -np.inf, scores)
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(relevant, top, axis=1).astype(np.float64)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    n_rel = relevant.sum(axis=1)
    idcg = np.array([disc[: min(k, int(n))].sum() for n in n_rel])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, (hits @ disc) / idcg, np.nan)


def _hand_sparse_ndcg(tops, relevant_sets, k):
    """The rank-validation formula (rank._validation_ndcg): per-user DCG by bincount over (row, rank) hits."""
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    lens = np.array([len(t) for t in tops])
    rows = np.repeat(np.arange(len(tops)), lens)
    hits = np.array([i in relevant_sets[r] for r, t in enumerate(tops) for i in t], dtype=bool)
    pos = np.concatenate([np.arange(n) for n in lens])
    dcg = np.bincount(rows, weights=hits * disc[pos], minlength=len(tops))
    n_rel = np.minimum([len(r) for r in relevant_sets], k)
    return dcg / np.cumsum(disc)[np.maximum(n_rel, 1) - 1]


@pytest.mark.parametrize("k", [1, 3, 10, 50])
def test_ndcg_at_k_equals_the_hand_formula_bit_for_bit(k: int) -> None:
    from segmentation._metrics import ndcg_at_k

    rng = np.random.default_rng(k)
    items = [str(i) for i in range(80)]
    for _ in range(300):
        ranked = list(rng.choice(items, int(rng.integers(0, 60)), replace=False))
        relevant = set(rng.choice(items, int(rng.integers(0, 30)), replace=False))
        assert ndcg_at_k(ranked, relevant, k) == _hand_ndcg_at_k(ranked, relevant, k)


def test_ndcg_from_hits_equals_the_rank_validation_formula_and_coldstart_ndcg() -> None:
    from segmentation._metrics import ndcg_from_hits
    from segmentation.coldstart import ndcg_per_user

    rng = np.random.default_rng(3)
    n, m, k = 200, 60, 10
    tops = [list(rng.choice(m, int(rng.integers(1, k + 1)), replace=False)) for _ in range(n)]
    rel = [set(rng.choice(m, int(rng.integers(1, 15)), replace=False).tolist()) for _ in range(n)]
    hits = np.zeros((n, k))
    for r, t in enumerate(tops):
        hits[r, : len(t)] = [i in rel[r] for i in t]
    got = ndcg_from_hits(hits, [len(r) for r in rel])
    assert np.array_equal(got, _hand_sparse_ndcg(tops, rel, k))  # bit for bit
    scores, seen, relevant = rng.random((n, m)), rng.random((n, m)) < 0.2, rng.random((n, m)) < 0.1
    relevant[0] = False  # a user with nothing held out: NaN
    want = _hand_ndcg_per_user(scores, seen, relevant)
    have = ndcg_per_user(scores, seen, relevant)
    assert np.isnan(have[0]) and np.isnan(want[0])
    np.testing.assert_allclose(have, want, rtol=0, atol=1e-12)  # the hand version summed by BLAS, here rank by rank


# ----------------------------------------------------------------------------- hdbscan's tree, re-cut


def test_hierarchy_recut_equals_a_public_hdbscan_fit_and_its_dbcv() -> None:
    """Pins the one private hdbscan call (``hdbscan_._tree_to_labels`` in ``selection._Hierarchy.labels``).

    hdbscan has no public way to re-cut a fitted tree at another ``min_cluster_size``; the re-cut must
    give exactly the labels of a public ``HDBSCAN(...).fit`` with those settings, and
    ``relative_validity`` (DBCV for any labelling) hdbscan's public ``relative_validity_`` of that fit.
    If an hdbscan release changes the private function, this fails.
    """
    import hdbscan
    from sklearn.datasets import make_blobs

    from segmentation.selection import _Hierarchy, relative_validity

    x, _ = make_blobs(n_samples=[300, 200, 120, 80], n_features=5, cluster_std=[0.5, 0.8, 0.6, 1.2], random_state=3)
    ms = 10
    tree = _Hierarchy(x, ms, max_size=40)
    compared = 0
    for size in (10, 25, 40):
        for method in ("eom", "leaf"):
            fit = hdbscan.HDBSCAN(min_cluster_size=size, min_samples=ms, cluster_selection_method=method,
                                  gen_min_span_tree=True, core_dist_n_jobs=1).fit(x)  # fmt: skip
            labels = tree.labels(size, method, 0.0)
            assert np.array_equal(labels, fit.labels_), (size, method)
            if labels.max() >= 1:  # two segments or more (hdbscan corrects one-segment DBCV otherwise)
                assert relative_validity(tree.mst, labels) == pytest.approx(fit.relative_validity_, abs=1e-9)
                compared += 1
    assert compared >= 3
