"""Cold start: the protocol's split, the segment-prior predictor, the ranking helpers and the planted variant."""

import numpy as np
import polars as pl
import pytest

from segmentation._errors import ConfigError, DataError
from segmentation._metrics import ndcg_at_k
from segmentation.coldstart import (
    SegmentPriorPredictor,
    cold_start_split,
    mean_diff_ci,
    ndcg_per_user,
    pick_new_users,
    planted_segment_behaviour,
    segment_priors,
)
from segmentation.config import MFConfig, PredictorConfig
from segmentation.data import INTERACTIONS, Split
from segmentation.predict import fit_global_predictor


def _log(n_users: int = 40, n_items: int = 30, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, 15, replace=False)
        for j, i in enumerate(items):
            rows.append((str(u), str(i), float(rng.integers(1, 6)), 1000 + 10 * j + int(rng.integers(0, 5))))
    return pl.DataFrame(rows, schema=INTERACTIONS, orient="row")


def test_cold_start_split_keeps_first_k_of_new_users_only():
    log = _log()
    new = pick_new_users(log["user_id"], 0.25, seed=0)
    assert len(new) == 10 and new == pick_new_users(log["user_id"], 0.25, seed=0)
    cold = cold_start_split(log, new, 3)
    assert cold.train.height + cold.held_out.height == log.height
    counts = dict(cold.train.group_by("user_id").len().iter_rows())
    assert all(counts[u] == 3 for u in new)
    assert all(counts[u] == 15 for u in counts if u not in new)
    assert set(cold.held_out["user_id"]) == set(new)
    for u in new:  # the kept rows are the earliest ones
        kept = cold.train.filter(pl.col("user_id") == u)["timestamp"].max()
        assert kept <= cold.held_out.filter(pl.col("user_id") == u)["timestamp"].min()


def test_cold_start_bad_settings_raise_clear_errors():
    log = _log()
    with pytest.raises(ConfigError, match="share of new users must be between 0 and 1"):
        pick_new_users(log["user_id"], 1.5, seed=0)
    with pytest.raises(ConfigError, match="must be at least 1"):
        cold_start_split(log, ["1"], 0)
    with pytest.raises(DataError, match="no 'timestamp' column"):
        cold_start_split(log.drop("timestamp"), ["1"], 1)


@pytest.fixture(scope="module")
def mf():
    log = _log(60, 30, seed=1)
    m = pl.Series(np.random.default_rng(0).random(log.height) < 0.1)
    split = Split(train=log.filter(~m), valid=log.filter(m), test=log.head(0), method="t")
    cfg = PredictorConfig(model="mf", refit=False, mf=MFConfig(embedding_size=4, epochs=3), threads=1)
    return fit_global_predictor(split, cfg, seed=0)


def test_prior_predictor_pulls_toward_the_prior_and_recovers_own_parameters(mf):
    p = mf.params_
    items = [str(i) for i in range(30)]
    inums = mf.item_vocab_.lookup(pl.Series(items))
    prior = np.array([0.4, 0.1, -0.2, 0.3, 0.05])
    true = np.array([-0.3, 0.5, 0.2, -0.4, 0.1])
    y = p.mu + p.item_bias[inums] + true[0] + p.item_factors[inums] @ true[1:]
    rows = pl.DataFrame({"user_id": ["new"] * 30, "item_id": items, "rating": y})
    frame = pl.DataFrame({"user_id": ["new", "0"], "item_id": ["3", "4"]})
    # a huge pull: the prior alone
    strong = SegmentPriorPredictor(mf, 1e9).fit(rows.head(1), {"new": prior})
    i3 = int(mf.item_vocab_.lookup(pl.Series(["3"]))[0])
    expect = p.mu + prior[0] + p.item_bias[i3] + p.item_factors[i3] @ prior[1:]
    out = strong.predict(frame)
    assert out[0] == pytest.approx(np.clip(expect, *mf.rating_range_), abs=1e-6)
    assert out[1] == mf.predict(frame)[1]  # users with history are untouched
    # a tiny pull and enough exact ratings: the user's own parameters
    weak = SegmentPriorPredictor(mf, 1e-6).fit(rows, {"new": prior})
    np.testing.assert_allclose(weak.theta_["new"], true, atol=1e-3)


def test_segment_priors_are_segment_means(mf):
    p = mf.params_
    nums = np.arange(6)
    labels = np.array([0, 0, 1, 1, 1, -1])
    pri = segment_priors(p, nums, labels)
    assert pri[1][0] == pytest.approx(p.user_bias[2:5].mean(), rel=1e-6)
    np.testing.assert_allclose(pri[0][1:], p.user_factors[:2].mean(axis=0), rtol=1e-5)
    assert pri[-1][0] == pytest.approx(p.user_bias[:6].mean(), rel=1e-6)


def test_ndcg_per_user_matches_the_metric_and_skips_seen_items():
    rng = np.random.default_rng(0)
    scores = rng.random((5, 20))
    seen = rng.random((5, 20)) < 0.2
    rel = (rng.random((5, 20)) < 0.3) & ~seen
    rel[4] = False
    got = ndcg_per_user(scores, seen, rel, k=10)
    for r in range(4):
        ranked = [str(j) for j in np.argsort(-np.where(seen[r], -np.inf, scores[r]), kind="stable")]
        assert got[r] == pytest.approx(ndcg_at_k(ranked, {str(j) for j in np.flatnonzero(rel[r])}, 10))
    assert np.isnan(got[4])


def test_mean_diff_ci_brackets_a_clear_shift():
    rng = np.random.default_rng(0)
    a = rng.random(300)
    d, lo, hi = mean_diff_ci(a, a + 0.1 + rng.normal(0, 0.05, 300), seed=0)
    assert 0 < lo < d < hi and d == pytest.approx(0.1, abs=0.02)
    d, lo, hi = mean_diff_ci(a, a + rng.normal(0, 0.05, 300), seed=0)
    assert lo < 0 < hi


def test_planted_segment_behaviour_plants_item_taste_per_segment(ml100k):
    items = ml100k.items
    planted, info = planted_segment_behaviour(items, 800, k=4, taste=1.0, rng=np.random.default_rng(0))
    assert info["taste"].shape == (4, items.height) and info["stretch"].shape == (4,)
    log = planted.interactions.join(planted.truth, on="user_id")
    pos = {i: j for j, i in enumerate(items["item_id"].to_list())}
    for s in range(4):  # a segment's item means follow its own taste more than another segment's
        means = log.filter(pl.col("segment_id") == s).group_by("item_id").agg(pl.col("rating").mean(), pl.len())
        means = means.filter(pl.col("len") >= 5)
        j = np.array([pos[i] for i in means["item_id"]])
        own = np.corrcoef(means["rating"], info["taste"][s, j])[0, 1]
        other = np.corrcoef(means["rating"], info["taste"][(s + 1) % 4, j])[0, 1]
        assert own > 0.3 and own > other + 0.2
