"""Label-free parameter choice (DBCV + subsample stability) and seed/bootstrap stability of segmentations."""

import dataclasses
import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from embeddings.encoder import Embeddings
from segmentation._errors import DataError
from segmentation.config import ClusterConfig, ReduceConfig
from segmentation.selection import (
    STABILITY_TOLERANCE,
    Candidate,
    choose_parameters,
    clustered_stability,
    finest_stable,
    needs_selection,
    outlier_margin,
    relative_validity,
)
from segmentation.stability import clusterwise_jaccard, segment_stability, segmentation_stability


def test_relative_validity_hand_examples():
    # points 0-2 in one segment (edges of length 1), 3-5 in another, joined by one edge of length 10
    mst = np.array([[0, 1, 1.0], [1, 2, 1.0], [2, 3, 10.0], [3, 4, 1.0], [4, 5, 1.0]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert relative_validity(mst, labels) == pytest.approx(0.9)  # (10 - 1) / 10 for both
    # one point called an outlier: it counts in N, and the segments it cut off count as islands
    # (separation = 2 x the longest edge), as in HDBSCAN's relative_validity_
    assert relative_validity(mst, np.array([0, 0, -1, 1, 1, 1])) == pytest.approx(5 * 0.95 / 6)
    # one segment across the gap: its widest link is the gap itself
    assert relative_validity(mst, np.zeros(6, dtype=int)) == pytest.approx(0.5)
    # a cut through equal links separates nothing
    chain = np.array([[0, 1, 1.0], [1, 2, 1.0], [2, 3, 1.0], [3, 4, 1.0]])
    assert relative_validity(chain, np.array([0, 0, 0, 1, 1])) == pytest.approx(0.0)
    assert relative_validity(mst, np.full(6, -1)) == -1.0


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(n_samples=[400, 250, 150, 100], n_features=5, cluster_std=0.6, random_state=3)
    return x.astype(np.float32), y


def test_choose_parameters_finds_the_blobs(blobs):
    x, y = blobs
    choice = choose_parameters(x, ClusterConfig(), seed=0)
    assert choice.chosen.n_segments == 4 and choice.chosen.eligible
    assert choice.config.min_cluster_size == choice.chosen.min_cluster_size
    assert choice.config.cluster_selection_method in ("eom", "leaf")
    assert not needs_selection(choice.config)
    assert len(choice.candidates) == 2 * len({c.min_cluster_size for c in choice.candidates})
    assert choice.chosen == finest_stable([c for c in choice.candidates if c.eligible])
    assert all(isinstance(c.stability_clustered, float) for c in choice.candidates)  # measured beside
    assert "most segments" in choice.reason and "stability" in choice.to_dict()["criterion"]
    summary = json.loads(json.dumps(choice.to_dict()))
    assert summary["min_cluster_size"] == choice.config.min_cluster_size and summary["candidates"]


def _cand(size, k, stability, dbcv, method="eom"):
    return Candidate(size, method, k, 0.0, dbcv, stability, round(stability * (1 + dbcv) / 2, 4), True)


def test_the_finest_of_the_most_stable_candidates_is_chosen():
    # the style world's case (3,000 users, seed 1): DBCV prefers a large smallest segment that merges planted
    # ones (7 segments, best score); a candidate as stable finds 10; an unstable fine split (leaf) stays out
    merged = _cand(240, 7, 0.989, 0.887)
    fine = _cand(120, 10, 0.996, 0.697, "leaf")
    coarse = _cand(120, 9, 0.999, 0.812)
    shaky = _cand(15, 27, 0.613, 0.179, "leaf")
    assert max([merged, fine, coarse, shaky], key=lambda c: c.score) is merged  # the old rule
    assert finest_stable([merged, fine, coarse, shaky]) is fine
    # outside the tolerance a finer candidate does not count as stable
    assert finest_stable([coarse, _cand(60, 12, 0.999 - STABILITY_TOLERANCE - 0.001, 0.9)]) is coarse
    # equal segment counts: the higher score, then the smaller min_cluster_size
    a, b = _cand(30, 10, 1.0, 0.8), _cand(60, 10, 1.0, 0.9)
    assert finest_stable([a, b]) is b
    assert finest_stable([_cand(60, 10, 1.0, 0.8), a]) is a


def _refits(labels: np.ndarray, moved: float, seed: int, n: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """(the candidate's labels on an 80 % subsample, a refit's labels there) with ``moved`` of the clustered users
    relabelled at random in the refit; outliers stay outliers."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        idx = np.sort(rng.choice(len(labels), int(0.8 * len(labels)), replace=False))
        full, refit = labels[idx], labels[idx].copy()
        move = (refit >= 0) & (rng.random(len(idx)) < moved)
        refit[move] = rng.integers(0, labels.max() + 1, int(move.sum()))
        out.append((full, refit))
    return out


def _scored(size: int, labels: np.ndarray, moved: float, seed: int) -> tuple[Candidate, Candidate]:
    """The candidate scored by the clustered stability and by the rule's (outliers as one more label)."""
    refits = _refits(labels, moved, seed)
    k, noise = int(labels.max()) + 1, float((labels < 0).mean())
    new = float(np.mean([clustered_stability(a, b) for a, b in refits]))
    old = float(np.mean([adjusted_rand_score(a, b) for a, b in refits]))
    return (Candidate(size, "eom", k, noise, 0.8, new, new * 0.9, True, new),
            Candidate(size, "eom", k, noise, 0.8, old, old * 0.9, True, new))  # fmt: skip


def test_clustered_stability_counts_outliers_against_a_candidate():
    # measured beside the rule (stability_clustered), not read by it: see segmentation.selection's docstring
    # taste seed 2 through the CLI: 10 planted segments of 300 users; min_cluster_size 50 finds all 10 with no
    # outliers, reproduced at about 0.95; 800 merges them in pairs and leaves 23 % out, the same users in every refit
    truth = np.repeat(np.arange(10), 300)
    coarse_labels = truth // 2
    coarse_labels[np.random.default_rng(1).random(len(truth)) < 0.23] = -1
    fine, fine_old = _scored(50, truth, 0.03, seed=2)
    coarse, coarse_old = _scored(800, coarse_labels, 0.0, seed=3)
    assert coarse_old.stability == pytest.approx(1.0) and fine_old.stability < 0.97  # the rule's measure ...
    assert finest_stable([fine_old, coarse_old]) is coarse_old  # ... takes the 5 segments
    assert coarse.stability == pytest.approx(0.77, abs=0.02)  # at most the share it clusters
    assert fine.stability == pytest.approx(fine_old.stability)  # no outliers: the same number
    assert finest_stable([fine, coarse]) is fine
    # equal outliers: a stable coarse candidate still wins over an unstable fine one
    out = np.random.default_rng(4).random(len(truth)) < 0.05
    stable, _ = _scored(800, np.where(out, -1, truth // 2), 0.0, seed=5)
    shaky, _ = _scored(50, np.where(out, -1, truth), 0.15, seed=6)
    assert stable.noise_share == shaky.noise_share and stable.stability > shaky.stability + 0.05
    assert finest_stable([stable, shaky]) is stable


def test_the_outlier_margin_excludes_a_candidate_that_leaves_many_more_users_out():
    # taste seed 2 through the CLI (10,000 users): min_cluster_size 50 finds the 10 planted segments with no outliers
    # at stability 0.955; 800 finds 5 and leaves 22.9 % out, the same users in every refit (stability 1.000)
    fine = Candidate(50, "eom", 10, 0.0, 0.6, 0.955, 0.764, True)
    coarse = Candidate(800, "eom", 5, 0.229, 0.5, 1.0, 0.75, True)
    # style seed 2: 400 with leaf selection leaves 1.1 % out (11 segments, 0.991) and stays eligible
    leaf = Candidate(400, "leaf", 11, 0.011, 0.6, 0.991, 0.793, True)
    assert finest_stable([fine, coarse]) is coarse  # the rule without the margin (off) takes the 5 segments
    assert outlier_margin([fine, coarse], None) == [fine, coarse]
    kept = outlier_margin([fine, coarse, leaf], 0.05)
    assert [c.eligible for c in kept] == [True, False, True]
    assert finest_stable([c for c in kept if c.eligible]) is leaf
    assert finest_stable([c for c in outlier_margin([fine, coarse], 0.05) if c.eligible]) is fine
    # measured from the least-outlying candidate within the segment bounds, not from zero
    few = dataclasses.replace(fine, n_segments=2, eligible=False)  # outside min_segments..max_segments
    lean = dataclasses.replace(fine, noise_share=0.03)
    assert [c.eligible for c in outlier_margin([few, lean, dataclasses.replace(coarse, noise_share=0.07)], 0.05)] \
        == [False, True, True]  # fmt: skip


def test_choose_parameters_applies_the_outlier_margin():
    # two dense blobs and a ring of sparse points around a third: coarse settings leave the ring out in every refit
    rng = np.random.default_rng(0)
    x, _ = make_blobs(n_samples=[300, 300, 300], n_features=2, centers=[(0, 0), (8, 0), (4, 7)], cluster_std=0.5,
                      random_state=0)  # fmt: skip
    x = np.vstack([x, rng.uniform(-4, 12, size=(120, 2))]).astype(np.float32)
    off = choose_parameters(x, ClusterConfig(max_extra_outlier_share=None), seed=0)
    on = choose_parameters(x, ClusterConfig(max_extra_outlier_share=0.0), seed=0)
    least = min(c.noise_share for c in off.candidates if c.eligible)
    assert on.chosen.noise_share <= least + 1e-9
    assert all(c.eligible == (c.noise_share <= least + 1e-9) for c in on.candidates if 3 <= c.n_segments <= 40)
    assert "left out" in on.reason and "more of the users" in on.to_dict()["criterion"]
    assert "left out" not in off.reason


def test_clustered_stability_hand_examples():
    # users 0-1 outliers in both; the rest agree: ARI 1 on the 4 clustered of 6 users
    assert clustered_stability(np.array([-1, -1, 0, 0, 1, 1]), np.array([-1, -1, 5, 5, 7, 7])) == pytest.approx(4 / 6)
    # outliers in one labelling only are left out of the ARI and counted against it
    assert clustered_stability(np.array([0, 0, 0, 1, 1, 1]), np.array([0, 0, -1, 1, 1, -1])) == pytest.approx(4 / 6)
    assert clustered_stability(np.array([0, 1, 2]), np.array([-1, -1, 0])) == 0.0  # fewer than 2 users in both
    a, b = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0])
    assert clustered_stability(a, b) == pytest.approx(adjusted_rand_score(a, b))  # no outliers: the plain ARI


def test_choose_parameters_keeps_given_values_and_rescales(blobs):
    x, _ = blobs
    fixed = choose_parameters(x, ClusterConfig(min_cluster_size=30, cluster_selection_method="auto"), seed=0)
    assert fixed.config.min_cluster_size == 30 and {c.min_cluster_size for c in fixed.candidates} == {30}
    method = choose_parameters(x, ClusterConfig(cluster_selection_method="leaf"), seed=0)
    assert {c.cluster_selection_method for c in method.candidates} == {"leaf"}
    # scored on a 450-point subsample, applied to the 900 fitted points: the size doubles
    sub = choose_parameters(x, ClusterConfig(), seed=0, max_points=450)
    assert sub.n_points == 450
    assert sub.config.min_cluster_size == max(15, round(sub.chosen.min_cluster_size * 900 / 450))
    assert sub.config.min_samples == 20  # the density scale follows: 10 of 450 points ~ 20 of 900


def test_choose_parameters_when_nothing_is_eligible(blobs):
    x, _ = blobs
    choice = choose_parameters(x, ClusterConfig(min_segments=30, max_segments=40), seed=0)
    assert "no candidate" in choice.reason and not choice.chosen.eligible


def test_choose_parameters_too_few_points_is_a_clear_error():
    with pytest.raises(DataError, match="too few for segments"):
        choose_parameters(np.random.default_rng(0).normal(size=(20, 5)), ClusterConfig(), seed=0)


def test_choice_is_reproducible(blobs):
    x, _ = blobs
    assert (
        choose_parameters(x, ClusterConfig(), seed=4).candidates
        == choose_parameters(x, ClusterConfig(), seed=4).candidates
    )


@pytest.mark.umap
def test_segmentation_stability_on_clear_segments(blobs):
    x, y = blobs
    rng = np.random.default_rng(0)
    users = Embeddings(np.array([f"u{i}" for i in range(len(x))], dtype=object),
                       np.hstack([x, rng.normal(0, 0.1, (len(x), 11))]).astype(np.float32), "blobs")  # fmt: skip
    result = segmentation_stability(users, ReduceConfig(n_neighbors=10), ClusterConfig(), seeds=(0, 1), n_bootstrap=1)
    assert len(result.seed_ari) == 1 and len(result.bootstrap_ari) == 1
    assert min(result.seed_ari) > 0.9 and min(result.bootstrap_ari) > 0.9
    assert result.n_segments == (4, 4)
    summary = json.loads(json.dumps(result.to_dict()))
    assert summary["seed_ari"]["min"] > 0.9
    # every segment of clear blobs comes back in both refits
    assert sorted(summary["per_segment"]) == ["0", "1", "2", "3"]
    assert all(v["n_refits"] == 2 and v["jaccard"] > 0.9 for v in summary["per_segment"].values())


def test_segment_stability_hand_example():
    # the run: segment 0 = users 0-3, segment 1 = users 4-7, user 8 an outlier (no stability)
    reference = np.array([0, 0, 0, 0, 1, 1, 1, 1, -1])
    # refit 1 (every user): segment 0 loses user 3 to segment 1's refit twin, which also takes the outlier
    # -> segment 0: best |{0,1,2}| / |{0,1,2,3}| = 3/4; segment 1: |{4..7}| / |{3..8}| = 4/6
    refit1 = np.array([5, 5, 5, 7, 7, 7, 7, 7, 7])
    # refit 2 (a subsample without users 0 and 4): the same segments exactly -> 1 and 1
    rows2 = np.array([1, 2, 3, 5, 6, 7, 8])
    refit2 = np.array([0, 0, 0, 1, 1, 1, -1])
    result = {s.segment_id: s for s in segment_stability(reference, [(np.arange(9), refit1), (rows2, refit2)])}
    assert sorted(result) == [0, 1]
    assert result[0].jaccards == pytest.approx((3 / 4, 1.0), abs=1e-12)
    assert result[1].jaccards == pytest.approx((4 / 6, 1.0), abs=1e-12)
    assert result[0].jaccard == pytest.approx((3 / 4 + 1) / 2, abs=1e-12)
    d = result[1].to_dict()
    assert d == {"jaccard": round((4 / 6 + 1) / 2, 4), "min": round(4 / 6, 4), "n_refits": 2, "dissolved": 0}
    assert not result[0].tentative and not result[1].tentative


def test_segment_that_splits_or_merges_scores_low():
    reference = np.repeat([0, 1, 2], 10)
    # segment 0 splits in half in every refit; segments 1 and 2 merge into one refit segment
    split_merge = np.concatenate([np.repeat([0, 1], 5), np.full(20, 2)])
    rows = np.arange(30)
    result = {s.segment_id: s for s in segment_stability(reference, [(rows, split_merge), (rows, split_merge)])}
    assert result[0].jaccard == pytest.approx(0.5) and result[0].tentative
    assert result[0].to_dict()["fate"] == "split" and result[0].to_dict()["dissolved"] == 2
    assert result[1].jaccard == pytest.approx(0.5) and result[1].to_dict()["fate"] == "merged"
    assert result[1].to_dict()["merged_with"] == 2 and result[2].to_dict()["merged_with"] == 1
    # a segment that becomes outliers scores 0
    gone = clusterwise_jaccard(reference, np.concatenate([np.full(10, -1), np.repeat([0, 1], 10)]))
    assert gone[0] == (0.0, "outliers", None) and gone[1][0] == 1.0


def test_segment_missing_from_a_subsample_skips_that_refit():
    reference = np.array([0, 0, 1, 1, 1])
    result = {s.segment_id: s for s in segment_stability(reference, [(np.array([2, 3, 4]), np.array([0, 0, 0]))])}
    assert result[0].jaccards == () and result[0].jaccard is None and result[0].to_dict()["jaccard"] is None
    assert result[1].jaccards == (1.0,)


@pytest.mark.umap
def test_stability_stage_scores_the_run_segments_on_a_sample(blobs):
    from segmentation.cluster import fit_segments
    from segmentation.config import EvalConfig
    from segmentation.describe import with_stability
    from segmentation.stability import measure_stability

    x, _ = blobs
    rng = np.random.default_rng(0)
    users = Embeddings(np.array([f"u{i}" for i in range(len(x))], dtype=object),
                       np.hstack([x, rng.normal(0, 0.1, (len(x), 11))]).astype(np.float32), "blobs")  # fmt: skip
    reduce = ReduceConfig(n_neighbors=10)
    run = fit_segments(users, reduce, ClusterConfig(), seed=0, picture=False)
    # more users than stability_max_users: the run's segments on a 600-user sample, against the sample's own
    # fit with the run's seed, one other seed and one subsample (3 refits)
    out = measure_stability(users, run, reduce, ClusterConfig(),
                            EvalConfig(stability_seeds=1, stability_subsamples=1, stability_max_users=600), 0)  # fmt: skip
    assert out["n_users"] == 600 and sorted(out["per_segment"]) == ["0", "1", "2", "3"]
    assert all(v["n_refits"] == 3 and v["jaccard"] > 0.9 for v in out["per_segment"].values())
    assert "clusterboot" in out["note"]
    profiles = with_stability([_profile(0), _profile(3), _profile(-1)], out)
    assert [p.stability for p in profiles] == [out["per_segment"]["0"]["jaccard"], out["per_segment"]["3"]["jaccard"],
                                               None]  # fmt: skip
    assert not any(p.tentative for p in profiles)
    assert with_stability([_profile(0)], {"skipped": "off"})[0].stability is None


def _profile(sid: int):
    from segmentation.describe import SegmentProfile

    return SegmentProfile(sid, "x", "", 10, 0.1, [], [], [], [], [], [], [], [], 3.5, 1.0, 20.0, 18.0, {})
