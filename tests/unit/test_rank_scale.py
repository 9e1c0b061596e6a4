"""Rankers at scale: ALS (implicit), EASE's one-eigendecomposition grid, the dense budget and the choice by size."""

import logging

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from segmentation._errors import ConfigError
from segmentation.config import RankerConfig
from segmentation.rank import ALS, EASE, ItemKNN, MostPopular, RP3beta, SegflowRanker, choose_rankers
from segmentation.rank.base import dense_mib
from segmentation.rank.ease import EIGH_FROM, EaseSpectrum, ease_weights
from segmentation.synthetic import synthetic_log

SMALL_ALS = RankerConfig(als_factors_grid=[8, 16], als_reg_grid=[0.01, 0.1], als_iterations_grid=[3, 8])


@pytest.fixture(scope="module")
def explicit() -> pl.DataFrame:
    return synthetic_log(150, 120, mean_per_user=15, seed=1).interactions


@pytest.fixture(scope="module")
def implicit_log() -> pl.DataFrame:
    return synthetic_log(150, 120, mean_per_user=15, feedback="implicit", seed=2).interactions


# ----------------------------------------------------------------------------- ALS


@pytest.mark.parametrize("kind", ["explicit", "implicit"])
def test_als_fits_on_the_carve_and_lists_unseen_items(kind, explicit, implicit_log):
    train = explicit if kind == "explicit" else implicit_log
    r = ALS(SMALL_ALS).fit(train, seed=0, implicit=kind == "implicit")
    # the grid: 2 factors x 2 ridges, each fit scored after sweeps 3 and 8
    assert len(r.validation_) == 8
    assert {(v["factors"], v["reg"], v["iterations"]) for v in r.validation_} == {
        (f, g, i) for f in (8, 16) for g in (0.01, 0.1) for i in (3, 8)}  # fmt: skip
    best = max(r.validation_, key=lambda v: v["ndcg@10"])
    assert {k: r.params_[k] for k in ("factors", "reg", "iterations")} == {
        k: best[k] for k in ("factors", "reg", "iterations")}  # fmt: skip
    users = train["user_id"].unique().sort().to_list()[:40]
    out = r.recommend(users, 10)
    seen = set(zip(train["user_id"], train["item_id"]))
    assert not any((u, i) in seen for u, i in zip(out["user_id"], out["item_id"])), "seen items are filtered"
    assert out.group_by("user_id").len()["len"].to_list() == [10] * 40
    for _, g in out.group_by("user_id"):
        assert np.all(np.diff(g["score"].to_numpy()) <= 0)
    # with seen items allowed, a user's own items come back (the filter is what removed them)
    again = r.recommend(users[:5], 10, exclude_seen=False)
    assert any((u, i) in seen for u, i in zip(again["user_id"], again["item_id"]))
    # the lists follow the model's scores: the same as ranking the dense scores of those users
    rows = r.users_.lookup(users[:5])
    dense = r._scores(rows)
    x = r.data_.x[rows].toarray() > 0
    dense[x] = -np.inf
    for u, row in zip(users[:5], dense):
        want = r.items_.ids[np.lexsort((np.arange(len(row)), -row))[:10]].tolist()
        assert out.filter(pl.col("user_id") == u)["item_id"].to_list() == want


def test_als_explicit_confidence_is_the_liked_indicator(explicit):
    r = ALS(SMALL_ALS.model_copy(update={"like_threshold": 4.0})).fit(explicit, seed=0)
    conf = r._confidence(r.data_)
    assert conf.nnz == int((explicit["rating"] >= 4.0).sum()) < r.data_.x.nnz
    assert set(np.unique(conf.data)) == {1.0}


def test_als_recommends_without_a_dense_users_by_items_table(explicit, monkeypatch):
    r = ALS(SMALL_ALS).fit(explicit, seed=0)
    want = r.recommend(["u0", "nobody", "u3"], 5)

    def no_dense(*_a, **_k):
        raise AssertionError("ALS.recommend built dense scores")

    monkeypatch.setattr(ALS, "_scores", no_dense)
    got = r.recommend(["u0", "nobody", "u3"], 5)
    assert got.equals(want)
    # unknown users get the most popular items
    pop = MostPopular().fit(explicit).recommend(["nobody"], 5)
    assert got.filter(pl.col("user_id") == "nobody")["item_id"].to_list() == pop["item_id"].to_list()
    # candidates: a list for everyone, and per-user pairs, agree with each other
    items = explicit["item_id"].unique().sort().to_list()[:30]
    by_list = r.recommend(["u0", "u3"], 5, candidates=items)
    pairs = pl.DataFrame({"user_id": ["u0"] * 30 + ["u3"] * 30, "item_id": items * 2})
    by_pairs = r.recommend(["u0", "u3"], 5, candidates=pairs)
    assert set(by_list["item_id"]) <= set(items)
    assert by_pairs["item_id"].to_list() == by_list["item_id"].to_list()
    np.testing.assert_allclose(by_pairs["score"].to_numpy(), by_list["score"].to_numpy(), rtol=1e-12)


def test_als_threads_setting_reaches_implicit_and_changes_no_list(explicit):
    every = ALS(SMALL_ALS).fit(explicit, seed=0)
    one = ALS(SMALL_ALS.model_copy(update={"threads": 1})).fit(explicit, seed=0)
    assert every.model_.num_threads == 0 and one.model_.num_threads == 1  # 0: implicit uses every core
    users = explicit["user_id"].unique().sort().to_list()
    assert one.params_ == every.params_
    assert one.recommend(users, 10)["item_id"].equals(every.recommend(users, 10)["item_id"])


def test_als_grid_above_grid_max_users_fits_a_sample_of_the_carve_and_the_final_fit_every_user(explicit, monkeypatch,
                                                                                               caplog):  # fmt: skip
    """Above ranker.grid_max_users each grid candidate is fitted on the carve's rows of a seeded sample of users (the
    matrix the fit sees has that many rows), the final fit on every user; with the cap off, or at its default on
    small data, the fits and the lists are those of before."""
    from implicit.cpu.als import AlternatingLeastSquares

    from segmentation.rank.base import carve_mask

    seen: list[sp.csr_matrix] = []
    fit = AlternatingLeastSquares.fit

    def spy(self, user_items, *args, **kwargs):
        seen.append(user_items.copy())
        return fit(self, user_items, *args, **kwargs)

    monkeypatch.setattr(AlternatingLeastSquares, "fit", spy)
    n_users = explicit["user_id"].n_unique()
    runs = {}
    for label, cap in (("off", None), ("default", "default"), ("forced", 60)):
        seen.clear()
        config = SMALL_ALS if cap == "default" else SMALL_ALS.model_copy(update={"grid_max_users": cap})
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="segmentation.rank.base"):
            r = ALS(config).fit(explicit, seed=0)
        runs[label] = (r, list(seen), caplog.text)
    users = explicit["user_id"].unique().sort().to_list()
    off, off_fits, off_log = runs["off"]
    assert [m.shape[0] for m in off_fits] == [n_users] * 5 and "grid_max_users" not in off_log  # 4 candidates, 1 final
    default, default_fits, _ = runs["default"]
    assert default.validation_ == off.validation_ and default.params_ == off.params_
    assert all((a != b).nnz == 0 for a, b in zip(default_fits, off_fits))
    assert default.recommend(users, 10).equals(off.recommend(users, 10))
    forced, forced_fits, forced_log = runs["forced"]
    assert [m.shape[0] for m in forced_fits] == [60] * 4 + [n_users]  # the grid sees the sample, the final fit all
    assert (forced_fits[-1] != forced._confidence(forced.data_)).nnz == 0
    # the sample's rows are the carve's own rows of those users (the carve's seeded draw after its row mask)
    rng = np.random.default_rng(0)
    carve_mask(explicit.height, SMALL_ALS.valid_fraction, rng)
    sample = np.sort(rng.choice(n_users, 60, replace=False))
    assert all((m != off_fits[0][sample]).nnz == 0 for m in forced_fits[:4])
    assert f"validation grid on a seeded uniform sample of 60 of the {n_users} train users" in forced_log
    assert "over ranker.grid_max_users = 60; the final fit on every user" in forced_log
    assert len(forced.validation_) == 8 and forced.model_.user_factors.shape[0] == n_users


# ----------------------------------------------------------------------------- EASE: one eigh for every lambda


def test_ease_spectrum_equals_the_inverse_for_every_lambda(explicit):
    r = MostPopular().fit(explicit)
    x = r.data_.x
    spectrum = EaseSpectrum(x)
    for reg in (1.0, 10.0, 100.0, 500.0):
        b = ease_weights(x, reg)
        np.testing.assert_allclose(spectrum.weights(reg), b, rtol=0, atol=1e-8)
        for rows in (x[:40], x):  # fewer rows than items (the low-rank path), and more
            np.testing.assert_allclose(spectrum.scores(rows, reg), rows @ b, rtol=0, atol=1e-8)


class _InverseEASE(EASE):
    """Today's EASE before the change: one inverse per candidate."""

    def _fit_model(self, data, items, emb, seed):
        def score(carve, p):
            return np.asarray(carve.fit.x[carve.users] @ ease_weights(carve.fit.x, p["reg"]))

        self.params_ = self._select([{"reg": r} for r in self.config.ease_reg_grid], score, seed)
        self.b_ = ease_weights(data.x, self.params_["reg"])


@pytest.mark.parametrize("n_regs", [5, EIGH_FROM])
def test_ease_grid_decomposes_once_when_long_and_chooses_as_before(n_regs, explicit, monkeypatch):
    cfg = RankerConfig(ease_reg_grid=list(np.geomspace(1.0, 500.0, n_regs)))
    old = _InverseEASE(cfg).fit(explicit, seed=3)
    calls = {"eigh": 0, "inv": 0}
    eigh, inv = np.linalg.eigh, np.linalg.inv

    def count(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)

        return wrapped

    monkeypatch.setattr(np.linalg, "eigh", count("eigh", eigh))
    monkeypatch.setattr(np.linalg, "inv", count("inv", inv))
    new = EASE(cfg).fit(explicit, seed=3)
    if n_regs >= EIGH_FROM:
        assert calls == {"eigh": 1, "inv": 1}, "one eigh for every lambda, one inverse for the final fit"
    else:
        assert calls == {"eigh": 0, "inv": n_regs + 1}, "a short grid inverts per lambda"
    assert new.params_ == old.params_
    assert [v["ndcg@10"] for v in new.validation_] == [v["ndcg@10"] for v in old.validation_]
    users = explicit["user_id"].unique().sort().to_list()
    assert new.recommend(users, 10).equals(old.recommend(users, 10))


# ----------------------------------------------------------------------------- budget and choice by size


def test_choice_by_size_keeps_small_runs_and_picks_als_above_the_budget(caplog):
    cfg = RankerConfig()
    with caplog.at_level(logging.INFO, logger="segmentation.rank"):
        small = choose_rankers(cfg, 943, 1682)  # MovieLens 100k: as configured
        big = choose_rankers(cfg, 100_000, 20_000)
    assert small.names == cfg.rankers == ["most-popular", "item-knn", "ease", "segflow"]
    assert big.names == ["most-popular", "als"]
    assert "over ranker.dense_budget_mib = 1,536" in big.reason and "left out: item-knn, ease, segflow" in big.reason
    assert "within ranker.dense_budget_mib" in small.reason
    assert big.reason in caplog.text and small.reason in caplog.text
    # the budget, not the item count alone, decides: a cap forced low sends a tiny log to ALS
    low = choose_rankers(RankerConfig(dense_budget_mib=1), 50, 200)
    assert low.names == ["most-popular", "als"] and dense_mib(200) > 1
    # max_items bounds what a dense ranker holds, so the estimate reads at most max_items items
    assert choose_rankers(RankerConfig(max_items=1000), 10, 50_000).names == cfg.rankers
    assert "(on the 10,000 items ranker.max_items keeps)" in choose_rankers(cfg, 10, 50_000).reason


def test_segflow_ranker_falls_back_to_als_above_the_budget(caplog):
    tiny = SMALL_ALS.model_copy(update={"dense_budget_mib": 1})
    train = synthetic_log(150, 400, mean_per_user=15, seed=1).interactions
    assert dense_mib(train["item_id"].n_unique()) > 1
    with caplog.at_level(logging.INFO, logger="segmentation.rank"):
        seg = SegflowRanker(tiny).fit(train, seed=0)
    assert "falling back to ALS" in caplog.text and "dense_budget_mib = 1:" in caplog.text
    assert seg.params_["fallback"] == "als" and not hasattr(seg, "b_")
    als = ALS(tiny).fit(train, seed=0)
    users = train["user_id"].unique().sort().to_list()[:30]
    assert seg.recommend(users, 10).equals(als.recommend(users, 10))
    # over the budget even at max_items: the fallback keeps the whole catalogue (no max_items cut, no warning)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="segmentation.rank"):
        capped = SegflowRanker(tiny.model_copy(update={"max_items": 200})).fit(train, seed=0)
    assert "falling back to ALS" in caplog.text and "ranker.max_items" not in caplog.text
    assert len(capped.fallback_.items_) == train["item_id"].n_unique() > 200
    # the same instance refitted within the budget is the segflow ranker again
    assert "fallback" not in SegflowRanker(SMALL_ALS).fit(train, seed=0).params_
    refit = seg
    refit.config = SMALL_ALS
    assert "fallback" not in refit.fit(train, seed=0).params_ and refit.fallback_ is None


@pytest.mark.parametrize("cls", [EASE, ItemKNN, RP3beta])
def test_dense_rankers_refuse_to_fit_above_the_budget(cls):
    train = synthetic_log(100, 400, mean_per_user=10, seed=4).interactions
    refusal = r"items need about .* MiB .* over ranker.dense_budget_mib = 1; use the 'als'"
    with pytest.raises(ConfigError, match=refusal):
        cls(RankerConfig(dense_budget_mib=1)).fit(train)
    # within the budget the same data fits
    user = train["user_id"][0]
    assert cls(RankerConfig(dense_budget_mib=10, ease_reg_grid=[10.0])).fit(train).recommend([user], 3).height == 3


def test_dense_recommend_holds_a_bounded_score_block(explicit, monkeypatch):
    import segmentation.rank.base as base

    r = EASE(RankerConfig(ease_reg_grid=[10.0])).fit(explicit)
    users = explicit["user_id"].unique().sort().to_list()
    want = r.recommend(users, 10)
    sizes = []
    scores = EASE._scores

    def spy(self, rows):
        sizes.append(len(rows))
        return scores(self, rows)

    monkeypatch.setattr(EASE, "_scores", spy)
    monkeypatch.setattr(base, "_CHUNK_CELLS", 3 * len(r.items_))  # three users' scores at a time
    assert r.recommend(users, 10).equals(want)
    assert max(sizes) == 3 and sum(sizes) == len(users)
