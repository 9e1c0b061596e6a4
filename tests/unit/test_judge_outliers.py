"""The final outlier rule (issue 14, tenth round): :class:`SegmentEnvelopes` reading the categories users chose, and
:func:`judge_outliers` on a fit's final segments."""

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from segmentation.cluster import ASSIGNMENTS, NOISE, SegmentEnvelopes, far_from_segment, judge_outliers
from segmentation.config import ClusterConfig
from segmentation.synthetic import light_category_counts


def _light_world(seed: int, cats: int = 24, sizes=(500, 400, 300), n_noise: int = 60, taste: float = 0.75):
    """Light users (3-10 picks) of three segments and ``n_noise`` users who each prefer their own pair of categories
    (the planted worlds' personal noise). A user's vector is the mean of noisy item vectors around their categories'
    directions, so a light user's direction is mostly chance. Returns vectors, sparse counts, truth (-1: noise), the
    segment each user is given (noise users: the nearest by direction) and interactions."""
    counts, group = light_category_counts(list(sizes), cats, taste=taste, seed=seed)
    rng = np.random.default_rng(seed + 100)
    popularity = 1 / np.arange(1, cats + 1)
    popularity /= popularity.sum()
    noise = []
    for _ in range(n_noise):
        own = np.zeros(cats)
        own[rng.choice(np.arange(2 * len(sizes), cats), 2, replace=False)] = 0.5
        noise.append(rng.multinomial(int(rng.integers(3, 11)), taste * own + (1 - taste) * popularity))
    counts = np.vstack([counts, np.array(noise, dtype=np.float64).reshape(-1, cats)])
    truth = np.r_[group, np.full(n_noise, NOISE)]
    n = counts.sum(axis=1)
    v = counts @ rng.normal(0, 1, (cats, 32)) / n[:, None] + rng.normal(0, 1.2, (len(n), 32)) / np.sqrt(n)[:, None]
    v -= v.mean(axis=0)
    centres = np.stack([v[truth == g].mean(axis=0) for g in range(len(sizes))])
    given = np.where(truth >= 0, truth, (v @ centres.T).argmax(axis=1)).astype(np.int32)
    return v.astype(np.float32), sp.csr_matrix(counts.astype(np.float32)), truth, given, n


@pytest.mark.parametrize("seed", [0, 2])
def test_the_categories_users_chose_tell_light_noise_users_apart_where_direction_cannot(seed):
    v, counts, truth, given, n = _light_world(seed)
    noise = truth < 0

    def recall_precision(far):
        return (far & noise).sum() / noise.sum(), (far & noise).sum() / max(far.sum(), 1)

    alone = SegmentEnvelopes.fit(v, given, 3.25, activity=n)
    both = SegmentEnvelopes.fit(v, given, 3.25, activity=n, counts=counts)
    assert not alone.reads_categories and both.reads_categories and both.profiles.shape == (3, 24)
    r0, p0 = recall_precision(alone.far(v, given, n))
    r1, p1 = recall_precision(both.far(v, given, n, counts))
    # 0.67 / 0.47 and 0.53 / 0.46 by direction alone; 0.90 / 0.60 and 0.82 / 0.60 with the categories
    assert r1 >= 0.75 and p1 >= 0.55 and r1 >= r0 + 0.15 and p1 >= p0 + 0.05
    # without the counts the envelopes that read categories decide by direction alone, as the others do
    np.testing.assert_array_equal(both.far(v, given, n), alone.far(v, given, n))
    zd, zc = both.z_scores(v, given, n, counts)
    assert np.isfinite(zc).all() and np.nanmedian(zc[noise]) > np.nanmedian(zc[~noise]) + 2
    with pytest.raises(ValueError, match="category counts of 5 categories given; the envelopes have 24"):
        both.far(v[:2], given[:2], n[:2], sp.csr_matrix(np.ones((2, 5), np.float32)))


def test_a_user_without_category_counts_is_judged_by_direction_alone():
    v, counts, truth, given, n = _light_world(1)
    envelopes = SegmentEnvelopes.fit(v, given, 3.25, activity=n, counts=counts)
    blank = counts.tolil()
    blank[:50] = 0  # 50 users whose items have no category
    blank = blank.tocsr()
    _, zc = envelopes.z_scores(v, given, n, blank)
    assert np.isnan(zc[:50]).all() and np.isfinite(zc[50:]).all()
    alone = SegmentEnvelopes.fit(v, given, 3.25, activity=n)  # their direction limits are the same
    np.testing.assert_array_equal(envelopes.far(v, given, n, blank)[:50], alone.far(v, given, n)[:50])


def test_envelopes_with_categories_survive_a_save_and_old_files_decide_as_they_did(tmp_path):
    v, counts, truth, given, n = _light_world(3)
    envelopes = SegmentEnvelopes.fit(v, given, 3.25, activity=n, counts=counts)
    envelopes.save(tmp_path / "e.npz")
    again = SegmentEnvelopes.load(tmp_path / "e.npz", n_segments=3, dim=32)
    np.testing.assert_array_equal(again.far(v, given, n, counts), envelopes.far(v, given, n, counts))
    np.testing.assert_array_equal(again.profiles, envelopes.profiles)
    # a run published before this round kept the direction limits alone: they decide as far_from_segment does
    members = np.where(truth >= 0, given, NOISE).astype(np.int32)
    old = SegmentEnvelopes.fit(v, members, 3.5, activity=n)
    np.savez(tmp_path / "old.npz", directions=old.directions, limits=old.limits, z=np.float64(3.5),
             evidence=np.bool_(True))  # fmt: skip
    loaded = SegmentEnvelopes.load(tmp_path / "old.npz", n_segments=3, dim=32)
    assert not loaded.reads_categories
    rule = far_from_segment(v, members, 3.5, activity=n)
    np.testing.assert_array_equal(loaded.far(v, members, n, counts), rule)
    assert 0 < rule.sum()
    np.savez(tmp_path / "torn.npz", directions=old.directions, centre=old.centre, z=np.float64(3.5),
             evidence=np.bool_(True))  # fmt: skip
    from segmentation._errors import DataError

    with pytest.raises(DataError, match=r"torn\.npz cannot be read \(KeyError.*the run folder is damaged"):
        SegmentEnvelopes.load(tmp_path / "torn.npz")


def _assignments(labels: np.ndarray, nearest: np.ndarray) -> pl.DataFrame:
    n = len(labels)
    return pl.DataFrame({"user_id": [f"u{i}" for i in range(n)], "segment_id": labels,
                         "membership": np.where(labels >= 0, 0.9, 0.0).astype(np.float32), "nearest_segment": nearest,
                         "nearest_membership": np.full(n, 0.4, np.float32), "soft_assigned": np.zeros(n, bool),
                         "x": np.zeros(n, np.float32), "y": np.zeros(n, np.float32)}, schema=ASSIGNMENTS)  # fmt: skip


def test_judge_outliers_demotes_far_members_lets_near_outliers_join_and_renumbers_by_size():
    from embeddings.encoder import Embeddings

    v, counts, truth, given, n = _light_world(4)
    labels = given.copy()
    # HDBSCAN left 40 users of segment 0 out (they lie in it), and the split tests left every noise user in
    inside = np.flatnonzero(truth == 0)[:40]
    labels[inside] = NOISE
    users = Embeddings(np.array([f"u{i}" for i in range(len(n))], dtype=object), v, "planted", n.astype(np.int64),
                       counts)  # fmt: skip
    a = _assignments(labels, given)
    judged, envelopes, record = judge_outliers(users, a, ClusterConfig(), 3)
    final, nearest = judged["segment_id"].to_numpy(), judged["nearest_segment"].to_numpy()
    noise = truth < 0
    assert (final[noise] < 0).mean() >= 0.75  # the noise users are outliers again
    assert (final[inside] >= 0).mean() >= 0.9  # the users HDBSCAN left out of segment 0 joined it
    joined = inside[final[inside] >= 0]
    assert (judged["membership"].to_numpy()[joined] == np.float32(0.4)).all()
    assert judged["soft_assigned"].to_numpy()[joined].all() and not judged["soft_assigned"].to_numpy()[final < 0].any()
    assert (judged["membership"].to_numpy()[final < 0] == 0).all()
    sizes = np.bincount(final[final >= 0])
    assert (np.diff(sizes) <= 0).all() and (nearest >= 0).all()
    assert record == {"outlier_distance": 3.25, "outlier_evidence": True, "reads_categories": True,
                      "outliers": int((final < 0).sum()),
                      "demoted": int(((labels >= 0) & (final < 0)).sum()),
                      "joined": int(((labels < 0) & (final >= 0)).sum()), "new_id": record["new_id"]}  # fmt: skip
    # the envelopes that decided, in the new numbering, give the run's outliers back
    assert envelopes is not None
    np.testing.assert_array_equal(envelopes.far(v, nearest, n, counts), final < 0)
    # direction alone, and off
    _, alone, record = judge_outliers(users, a, ClusterConfig(outlier_categories=False), 3)
    assert alone is not None and not alone.reads_categories and record is not None and not record["reads_categories"]
    same, none, nothing = judge_outliers(users, a, ClusterConfig(outlier_distance=None), 3)
    assert same is a and none is None and nothing is None


def _users(v, counts, n):
    from embeddings.encoder import Embeddings

    return Embeddings(np.array([f"u{i}" for i in range(len(n))], dtype=object), v, "planted", n.astype(np.int64),
                      counts)  # fmt: skip


def test_members_whose_choices_another_segment_explains_move_there_unless_their_vector_says_no():
    from segmentation.cluster import reassign_by_categories

    v, counts, truth, given, n = _light_world(5, n_noise=0)
    labels = given.copy()
    rng = np.random.default_rng(0)
    wrong = rng.choice(np.flatnonzero(truth == 0), 60, replace=False)  # drawn into segment 1 by a noisy layout
    labels[wrong] = 1
    # one of them also points the opposite way from segment 2's members: a move there would make them far
    centre2 = v[truth == 2].mean(axis=0)
    contradicted = np.flatnonzero(truth == 2)[:1]
    labels[contradicted] = 0
    v = v.copy()
    v[contradicted] = -centre2 / np.linalg.norm(centre2)
    a = _assignments(labels, labels)
    moved, record = reassign_by_categories(a, _users(v, counts, n), ClusterConfig(category_reassign=0.2), 3)
    after = moved["segment_id"].to_numpy()
    assert (after[wrong] == 0).mean() >= 0.8  # the misplaced come back (their counts say segment 0; 0.92 here)
    right = np.setdiff1d(np.arange(len(labels)), np.r_[wrong, contradicted])
    assert (after[right] != labels[right]).mean() <= 0.02  # the others stay (0.004 moved here)
    assert after[contradicted[0]] == 0 and record["refused"] >= 1  # the vector said no
    changed = after != labels
    assert record == {
        "moved": int(changed.sum()),
        "refused": record["refused"],
        "level": 0.2,
        "rating_levels": 1,
        "applied": True,
        "proposed_share": record["proposed_share"],
        "max_share": 0.15,
    }
    assert 0.04 < record["proposed_share"] < 0.06  # 60 misplaced of 1,140 members, and a few more (0.0525)
    assert not moved["soft_assigned"].to_numpy()[changed].any()  # members moved, not outliers moved into a segment
    assert (moved["nearest_segment"].to_numpy()[changed] == after[changed]).all()
    share = moved["membership"].to_numpy()[changed]
    assert ((share > 0.2) & (share <= 1)).all()  # the posterior of the segment they joined
    # without the vector's check (outlier_distance off) the contradicted move is made
    unchecked, record = reassign_by_categories(
        a, _users(v, counts, n), ClusterConfig(category_reassign=0.2, outlier_distance=None), 3
    )
    assert unchecked["segment_id"][int(contradicted[0])] == 2 and record["refused"] == 0


def test_segments_that_choose_alike_keep_their_members():
    """Twins (one planted segment's users under two labels, as style's rating twins choose): their posteriors are
    near-equal, so almost nobody moves between them."""
    from segmentation.cluster import reassign_by_categories

    v, counts, truth, given, n = _light_world(6, n_noise=0)
    labels = given.copy()
    twin = np.flatnonzero(truth == 0)
    labels[twin[np.random.default_rng(1).random(len(twin)) < 0.5]] = 3
    moved, _ = reassign_by_categories(_assignments(labels, labels), _users(v, counts, n),
                                      ClusterConfig(category_reassign=0.2, outlier_distance=None), 4)  # fmt: skip
    after = moved["segment_id"].to_numpy()
    assert (after != labels).mean() <= 0.02  # 0.003 here
    # a small twin (a fifth of the pair) is not drained into the large one: the posterior has no size prior
    small = given.copy()
    small[twin[np.random.default_rng(2).random(len(twin)) < 0.2]] = 3
    moved, _ = reassign_by_categories(_assignments(small, small), _users(v, counts, n),
                                      ClusterConfig(category_reassign=0.2, outlier_distance=None), 4)  # fmt: skip
    out_of_small = (small == 3) & (moved["segment_id"].to_numpy() != 3)
    assert out_of_small.sum() <= 0.1 * (small == 3).sum()
    # outliers and members without counts stay where they are
    labels[:5] = NOISE
    blank = counts.tolil()
    blank[5:10] = 0
    kept, _ = reassign_by_categories(_assignments(labels, np.where(labels < 0, 0, labels)),
                                     _users(v, blank.tocsr(), n), ClusterConfig(category_reassign=0.99), 4)  # fmt: skip
    assert (kept["segment_id"].to_numpy()[:10] == labels[:10]).all()


def test_far_users_reads_the_counts_of_the_envelopes_categories_and_else_the_direction_alone():
    v, counts, truth, given, n = _light_world(7)
    envelopes = SegmentEnvelopes.fit(v, given, 3.25, activity=n, counts=counts)
    np.testing.assert_array_equal(envelopes.far_users(_users(v, counts, n), given), envelopes.far(v, given, n, counts))
    other = sp.csr_matrix(np.ones((len(n), 5), np.float32))  # another representation's columns: not comparable
    np.testing.assert_array_equal(envelopes.far_users(_users(v, other, n), given), envelopes.far(v, given, n))
    assert (envelopes.far_users(_users(v, counts, n), given) != envelopes.far(v, given, n)).any()


def test_a_category_score_with_ties_does_not_make_members_outliers():
    """Members with one interaction each: their G statistics take three values, the MAD is 0, and without a fallback
    every member outside the main category would lie a billion deviations out (36 % of the segment)."""
    rng = np.random.default_rng(0)
    cat = rng.choice(3, 400, p=[0.7, 0.2, 0.1])
    counts = sp.csr_matrix((np.ones(400, np.float32), (np.arange(400), cat)), shape=(400, 3))
    v = (np.eye(3)[cat] + rng.normal(0, 0.3, (400, 3))).astype(np.float32) + np.array([3, 3, 3], np.float32)
    labels = np.zeros(400, np.int32)
    n = np.ones(400)
    envelopes = SegmentEnvelopes.fit(v, labels, 3.25, activity=n, counts=counts)
    assert 0.3 < envelopes.category_scale[0] < 1.5  # 1.2533 x the mean absolute deviation, not the 1e-9 floor
    assert envelopes.far(v, labels, n, counts).mean() < 0.05


def test_judging_never_empties_a_segment_nor_fills_one_without_limits(monkeypatch):
    from embeddings.encoder import Embeddings

    rng = np.random.default_rng(2)
    dim = 16
    centre = np.eye(dim)[:3] * 4
    v = np.vstack(
        [
            centre[0] + rng.normal(0, 1, (200, dim)),
            centre[1] + rng.normal(0, 1, (150, dim)),
            -centre[0] + rng.normal(0, 1, (3, dim)),  # segment 2: three users pointing away from everyone
            centre[2] + rng.normal(0, 1, (1, dim)),  # segment 3: one member, no limits
            centre[2] + rng.normal(0, 1, (20, dim)),
        ]
    ).astype(np.float32)  # outliers nearest segment 3
    labels = np.r_[np.zeros(200), np.ones(150), np.full(3, 2), [3], np.full(20, NOISE)].astype(np.int32)
    nearest = np.where(labels >= 0, labels, 3).astype(np.int32)
    users = Embeddings(np.array([f"u{i}" for i in range(len(v))], dtype=object), v, "planted",
                       np.full(len(v), 10, np.int64))  # fmt: skip
    judged, envelopes, record = judge_outliers(users, _assignments(labels, nearest), ClusterConfig(), 4)
    final = judged["segment_id"].to_numpy()
    assert envelopes is not None and np.isnan(envelopes.centre).sum() == 1  # segment 3 has no limits
    sizes = np.bincount(final[final >= 0], minlength=4)
    assert (sizes > 0).all()  # nothing emptied
    assert sizes.min() == 1 and (final[-20:] < 0).all()  # the outliers did not join the segment without limits
    assert record is not None and record["joined"] == 0
    # were every member of segment 1 far (a rule gone wrong, or two members at odds), the segment keeps them
    real_far = SegmentEnvelopes.far

    def segment_one_far(self, vectors, segment, activity=None, counts=None):
        return real_far(self, vectors, segment, activity, counts) | (np.asarray(segment) == 1)

    monkeypatch.setattr(SegmentEnvelopes, "far", segment_one_far)
    judged, _, record = judge_outliers(users, _assignments(labels, nearest), ClusterConfig(), 4)
    again = judged["segment_id"].to_numpy()
    assert (np.bincount(again[again >= 0], minlength=4) > 0).all() and (again[200:350] >= 0).all()


def _rating_twins(seed: int = 3, levels: int = 3):
    """Segment 0 of a light world split into twins that choose alike and rate their two own categories oppositely
    (label 3 rates them at the top level, label 0 at the bottom; every other pick in the middle), as style's twins
    do. Returns vectors, category counts, choice counts (level-major), truth and interactions."""
    from segmentation.synthetic import light_category_counts

    cats = 12
    counts, truth = light_category_counts([400, 300, 300], cats, seed=seed)
    rng = np.random.default_rng(seed)
    twin = np.flatnonzero(truth == 0)
    truth[twin[rng.random(len(twin)) < 0.5]] = 3
    choice = np.zeros((len(truth), levels * cats))
    mid = levels // 2
    for u in range(len(truth)):
        for c in np.flatnonzero(counts[u]):
            own = truth[u] in (0, 3) and c in (0, 1)
            level = (levels - 1 if truth[u] == 3 else 0) if own else mid
            choice[u, level * cats + c] = counts[u, c]
    n = counts.sum(axis=1)
    v = counts @ rng.normal(0, 1, (cats, 16)) / n[:, None] + rng.normal(0, 0.5, (len(n), 16)) / np.sqrt(n)[:, None]
    v = (v - v.mean(axis=0)).astype(np.float32)  # the twins' vectors alike: they chose alike
    return v, sp.csr_matrix(counts.astype(np.float32)), sp.csr_matrix(choice.astype(np.float32)), truth, n


def test_rating_levels_tell_twins_apart_that_choose_alike():
    """Members placed in the wrong twin return by the levels of their ratings; by categories alone nothing tells the
    twins apart, so they stay (half would come back by chance at best)."""
    from embeddings.encoder import Embeddings
    from segmentation.cluster import reassign_by_categories

    v, counts, choice, truth, n = _rating_twins()
    labels = truth.astype(np.int32).copy()
    rng = np.random.default_rng(4)
    swapped = np.flatnonzero(np.isin(truth, (0, 3)) & (rng.random(len(truth)) < 0.1))
    labels[swapped] = np.where(truth[swapped] == 0, 3, 0)
    ids = np.array([f"u{i}" for i in range(len(n))], dtype=object)
    config = ClusterConfig(outlier_distance=None)
    with_levels = Embeddings(ids, v, "twins", n.astype(np.int64), counts, choice)
    moved, record = reassign_by_categories(_assignments(labels, labels), with_levels, config, 4)
    after = moved["segment_id"].to_numpy()
    assert record["rating_levels"] == 3 and record["applied"]
    assert (after[swapped] == truth[swapped]).mean() >= 0.8  # 1.0 here
    assert (after != truth).mean() <= 0.05  # 0.002
    categories_only = Embeddings(ids, v, "twins", n.astype(np.int64), counts)
    free = ClusterConfig(outlier_distance=None, category_reassign_max_share=None)
    moved, record = reassign_by_categories(_assignments(labels, labels), categories_only, free, 4)
    assert record["rating_levels"] == 1 and record["moved"] > 0.1 * len(labels)  # the twins' members shuffled
    assert (moved["segment_id"].to_numpy()[swapped] == truth[swapped]).mean() <= 0.6
    # which the share's check holds back (0.19 of the members would move)
    _, record = reassign_by_categories(_assignments(labels, labels), categories_only, config, 4)
    assert not record["applied"] and record["proposed_share"] > 0.15


def test_segments_the_choices_do_not_explain_keep_their_members():
    """Where the profiles would move more than ``category_reassign_max_share`` of the members, the segments are set
    apart by something else: nobody moves, and the record says how many would have."""
    from embeddings.encoder import Embeddings
    from segmentation.cluster import reassign_by_categories

    v, counts, choice, truth, n = _rating_twins()
    labels = np.random.default_rng(5).integers(0, 4, len(truth)).astype(np.int32)  # segments blind to the choices
    users = Embeddings(np.array([f"u{i}" for i in range(len(n))], dtype=object), v, "twins", n.astype(np.int64),
                       counts, choice)  # fmt: skip
    a = _assignments(labels, labels)
    kept, record = reassign_by_categories(a, users, ClusterConfig(outlier_distance=None), 4)
    assert kept is a and not record["applied"] and record["moved"] == 0 and record["proposed_share"] > 0.15
    free, record = reassign_by_categories(a, users, ClusterConfig(outlier_distance=None,
                                                                  category_reassign_max_share=None), 4)  # fmt: skip
    assert record["applied"] and record["moved"] > 0.15 * len(labels)


def test_placed_users_move_by_their_choices_as_members_did_and_the_profiles_survive_a_save(tmp_path):
    from embeddings.encoder import Embeddings

    v, counts, choice, truth, n = _rating_twins(seed=6)
    ids = np.array([f"u{i}" for i in range(len(n))], dtype=object)
    users = Embeddings(ids, v, "twins", n.astype(np.int64), counts, choice)
    envelopes = SegmentEnvelopes.of_users(users, truth.astype(np.int32), ClusterConfig(), 4)
    assert envelopes.choices is not None and envelopes.choices.shape == (4, choice.shape[1])
    assert envelopes.choice_level == 0.5
    # placed users given the wrong twin (as a vote among near-identical vectors might) move to their own
    twins = np.flatnonzero(np.isin(truth, (0, 3)))
    wrong = np.where(truth[twins] == 0, 3, 0).astype(np.int32)
    placed = users.subset(twins)
    chosen = envelopes.choose(placed, wrong)
    assert (chosen == truth[twins]).mean() >= 0.8  # 0.98 here
    path = tmp_path / "envelopes.npz"
    envelopes.save(path)
    again = SegmentEnvelopes.load(path, n_segments=4, dim=16)
    np.testing.assert_array_equal(again.choose(placed, wrong), chosen)
    # renumbered, the profiles follow their segments
    new_id = np.array([3, 2, 1, 0])
    np.testing.assert_array_equal(envelopes.reordered(new_id).choose(placed, new_id[wrong]), new_id[chosen])
    # without the run's reassignment, or without counts of its columns, users keep the segment given
    off = SegmentEnvelopes.of_users(users, truth.astype(np.int32), ClusterConfig(category_reassign=None), 4)
    assert off.choices is None and (off.choose(placed, wrong) == wrong).all()
    # users whose ratings are unknown (counts per category alone) are read against the profiles summed over the
    # levels: that tells segments 1 and 2 apart (not the twins, who choose alike)
    others = np.flatnonzero(np.isin(truth, (1, 2)))
    swapped = np.where(truth[others] == 1, 2, 1).astype(np.int32)
    categories_only = Embeddings(ids[others], v[others], "twins", n[others].astype(np.int64), counts[others])
    assert (envelopes.choose(categories_only, swapped) == truth[others]).mean() >= 0.8  # 0.98 here
    assert (envelopes.choose(users.subset(others), swapped) == truth[others]).mean() >= 0.8  # as with the levels
    # counts of other columns than the run's: users keep the segment given
    narrow = Embeddings(ids[others], v[others], "twins", n[others].astype(np.int64), counts[others][:, :5])
    assert (envelopes.choose(narrow, swapped) == swapped).all()


def test_envelopes_whose_choice_profiles_do_not_fit_the_run_are_a_clear_error(tmp_path):
    from embeddings.encoder import Embeddings
    from segmentation._errors import DataError

    v, counts, choice, truth, n = _rating_twins(seed=7)
    users = Embeddings(np.array([f"u{i}" for i in range(len(n))], dtype=object), v, "twins", n.astype(np.int64),
                       counts, choice)  # fmt: skip
    path = tmp_path / "segment_envelopes.npz"
    SegmentEnvelopes.of_users(users, truth.astype(np.int32), ClusterConfig(), 4).save(path)
    with np.load(path) as a:
        arrays = dict(a)
    arrays["choices"] = arrays["choices"][:3]  # three segments' profiles for a run of four
    np.savez(path, **arrays)
    with pytest.raises(DataError, match="segment_envelopes.npz holds .* the run folder is damaged"):
        SegmentEnvelopes.load(path, n_segments=4, dim=16)
