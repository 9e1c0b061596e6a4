"""The signed per-category rating part and per-part weights of a fused user representation (no encoder, no UMAP)."""

import json

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from embeddings.encoder import Embeddings
from segmentation._errors import DataError
from segmentation.config import RepresentConfig
from segmentation.data import INTERACTIONS, ITEMS
from segmentation.represent import CATEGORY_RATING_PRIOR, build_user_vectors

ITEM_CATEGORIES = {"a1": ["A"], "a2": ["A"], "b1": ["B"], "b2": ["B"], "ab": ["A", "B"], "c1": ["C"]}


def _items() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": list(ITEM_CATEGORIES),
            "title": list(ITEM_CATEGORIES),
            "year": [None] * len(ITEM_CATEGORIES),
            "categories": list(ITEM_CATEGORIES.values()),
            "text": [""] * len(ITEM_CATEGORIES),
        },
        schema=ITEMS,
    )


def _log(rows: list[tuple[str, str, float]]) -> pl.DataFrame:
    users, items, ratings = zip(*rows, strict=True)
    return pl.DataFrame(
        {"user_id": users, "item_id": items, "rating": ratings, "timestamp": [0] * len(rows)}, schema=INTERACTIONS
    )


def _item_vectors(seed: int = 0) -> Embeddings:
    v = np.random.default_rng(seed).normal(size=(len(ITEM_CATEGORIES), 8)).astype(np.float32)
    return Embeddings(np.array(list(ITEM_CATEGORIES)), v, "random")


def test_category_rating_is_the_shrunk_mean_standardised_rating_per_category():
    # "lover" rates A at 5 and B at 1: centred ±2, spread 2, so z = ±1 on two items per category
    log = _log([("lover", "a1", 5), ("lover", "a2", 5), ("lover", "b1", 1), ("lover", "b2", 1),
                ("hater", "a1", 1), ("hater", "a2", 2), ("hater", "b1", 5), ("hater", "b2", 4)])  # fmt: skip
    u = build_user_vectors(log, _item_vectors(), method="category-rating", items=_items())
    names = ["A", "B", "C"]
    lover = u.vectors[list(u.ids).index("lover")]
    raw = np.array([2 / (2 + CATEGORY_RATING_PRIOR), -2 / (2 + CATEGORY_RATING_PRIOR), 0.0])
    assert np.allclose(lover, raw / np.linalg.norm(raw), atol=1e-6)
    hater = u.vectors[list(u.ids).index("hater")]
    assert hater[names.index("A")] < 0 < hater[names.index("B")] and hater[names.index("C")] == 0
    # choosing alike and rating oppositely points the two users opposite ways
    assert float(lover @ hater) < -0.9


def test_category_rating_clips_one_outsized_rating_and_spreads_multi_category_items():
    # a play-count-like log: one count 50x the others would otherwise be the whole signal
    counts = {"a1": 2, "a2": 3, "b1": 2, "b2": 3, "ab": 150, "c1": 3}
    log = _log([("fan", item, c) for item, c in counts.items()])
    u = build_user_vectors(log, _item_vectors(), method="category-rating", items=_items())
    c = np.array(list(counts.values()), dtype=float)
    z = (c - c.mean()) / c.std()
    assert z[4] > 2.2  # the outsized count, clipped to 2 below
    z = np.clip(z, -2, 2)
    k = CATEGORY_RATING_PRIOR
    a1, a2, b1, b2, ab, c1 = z
    raw = np.array([(a1 + a2 + ab) / (3 + k), (b1 + b2 + ab) / (3 + k), c1 / (1 + k)])  # "ab" counts in A and B
    assert np.allclose(u.vectors[0], raw / np.linalg.norm(raw), atol=1e-6)


def test_category_rating_is_zero_for_users_who_rate_everything_alike():
    log = _log([("flat", "a1", 1), ("flat", "b1", 1), ("flat", "c1", 1), ("other", "a1", 4), ("other", "b1", 2)])
    u = build_user_vectors(log, _item_vectors(), method="category-rating", items=_items())
    assert np.all(u.vectors[list(u.ids).index("flat")] == 0)
    fused = build_user_vectors(log, _item_vectors(), method="item-mean+category-hist+liked-category-hist+category-rating",
                               items=_items(), centre=False)  # fmt: skip
    assert np.isfinite(fused.vectors).all()
    assert np.allclose(np.linalg.norm(fused.vectors, axis=1), 1, atol=1e-5)


def test_weights_scale_each_normalised_part_before_the_fusion_is_normalised():
    log = _log([("u1", "a1", 5), ("u1", "b1", 2), ("u1", "c1", 4), ("u2", "a2", 1), ("u2", "ab", 5), ("u2", "b2", 3)])
    method = "item-mean+liked-category-hist"

    def build(w):
        return build_user_vectors(log, _item_vectors(), method=method, items=_items(), centre=True, weights=w,
                                  evidence=None)  # fmt: skip

    plain, heavy = build({}), build({"liked-category-hist": 3.0, "category-rating": 7.0})  # the method lacks the second
    for v in (plain.vectors, heavy.vectors):
        assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    # each part normalised, so their norms before the last normalisation are 1 and 1, or 1 and 3
    ratio = lambda v: np.linalg.norm(v[:, 8:], axis=1) / np.linalg.norm(v[:, :8], axis=1)  # noqa: E731
    assert np.allclose(ratio(plain.vectors), 1.0, atol=1e-5)
    assert np.allclose(ratio(heavy.vectors), 3.0, atol=1e-4)
    # the same directions within each part
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    assert np.allclose(unit(heavy.vectors[:, :8]), unit(plain.vectors[:, :8]), atol=1e-5)
    # no weights given: the configuration's default, so vectors built outside a run match a default run's
    four = "item-mean+category-hist+liked-category-hist+category-rating"
    default = build_user_vectors(log, _item_vectors(), method=four, items=_items(), centre=True)
    given = build_user_vectors(log, _item_vectors(), method=four, items=_items(), centre=True,
                               weights=RepresentConfig().weights)  # fmt: skip
    equal = build_user_vectors(log, _item_vectors(), method=four, items=_items(), centre=True, weights={})
    assert np.array_equal(default.vectors, given.vectors) and not np.allclose(default.vectors, equal.vectors)


def test_weights_must_name_parts_and_be_positive():
    log = _log([("u1", "a1", 5), ("u1", "b1", 2)])
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="the weight of a part of 'item-mean\\+liked-category-hist' must be"):
            build_user_vectors(log, _item_vectors(), method="item-mean+liked-category-hist", items=_items(),
                               weights={"item-mean": bad})  # fmt: skip
        with pytest.raises(ValidationError, match="represent.weights .* a part's weight must be a finite number > 0"):
            RepresentConfig(weights={"item-mean": bad})
    with pytest.raises(ValidationError, match=r"represent.weights names \['liked-categories'\], which are not parts"):
        RepresentConfig(weights={"liked-categories": 2.0})
    with pytest.raises(ValidationError, match="a part's weight must be a finite number > 0"):
        RepresentConfig(weights={"category-rating": float("inf")})
    with pytest.raises(ValidationError, match=r"represent.weights \['item-mean'\]: a part's weight is a number, not"):
        RepresentConfig(weights={"item-mean": True})
    assert RepresentConfig(method="item-mean").weights == {"category-rating": 0.5}  # another method keeps working


def test_weights_given_are_set_over_the_defaults():
    from segmentation.config import load_config

    assert RepresentConfig(weights={"liked-category-hist": 2.0}).weights == {
        "category-rating": 0.5,
        "liked-category-hist": 2.0,
    }
    assert RepresentConfig(weights={"category-rating": 1.0}).weights == {"category-rating": 1.0}
    assert load_config(None, ["represent.weights.liked-category-hist=2"]).represent.weights == {
        "category-rating": 0.5,
        "liked-category-hist": 2.0,
    }


def test_category_rating_without_categories_is_a_clear_error():
    log = _log([("u1", "a1", 5), ("u1", "b1", 2)])
    bare = _items().with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("categories"))
    with pytest.raises(DataError, match="the items have no categories, so 'category-rating' .* is empty"):
        build_user_vectors(log, _item_vectors(), method="category-rating", items=bare)


def test_parts_that_merely_coincide_are_kept():
    # one category: the two histograms are the same column for everyone, yet ratings differ, so both stay
    one = _items().with_columns(pl.lit(["A"], dtype=pl.List(pl.String)).alias("categories"))
    log = _log([("u1", "a1", 5), ("u1", "b1", 1), ("u2", "a2", 2), ("u2", "c1", 4)])
    fused = build_user_vectors(log, _item_vectors(), method="item-mean+category-hist+liked-category-hist",
                               items=one, centre=False)  # fmt: skip
    assert np.allclose(fused.vectors[:, 8], fused.vectors[:, 9]) and not np.allclose(fused.vectors[:, 9], 0)


def test_a_part_that_repeats_another_is_left_out_when_every_rating_is_alike():
    # implicit feedback without weights: every rating is 1, so the liked items are all the chosen ones
    log = _log([("u1", "a1", 1), ("u1", "b1", 1), ("u1", "c1", 1), ("u2", "a2", 1), ("u2", "ab", 1), ("u3", "b2", 1)])
    four = "item-mean+category-hist+liked-category-hist+category-rating"
    fused = build_user_vectors(log, _item_vectors(), method=four, items=_items(), centre=True)
    two = build_user_vectors(log, _item_vectors(), method="item-mean+category-hist", items=_items(), centre=True)
    assert fused.vectors.shape[1] == 8 + 3 + 3 + 3
    assert np.allclose(fused.vectors[:, 11:], 0)  # liked-category-hist repeats category-hist; category-rating is 0
    assert np.allclose(fused.vectors[:, :11], two.vectors, atol=1e-6)  # the same vectors as without them


def test_evidence_scales_a_light_users_category_parts_before_the_fusion_is_normalised():
    log = _log([("light", "a1", 5), ("light", "b1", 2),
                ("heavy", "a1", 5), ("heavy", "a2", 4), ("heavy", "b1", 2), ("heavy", "b2", 1), ("heavy", "ab", 3),
                ("heavy", "c1", 4)])  # fmt: skip
    method = "item-mean+category-hist"
    plain = build_user_vectors(log, _item_vectors(), method=method, items=_items(), centre=False, evidence=None)
    scaled = build_user_vectors(log, _item_vectors(), method=method, items=_items(), centre=False, evidence=4.0)
    ratio = lambda v: np.linalg.norm(v[:, 8:], axis=1) / np.linalg.norm(v[:, :8], axis=1)  # noqa: E731
    light, heavy = list(plain.ids).index("light"), list(plain.ids).index("heavy")
    assert np.isclose(ratio(plain.vectors)[light], 1.0) and np.isclose(ratio(plain.vectors)[heavy], 1.0)
    assert np.isclose(ratio(scaled.vectors)[light], 2 / (2 + 4), atol=1e-5)  # 2 interactions
    assert np.isclose(ratio(scaled.vectors)[heavy], 6 / (6 + 4), atol=1e-5)  # 6 interactions
    assert np.allclose(np.linalg.norm(scaled.vectors, axis=1), 1, atol=1e-5)
    alone = build_user_vectors(log, _item_vectors(), method="category-hist", items=_items(), evidence=4.0)
    assert np.allclose(alone.vectors, build_user_vectors(log, _item_vectors(), method="category-hist",
                                                         items=_items()).vectors)  # fmt: skip  # a lone part: moot
    with pytest.raises(ValidationError):
        RepresentConfig(evidence=0)
    # the default scales as a default run does (represent.evidence = 5)
    default = build_user_vectors(log, _item_vectors(), method=method, items=_items(), centre=False)
    assert RepresentConfig().evidence == 5.0
    assert np.isclose(ratio(default.vectors)[light], 2 / (2 + 5), atol=1e-5)


def test_max_categories_keeps_the_categories_the_most_items_carry_counted_over_the_items_file():
    # A and B are on 3 items each, C on 1: two categories keep A and B; one keeps A (a tie, broken by name)
    log = _log([("u1", "a1", 5), ("u1", "b1", 2), ("u1", "c1", 4), ("u2", "c1", 3), ("u2", "ab", 4)])
    two = build_user_vectors(log, _item_vectors(), method="category-hist", items=_items(), max_categories=2)
    assert two.vectors.shape[1] == 2
    np.testing.assert_allclose(two.vectors[0], np.array([1, 1]) / np.sqrt(2), atol=1e-6)  # u1: a1, b1 (c1 not read)
    np.testing.assert_allclose(two.vectors[1], np.array([1, 1]) / np.sqrt(2), atol=1e-6)  # u2: ab counts for both
    one = build_user_vectors(log, _item_vectors(), method="category-hist", items=_items(), max_categories=1)
    assert one.vectors.shape[1] == 1 and np.allclose(one.vectors[:, 0], 1)
    from segmentation.represent import fit_user_vectors

    assert fit_user_vectors(log, _item_vectors(), method="category-hist", items=_items(), max_categories=1)[
        1
    ].categories == ("A",)  # A and B tie on 3 items: the name decides
    every = build_user_vectors(log, _item_vectors(), method="category-hist", items=_items(), max_categories=None)
    assert every.vectors.shape[1] == 3
    # the columns come from the items file, not from whose interactions are given: a user who chose only C
    # items still gets the A, B columns (zeros), as a user placed by the cold-start stage must
    c_only = build_user_vectors(_log([("u3", "c1", 4)]), _item_vectors(), method="category-hist", items=_items(),
                                max_categories=2)  # fmt: skip
    assert c_only.vectors.shape == (1, 2) and np.allclose(c_only.vectors, 0)
    # a category named twice on one item counts twice, as before max_categories (the tuned vectors are kept)
    doubled = _items().with_columns(
        pl.when(pl.col("item_id") == "c1").then(pl.lit(["C", "C"])).otherwise(pl.col("categories")).alias("categories")
    )
    u = build_user_vectors(_log([("u1", "c1", 4), ("u1", "a1", 3)]), _item_vectors(), method="category-hist",
                           items=doubled, max_categories=None)  # fmt: skip
    np.testing.assert_allclose(u.vectors[0], np.array([1, 0, 2]) / np.sqrt(5), atol=1e-6)


def test_max_categories_reaches_the_vectors_from_the_configuration():
    from segmentation.represent import vectors_as_configured

    log = _log([("u1", "a1", 5), ("u1", "b1", 2), ("u2", "c1", 3), ("u2", "ab", 4), ("u3", "a2", 4)])
    four = "item-mean+category-hist+liked-category-hist+category-rating"
    got = vectors_as_configured(log, _item_vectors(), RepresentConfig(max_categories=2), items=_items(), seed=0)
    assert got.vectors.shape[1] == 8 + 3 * 2 and got.model.startswith(four)
    assert vectors_as_configured(log, _item_vectors(), RepresentConfig(), items=_items(), seed=0).vectors.shape[1] == 17
    with pytest.raises(ValidationError, match="max_categories"):
        RepresentConfig(max_categories=0)


def test_a_fitted_space_places_users_as_the_fit_built_them_and_survives_a_round_trip(tmp_path):
    from segmentation.represent import UserSpace, fit_user_vectors, place_in_space

    log = _log([("u1", "a1", 5), ("u1", "b1", 2), ("u1", "c1", 4), ("u2", "c1", 3), ("u2", "ab", 4),
                ("u3", "a2", 4), ("u3", "b2", 1), ("u4", "b1", 5), ("u4", "b2", 4), ("u4", "a1", 1)])  # fmt: skip
    four = "item-mean+category-hist+liked-category-hist+category-rating"
    users, space = fit_user_vectors(log, _item_vectors(), method=four, items=_items(), centre=True, max_categories=2)
    assert space.categories == ("A", "B") and sorted(space.means) == sorted(four.split("+"))
    space.save(tmp_path)
    again = UserSpace.load(tmp_path)
    placed = place_in_space(again, log, _item_vectors())
    np.testing.assert_array_equal(placed.vectors, users.vectors)  # the fitted users, bit for bit
    # one user alone is centred on the fitted users' mean, not on its own (which would make it all zeros)
    alone = place_in_space(again, log.filter(pl.col("user_id") == "u4"), _item_vectors())
    np.testing.assert_array_equal(alone.vectors[0], users.vectors[3])
    # a new user who chose only items of a category outside the fit's columns still gets its embedding part
    new = place_in_space(again, _log([("n1", "c1", 5)]), _item_vectors())
    assert new.vectors.shape == (1, 8 + 3 * 2) and np.isclose(np.linalg.norm(new.vectors), 1, atol=1e-5)


def test_a_category_an_item_names_twice_weighs_twice_when_users_are_placed(tmp_path):
    # the planted worlds' catalogue names some attributes twice: the fit counts them twice, and so must placement
    # (the saved item-category pairs once kept one position per (item, category), and 20 % of a planted world's users
    # were placed with other category parts than the fit gave them)
    from segmentation.represent import UserSpace, fit_user_vectors, place_in_space

    items = _items().with_columns(
        pl.when(pl.col("item_id") == "ab").then(pl.lit(["A", "B", "A"])).otherwise(pl.col("categories"))
        .alias("categories")
    )  # fmt: skip
    log = _log([("u1", "ab", 5), ("u1", "b1", 2), ("u2", "ab", 3), ("u2", "a1", 4), ("u3", "b2", 1), ("u3", "c1", 4)])
    four = "item-mean+category-hist+liked-category-hist+category-rating"
    users, space = fit_user_vectors(log, _item_vectors(), method=four, items=items, centre=True)
    space.save(tmp_path)
    placed = place_in_space(UserSpace.load(tmp_path), log, _item_vectors())
    np.testing.assert_array_equal(placed.vectors, users.vectors)
    np.testing.assert_array_equal(placed.category_counts.toarray(), users.category_counts.toarray())
    u1 = users.category_counts.toarray()[0]  # "ab" shares its one interaction 2:1 between A and B
    np.testing.assert_allclose(u1[:2], [2 / 3, 1 + 1 / 3], rtol=1e-6)


@pytest.mark.parametrize("centre", [True, False])
def test_placement_reproduces_the_fit_uncentred_and_when_every_rating_is_alike(centre):
    from segmentation.represent import fit_user_vectors, place_in_space

    four = "item-mean+category-hist+liked-category-hist+category-rating"
    rated = _log([("u1", "a1", 5), ("u1", "b1", 2), ("u2", "c1", 3), ("u2", "ab", 4), ("u3", "a2", 4),
                  ("u3", "b2", 1), ("u3", "c1", 2)])  # fmt: skip
    alike = rated.with_columns(pl.lit(1.0).alias("rating"))  # implicit feedback without weights
    for log in (rated, alike):
        users, space = fit_user_vectors(log, _item_vectors(), method=four, items=_items(), centre=centre)
        assert space.left_out == (("liked-category-hist",) if log is alike else ())
        np.testing.assert_array_equal(place_in_space(space, log, _item_vectors()).vectors, users.vectors)
        one = place_in_space(space, log.filter(pl.col("user_id") == "u2"), _item_vectors())
        np.testing.assert_array_equal(one.vectors[0], users.vectors[1])


def test_placing_users_needs_a_space_built_from_item_vectors_and_categories(tmp_path):
    from segmentation._errors import ConfigError
    from segmentation.represent import UserSpace, fit_user_vectors, place_in_space

    log = _log([("u1", "a1", 5), ("u1", "b1", 2), ("u2", "c1", 3), ("u2", "ab", 4), ("u3", "a2", 4), ("u3", "b2", 1)])
    _, space = fit_user_vectors(log, _item_vectors(), method="item-mean+svd", n_factors=2)
    with pytest.raises(ConfigError, match=r"\['svd'\]"):
        place_in_space(space, log, _item_vectors())
    _, space = fit_user_vectors(log, _item_vectors(), method="item-mean", centre=True)
    with pytest.raises(ValueError, match="fitted over 6 items"):
        place_in_space(space, log, Embeddings(np.array(["a1"]), np.ones((1, 8), np.float32), "other"))
    with pytest.raises(DataError, match="user_space.json is missing: the run was published before"):
        UserSpace.load(tmp_path)
    space.save(tmp_path)
    good = (tmp_path / "user_space.json").read_text()
    (tmp_path / "user_space.json").write_text("{not json")
    with pytest.raises(DataError, match="user space .* cannot be read"):
        UserSpace.load(tmp_path)
    (tmp_path / "user_space.json").write_text(good.replace('"weights": {', '"weights": [{').replace("},", "}],", 1))
    with pytest.raises(DataError, match="user space .* cannot be read"):
        UserSpace.load(tmp_path)
    (tmp_path / "user_space.json").write_text(good)
    arrays = (tmp_path / "user_space.npz").read_bytes()
    (tmp_path / "user_space.npz").write_bytes(arrays[: len(arrays) // 2])  # cut short
    with pytest.raises(DataError, match="user space .* cannot be read: BadZipFile"):
        UserSpace.load(tmp_path)
    (tmp_path / "user_space.npz").write_bytes(arrays)
    (tmp_path / "user_space.json").write_text(
        good.replace('"parts_centred": [\n  "item-mean"\n ]', '"parts_centred": []')
    )
    with pytest.raises(DataError, match=r"means for \[\], but the parts are \['item-mean'\]"):
        UserSpace.load(tmp_path)


def test_a_profile_space_is_kept_and_refuses_placement_with_the_reason():
    from segmentation._errors import ConfigError
    from segmentation.represent import fit_user_vectors, place_in_space

    prof = Embeddings(np.array(["u2", "u1"]), np.eye(2, 4, dtype=np.float32), "enc")
    users, space = fit_user_vectors(_log([("u1", "a1", 5)]), _item_vectors(), method="profile",
                                    profile_embeddings=prof)  # fmt: skip
    assert users.ids.tolist() == ["u1", "u2"] and space.method == "profile"
    with pytest.raises(ConfigError, match=r"\['profile'\]"):
        place_in_space(space, _log([("n1", "a1", 4)]), _item_vectors())


@pytest.mark.parametrize("method", ["category-hist", "item-mean"])
def test_user_vectors_carry_what_each_user_chose_by_category(method):
    """Each interaction's 1 is shared among its item's categories, whatever the representation; without items, or
    with categories for no item, there are no counts."""
    log = _log([("u", "ab", 5), ("u", "a1", 3), ("v", "c1", 4), ("v", "b2", 2), ("v", "b1", 1)])
    users = build_user_vectors(log, _item_vectors(), method=method, items=_items(), centre=False)
    assert users.ids.tolist() == ["u", "v"] and users.category_counts.shape == (2, 3)  # columns A, B, C
    np.testing.assert_allclose(users.category_counts.toarray(), [[1.5, 0.5, 0.0], [0.0, 2.0, 1.0]])
    assert build_user_vectors(log, _item_vectors(), method="item-mean").category_counts is None
    bare = _items().with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("categories"))
    assert build_user_vectors(log, _item_vectors(), method="item-mean", items=bare).category_counts is None


def test_rating_levels_cut_the_ratings_at_their_quantiles_and_equal_ratings_share_a_level():
    from segmentation.represent import _level_edges

    stars = np.repeat([1.0, 2, 3, 4, 5], [61, 114, 271, 342, 212])  # MovieLens 100k's shares of each star, per mille
    assert _level_edges(stars, 5) == (3.0, 4.0, 5.0)  # 1-2, 3, 4, 5: no level split inside a star
    assert _level_edges(stars, 3) == (3.0, 4.0)
    assert _level_edges(stars, 1) == () and _level_edges(np.ones(7), 5) == ()  # one level: nothing to cut
    plays = np.arange(1.0, 101.0)  # play counts: about a fifth of them in each level
    edges = _level_edges(plays, 5)
    assert np.bincount(np.searchsorted(edges, plays, side="right")).tolist() == [19, 20, 20, 20, 21]
    # the levels are ranks: a monotone rescaling of the ratings (a logarithm) cuts the same users' ratings alike
    assert np.array_equal(np.searchsorted(edges, plays, side="right"),
                          np.searchsorted(_level_edges(np.log(plays), 5), np.log(plays), side="right"))  # fmt: skip


def test_choice_counts_split_each_users_category_counts_by_rating_level_and_placement_repeats_them(tmp_path):
    """``choice_counts`` (level-major: column ``level * categories + category``) sums over the levels to the category
    counts; a fitted space keeps its cut points, so placed users' counts are the fit's, and an old space without them
    reads one level."""
    from segmentation.represent import UserSpace, fit_user_vectors, place_in_space

    log = _log([("u", "ab", 5), ("u", "a1", 1), ("v", "c1", 4), ("v", "b2", 2), ("v", "b1", 5), ("w", "a2", 4)])
    users, space = fit_user_vectors(log, _item_vectors(), method="category-hist", items=_items(), rating_levels=3)
    assert space.rating_edges == (2.0, 4.0)  # the ratings 1 | 2 | 4, 5
    c, k = users.choice_counts.toarray(), users.category_counts.shape[1]
    assert c.shape == (3, 3 * k)
    np.testing.assert_allclose(c.reshape(3, 3, k).sum(axis=1), users.category_counts.toarray())
    # u: a1 rated 1 (level 0, A), ab rated 5 (level 2, half A and half B)
    np.testing.assert_allclose(c[0], [1, 0, 0, 0, 0, 0, 0.5, 0.5, 0])
    space.save(tmp_path)
    placed = place_in_space(UserSpace.load(tmp_path), log.filter(pl.col("user_id") == "v"), _item_vectors())
    np.testing.assert_array_equal(placed.choice_counts.toarray(), c[1:2])
    meta = json.loads((tmp_path / "user_space.json").read_text())
    del meta["rating_edges"]  # as spaces were saved before the levels
    (tmp_path / "user_space.json").write_text(json.dumps(meta))
    old = UserSpace.load(tmp_path)
    assert old.rating_edges == () and place_in_space(old, log, _item_vectors()).choice_counts is None
    meta["rating_edges"] = [5.0, 4.0]
    (tmp_path / "user_space.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="rating level cut points"):
        UserSpace.load(tmp_path)
    one = build_user_vectors(log, _item_vectors(), method="item-mean", items=_items(), rating_levels=1)
    assert one.choice_counts is None and one.category_counts is not None
    alike = build_user_vectors(log.with_columns(pl.lit(1.0).alias("rating")), _item_vectors(), method="item-mean",
                               items=_items())  # fmt: skip
    assert alike.choice_counts is None  # implicit feedback without weights: one level
    with pytest.raises(ValidationError):
        RepresentConfig(rating_levels=0)
