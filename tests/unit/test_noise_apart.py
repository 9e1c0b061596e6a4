"""Users who belong nowhere are kept apart: incoherent segments dissolve, far members become outliers (no UMAP)."""

import numpy as np
import pytest

from segmentation.cluster import NOISE, dissolve, far_from_segment, incoherent_segments
from segmentation.config import ClusterConfig


def _blobs(rng: np.random.Generator, dim: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Three tight segments (each around its own direction) and a fourth 'segment' of users pointing every way."""
    centres = np.eye(dim)[:3] + 0.3  # a shared component, as item embeddings have
    tight = [c + rng.normal(0, 0.08, (200, dim)) for c in centres]
    scattered = rng.normal(0, 1, (60, dim)) * 0.5 + 0.3
    x = np.vstack([*tight, scattered])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.repeat(np.arange(4), [200, 200, 200, 60]).astype(np.int32)
    return x.astype(np.float32), labels


def test_a_segment_of_users_pointing_every_way_is_incoherent():
    x, labels = _blobs(np.random.default_rng(0))
    assert incoherent_segments(x, labels, 0.9).tolist() == [False, False, False, True]
    assert not incoherent_segments(x, labels, 0.3).any()  # a low bar keeps it
    assert incoherent_segments(x, np.full(len(x), NOISE), 0.9).size == 0
    assert not incoherent_segments(x, np.zeros(len(x), np.int32), 0.9).any()  # one segment: nothing to compare


def test_dissolve_makes_outliers_renumbers_and_gives_a_nearest_segment():
    x, labels = _blobs(np.random.default_rng(1))
    labels[5] = NOISE  # an outlier already
    drop = np.array([False, True, False, False])
    out, nearest = dissolve(labels, x, drop)
    assert (out[labels == 1] == NOISE).all()
    assert (out[labels == 0] == 0).all() and (out[labels == 2] == 1).all() and (out[labels == 3] == 2).all()
    assert out[5] == NOISE
    assert (nearest >= 0).all() and (nearest[out >= 0] == out[out >= 0]).all()
    # segment 1's users point along axis 1; the nearest kept direction of each is one of the kept segments
    assert set(np.unique(nearest[labels == 1])) <= {0, 1, 2}
    everything, none = dissolve(labels, x, np.ones(4, bool))
    assert (everything == NOISE).all() and (none == NOISE).all()


def test_far_from_segment_flags_members_that_point_elsewhere():
    rng = np.random.default_rng(2)
    x, labels = _blobs(rng)
    x = x.copy()
    stray = [3, 250, 420]  # members of segments 0, 1, 2 given a random direction
    x[stray] = rng.normal(0, 1, (3, x.shape[1]))
    x[stray] /= np.linalg.norm(x[stray], axis=1, keepdims=True)
    labels[7] = NOISE
    far = far_from_segment(x, labels, 4.0)
    assert far[stray].all()
    assert not far[7]  # outliers are never far
    assert far[:600].sum() - 3 <= 10  # the tight members stay


def test_noise_settings_are_validated():
    with pytest.raises(ValueError):
        ClusterConfig(min_cohesion=0.0)
    with pytest.raises(ValueError):
        ClusterConfig(min_cohesion=1.5)
    with pytest.raises(ValueError):
        ClusterConfig(outlier_distance=-1.0)


@pytest.mark.umap
def test_users_who_belong_nowhere_end_up_outliers_with_a_nearest_segment():
    """A planted world through fit_segments: min_cohesion labels noise users outliers far more often than without."""
    import polars as pl
    from sklearn.metrics import adjusted_rand_score

    from embeddings.encoder import Embeddings
    from segmentation.cluster import fit_segments
    from segmentation.config import ReduceConfig
    from segmentation.represent import build_user_vectors
    from segmentation.synthetic import world_log

    log = world_log("taste", 3_000, n_items=1_500, seed=0)
    items = log.items.select("item_id", pl.col("categories").str.split("|"))
    ids = items["item_id"].to_numpy()
    # the category part of the default representation (no encoder in a unit test): item vectors are not read
    users = build_user_vectors(log.interactions, Embeddings(ids, np.zeros((len(ids), 2), np.float32), "none"),
                               method="liked-category-hist", items=items)  # fmt: skip
    truth = log.labels.join(pl.DataFrame({"user_id": users.ids.astype(str)}), on="user_id", how="right")[
        "segment"
    ].to_numpy()
    noise = truth < 0

    def run(cluster: ClusterConfig):
        a = fit_segments(users, ReduceConfig(), cluster, seed=0, picture=False).assignments
        seg = a["segment_id"].to_numpy()
        out = seg < 0
        recall, precision = (out & noise).sum() / noise.sum(), (out & noise).sum() / max(out.sum(), 1)
        return a, seg, recall, precision, adjusted_rand_score(truth[~noise], seg[~noise])

    # min_cohesion is off by default since the default representation is centred (a segment near the mean user
    # points every way there); on the uncentred category part used here it is the measured choice, 0.9
    a, seg, recall, _, ari = run(ClusterConfig(min_cohesion=0.9))
    old_a, old_seg, old_recall, _, old_ari = run(ClusterConfig(min_samples=10, outlier_membership=0.3,
                                                               min_cohesion=None, early_outlier_distance=None,
                                                               outlier_distance=None))  # fmt: skip
    assert old_recall < 0.2  # the old defaults pulled noise users into segments (0.05 here)
    assert recall >= old_recall + 0.3  # min_cohesion labels far more of them outliers (0.49 here)
    # (precision among outliers is not asserted: 0.14 on this small world, 0.47 on average on the 10k tuning worlds;
    # docs/BENCHMARKS.md says the 0.5 target is not met)
    assert ari >= old_ari - 0.02  # without losing ARI on the others
    outliers = a.filter(pl.col("segment_id") < 0)
    assert outliers.height and (outliers["nearest_segment"] >= 0).all()  # their nearest segment is still given
    assert not outliers["soft_assigned"].any()


def test_centred_vectors_make_a_segment_at_the_mean_user_look_incoherent():
    # three segments of their own taste and a tight 'mainstream' segment at the average of everyone's taste:
    # uncentred all four are coherent; centred on the mean user, the mainstream members point every way, so the
    # default min_cohesion (0.7, chosen on centred vectors) dissolves it too: the known cost of the rule
    # (docs/BENCHMARKS.md, "Noise kept apart")
    from segmentation.config import RepresentConfig

    rng = np.random.default_rng(0)
    dim = 32
    centres = np.vstack([np.eye(dim)[:3] + 0.3, np.full(dim, 0.3) + np.eye(dim)[:3].mean(axis=0)])
    x = np.vstack([c + rng.normal(0, 0.08, (200, dim)) for c in centres])
    labels = np.repeat(np.arange(4), 200).astype(np.int32)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    centred = x - x.mean(axis=0)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    assert RepresentConfig().centre
    default = ClusterConfig().min_cohesion
    assert not incoherent_segments(unit, labels, default).any()
    assert incoherent_segments(centred, labels, default).tolist() == [False, False, False, True]


def _taste_world_as_umap_leaves_it(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centred category vectors of a small taste world, and labels as UMAP + HDBSCAN leave its noise users.

    Returns the vectors, the labels, the truth and each user's interactions. Segment users keep their planted
    segment; 60 % of the personal noise users form one extra 'segment' of their
    own (the region UMAP packs them into), the others sit in the planted segment whose mean direction is nearest
    (the strays drawn onto real segments). No UMAP: the outlier rules act after it, in the user-vector space.
    """
    import polars as pl

    from embeddings.encoder import Embeddings
    from segmentation.represent import build_user_vectors
    from segmentation.synthetic import world_log

    log = world_log("taste", 3_000, n_items=1_500, seed=seed)
    items = log.items.select("item_id", pl.col("categories").str.split("|"))
    ids = items["item_id"].to_numpy()
    users = build_user_vectors(log.interactions, Embeddings(ids, np.zeros((len(ids), 2), np.float32), "none"),
                               method="liked-category-hist", items=items, centre=True)  # fmt: skip
    truth = log.labels.join(pl.DataFrame({"user_id": users.ids.astype(str)}), on="user_id", how="right")[
        "segment"
    ].to_numpy()
    v, k = users.vectors, int(truth.max()) + 1
    centres = np.stack([v[truth == c].mean(axis=0) for c in range(k)])
    noise = np.flatnonzero(truth < 0)
    crowd = noise[np.random.default_rng(seed).random(len(noise)) < 0.6]
    stray = np.setdiff1d(noise, crowd)
    labels = truth.astype(np.int32).copy()
    labels[crowd] = k
    labels[stray] = (v[stray] @ centres.T).argmax(axis=1)
    return v, labels, truth, users.activity


@pytest.mark.parametrize("seed", [0, 1])
def test_the_default_rules_keep_noise_users_apart_without_touching_the_segments(seed):
    from sklearn.metrics import adjusted_rand_score

    from segmentation.cluster import keep_noise_apart

    v, labels, truth, activity = _taste_world_as_umap_leaves_it(seed)
    noise = truth < 0
    apart = keep_noise_apart(v, labels, ClusterConfig(), activity=activity)
    final = np.where(apart.demoted, NOISE, apart.labels)
    out = final < 0
    recall, precision = (out & noise).sum() / noise.sum(), (out & noise).sum() / out.sum()
    assert recall >= 0.5 and precision >= 0.5  # the targets (0.77-0.80 and 0.75-0.81 here)
    # the segment users keep their segments but for the light ones the rule demotes (0.980-0.987 here)
    assert adjusted_rand_score(truth[~noise], final[~noise]) >= 0.975
    # the rules of the third round (similarity threshold 6, no weighing by interactions) caught fewer (0.55-0.61)
    prev = keep_noise_apart(
        v, labels, ClusterConfig(outlier_evidence=False, early_outlier_distance=6.0, dissolve_large=True)
    )
    prev_out = np.where(prev.demoted, NOISE, prev.labels) < 0
    assert recall >= (prev_out & noise).sum() / noise.sum() + 0.15
    assert sorted(apart.kept.tolist()) == list(range(10))  # only the noise crowd (segment 10) is dissolved
    sizes = np.bincount(final[final >= 0])
    assert (np.diff(sizes) <= 0).all()  # still numbered by decreasing size, the demoted users left out
    assert apart.dissolved_nearest is not None and (apart.dissolved_nearest[labels == 10] >= 0).all()
    # without the rules (the defaults until this change) every noise user sits in a segment
    off = keep_noise_apart(v, labels, ClusterConfig(min_cohesion=None, early_outlier_distance=None))
    assert not (off.labels < 0).any() and not off.demoted.any() and off.dissolved_nearest is None


def test_segments_stay_numbered_by_size_after_members_are_demoted():
    from segmentation.cluster import keep_noise_apart

    rng = np.random.default_rng(3)
    dim = 32
    x = np.vstack([np.eye(dim)[0] + rng.normal(0, 0.05, (100, dim)), np.eye(dim)[1] + rng.normal(0, 0.05, (95, dim))])
    x[:12] = rng.normal(0, 1, (12, dim))  # 12 members of the largest segment point elsewhere
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.repeat([0, 1], [100, 95]).astype(np.int32)
    apart = keep_noise_apart(x, labels, ClusterConfig(min_cohesion=None, early_outlier_distance=6.0))
    assert apart.demoted[:12].all() and apart.demoted.sum() == 12
    # 88 members are left in the old segment 0 against 95 in the old segment 1: they swap numbers
    assert apart.kept.tolist() == [1, 0]
    assert (apart.labels[:100] == 1).all() and (apart.labels[100:] == 0).all()


def _light_and_heavy(rng: np.random.Generator, dim: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One segment whose members' vectors are means over their interactions: light members (3-5) are noisy, heavy
    ones (40-80) close to the segment's direction; plus 6 heavy strays who share a little of its taste."""
    direction = np.eye(dim)[0]
    n = np.r_[rng.integers(3, 6, 300), rng.integers(40, 81, 300), np.full(6, 60)]
    x = direction + rng.normal(0, 0.7, (len(n), dim)) / np.sqrt(n)[:, None]
    x[-6:] = 0.2 * direction + np.eye(dim)[1:7] + rng.normal(0, 0.7, (6, dim)) / np.sqrt(60)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.zeros(len(n), np.int32), n


def test_far_from_segment_weighs_each_user_by_their_interactions():
    x, labels, n = _light_and_heavy(np.random.default_rng(4))
    light, heavy, strays = np.arange(300), np.arange(300, 600), np.arange(len(n) - 6, len(n))
    by_evidence = far_from_segment(x, labels, 3.5, activity=n)
    assert by_evidence[strays].all()  # heavy users with little of its taste: far for their evidence
    assert not by_evidence[heavy].any()
    assert by_evidence[light].mean() < 0.1  # light members are noisy by chance alone: most are kept (5 % here)
    # the similarity rule cannot tell them apart: every threshold that catches the strays demotes more light members
    catching = [z for z in np.arange(1.0, 4.01, 0.25) if far_from_segment(x, labels, z, evidence=False)[strays].all()]
    assert catching
    for z in catching:
        assert far_from_segment(x, labels, z, evidence=False)[light].mean() > 1.5 * by_evidence[light].mean()
    # without activity every user counts alike: a transform of the similarity, which misses strays again
    assert not far_from_segment(x, labels, 3.5)[strays].all()


def test_a_large_incoherent_segment_is_kept_unless_dissolve_large():
    """Two planted segments merged into one large segment point two ways (low cohesion), as a crowd of users who
    belong nowhere does; only the crowd, smaller than the median segment, is dissolved by default."""
    from segmentation.cluster import keep_noise_apart

    rng = np.random.default_rng(5)
    dim = 32
    tight = [np.eye(dim)[i] + rng.normal(0, 0.15, (200, dim)) for i in range(3)]
    merged = np.vstack(
        [np.eye(dim)[3] + rng.normal(0, 0.15, (300, dim)), np.eye(dim)[4] + rng.normal(0, 0.15, (300, dim))]
    )
    crowd = rng.normal(0, 1, (60, dim))
    x = np.vstack([merged, *tight, crowd])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.repeat(np.arange(5), [600, 200, 200, 200, 60]).astype(np.int32)
    assert incoherent_segments(x, labels, 0.8).tolist() == [True, False, False, False, True]
    assert incoherent_segments(x, labels, 0.8, small_only=True).tolist() == [False, False, False, False, True]
    kept = keep_noise_apart(x, labels, ClusterConfig(min_cohesion=0.8, early_outlier_distance=None))
    assert kept.kept.tolist() == [0, 1, 2, 3] and (kept.labels[:600] == 0).all()
    both = keep_noise_apart(
        x, labels, ClusterConfig(min_cohesion=0.8, early_outlier_distance=None, dissolve_large=True)
    )
    assert (both.labels[:600] == NOISE).all() and (both.labels[-60:] == NOISE).all()


def test_user_vectors_carry_each_users_interactions():
    import polars as pl

    from embeddings.encoder import Embeddings
    from segmentation.represent import build_user_vectors

    inter = pl.DataFrame({"user_id": ["b", "a", "a", "b", "b", "c"], "item_id": ["i", "i", "j", "j", "k", "k"],
                          "rating": [4.0, 5.0, 3.0, 2.0, 4.0, 1.0], "timestamp": [0] * 6})  # fmt: skip
    items = Embeddings(np.array(["i", "j", "k"], dtype=object), np.eye(3, dtype=np.float32), "m")
    users = build_user_vectors(inter, items, method="item-mean")
    assert users.ids.tolist() == ["a", "b", "c"] and users.activity.tolist() == [2, 3, 1]
    sub = users.subset(np.array([2, 0]))
    assert sub.ids.tolist() == ["c", "a"] and sub.activity.tolist() == [1, 2]
    with pytest.raises(ValueError, match="activity"):
        Embeddings(users.ids, users.vectors, "m", np.array([1, 2]))


def test_segments_are_renumbered_by_decreasing_size_ties_in_their_order():
    from segmentation.cluster import _by_size, _relabel

    labels = np.array([2, 2, 0, 1, 1, 3, 3, NOISE, NOISE, NOISE, 2])
    new_id = _by_size(labels, 4)
    assert new_id.tolist() == [3, 1, 0, 2]  # 2 (3 users) first; 1 and 3 (2 each) in their order; 0 last
    assert _relabel(labels, new_id).tolist() == [0, 0, 3, 1, 1, 2, 2, NOISE, NOISE, NOISE, 0]
    assert _relabel(np.array([NOISE, NOISE]), np.empty(0, np.int32)).tolist() == [NOISE, NOISE]
    assert _by_size(np.array([NOISE]), 2).tolist() == [0, 1]  # segments with no user keep their order


def test_segment_envelopes_judge_new_users_as_the_run_judged_its_own(tmp_path):
    """The envelopes of a run's final segments (members only) flag new users who stray from the segment they are
    placed in, for the interactions they made, and keep new users like the members; they survive a save."""
    from segmentation._errors import DataError
    from segmentation.cluster import SegmentEnvelopes

    rng = np.random.default_rng(5)
    x, labels, n = _light_and_heavy(rng)
    members, strays = np.arange(len(n) - 6), np.arange(len(n) - 6, len(n))
    kept = np.where(far_from_segment(x, labels, 3.5, activity=n), NOISE, labels)  # the run's final labels
    envelopes = SegmentEnvelopes.fit(x, kept, 3.5, activity=n)
    assert envelopes.directions.shape == (1, x.shape[1]) and np.isfinite(envelopes.limits).all()
    # new users drawn as the members and the strays were
    fresh, fresh_labels, fresh_n = _light_and_heavy(np.random.default_rng(6))
    far = envelopes.far(fresh, fresh_labels, fresh_n)
    assert far[strays].all() and far[members].mean() < 0.1
    assert not envelopes.far(fresh, np.full(len(fresh), NOISE), fresh_n).any()  # no segment given: never far
    with pytest.raises(ValueError, match="segment 3 given; the envelopes have 1"):
        envelopes.far(fresh[:1], np.array([3]), fresh_n[:1])
    envelopes.save(tmp_path / "e.npz")
    again = SegmentEnvelopes.load(tmp_path / "e.npz", n_segments=1, dim=x.shape[1])
    np.testing.assert_array_equal(again.far(fresh, fresh_labels, fresh_n), far)
    assert (again.z, again.evidence) == (3.5, True)
    with pytest.raises(DataError, match=r"e\.npz holds 1 segment limits .* the run has 2 segments"):
        SegmentEnvelopes.load(tmp_path / "e.npz", n_segments=2, dim=x.shape[1])
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(DataError, match=r"bad\.npz cannot be read .* the run folder is damaged"):
        SegmentEnvelopes.load(tmp_path / "bad.npz")


def test_segment_envelopes_of_the_final_labels_reproduce_far_from_segment():
    """Fitted on the labels before the rule, the envelopes make exactly the rule's outliers of the same users."""
    from segmentation.cluster import SegmentEnvelopes

    x, labels = _blobs(np.random.default_rng(7))
    n = np.random.default_rng(8).integers(2, 80, len(labels))
    labels[:5] = NOISE
    for evidence in (True, False):
        rule = far_from_segment(x, labels, 2.5, activity=n, evidence=evidence)
        envelopes = SegmentEnvelopes.fit(x, labels, 2.5, activity=n, evidence=evidence)
        np.testing.assert_array_equal(envelopes.far(x, labels, n), rule)
        assert 0 < rule.sum() < 0.2 * len(rule)


def test_a_runs_envelopes_read_its_users_in_any_row_order_and_keep_every_segment():
    """``fit_segment_envelopes`` matches users to the assignments by id, and keeps as many segments as the run has
    (a last segment without members included: ``Run.place_users`` checks the count against segments.parquet)."""
    import polars as pl

    from embeddings.encoder import Embeddings
    from segmentation.cluster import ASSIGNMENTS, Segmentation, SegmentEnvelopes
    from segmentation.runs import fit_segment_envelopes

    x, labels = _blobs(np.random.default_rng(9))
    n = len(labels)
    activity = np.random.default_rng(10).integers(2, 60, n)
    ids = np.array([f"u{i:03d}" for i in range(n)], dtype=object)
    a = pl.DataFrame({"user_id": ids.astype(str), "segment_id": labels, "membership": np.ones(n, np.float32),
                      "nearest_segment": labels, "nearest_membership": np.ones(n, np.float32),
                      "soft_assigned": np.zeros(n, bool), "x": x[:, 0], "y": x[:, 1]}, schema=ASSIGNMENTS)  # fmt: skip
    seg = Segmentation(assignments=a, coords=x[:, :2], n_segments=5, min_cluster_size=15, seconds={})
    order = np.random.default_rng(11).permutation(n)
    users = Embeddings(ids[order], x[order], "planted", activity[order])
    got = fit_segment_envelopes(seg, users, ClusterConfig(outlier_distance=2.5))
    want = SegmentEnvelopes.fit(x, labels, 2.5, activity=activity, n_segments=5)
    assert got is not None and got.directions.shape[0] == 5 and np.isnan(got.limits[4])
    np.testing.assert_allclose(got.directions, want.directions, atol=1e-12)
    np.testing.assert_allclose(got.limits, want.limits, atol=1e-12)
    assert not got.far(x[:3], np.array([4, 4, 4]), activity[:3]).any()  # nobody is far from an empty segment
    assert fit_segment_envelopes(seg, users, ClusterConfig(outlier_distance=None)) is None
