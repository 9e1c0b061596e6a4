"""The rating blend's memory budget: kNN similarities in blocks, AutoRec without an items x users table, the byte
estimate, and the deprecated cell cap that still loads."""

import logging
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.special import expit

import segmentation._predict_components as comp
from segmentation._errors import ConfigError
from segmentation._predict_components import AutoRec, AutoRecSettings, FitData, KNNBaseline, component_mib
from segmentation._predict_mf import Ratings
from segmentation.config import PredictorConfig, load_config


def _ratings(n_users: int, n_items: int, per_user: int, seed: int = 0) -> Ratings:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    return Ratings(users, items, rng.integers(1, 6, len(users)).astype(np.float64), None)


def _data(r: Ratings, n_users: int, n_items: int) -> FitData:
    return FitData(r, r.subset(np.zeros(len(r), bool)), n_users, n_items, (1.0, 5.0))


def _dense_neighbours(x: sp.csr_matrix, m: sp.csr_matrix, shrinkage: float, c: int) -> tuple[np.ndarray, np.ndarray]:
    """The similarity as it was computed before the blocks: whole entities x entities tables."""
    x2 = x.multiply(x).tocsr()
    num, sq, common = (x.T @ x).toarray(), (x2.T @ m).toarray(), (m.T @ m).toarray()
    den = np.sqrt(sq * sq.T)
    with np.errstate(divide="ignore", invalid="ignore"):
        sim = np.where(den > 0, num / den, 0.0)
    sim *= np.maximum(common - 1, 0) / (np.maximum(common - 1, 0) + shrinkage)
    np.fill_diagonal(sim, 0.0)
    nb = np.argpartition(-sim, c - 1, axis=1)[:, :c]
    nb_sim = np.take_along_axis(sim, nb, axis=1)
    order = np.argsort(-nb_sim, axis=1, kind="stable")
    return np.take_along_axis(nb, order, axis=1), np.take_along_axis(nb_sim, order, axis=1)


@pytest.mark.parametrize("user_based", [False, True])
def test_knn_similarities_in_blocks_equal_the_whole_table(monkeypatch, user_based: bool) -> None:
    n_users, n_items = 300, 120
    r = _ratings(n_users, n_items, 15)
    whole = KNNBaseline(user_based=user_based, candidates=40).fit(_data(r, n_users, n_items), torch.Generator())
    monkeypatch.setattr(comp, "KNN_BLOCK_CELLS", 1000)  # blocks of 3 to 8 entities, predictions in pieces
    blocks = KNNBaseline(user_based=user_based, candidates=40).fit(_data(r, n_users, n_items), torch.Generator())
    np.testing.assert_array_equal(blocks.tensors_["neighbors"], whole.tensors_["neighbors"])
    np.testing.assert_array_equal(blocks.tensors_["neighbor_sims"], whole.tensors_["neighbor_sims"])
    np.testing.assert_array_equal(blocks.predict(r.users, r.items), whole.predict(r.users, r.items))
    # and both are the similarity computed on whole tables
    mu, bu, bi = comp.baseline_biases(r, n_users, n_items)
    rows, cols, shape = (r.items, r.users, (n_items, n_users)) if user_based else (r.users, r.items, (n_users, n_items))
    x = sp.csr_matrix((r.ratings - mu - bu[r.users] - bi[r.items], (rows, cols)), shape=shape)
    m = sp.csr_matrix((np.ones(len(r)), (rows, cols)), shape=shape)
    nb, nb_sim = _dense_neighbours(x, m, 100.0, 40)
    np.testing.assert_array_equal(whole.tensors_["neighbors"], nb)
    np.testing.assert_array_equal(whole.tensors_["neighbor_sims"], nb_sim.astype(np.float32))


def test_user_knn_holds_no_users_x_users_table(monkeypatch) -> None:
    """3,000 users: one users x users float64 table is 69 MiB (the fit before the blocks held several); the blocks
    hold what KNN_BLOCK_CELLS allows (here 65,536 cells: 21 users at a time)."""
    n_users, n_items = 3000, 200
    r = _ratings(n_users, n_items, 10)
    data = _data(r, n_users, n_items)
    monkeypatch.setattr(comp, "KNN_BLOCK_CELLS", 1 << 16)
    tracemalloc.start()
    try:
        KNNBaseline(user_based=True, candidates=50).fit(data, torch.Generator())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB"


def test_autorec_predicts_by_item_blocks_as_from_the_whole_table(monkeypatch) -> None:
    n_users, n_items = 80, 60
    r = _ratings(n_users, n_items, 12)
    valid = _ratings(n_users, n_items, 2, seed=1)
    settings = AutoRecSettings(hidden=16, epochs=3, batch_size=16)
    monkeypatch.setattr(comp, "AUTOREC_BLOCK_CELLS", 200)  # blocks of 2 items
    model = AutoRec(settings).fit(FitData(r, valid, n_users, n_items, (1.0, 5.0)), torch.Generator().manual_seed(0))
    t = model.tensors_
    x = np.zeros((n_items, n_users), np.float32)
    x[r.items, r.users] = r.ratings
    whole = expit(x @ t["enc_weight"].T + t["enc_bias"]) @ t["dec_weight"].T + t["dec_bias"]
    users, items = np.array([0, 5, 79, -1, 3]), np.array([59, 0, 7, 2, -1])
    pred = model.predict(users, items)
    np.testing.assert_allclose(pred[:3], whole[items[:3], users[:3]], rtol=1e-6)
    assert pred[3] == pytest.approx(t["mu"][0] + t["item_bias"][2]) and np.isfinite(pred).all()
    assert len(model.history_) == 3 and all(h["valid_rmse"] is not None for h in model.history_)


def test_component_estimates_grow_with_what_each_component_holds() -> None:
    assert component_mib("mf", 10**6, 10**5) == component_mib("svdpp", 10**6, 10**5) == 0.0
    # kNN: neighbours kept per entity (1,000), not entities squared
    assert component_mib("user-knn", 20_000, 10) == pytest.approx(2 * component_mib("user-knn", 10_000, 10) - 80)
    assert component_mib("item-knn", 10, 500) == pytest.approx(16 * 500 * 500 / 2**20 + 80)
    assert component_mib("autorec", 2000, 1000) == pytest.approx(36 * 2e6 / 2**20 + 192)
    # the default budget keeps the 10k-user blend whole and leaves AutoRec out at 20k users x 4k items
    budget = PredictorConfig().dense_budget_mib
    assert all(component_mib(n, 10_000, 2_000) <= budget for n in ("item-knn", "user-knn", "autorec"))
    assert component_mib("autorec", 20_000, 4_000) > budget >= component_mib("user-knn", 20_000, 4_000)


def test_the_deprecated_cell_cap_loads_as_a_byte_budget_with_a_warning(tmp_path, caplog) -> None:
    (tmp_path / "old.toml").write_text("[predictor]\nmax_dense_cells = 100000000\n")
    with caplog.at_level(logging.WARNING, logger="segmentation.config"):
        assert load_config(tmp_path / "old.toml").predictor.dense_budget_mib == 763  # 1e8 float64 cells, rounded up
    assert "predictor.max_dense_cells = 100000000 -> predictor.dense_budget_mib = 763" in caplog.text
    assert str(tmp_path / "old.toml") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="segmentation.config"):
        assert load_config(None, ["predictor.max_dense_cells=1"]).predictor.dense_budget_mib == 1
    assert "predictor.dense_budget_mib = 1" in caplog.text
    # a --set of the new key wins over the file's old one (the file is migrated first)
    assert load_config(tmp_path / "old.toml", ["predictor.dense_budget_mib=64"]).predictor.dense_budget_mib == 64
    with pytest.raises(ConfigError, match="are both given; keep only predictor.dense_budget_mib"):
        load_config(None, ["predictor.max_dense_cells=10", "predictor.dense_budget_mib=64"])
    with pytest.raises(ConfigError, match="must be a whole number of cells"):
        load_config(None, ["predictor.max_dense_cells=0"])
    assert PredictorConfig.model_validate({"max_dense_cells": 2**20}).dense_budget_mib == 8
