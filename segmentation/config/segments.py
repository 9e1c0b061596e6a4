"""The reduction and clustering sections (``reduce``, ``cluster``)."""

from typing import Literal

from pydantic import Field

from segmentation.config._base import _Section


class ReduceConfig(_Section):
    """UMAP reduction of user vectors."""

    n_components: int = Field(5, ge=2, le=100, description="Dimensions used for clustering.")
    n_neighbors: int = Field(15, ge=2, le=500, description="UMAP's neighbourhood size.")
    min_dist: float = Field(0.0, ge=0.0, le=1.0, description="UMAP's minimum distance (0 packs segments tightly).")
    metric: str = Field("cosine", description="UMAP's metric on the user vectors.")
    sample_size: int = Field(
        50_000,
        ge=1000,
        description="Above this many users, UMAP and HDBSCAN are fitted on a uniform sample of this size and "
        "every other user is placed by its nearest sample users.",
    )
    sample_fits: int = Field(
        3,
        ge=1,
        le=9,
        description="Past sample_size users, fit on this many samples (seeds seed, seed+1, ...) and keep the fit "
        "that agrees most with the others (ARI over every user): which users one sample holds can decide whether "
        "two touching segments come apart. Each more costs one fit (about 2 min at 1M users). 1: one sample.",
    )
    assign: Literal["knn", "umap"] = Field(
        "knn",
        description="How users outside the sample get coordinates: knn (weighted mean of their nearest sample "
        "users' coordinates, found by FAISS; fast) or umap (UMAP's own transform; about 50x slower).",
    )
    knn_dims: int | None = Field(
        64, ge=2, description="PCA dimensions of that neighbour search (empty: the original space)."
    )


class ClusterConfig(_Section):
    """HDBSCAN clustering of the reduced vectors."""

    min_cluster_size: int | None = Field(
        None,
        ge=2,
        description="Smallest segment. Empty: chosen without labels (DBCV and bootstrap stability, see "
        "selection_*) among 0.5-8 % of the users fitted.",
    )
    min_samples: int | None = Field(
        10,
        ge=1,
        description="HDBSCAN's density smoothing (empty: min_cluster_size); when the parameter selection scored "
        "a subsample, scaled to the users fitted.",
    )
    cluster_selection_method: Literal["auto", "eom", "leaf"] = Field(
        "auto",
        description="eom: fewer, larger segments; leaf: many even ones; auto: chosen with min_cluster_size.",
    )
    cluster_selection_epsilon: float = Field(0.0, ge=0.0, description="Merge segments closer than this.")
    outlier_membership: float | None = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Outliers whose soft membership in their nearest segment reaches this are moved into it "
        "(empty: outliers stay outliers, with their nearest segment shown beside). 0.3 kept the most planted "
        "noise out of segments at 1M users (0.1 moved nearly all of it in).",
    )
    outlier_distance: float | None = Field(
        3.25,
        gt=0.0,
        description="Users who lie more than this many robust standard deviations (1.4826 x MAD) from their "
        "segment's members are outliers, their segment kept as nearest_segment (empty: off). Once the segments are "
        "final, every user is judged against their segment (an outlier against the nearest): by the direction of "
        "their vector (outlier_evidence says how it is measured) and, with outlier_categories, by the categories "
        "they chose, the two robust z-scores summed and divided by sqrt(2); outliers who are not far join their "
        "nearest segment. UMAP pulls users who belong nowhere onto a segment; in the user-vector space and in their "
        "choices they stay apart. 3.25 was chosen on the tuning planted worlds at 10,000 users (taste, style, light; "
        "docs/BENCHMARKS.md, issue 14, tenth round: the best of 3.0-3.5 for the least of noise recall and "
        "precision).",
    )
    category_reassign: float | None = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="Once the segments are final, a member whose choices give their own segment a posterior below "
        "this moves to the segment that explains them best, unless outlier_distance calls them far from it; then "
        "outlier_distance judges everyone (empty: off). A user's choices are their interactions counted per (rating "
        "level, category) (represent.rating_levels); the posterior is their likelihood under each segment's pooled "
        "profile, normalised (a naive Bayes with equal priors), so 0.5 moves a member wherever another segment "
        "explains them better. A light user's vector is too noisy to place them, and a segment nested in a broader "
        "one loses members to it in UMAP's layout; pooled over the members, what they chose and how they rated it "
        "tells the segments apart. On since 2026-12-05's eleventh round (docs/BENCHMARKS.md, issue 14): 0.5 was "
        "chosen on the tuning planted worlds (taste, style, light) over 0.05 and 0.2; by categories alone (the tenth "
        "round) it merged rating-style twins. Held back where it would move too many: category_reassign_max_share.",
    )
    category_reassign_max_share: float | None = Field(
        0.15,
        gt=0.0,
        le=1.0,
        description="category_reassign moves nobody where the segments' choice profiles would move more than this "
        "share of the members: such segments are set apart by more than what their members chose (the embedding of "
        "the items, how they rate against their own habit), and moving members by their choices alone pulls the "
        "segments towards another model of the users. On the tuning planted worlds the profiles would move 1-11 % "
        "of the members; on MovieLens 100k 23-32 %, where moving them lowered the subsample agreement from 0.66 to "
        "0.58 (docs/BENCHMARKS.md, issue 14, eleventh round). Empty: no limit.",
    )
    early_outlier_distance: float | None = Field(
        3.5,
        gt=0.0,
        description="Right after HDBSCAN, before the split tests, members more than this many robust standard "
        "deviations from their segment's mean direction (outlier_evidence) are set aside, so that users who belong "
        "nowhere stay out of the tests' fits (empty: off). outlier_distance judges every user again once the "
        "segments are final; with it off, these are the run's outliers. 3.5 with outlier_evidence was chosen on "
        "the tuning planted worlds at 10,000 users (docs/BENCHMARKS.md, issue 14, fourth round), 6 without it. "
        "Until 2026-12-05's tenth round this rule was outlier_distance, and it made the run's outliers: a saved "
        "configuration of that time that set outlier_distance now sets the final rule, with this one at its default.",
    )
    outlier_evidence: bool = Field(
        True,
        description="Weigh the distance of outlier_distance and early_outlier_distance by how many interactions "
        "each user has: a user vector is a mean over "
        "them, so light users sit far from their segment by chance alone. On: the score is n (1/s^2 - 1) on a log "
        "scale (s: the similarity to the segment's mean direction, n: the user's interactions); off: s itself "
        "(the rule before 2026-12-03's fourth round, calibrated at 6).",
    )
    outlier_categories: bool = Field(
        True,
        description="outlier_distance also reads the categories users chose (where the items have categories): "
        "each user's G statistic (log-likelihood ratio) of their own category shares against their segment's. A "
        "light user's vector points every way by chance; their choices, weighed by how many they made, do not. "
        "On the tuning planted worlds it lifted noise precision on the light-user world from 0.43 to 0.53 at the "
        "same recall (docs/BENCHMARKS.md, issue 14, tenth round). Off: direction alone.",
    )
    min_cohesion: float | None = Field(
        0.7,
        gt=0.0,
        le=1.0,
        description="A segment whose cohesion (length of the mean of its members' unit user vectors) is below "
        "this share of the median segment's has no common taste: its users become outliers, each with the "
        "nearest remaining segment as nearest_segment (empty: off). UMAP packs users who belong nowhere into one "
        "region that HDBSCAN may call a segment. On centred user vectors (represent.centre) such a region scored "
        "0.49-0.67 of the median and real segments 0.81 or more on the tuning planted worlds, so 0.7 dissolves "
        "the one and keeps the others (0.9 dissolved real segments there; docs/BENCHMARKS.md).",
    )
    dissolve_large: bool = Field(
        False,
        description="min_cohesion may also dissolve segments larger than the median segment (off: only smaller "
        "ones). Users who belong nowhere are a small crowd; on the tuning planted world of light users the large "
        "incoherent segments were planted segments merged, and dissolving them made thousands of users outliers.",
    )
    max_extra_outlier_share: float | None = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Parameter selection: a candidate is eligible only if the share of users it leaves out is at "
        "most the least share left out by a candidate with min_segments..max_segments segments plus this (empty or "
        "1: off, the rule before 2026-12-03's sixth round). A candidate that leaves the same users out in every "
        "subsample refit looks perfectly stable with them as one label (taste world, seed 2: 5 segments, 22.9 % "
        "left out, over the 10 planted ones with none). Chosen on the tuning planted worlds (taste, style, light; "
        "seeds 0-2; the recorded candidates of 3,000 users on the library path and of 10,000 through the CLI): "
        "0.036-0.08 lost no run against the rule without it and had the best mean ARI on both; 0.05 lies inside "
        "(benchmarks/outlier_margin.py; docs/BENCHMARKS.md, issue 14, sixth round).",
    )
    split_stability: float | None = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="After the fit of at most reduce.sample_size users (past it, the sample_fits medoid keeps touching "
        "segments apart, and the test cost 12 % of a 100,000-user run), each segment of at least 500 users is fitted "
        "again on its own members (UMAP, "
        "then the same label-free choice with at least 2 parts, none smaller than the run's smallest segment); it is "
        "split when its parts reproduce on subsamples with at least this stability (empty: off). UMAP over every user "
        "can draw two segments that share a category as one region. Splits may take the run past max_segments. On "
        "the tuning planted worlds (taste, style, light; 10,000 users, seeds 0-2) segments of one planted segment "
        "scored at most 0.845 and the merged pairs that come apart 0.944-1.00 (two merged pairs never did: 0.37, "
        "0.63); 0.9 is the middle of that gap (benchmarks/split_stability.py; docs/BENCHMARKS.md, issue 14, seventh "
        "round). Every segment of that result is then tested on the categories its users chose (a mixture of "
        "multinomials, parts by BIC) by the same bar: light users' vectors are too noisy for any layout, their pooled "
        "choices are not (segmentation.mixture; docs/BENCHMARKS.md, issue 14, ninth round).",
    )
    split_reads_levels: bool = Field(
        True,
        description="A segment that the category split test (split_stability's second test) keeps whole is tested "
        "once more on what its members chose per (rating level, category) (represent.rating_levels, as "
        "category_reassign reads them), with BIC's number of parts alone; off: categories alone (the rule before "
        "2026-12-05's twelfth round of issue 14). Two segments that choose much alike and rate differently (a "
        "segment nested in a broader one with its own rating style) are one multinomial by their categories and two "
        "by their categories and ratings. Trying fewer parts than BIC's, as the category test does, split MovieLens "
        "100k's refits and lowered their seed-to-seed agreement from 0.68 to 0.59 (docs/BENCHMARKS.md).",
    )
    min_segments: int = Field(3, ge=1, description="Parameter selection: fewest segments acceptable.")
    max_segments: int = Field(40, ge=2, description="Parameter selection: most segments acceptable.")
    selection_resamples: int = Field(
        4, ge=1, le=50, description="Parameter selection: subsample refits per candidate (80 % of the users each)."
    )
