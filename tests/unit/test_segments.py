"""User vectors, UMAP + HDBSCAN segments, new-user assignment and segment profiles (one UMAP warm-up per process)."""

import math

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

from embeddings.encoder import Embeddings
from embeddings.index import VectorIndex
from embeddings.text import describe_items
from segmentation._errors import DataError
from segmentation.cluster import ASSIGNMENTS, NOISE, assign_by_neighbours, fit_segments, most_agreeing
from segmentation.config import ClusterConfig, ReduceConfig
from segmentation.describe import ctfidf, describe_segments, profiles_to_frame, segment_keywords
from segmentation.represent import build_user_vectors
from segmentation.runs import summarise_segmentation


@pytest.fixture(scope="module")
def item_vectors(planted, encoder):
    ds, _ = planted
    d = describe_items(ds.items)
    return Embeddings(d["item_id"].to_numpy(), encoder.encode(d["description"].to_list()), "minilm")


@pytest.fixture(scope="module")
def user_vectors(planted, item_vectors):
    # the representation before 2026-12-05: these tests read the segment step, not the representation (chosen by
    # benchmarks). The fixture's 150 users each spread over their group's two genres; the four-part default weighs
    # the category shares twice and, on so few users, draws one group's genre halves apart (4 segments for 3)
    ds, _ = planted
    return build_user_vectors(ds.interactions, item_vectors, method="item-mean+liked-category-hist", items=ds.items,
                              evidence=None)  # fmt: skip


@pytest.fixture(scope="module")
def planted_vectors_small():
    from segmentation.planted import planted_vectors

    return planted_vectors(1300, k=6, rng=np.random.default_rng(0))


@pytest.fixture(scope="module")
def segmentation(user_vectors):
    return fit_segments(user_vectors, ReduceConfig(), ClusterConfig(), seed=7)


def test_item_mean_is_the_mean_of_chosen_items(planted, item_vectors):
    ds, _ = planted
    u = build_user_vectors(ds.interactions, item_vectors, method="item-mean")
    chosen = ds.interactions.filter(pl.col("user_id") == "u5")["item_id"].to_list()
    expect = item_vectors.take(chosen).mean(axis=0)
    got = u.vectors[list(u.ids).index("u5")]
    assert np.allclose(got, expect / np.linalg.norm(expect), atol=1e-5)
    assert np.allclose(np.linalg.norm(u.vectors, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("method", ["liked-mean", "rating-weighted", "item-mean+profile", "profile"])
def test_other_representations(planted, item_vectors, method):
    ds, _ = planted
    prof = Embeddings(
        np.array(sorted(ds.interactions["user_id"].unique())), np.eye(150, 8, dtype=np.float32) + 0.1, "p"
    )
    u = build_user_vectors(ds.interactions, item_vectors, method=method, profile_embeddings=prof)
    assert len(u.ids) == 150 and np.isfinite(u.vectors).all()
    assert u.vectors.shape[1] == {"item-mean+profile": 392, "profile": 8}.get(method, 384)


@pytest.mark.parametrize(
    "method",
    [
        "category-hist",
        "liked-category-hist",
        "svd",
        "item-mean+liked-category-hist",
        "liked-mean+liked-category-hist",
        "item-mean+svd",
        "item-mean+category-hist+liked-category-hist+category-rating",
    ],
)
def test_behaviour_representations(planted, item_vectors, method):
    ds, truth = planted
    u = build_user_vectors(ds.interactions, item_vectors, method=method, items=ds.items, n_factors=8, seed=0)
    dims = {"category-hist": 6, "liked-category-hist": 6, "category-rating": 6, "svd": 8}
    assert u.vectors.shape == (150, sum(dims.get(p, 384) for p in method.split("+")))
    assert np.allclose(np.linalg.norm(u.vectors, axis=1), 1, atol=1e-5)
    # users of one planted group are more alike than users of different groups
    order = np.array([int(i[1:]) for i in u.ids])
    sim = u.vectors @ u.vectors.T
    same = truth[order][:, None] == truth[order][None, :]
    assert sim[same].mean() > sim[~same].mean() + 0.1


def test_category_hist_counts_categories(planted, item_vectors):
    ds, _ = planted
    u = build_user_vectors(ds.interactions, item_vectors, method="category-hist", items=ds.items)
    names = sorted(ds.items.explode("categories")["categories"].unique().to_list())
    chosen = ds.interactions.filter(pl.col("user_id") == "u5").join(ds.items, on="item_id").explode("categories")
    counts = dict(chosen.group_by("categories").len().iter_rows())
    expect = np.array([counts.get(c, 0) for c in names], dtype=float)
    assert np.allclose(u.vectors[list(u.ids).index("u5")], expect / np.linalg.norm(expect), atol=1e-5)


def test_representation_errors(planted, item_vectors):
    ds, _ = planted
    with pytest.raises(ValueError, match="expected one of"):
        build_user_vectors(ds.interactions, item_vectors, method="median")
    with pytest.raises(ValueError, match="needs profile_embeddings"):
        build_user_vectors(ds.interactions, item_vectors, method="profile")
    with pytest.raises(ValueError, match="needs items"):
        build_user_vectors(ds.interactions, item_vectors, method="item-mean+liked-category-hist")
    bad = ds.interactions.with_columns(pl.lit("nope").alias("item_id"))
    with pytest.raises(
        DataError, match=rf"{bad.height} interactions refer to items without an embedding \(e.g. item 'nope'\)"
    ):
        build_user_vectors(bad, item_vectors, method="item-mean")
    bare = ds.items.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("categories"))
    with pytest.raises(DataError, match="no categories"):
        build_user_vectors(ds.interactions, item_vectors, method="category-hist", items=bare)
    fused = build_user_vectors(ds.interactions, item_vectors, method="item-mean+liked-category-hist", items=bare)
    plain = build_user_vectors(ds.interactions, item_vectors, method="item-mean")
    assert np.allclose(fused.vectors[:, :384], plain.vectors, atol=1e-5)


@pytest.mark.umap
def test_segments_recover_planted_groups(planted, segmentation, user_vectors):
    _, truth = planted
    a = segmentation.assignments
    assert segmentation.n_segments == 3
    labels = a["segment_id"].to_numpy()
    order = [int(u[1:]) for u in a["user_id"]]
    mask = labels != NOISE
    assert adjusted_rand_score(truth[order][mask], labels[mask]) > 0.9
    assert segmentation.noise_share < 0.1
    assert (a["nearest_segment"] >= 0).all()  # every user, outliers too, has a nearest segment
    assert a.select(pl.col("x").is_finite().all(), pl.col("y").is_finite().all()).row(0) == (True, True)
    sizes = a.filter(pl.col("segment_id") >= 0).group_by("segment_id").len().sort("segment_id")["len"].to_list()
    assert sizes == sorted(sizes, reverse=True)  # segment 0 is the largest
    # the final outlier rule's record, and its envelopes give the fit's outliers back (what `segflow assign` reads)
    assert segmentation.outliers is not None and segmentation.outliers["outliers"] == int((labels < 0).sum())
    assert segmentation.outliers["reads_categories"] and segmentation.seconds["outliers"] >= 0
    envelopes = segmentation.envelopes
    assert envelopes is not None and envelopes.directions.shape[0] == segmentation.n_segments
    far = envelopes.far(user_vectors.vectors, a["nearest_segment"].to_numpy(), user_vectors.activity,
                        user_vectors.category_counts)  # fmt: skip
    np.testing.assert_array_equal(far, labels < 0)


@pytest.mark.umap
def test_members_move_by_what_they_chose_and_the_record_says_so(user_vectors, segmentation):
    """``cluster.category_reassign`` (on by default) moves members before the outliers are judged, by their counts per
    (rating level, category), and records it; off, nothing moves and nothing is recorded."""
    record = segmentation.reassigned
    assert record is not None and record["level"] == 0.5 and segmentation.seconds["reassign"] >= 0
    assert record["rating_levels"] == user_vectors.choice_counts.shape[1] // user_vectors.category_counts.shape[1] > 1
    assert set(record) == {"level", "rating_levels", "proposed_share", "max_share", "applied", "moved", "refused"}
    # the fixture's groups choose their own genres: few members are misplaced by them
    assert record["applied"] and record["proposed_share"] <= 0.1 and record["moved"] <= 0.1 * len(user_vectors.ids)
    assert segmentation.envelopes is not None and segmentation.envelopes.choices is not None  # assign moves users too
    off = fit_segments(user_vectors, ReduceConfig(), ClusterConfig(category_reassign=None), seed=7, picture=False)
    assert off.reassigned is None and "reassign" not in off.seconds and off.envelopes.choices is None
    changed = (off.assignments["segment_id"] != segmentation.assignments["segment_id"]).sum()
    assert changed <= record["moved"] + off.outliers["outliers"] + segmentation.outliers["outliers"]


@pytest.mark.umap
def test_seeded_segmentation_is_reproducible(user_vectors, segmentation):
    again = fit_segments(user_vectors, ReduceConfig(), ClusterConfig(), seed=7)
    assert again.assignments.equals(segmentation.assignments)


@pytest.mark.umap
def test_new_users_are_assigned(planted, user_vectors, segmentation):
    """The 30 "new" users are left out of the index, so each is placed by other users' segments, not by itself."""
    index = VectorIndex().fit(user_vectors.ids[30:], user_vectors.vectors[30:])
    got = assign_by_neighbours(user_vectors.vectors[:30], index, segmentation.assignments, k=10)
    truth = dict(zip(segmentation.assignments["user_id"], segmentation.assignments["nearest_segment"]))
    expect = [truth[u] for u in user_vectors.ids[:30]]
    assert (got["segment_id"].to_numpy() == np.array(expect)).mean() > 0.9
    assert got["confidence"].min() > 0.5


@pytest.mark.umap
def test_large_inputs_fit_on_a_sample_and_extend(planted_vectors_small):
    from segmentation.reduce import Reducer

    p = planted_vectors_small
    users = Embeddings(np.array([f"v{i}" for i in range(len(p.labels))], dtype=object), p.vectors, "planted")
    seg = fit_segments(users, ReduceConfig(sample_size=1000), ClusterConfig(), seed=3)
    assert seg.n_fitted == 1000 and seg.assignments.height == len(p.labels)
    labels = seg.assignments["segment_id"].to_numpy()
    keep = p.labels >= 0
    assert adjusted_rand_score(p.labels[keep], labels[keep]) > 0.8
    assert seg.selection is not None and seg.selection.config.min_cluster_size == seg.min_cluster_size
    assert np.isfinite(seg.coords).all() and seg.assignments["x"].is_finite().all()
    # past sample_size, reduce.sample_fits (3) samples were fitted and the one agreeing most with the others kept
    fits = seg.sample_fits
    assert fits is not None and fits["seeds"] == [3, 4, 5] and len(fits["segments"]) == 3
    agree = np.array(fits["ari"])
    assert agree.shape == (3, 3) and np.allclose(agree, agree.T) and np.allclose(np.diag(agree), 1)
    best = fits["seeds"].index(fits["chosen_seed"])
    assert fits["mean_ari_with_the_others"][best] == max(fits["mean_ari_with_the_others"])
    assert summarise_segmentation(seg)["sample_fits"] == fits  # metrics.json -> segmentation.sample_fits
    # the kept fit is that seed's one-sample fit, and the picture was fitted for it (not its clustering axes)
    one = fit_segments(users, ReduceConfig(sample_size=1000, sample_fits=1), ClusterConfig(), seed=fits["chosen_seed"])
    assert one.sample_fits is None and one.assignments.equals(seg.assignments)
    assert "sample_fits" not in summarise_segmentation(one)
    assert not np.allclose(seg.assignments["x"].to_numpy(), seg.coords[:, 0])
    # new rows land among the fitted rows of their own planted segment
    reducer = Reducer(5, sample_size=1000, random_state=3).fit(p.vectors)
    rows = np.flatnonzero(keep)[:200]
    again = reducer.transform(p.vectors[rows])
    fitted = reducer.embedding_[reducer.sample_]
    nearest = reducer.sample_[np.argmin(((again[:, None, :] - fitted[None, :, :]) ** 2).sum(-1), axis=1)]
    assert (p.labels[nearest] == p.labels[rows]).mean() > 0.8


def test_the_most_agreeing_labelling_is_the_medoid():
    merged = np.array([0] * 20 + [1] * 10)
    split = np.array([0] * 10 + [2] * 10 + [1] * 10)
    renamed = np.array([5] * 10 + [7] * 10 + [6] * 10)  # the split under other ids: the same partition
    best, agree, mean = most_agreeing([merged, split, renamed])
    assert best == 1 and agree[1, 2] == 1.0 and agree[0, 1] < 0.8 and np.allclose(agree, agree.T)
    assert np.allclose(mean, [agree[0, 1:].mean(), (agree[1, 0] + agree[1, 2]) / 2, agree[2, :2].mean()])
    assert most_agreeing([split, merged, merged])[0] == 1  # two agree: the first of them
    assert most_agreeing([merged, split])[0] == 0  # a tie: the first (the run's own seed)


@pytest.mark.umap
def test_too_few_users_is_a_clear_error(user_vectors):
    small = Embeddings(user_vectors.ids[:20], user_vectors.vectors[:20], "m")
    with pytest.raises(DataError, match="too few for segments"):
        fit_segments(small, ReduceConfig(), ClusterConfig(), seed=0)


def test_too_few_users_fails_before_any_umap_work(monkeypatch):
    """The check runs first: no UMAP fit (35-55 s of numba compilation in a fresh process) is paid for it."""
    from segmentation import reduce as reduce_module

    def no_umap(*args, **kwargs):
        raise AssertionError("UMAP was fitted before the user count was checked")

    monkeypatch.setattr(reduce_module.Reducer, "fit_transform", no_umap)
    rng = np.random.default_rng(0)
    small = Embeddings(np.array([f"u{i}" for i in range(25)]), rng.normal(size=(25, 8)).astype(np.float32), "m")
    with pytest.raises(DataError, match="25 users are too few for segments of at least 15"):
        fit_segments(small, ReduceConfig(), ClusterConfig(), seed=0)
    with pytest.raises(DataError, match="too few for segments of at least 20 users"):
        fit_segments(small, ReduceConfig(), ClusterConfig(min_cluster_size=20), seed=0)
    with pytest.raises(DataError, match="too few for a 5-d UMAP"):
        fit_segments(Embeddings(small.ids[:4], small.vectors[:4], "m"), ReduceConfig(), ClusterConfig(), seed=0)


@pytest.mark.umap
def test_profiles_explain_planted_segments(planted, segmentation, user_vectors):
    ds, truth = planted
    profiles = describe_segments(segmentation.assignments, ds.interactions, ds.items, describe_items(ds.items),
                                 ds.users, top_n=5, user_vectors=user_vectors.vectors)  # fmt: skip
    real = [p for p in profiles if p.segment_id >= 0]
    assert len(real) == 3 and sum(p.size for p in profiles) == 150
    # each planted group likes two genres: every segment's top two categories are one planted pair
    pairs = [{"Action", "Comedy"}, {"Drama", "Horror"}, {"Romance", "Sci-Fi"}]
    for p in real:
        assert set(p.top_categories[:2]) in pairs, p.top_categories
        assert p.category_lift[0] > 2
        assert p.top_categories[0] in p.name
        assert len(p.representative_users) == 5
        assert {d.name for d in p.demographics} == {"gender", "age"}
    assert len({p.name for p in profiles}) == len(profiles)
    frame = profiles_to_frame(profiles)
    assert frame.height == len(profiles) and frame["size"].sum() == 150
    # assignments in another order than the vectors: vector_rows points at each one's vector (no reordered copy)
    order = np.random.default_rng(0).permutation(segmentation.assignments.height)
    again = describe_segments(segmentation.assignments[order], ds.interactions, ds.items, describe_items(ds.items),
                              ds.users, top_n=5, user_vectors=user_vectors.vectors, vector_rows=order)  # fmt: skip
    assert [set(p.representative_users) for p in again] == [set(p.representative_users) for p in profiles]
    wrong = describe_segments(segmentation.assignments[order], ds.interactions, ds.items, describe_items(ds.items),
                              ds.users, top_n=5, user_vectors=user_vectors.vectors)  # fmt: skip
    assert [set(p.representative_users) for p in wrong] != [set(p.representative_users) for p in profiles]


def _hand_class_tfidf(counts: dict[int, dict[str, int]]) -> dict[int, dict[str, float]]:
    """The hand-written c-TF-IDF segflow used before scikit-learn: w(t,c) = tf(t,c)/|c| * log(1 + A/f(t))."""
    total: dict[str, int] = {}
    for cnt in counts.values():
        for t, v in cnt.items():
            total[t] = total.get(t, 0) + v
    avg = sum(total.values()) / len(counts)
    return {c: {t: (v / sum(cnt.values())) * math.log(1 + avg / total[t]) for t, v in cnt.items()}
            for c, cnt in counts.items()}  # fmt: skip


def test_ctfidf_matches_the_hand_written_formula():
    rng = np.random.default_rng(3)
    dense = rng.integers(0, 6, size=(5, 12)).astype(float)
    dense[:, 4] = 0  # a term no class uses
    dense[2, :] = 0  # a class with no words
    got = ctfidf(sp.csr_matrix(dense)).toarray()
    hand = _hand_class_tfidf(
        {c: {str(t): int(dense[c, t]) for t in range(12) if dense[c, t]} for c in range(5) if dense[c].any()}
    )
    # the hand version averages over classes with words; give ctfidf the same classes
    got_nonempty = ctfidf(sp.csr_matrix(dense[dense.sum(axis=1) > 0])).toarray()
    for row, c in enumerate(sorted(hand)):
        for t, w in hand[c].items():
            assert got_nonempty[row, int(t)] == pytest.approx(w, abs=1e-9)
    assert np.all(got[2] == 0) and np.all(got[:, 4] == 0)
    # BERTopic's example: class 0 says "space" twice, class 1 "love" twice, both say "film" twice
    w = ctfidf(sp.csr_matrix(np.array([[2.0, 2.0, 0.0], [0.0, 2.0, 2.0]]))).toarray()  # space, film, love
    assert w[0, 0] == pytest.approx(0.5 * math.log(1 + 4 / 2)) and w[0, 1] == pytest.approx(0.5 * math.log(1 + 4 / 4))


def _catalogue(text: list[str] | None = None) -> pl.DataFrame:
    genres = [["Animation", "Children's"], ["Animation", "Comedy"], ["Sci-Fi", "Action", "unknown"], ["Sci-Fi", "Thriller"],
              ["Drama"], ["Drama", "Romance"]]  # fmt: skip
    titles = ["Toy Story (1995)", "Aladdin (1992)", "Star Wars (1977)", "Star Trek: First Contact (1996)",
              "Dead Man Walking (1995)", "The Man Who Knew Too Little (1997)"]  # fmt: skip
    return pl.DataFrame({"item_id": [str(i) for i in range(6)], "title": titles, "year": [None] * 6,
                         "categories": genres, "text": text or [""] * 6},
                        schema={"item_id": pl.String, "title": pl.String, "year": pl.Int32,
                                "categories": pl.List(pl.String), "text": pl.String})  # fmt: skip


def _liked() -> pl.DataFrame:
    # segment 0 likes the cartoons, segment 1 the space films, segment 2 the dramas; everyone likes item 4 once
    pairs = [
        (0, "0"),
        (0, "1"),
        (0, "0"),
        (0, "4"),
        (1, "2"),
        (1, "3"),
        (1, "2"),
        (1, "4"),
        (2, "4"),
        (2, "5"),
        (2, "5"),
    ]
    return pl.DataFrame({"segment_id": [p[0] for p in pairs], "item_id": [p[1] for p in pairs]},
                        schema={"segment_id": pl.Int32, "item_id": pl.String})  # fmt: skip


def test_profiles_do_not_depend_on_how_the_log_is_chunked():
    """The same rows in one chunk or in many give bit-identical profiles (polars' std of a many-chunk column
    differed from the one-chunk std in its last bit, and two runs of the same data wrote different segments.parquet).
    """
    items = _catalogue()
    rng = np.random.default_rng(0)
    n_users, rows = 40, 3000
    users = [f"u{k}" for k in range(n_users)]
    log = pl.DataFrame({"user_id": rng.choice(users, rows), "item_id": rng.choice(items["item_id"].to_list(), rows),
                        "rating": rng.choice([1.0, 2.0, 3.0, 3.5, 4.0, 5.0], rows)})  # fmt: skip
    assignments = pl.DataFrame({"user_id": users, "segment_id": [k % 3 - (k == 7) * (k % 3 + 1) for k in range(n_users)],
                                "membership": [1.0] * n_users, "nearest_segment": [k % 3 for k in range(n_users)],
                                "nearest_membership": [1.0] * n_users, "soft_assigned": [False] * n_users,
                                "x": [0.0] * n_users, "y": [0.0] * n_users}, schema=ASSIGNMENTS)  # fmt: skip
    chunked = log.slice(0, 37)
    for start in range(37, rows, 37):
        chunked = chunked.vstack(log.slice(start, 37))
    assert chunked.n_chunks() > 50 and log.n_chunks() == 1
    one = profiles_to_frame(describe_segments(assignments, log, items, describe_items(items), None))
    many = profiles_to_frame(describe_segments(assignments, chunked, items, describe_items(items), None))
    assert one.equals(many), [c for c in one.columns if not one[c].equals(many[c])]
    assert one["rating_std"].is_finite().all() and (one["rating_std"] > 0).all()


def test_keywords_come_from_categories_not_titles():
    items = _catalogue()
    titles = {i: t for i, t in zip(items["item_id"], items["title"])}
    kw = segment_keywords(_liked(), items, titles, top_n=3)
    assert kw[0][0] == "animation" and set(kw[0]) <= {"animation", "children's", "comedy"}
    assert kw[1][0] == "sci-fi" and set(kw[1]) <= {"sci-fi", "action", "thriller"}  # not MovieLens's "unknown"
    assert set(kw[2]) == {"romance", "drama"}  # romance first: drama is everyone's (item 4), c-TF-IDF weighs it down
    title_words = {"toy", "story", "aladdin", "star", "wars", "trek", "dead", "man", "knew", "little"}
    assert not title_words & {k for v in kw.values() for k in v}


def test_keywords_from_tags_and_text_leave_out_shown_categories():
    text = ["Tags: pixar, talking toys", "Tags: pixar, genie, musical numbers", "Tags: space opera, jedi",
            "Tags: space, borg, jedi", "Tags: death penalty, prison", "Tags: desert, war, prison"]  # fmt: skip
    items = _catalogue(text)
    kw = segment_keywords(_liked(), items, top_n=4, shown_categories={0: ["Animation"], 1: ["Sci-Fi", "Action"]})
    assert kw[0][0] == "pixar" and "animation" not in kw[0]  # shown in its lift list: not repeated
    assert "children's" in kw[0] or "comedy" in kw[0]  # categories its lift list does not show may stay
    assert set(kw[1][:2]) == {"jedi", "space"} and "sci-fi" not in kw[1]
    assert "prison" in kw[2]
    # min_df: a word on one item only ("borg", "genie") is no keyword; "tags" is a stop word
    every = {k for v in kw.values() for k in v}
    assert not every & {"borg", "genie", "tags", "talking"}


def test_keywords_of_items_with_nothing_but_a_title():
    items = _catalogue().with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("categories"))
    titles = {i: t for i, t in zip(items["item_id"], items["title"])}
    kw = segment_keywords(_liked(), items, titles, top_n=3)
    # the two space films share "star", the dramas "man"; other title words occur once (min_df)
    assert kw[1] == ["star"] and kw[2] == ["man"]
    assert segment_keywords(_liked(), items, {}, top_n=3) == {0: [], 1: [], 2: []}


def test_keywords_of_category_only_data_keep_the_shown_categories():
    # MovieLens 100k: genres only, some films' genre is the placeholder "unknown" (their descriptions, the fallback,
    # then say "Genres: unknown"); a title-only fallback is no tag or text, so shown genres stay keywords
    items = _catalogue()
    cats = items["categories"].to_list()
    cats[4] = cats[5] = ["unknown"]
    items = items.with_columns(pl.Series("categories", cats, dtype=pl.List(pl.String)))
    desc = dict(zip(*describe_items(items).to_dict(as_series=False).values()))
    assert desc["5"].endswith("Genres: unknown")
    kw = segment_keywords(_liked(), items, desc, top_n=3, shown_categories={0: ["Animation"], 1: ["Sci-Fi"]})
    assert kw[0][0] == "animation" and kw[1][0] == "sci-fi"
    assert "unknown" not in {k for v in kw.values() for k in v}


def _toy_world(name: str, seed: int):
    """A small planted world whose item embeddings share one large common direction, as sentence embeddings do."""
    from segmentation.synthetic import world_log

    log = world_log(name, 800, n_items=600, seed=seed)
    items = log.items.select("item_id", pl.col("categories").str.split("|"))
    cats = sorted({c for cs in items["categories"] for c in cs})
    rng = np.random.default_rng(0)
    directions = dict(zip(cats, rng.normal(size=(len(cats), 32)), strict=True))
    common = 3.0 * rng.normal(size=32)
    vectors = np.stack([common + directions[cs[0]] + 0.5 * rng.normal(size=32) for cs in items["categories"]])
    truth = dict(zip(log.labels["user_id"].to_list(), log.labels["segment"].to_list(), strict=True))
    return log.interactions, items, Embeddings(items["item_id"].to_numpy(), vectors.astype(np.float32), "toy"), truth


def test_centred_parts_are_the_parts_less_the_mean_user():
    inter, items, emb, _ = _toy_world("taste", 0)
    got = build_user_vectors(inter, emb, method="item-mean+category-hist", items=items, centre=True, evidence=None)
    mean = build_user_vectors(inter, emb, method="item-mean", centre=False)  # the mean item vector, normalised
    hist = build_user_vectors(inter, emb, method="category-hist", items=items, centre=False)
    ids = list(mean.ids)
    raw_mean = np.stack([emb.take(inter.filter(pl.col("user_id") == u)["item_id"].to_list()).mean(axis=0) for u in ids])
    raw_hist = hist.vectors / hist.vectors.sum(axis=1, keepdims=True)  # shares per category
    assert np.allclose(raw_mean / np.linalg.norm(raw_mean, axis=1, keepdims=True), mean.vectors, atol=1e-5)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    expect = unit(np.hstack([unit(raw_mean - raw_mean.mean(axis=0)), unit(raw_hist - raw_hist.mean(axis=0))]))
    assert list(got.ids) == ids
    assert np.allclose(got.vectors, expect, atol=1e-4)
    # off by default in the library call (a few new users must not be centred on their own mean)
    plain = build_user_vectors(inter, emb, method="item-mean+category-hist", items=items, evidence=None)
    assert np.allclose(plain.vectors, unit(np.hstack([mean.vectors, hist.vectors])), atol=1e-5)


@pytest.mark.parametrize("centre", [True, False])
def test_user_vectors_in_blocks_are_bit_identical_to_one_float64_table(centre):
    """The embedding means go into the float32 table a block of users at a time (the mean user summed over the
    blocks in row order): the same bits as centring, normalising and casting the whole float64 table at once."""
    from embeddings.partitions import Partitions

    inter, items, emb, _ = _toy_world("taste", 0)
    got = build_user_vectors(inter, emb, method="item-mean+category-hist", items=items, centre=centre,
                             partitions=Partitions(rows=97))  # fmt: skip
    ids = list(got.ids)
    rows = {u: k for k, u in enumerate(ids)}
    cols = {i: k for k, i in enumerate(emb.ids)}
    w = sp.csr_matrix((np.ones(inter.height), ([rows[u] for u in inter["user_id"]], [cols[i] for i in inter["item_id"]])),
                      shape=(len(ids), len(emb.ids)))  # fmt: skip
    table = np.asarray(sp.diags(1.0 / np.asarray(w.sum(axis=1)).ravel()) @ w @ emb.vectors)  # float64, whole
    if centre:
        table -= table.mean(axis=0, keepdims=True)
    table /= np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    alone = build_user_vectors(inter, emb, method="item-mean", centre=centre, partitions=Partitions(rows=97))
    assert np.array_equal(alone.vectors, table.astype(np.float32))
    # a fusion in blocks of 97 users or in one block: the same bits
    whole = build_user_vectors(inter, emb, method="item-mean+category-hist", items=items, centre=centre)
    assert got.vectors.shape[0] == len(ids) and got.vectors.shape[1] > emb.dim  # the histogram's columns follow
    assert np.array_equal(got.vectors, whole.vectors)


@pytest.mark.parametrize("world", ["taste", "style"])
def test_centring_lets_both_parts_of_a_fusion_find_neighbours(world):
    # uncentred, the item-mean part barely moves between users (every item shares the common direction), so the
    # fusion reads its category part alone; centred, both count: more of each user's neighbours share their segment
    from sklearn.neighbors import NearestNeighbors

    inter, items, emb, truth = _toy_world(world, 0)

    def purity(centre: bool) -> float:
        u = build_user_vectors(inter, emb, method="item-mean+liked-category-hist", items=items, centre=centre)
        t = np.array([truth[x] for x in u.ids])
        keep = t >= 0
        nn = NearestNeighbors(n_neighbors=11, metric="cosine").fit(u.vectors)
        idx = nn.kneighbors(u.vectors[keep], return_distance=False)[:, 1:]
        return float((t[idx] == t[keep][:, None]).mean())

    assert purity(True) > purity(False) + 0.015


def test_the_default_configuration_centres_and_the_flow_passes_it(monkeypatch):
    import segmentation.represent as represent
    from segmentation.config import PipelineConfig, RepresentConfig

    assert RepresentConfig().centre is True
    seen = {}
    monkeypatch.setattr(represent, "_build", lambda *a, **kw: seen.update(kw) or ("users", "space"))
    monkeypatch.setattr(represent, "describe_users", lambda *a, **kw: "profiles")

    class _Split:
        train_full = None

    config = PipelineConfig().model_copy(update={"represent": RepresentConfig(centre=False, max_categories=7)})
    assert represent.represent_users(_Split(), None, None, config, None) == ("users", "profiles", "space")
    assert seen["centre"] is False and seen["max_categories"] == 7 and seen["evidence"] == config.represent.evidence
