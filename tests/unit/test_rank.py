"""Rankers: one contract for every ranker, oracle data with a known answer, closed forms, segment helpers."""

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from embeddings.encoder import Embeddings
from segmentation._errors import ConfigError, DataError, NotFittedError
from segmentation.config import RankerConfig
from segmentation.data import Vocab
from segmentation.rank import (
    EASE,
    RANKERS,
    RECOMMENDATIONS,
    SEGMENT_ITEMS,
    MostPopular,
    SegflowRanker,
    make_ranker,
    recommend_for_segment,
    segment_top_items,
)
from segmentation.rank.base import top_k, train_matrices
from segmentation.rank.ease import ease_weights
from segmentation.rank.segflow import LikedEase

# Small grids keep every fit well under a second.
FAST = RankerConfig(ease_reg_grid=[5.0, 20.0], rp3_alpha_grid=[0.8], rp3_beta_grid=[0.3, 0.6],
                    segflow_like_weights=[1.0], segflow_target_weights=[1.0], segflow_reg_grid=[2.0, 10.0],
                    segflow_dropouts=[0.0], segflow_content_weights=[0.0, 0.1], knn_neighbors=10,
                    als_factors_grid=[8], als_reg_grid=[0.01, 0.1], als_iterations_grid=[5, 15])  # fmt: skip


def checkerboard(n: int = 24) -> pl.DataFrame:
    """User u likes every item of its parity except item u (the oracle's answer: item u first).

    Implicit's ``get_checker_board`` idea: the held-back diagonal is the best recommendation.
    Ids are numbers, so that numeric tie-breaking is exercised ("10" after "9").
    """
    rows = [(str(u), str(i), 5.0, 0) for u in range(n) for i in range(n) if i % 2 == u % 2 and i != u]
    return pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "rating": pl.Float64,
                                      "timestamp": pl.Int64}, orient="row")  # fmt: skip


def random_ratings(n_users: int = 40, n_items: int = 30, per_user: int = 8, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, per_user, replace=False):
            rows.append((f"u{u}", f"i{i}", float(rng.integers(1, 6)), 0))
    return pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "rating": pl.Float64,
                                      "timestamp": pl.Int64}, orient="row")  # fmt: skip


def item_embeddings(ids: list[str], dim: int = 8, seed: int = 0) -> Embeddings:
    v = np.random.default_rng(seed).normal(size=(len(ids), dim)).astype(np.float32)
    return Embeddings(np.asarray(ids, dtype=object), v / np.linalg.norm(v, axis=1, keepdims=True), "stub")


@pytest.fixture(scope="module")
def board() -> pl.DataFrame:
    return checkerboard()


@pytest.fixture(scope="module")
def rated() -> pl.DataFrame:
    return random_ratings()


def fit(name: str, train: pl.DataFrame, **kw) -> object:
    emb = item_embeddings(sorted(set(train["item_id"]))) if name == "segflow" else None
    return make_ranker(name, FAST).fit(train, item_embeddings=emb, seed=0, **kw)


# ----------------------------------------------------------------------------- contract, every ranker


@pytest.mark.parametrize("name", RANKERS)
def test_contract(name, rated):
    r = fit(name, rated)
    users = ["u0", "u1", "u7"]
    out = r.recommend(users, 5)
    assert out.schema == RECOMMENDATIONS
    assert out["user_id"].unique(maintain_order=True).to_list() == users
    seen = set(zip(rated["user_id"], rated["item_id"]))
    for u, g in out.group_by("user_id", maintain_order=True):
        assert g["rank"].to_list() == list(range(1, g.height + 1))
        assert g.height == 5
        s = g["score"].to_numpy()
        assert np.all(np.diff(s) <= 0), "scores never increase down the list"
        assert not any((u[0], i) in seen for i in g["item_id"]), "seen items are excluded"
    # batch == one by one, and the same seed gives the same lists
    single = pl.concat([r.recommend([u], 5) for u in users])
    assert out.equals(single)
    assert fit(name, rated).recommend(users, 5).equals(out)


@pytest.mark.parametrize("name", RANKERS)
def test_contract_edges(name, rated):
    r = fit(name, rated)
    # unknown users get the most popular items
    pop = MostPopular().fit(rated).recommend(["nobody"], 4)
    assert r.recommend(["nobody"], 4)["item_id"].to_list() == pop["item_id"].to_list()
    # k beyond the catalogue: every unseen item once
    n_seen = rated.filter(pl.col("user_id") == "u0").height
    assert r.recommend(["u0"], 1000).height == rated["item_id"].n_unique() - n_seen
    # exclude_seen=False may list seen items; candidates restrict the list
    assert r.recommend(["u0"], 1000, exclude_seen=False).height == rated["item_id"].n_unique()
    got = r.recommend(["u0", "u1"], 10, exclude_seen=False, candidates=["i1", "i2", "zzz"])
    assert set(got["item_id"]) <= {"i1", "i2"} and got.height == 4
    frame = pl.DataFrame({"user_id": ["u0"], "item_id": ["i3"]})
    got = r.recommend(["u0", "u1"], 10, exclude_seen=False, candidates=frame)
    assert got.select("user_id", "item_id").rows() == [("u0", "i3")]
    assert r.recommend([], 5).schema == RECOMMENDATIONS
    with pytest.raises(ValueError, match="k must be"):
        r.recommend(["u0"], 0)


@pytest.mark.parametrize("name", RANKERS)
def test_not_fitted_and_bad_input(name):
    r = make_ranker(name, FAST)
    with pytest.raises(NotFittedError):
        r.recommend(["u0"], 3)
    with pytest.raises(DataError, match="user_id and item_id"):
        r.fit(pl.DataFrame({"user": ["a"], "item_id": ["1"]}))


def test_segflow_rejects_bad_dropout():
    with pytest.raises(ConfigError, match="segflow_dropouts"):
        SegflowRanker(RankerConfig(segflow_dropouts=[1.0]))


def test_make_ranker_unknown_lists_valid_names():
    with pytest.raises(ValueError, match="most-popular, item-knn, ease, rp3beta, als, segflow"):
        make_ranker("svd", RankerConfig())


# ----------------------------------------------------------------------------- oracle


@pytest.mark.parametrize("name", ["item-knn", "ease", "rp3beta", "als", "segflow"])
def test_checkerboard_oracle(name, board):
    """Each user's held-back diagonal item is the only unseen item of its own parity: it must come first."""
    r = fit(name, board)
    users = [str(u) for u in range(24)]
    top = r.recommend(users, 1)
    assert top["item_id"].to_list() == users


def test_most_popular_ties_break_by_numeric_id():
    train = pl.DataFrame({"user_id": ["a", "b", "a", "b", "c"], "item_id": ["10", "10", "9", "2", "2"],
                          "rating": [5.0] * 5})  # fmt: skip
    # popularity: 10 -> 2, 2 -> 2, 9 -> 1: the tie between "10" and "2" goes to 2 (numeric order)
    out = MostPopular().fit(train).recommend(["z"], 3)
    assert out["item_id"].to_list() == ["2", "10", "9"]
    assert out["score"].to_list() == [2.0, 2.0, 1.0]


def test_items_frame_widens_catalogue(rated):
    items = pl.DataFrame({"item_id": ["cold"]})
    r = EASE(FAST).fit(rated, items=items)
    assert "cold" in set(r.recommend(["u0"], 1000)["item_id"])


# ----------------------------------------------------------------------------- closed forms


def test_ease_symmetric_and_asymmetric_forms_agree():
    x = sp.csr_matrix((np.random.default_rng(1).random((30, 12)) < 0.3).astype(float))
    b_sym = ease_weights(x, 3.0)
    b_asym = ease_weights(x, 3.0, target=x)
    np.testing.assert_allclose(b_sym, b_asym, atol=1e-10)
    assert np.allclose(np.diag(b_sym), 0.0)
    # B is the zero-diagonal ridge solution: column j regresses x_j on the other columns
    g = (x.T @ x).toarray()
    j = 4
    others = [i for i in range(12) if i != j]
    sol = np.linalg.solve(g[np.ix_(others, others)] + 3.0 * np.eye(11), g[others, j])
    np.testing.assert_allclose(b_sym[others, j], sol, atol=1e-10)


def test_liked_ease_decomposition_matches_direct_solution(rated):
    users, items = Vocab.from_ids(sorted(set(rated["user_id"]))), Vocab.from_ids(sorted(set(rated["item_id"])))
    data = train_matrices(rated, users, items, 4.0)
    parts = LikedEase(data, 0.5)
    b0, bl = parts.weights(7.0, 0.25)
    direct = ease_weights(parts.x_in, 7.0 * parts.scale, dropout=0.25, target=(data.x + 2.0 * data.liked).tocsr())
    np.testing.assert_allclose(b0 + 2.0 * bl, direct, atol=1e-9)


def test_matrices_keep_last_duplicate_and_implicit_likes():
    f = pl.DataFrame({"user_id": ["a", "a"], "item_id": ["1", "1"], "rating": [2.0, 5.0]})
    d = train_matrices(f, Vocab.from_ids(["a"]), Vocab.from_ids(["1"]), 4.0)
    assert d.x.toarray().tolist() == [[1.0]] and d.r.toarray().tolist() == [[5.0]] and d.liked.nnz == 1
    implicit = train_matrices(
        f.with_columns(pl.lit(1.0).alias("rating")), Vocab.from_ids(["a"]), Vocab.from_ids(["1"]), 4.0
    )
    assert implicit.liked.nnz == 1, "with no rating above the threshold every interaction counts as liked"


def test_segflow_records_validation_and_skips_content_without_embeddings(rated):
    r = SegflowRanker(FAST).fit(rated, seed=3)
    assert r.params_["beta"] == 0.0
    assert len(r.validation_) == 2 and all("ndcg@10" in v for v in r.validation_)
    with_emb = SegflowRanker(FAST).fit(rated, item_embeddings=item_embeddings(sorted(set(rated["item_id"]))))
    assert len(with_emb.validation_) == 4


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(-2, 2), min_size=7, max_size=7), min_size=1, max_size=5),
       st.integers(1, 8))  # fmt: skip
def test_top_k_matches_stable_sort(rows, k):
    """Exact top-k with many ties and -inf entries equals a stable sort on -score."""
    s = np.array(rows, dtype=float)
    s[s == -2] = -np.inf
    for row, got in zip(s, top_k(s, k)):
        order = np.argsort(-row, kind="stable")
        want = [j for j in order if np.isfinite(row[j])][:k]
        assert got.tolist() == want


# ----------------------------------------------------------------------------- segments


def test_segment_top_items_hand_example():
    recs = pl.DataFrame({"user_id": ["a", "a", "b", "b", "c"], "item_id": ["1", "2", "1", "3", "3"],
                         "rank": [1, 2, 1, 2, 1], "score": [0.9, 0.5, 0.8, 0.4, 0.7]},
                        schema=RECOMMENDATIONS)  # fmt: skip
    assignments = pl.DataFrame({"user_id": ["a", "b", "c"], "segment_id": [0, 0, 1]})
    train = pl.DataFrame({"user_id": ["a", "c", "c"], "item_id": ["2", "2", "1"], "rating": [5.0, 4.0, 2.0]})
    items = pl.DataFrame({"item_id": ["1", "2", "3"], "title": ["One", "Two", "Three"]})
    out = segment_top_items(recs, assignments, train=train, items=items, n=2)
    assert out.schema == SEGMENT_ITEMS
    seg0 = out.filter(pl.col("segment_id") == 0)
    # item 1 is in both members' lists; items 2 and 3 in one each; 2 wins the tie as a liked item
    assert seg0["item_id"].to_list() == ["1", "2"] and seg0["title"].to_list() == ["One", "Two"]
    assert seg0["rec_share"].to_list() == [1.0, 0.5]
    assert seg0["liked_share"].to_list() == [0.0, 0.5]
    # item 2 is liked by both train users (a, c): base share 1.0; by half of segment 0 -> lift 0.5
    assert seg0["lift"][1] == pytest.approx(0.5)
    assert out.filter(pl.col("segment_id") == 1)["item_id"].to_list() == ["3"]


def test_recommend_for_segment(rated):
    r = EASE(FAST).fit(rated)
    out = recommend_for_segment(r, ["u0", "u1", "u2"], n=3, k=5, train=rated)
    assert out.height == 3 and out["rank"].to_list() == [1, 2, 3]
    assert (out["rec_share"] > 0).all()


def test_max_items_keeps_most_popular(rated, caplog):
    cfg = FAST.model_copy(update={"max_items": 10})
    with caplog.at_level("WARNING", logger="segmentation.rank"):
        r = EASE(cfg).fit(rated)
    assert len(r.items_) == 10 and "ranker.max_items" in caplog.text
    counts = rated.group_by("item_id").len().sort(["len", "item_id"], descending=[True, False])
    assert set(r.items_.ids) == set(counts["item_id"].head(10))
    assert set(r.recommend(["u0"], 100)["item_id"]) <= set(r.items_.ids)


# ----------------------------------------------------------------------------- implicit feedback


def test_implicit_weights_are_log_confidence_and_every_interaction_is_liked():
    f = pl.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["1", "2", "1"], "rating": [1.0, 9.0, 3.0]})
    users, items = Vocab.from_ids(["a", "b"]), Vocab.from_ids(["1", "2"])
    d = train_matrices(f, users, items, 4.0, implicit=True)
    np.testing.assert_allclose(d.r.toarray(), np.log1p([[1.0, 9.0], [3.0, 0.0]]) * (d.x.toarray() > 0))
    assert d.liked.nnz == d.x.nnz == 3, "play counts are not stars: a count of 3 is still a choice"
    explicit = train_matrices(f, users, items, 4.0)
    assert explicit.liked.nnz == 1  # the old reading: only the 9 meets the star threshold


def test_item_knn_uses_implicit_weights():
    """The same pairs with other play counts give other item-kNN scores (the weight feeds the ranker)."""
    base = random_ratings(seed=4).with_columns(pl.lit(1.0).alias("rating"))
    rng = np.random.default_rng(0)
    weighted = base.with_columns(pl.Series("rating", rng.geometric(0.1, base.height).astype(np.float64)))
    users = sorted(set(base["user_id"]))[:5]
    flat = make_ranker("item-knn", FAST).fit(base, implicit=True).recommend(users, 5)
    heavy = make_ranker("item-knn", FAST).fit(weighted, implicit=True).recommend(users, 5)
    assert not np.allclose(flat["score"].to_numpy(), heavy["score"].to_numpy())


def test_segflow_on_implicit_data_searches_neither_like_nor_target_weight():
    """With every interaction liked, a and w only rescale X; the scores and the choice are those of a = w = 0."""
    data = random_ratings(seed=5).with_columns(pl.lit(1.0).alias("rating"))
    wide = RankerConfig(segflow_like_weights=[0.5, 1.0], segflow_target_weights=[1.0, 2.0], segflow_reg_grid=[2.0, 10.0],
                        segflow_dropouts=[0.0], segflow_content_weights=[0.0])  # fmt: skip
    r = SegflowRanker(wide).fit(data, implicit=True, seed=0)
    assert len(r.validation_) == 2  # the two ridges, not 2 x 2 x 2
    one = RankerConfig(segflow_like_weights=[0.0], segflow_target_weights=[0.0], segflow_reg_grid=[r.params_["reg"]],
                       segflow_dropouts=[0.0], segflow_content_weights=[0.0])  # fmt: skip
    plain = SegflowRanker(one).fit(data, implicit=True, seed=0)
    users = sorted(set(data["user_id"]))
    np.testing.assert_allclose(r._scores(np.arange(len(users))), plain._scores(np.arange(len(users))), atol=1e-9)
