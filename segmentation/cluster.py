"""HDBSCAN segments over UMAP coordinates; outliers kept visible; new users assignable.

Labels: segment ids 0..K-1 in decreasing size, ``NOISE = -1`` for outliers.
Every user, outliers included, also gets ``nearest_segment`` (argmax of HDBSCAN's
soft membership), so a campaign can still reach them.
"""

import logging
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from embeddings.encoder import Embeddings
from embeddings.partitions import Partitions, in_process
from segmentation._errors import DataError, check_is_fitted
from segmentation._polars import to_float
from segmentation.config import ClusterConfig, ReduceConfig
from segmentation.reduce import Neighbours, Reducer, SampleNeighbours
from segmentation.reduce import require_users as require_umap_users

if TYPE_CHECKING:
    from segmentation.selection import ParameterChoice

__all__ = [
    "ASSIGNMENTS",
    "NOISE",
    "Clusterer",
    "NoiseApart",
    "SegmentEnvelopes",
    "Segmentation",
    "assign_by_neighbours",
    "default_min_cluster_size",
    "dissolve",
    "far_from_segment",
    "fit_segments",
    "incoherent_segments",
    "judge_outliers",
    "keep_noise_apart",
    "most_agreeing",
    "reassign_by_categories",
    "require_segments",
    "segment_users",
    "split_merged",
]

logger = logging.getLogger(__name__)

NOISE = -1

ASSIGNMENTS = pl.Schema(
    {
        "user_id": pl.String,
        "segment_id": pl.Int32,
        "membership": pl.Float32,
        "nearest_segment": pl.Int32,
        "nearest_membership": pl.Float32,
        "soft_assigned": pl.Boolean,
        "x": pl.Float32,
        "y": pl.Float32,
    }
)


def default_min_cluster_size(n: int) -> int:
    """max(15, 4 % of users), capped at 5,000: a handful of segments a person can read.

    On ML-100k's 943 users (leaf selection) this gives 7 segments; ``eom`` gave only 3.
    """
    return int(min(5000, max(15, round(0.04 * n))))


def _by_size(labels: np.ndarray, k: int) -> np.ndarray:
    """``new_id[old]``: segments ``0..k-1`` of ``labels`` renumbered by decreasing size, ties in their order
    (``NOISE`` rows count for none), so that segment 0 is the largest."""
    sizes = np.bincount(labels[labels >= 0], minlength=k)[:k]
    new_id = np.empty(k, dtype=np.int32)
    new_id[np.lexsort((np.arange(k), -sizes))] = np.arange(k, dtype=np.int32)
    return new_id


def _relabel(labels: np.ndarray, new_id: np.ndarray) -> np.ndarray:
    """``labels`` through the mapping ``new_id`` (int32; ``NOISE`` stays ``NOISE``, and with no segment at all every
    row is ``NOISE``)."""
    if new_id.size == 0:  # nothing to look up: indexing the empty mapping would raise IndexError
        return np.full(len(labels), NOISE, dtype=np.int32)
    return np.where(labels >= 0, new_id[np.clip(labels, 0, None)], NOISE).astype(np.int32)


class Clusterer:
    """HDBSCAN with prediction data, labels renumbered by decreasing size.

    Args:
        min_cluster_size: smallest segment (None: :func:`default_min_cluster_size` of the rows fitted).
        min_samples: HDBSCAN's density smoothing.
        cluster_selection_method: ``eom`` or ``leaf``.
        cluster_selection_epsilon: merge clusters closer than this.
        outlier_membership: outliers whose soft membership in their nearest segment reaches this are
            assigned to it (None: never).
        sample_size: fit on this many points at most; the rest get ``approximate_predict``.
        random_state: seed for the sample.

    Attributes:
        labels_: (n,) int32 segment ids, ``NOISE`` for outliers (after soft assignment).
        probabilities_: (n,) float32 HDBSCAN membership strength (0 for outliers).
        soft_: (n, K) float32 soft membership of every point in every segment.
        soft_assigned_: (n,) bool, outliers moved into a segment by ``outlier_membership``.
        sample_: rows HDBSCAN was fitted on.
        min_cluster_size_: the smallest segment size used.
        n_segments_: number of segments found.
    """

    def __init__(self, min_cluster_size: int | None = None, *, min_samples: int | None = 10,
                 cluster_selection_method: str = "eom", cluster_selection_epsilon: float = 0.0,
                 outlier_membership: float | None = None, sample_size: int = 50_000,
                 random_state: int | None = None) -> None:  # fmt: skip
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_method = cluster_selection_method
        self.cluster_selection_epsilon = cluster_selection_epsilon
        self.outlier_membership = outlier_membership
        self.sample_size = sample_size
        self.random_state = random_state
        self.hdbscan_ = None
        self.labels_: np.ndarray | None = None

    def fit(
        self,
        x: np.ndarray,
        *,
        sample: np.ndarray | None = None,
        neighbours: Neighbours | None = None,
        partitions: Partitions | None = None,
    ) -> "Clusterer":
        """Cluster ``x`` ((n, d) float32 coordinates).

        Args:
            x: the coordinates of every row.
            sample: rows to fit HDBSCAN on (default: all rows up to ``sample_size``, else a uniform sample).
            neighbours: for the rows outside ``sample``, their nearest sample rows and weights (from
                :class:`segmentation.reduce.Reducer`, found in the original space). Without it they are
                searched in ``x``. A row whose neighbours all share a segment joins it; the others get
                ``hdbscan.approximate_predict``; soft memberships are the neighbours' weighted mean.
            partitions: where the rows outside ``sample`` are assigned, in blocks (default: here); the fitted
                HDBSCAN model goes to each executor once.
        """
        import hdbscan

        n = len(x)
        x = np.ascontiguousarray(x, dtype=np.float64)
        if sample is None:
            if n > self.sample_size:
                rng = np.random.default_rng(self.random_state)
                sample = np.sort(rng.choice(n, self.sample_size, replace=False))
            else:
                sample = np.arange(n)
        m = len(sample)
        mcs = self.min_cluster_size or default_min_cluster_size(m)
        require_users(m, mcs)
        min_samples = None if self.min_samples is None else min(self.min_samples, mcs)
        t0 = time.perf_counter()
        model = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=min_samples, prediction_data=True,
                                cluster_selection_method=self.cluster_selection_method,
                                cluster_selection_epsilon=self.cluster_selection_epsilon, core_dist_n_jobs=1)  # fmt: skip
        model.fit(x if m == n else x[sample])
        self.hdbscan_ = model
        raw = np.empty(n, dtype=np.int64)
        prob = np.empty(n, dtype=np.float32)
        raw[sample], prob[sample] = model.labels_, model.probabilities_
        rest = np.setdiff1d(np.arange(n), sample) if m < n else np.zeros(0, dtype=np.int64)
        if len(rest):
            if neighbours is None or not np.array_equal(neighbours.rest, rest):
                knn = SampleNeighbours(15, n_dims=None, random_state=self.random_state).fit(
                    x[sample].astype(np.float32)
                )
                neighbours = Neighbours(rest, *knn.kneighbors(x.astype(np.float32), rest))
            raw[rest], prob[rest] = self._extend(x, rest, neighbours, model, partitions)
        k_raw = int(raw.max()) + 1 if n else 0
        self.mapping_ = _by_size(raw, k_raw)  # segment 0 is the largest
        labels = _relabel(raw, self.mapping_)
        self.soft_ = self._soft(x, sample, rest, neighbours)
        self.neighbours_ = neighbours if len(rest) else None
        self.soft_assigned_ = np.zeros(n, dtype=bool)
        if self.outlier_membership is not None and k_raw:
            best = self.soft_.max(axis=1)
            move = (labels == NOISE) & (best >= self.outlier_membership)
            labels[move] = self.soft_[move].argmax(axis=1)
            self.soft_assigned_ = move
        self.labels_, self.probabilities_ = labels, prob.astype(np.float32)
        self.sample_ = sample
        self.min_cluster_size_ = mcs
        self.n_segments_ = k_raw
        logger.info("HDBSCAN found %d segments, %d outliers (%.1f%%) among %d users (fitted on %d) in %.1fs", k_raw,
                    int((labels == NOISE).sum()), 100 * (labels == NOISE).mean(), n, m, time.perf_counter() - t0)  # fmt: skip
        return self

    @staticmethod
    def _extend(x: np.ndarray, rest: np.ndarray, neighbours: Neighbours, model,
                partitions: Partitions | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Labels and strengths of the rows outside the sample, in blocks of rows (:func:`_assign_block`)."""
        parts = in_process(partitions)
        blocks = [(x[rest[lo:hi]], neighbours.pos[lo:hi], neighbours.weights[lo:hi])
                  for lo, hi in parts.blocks(len(rest))]  # fmt: skip
        done = list(parts.map(_assign_block, blocks, model))
        return np.concatenate([d[0] for d in done]), np.concatenate([d[1] for d in done])

    def _soft(self, x: np.ndarray, sample: np.ndarray, rest: np.ndarray, neighbours: Neighbours | None) -> np.ndarray:
        import hdbscan

        n, k = len(x), int(self.mapping_.size)
        soft = np.zeros((n, k), dtype=np.float32)
        if k == 0:
            return soft
        raw = np.asarray(hdbscan.all_points_membership_vectors(self.hdbscan_), dtype=np.float32).reshape(
            len(sample), -1
        )
        soft[np.ix_(sample, self.mapping_)] = raw[:, :k]
        if len(rest):
            assert neighbours is not None
            soft[rest] = neighbours.spread(soft[sample])
        return soft

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Segment ids and strengths for new points (``hdbscan.approximate_predict``)."""
        import hdbscan

        check_is_fitted(self, "hdbscan_")
        raw, strength = hdbscan.approximate_predict(self.hdbscan_, np.asarray(x, dtype=np.float64))
        return _relabel(raw, self.mapping_), strength.astype(np.float32)


def _assign_block(block: tuple[np.ndarray, np.ndarray, np.ndarray], model) -> tuple[np.ndarray, np.ndarray]:
    """One partition of the assignment of rows outside the sample: ``(x rows, neighbour positions, weights)``.

    A row whose nearest sample rows all belong to one segment takes it, with the weighted mean of
    their strengths; the others (about 10 % on planted data) go through ``hdbscan.approximate_predict``.
    On 1M planted vectors this gave the same labels as ``approximate_predict`` for every row, 9x faster.
    Every row is assigned on its own, so blocks give the labels of one pass.
    """
    import hdbscan

    x, pos, weights = block
    near = model.labels_[pos]
    unanimous = (near == near[:, :1]).all(axis=1) & (near[:, 0] >= 0)
    labels = np.where(unanimous, near[:, 0], NOISE).astype(np.int64)
    strength = (model.probabilities_[pos] * weights).sum(axis=1).astype(np.float32)
    todo = np.flatnonzero(~unanimous)
    if len(todo):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Clusterer does not have any defined clusters")
            labels[todo], strength[todo] = hdbscan.approximate_predict(model, x[todo])
    return labels, strength


@dataclass(frozen=True)
class Segmentation:
    """The result of :func:`fit_segments`.

    Attributes:
        assignments: frame with schema ``ASSIGNMENTS``, one row per user.
        coords: (n, n_components) float32 clustering coordinates, rows as in ``assignments``.
        n_segments: number of segments (outliers not counted).
        min_cluster_size: the value used.
        seconds: wall time of the steps (``umap``, ``hdbscan``, ``umap_2d``, ``select``; ``numba_import``
            is the one-off import and compilation cost of UMAP in this process).
        selection: how the clustering parameters were chosen (None when they were all given).
        n_fitted: users UMAP and HDBSCAN were fitted on (the rest were extended by neighbours).
        sample_fits: past ``reduce.sample_size`` users with ``reduce.sample_fits`` > 1, the fits on other samples
            and the agreement that chose this one (:func:`fit_segments`); None otherwise.
        splits: with ``cluster.split_stability`` set and at most ``reduce.sample_size`` users, each segment's test on
            its own (:func:`split_merged`): ``split_stability``, ``min_size`` and ``tested`` (one record per segment
            of the fit); None otherwise.
        envelopes: the final outlier rule that decided (:func:`judge_outliers`), segments as in ``assignments``;
            None with ``cluster.outlier_distance`` off.
        outliers: what that rule did (``outliers``, ``demoted``, ``joined``, ``reads_categories``,
            ``outlier_distance``); None with it off.
    """

    assignments: pl.DataFrame
    coords: np.ndarray
    n_segments: int
    min_cluster_size: int
    seconds: dict
    selection: "ParameterChoice | None" = None
    n_fitted: int = 0
    sample_fits: dict | None = None
    splits: dict | None = None
    envelopes: "SegmentEnvelopes | None" = None
    outliers: dict | None = None
    reassigned: dict | None = None

    @property
    def noise_share(self) -> float:
        return to_float((self.assignments["segment_id"] == NOISE).mean())


def far_from_segment(vectors: np.ndarray, labels: np.ndarray, z: float, *, activity: np.ndarray | None = None,
                     evidence: bool = True, chunk: int = 65_536) -> np.ndarray:  # fmt: skip
    """Users far from their own segment in the user-vector space: (n,) bool.

    UMAP with ``min_dist = 0`` draws a user who belongs nowhere onto the nearest dense region, so HDBSCAN on
    its coordinates rarely calls anyone an outlier. In the original space such a user stays apart. Per segment,
    each member's cosine similarity ``s`` to the segment's mean direction is compared with the other members':

    * ``evidence`` (``cluster.outlier_evidence``): a user vector is a mean over the user's ``n`` interactions
      (``activity``), so a member's similarity is about ``1 / sqrt(1 + r / n)``, with ``r`` the segment's noise
      per interaction: light users point every way by chance alone. The rule scores ``n (1 / s^2 - 1)``, an
      estimate of ``r`` that does not grow or shrink with ``n``, on a log scale; a member more than ``z``
      robust standard deviations (1.4826 x MAD) above the members' median is far, as is one with ``s <= 0``.
      On the tuning planted worlds the similarity of segment users rose from 0.45-0.53 (3-4 interactions) to
      0.75-0.90 (40 and more) while its spread fell threefold, which one threshold on ``s`` cannot follow.
      Without ``activity`` every user counts alike (a monotone transform of ``s``).
    * otherwise, a member whose similarity lies more than ``z`` robust standard deviations below the members'
      median is far (the rule before 2026-12-03's fourth round).

    Outliers (``labels < 0``) are never far.
    """
    n = len(labels)
    far = np.zeros(n, dtype=bool)
    if not (labels >= 0).any():
        return far
    k = int(labels.max()) + 1
    score = _stray_scores(vectors, labels, _directions(vectors, labels, k, chunk), activity, evidence, chunk)
    limit = _far_limits(score, labels, k, z)
    inside = np.flatnonzero(labels >= 0)
    far[inside] = _beyond(score[inside], limit[labels[inside]])
    return far


def _directions(vectors: np.ndarray, labels: np.ndarray, k: int, chunk: int = 65_536) -> np.ndarray:
    """(k, d) float64 unit mean direction of each segment's members' vectors (as they are, not made unit first)."""
    centre = np.zeros((k, vectors.shape[1]), dtype=np.float64)
    for lo in range(0, len(labels), chunk):
        lab = labels[lo : lo + chunk]
        keep = lab >= 0
        np.add.at(centre, lab[keep], vectors[lo : lo + chunk][keep])
    return centre / np.maximum(np.linalg.norm(centre, axis=1, keepdims=True), 1e-12)


def _stray_scores(vectors: np.ndarray, labels: np.ndarray, centre: np.ndarray, activity: np.ndarray | None,
                  evidence: bool, chunk: int = 65_536) -> np.ndarray:  # fmt: skip
    """(n,) how far each user strays from the direction ``centre[labels]`` (:func:`far_from_segment`'s score: the
    evidence-weighted one, infinite at a similarity <= 0, or minus the similarity); NaN where ``labels < 0``."""
    n = len(labels)
    sim = np.full(n, np.nan)
    for lo in range(0, n, chunk):
        lab = labels[lo : lo + chunk]
        rows = np.flatnonzero(lab >= 0)
        v = vectors[lo : lo + chunk][rows]
        sim[lo + rows] = (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12) * centre[lab[rows]]).sum(
            axis=1
        )
    if not evidence:
        return -sim
    count = np.ones(n) if activity is None else np.maximum(np.asarray(activity, dtype=np.float64), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sim > 0, np.log(count * np.maximum(1.0 / np.maximum(sim, 1e-12) ** 2 - 1.0, 0.0) + 1e-12),
                        np.where(np.isnan(sim), np.nan, np.inf))  # fmt: skip


def _far_limits(score: np.ndarray, labels: np.ndarray, k: int, z: float) -> np.ndarray:
    """(k,) per segment, the score above which a member is far: the members' median plus ``z`` robust standard
    deviations (1.4826 x MAD) of their finite scores (:func:`_robust_scales`); NaN (nobody far) under 2 members or no
    finite score."""
    centre, scale = _robust_scales(score, labels, k)
    return centre + z * scale


def _beyond(score: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Far: a score above its segment's limit, or infinite (similarity <= 0); never where the limit is NaN."""
    with np.errstate(invalid="ignore"):
        return ~np.isnan(limit) & (~np.isfinite(score) | (score > limit))


@dataclass(frozen=True)
class SegmentEnvelopes:
    """The run's final outlier rule: how far each user strays from the segment they are given, in direction
    (:func:`far_from_segment`'s evidence-weighted score) and, where the users' category counts are given, in the
    categories they chose; kept so that users placed later are judged as the run's users were.

    * **Direction**: the score of :func:`far_from_segment` (``evidence``: weighed by the user's interactions), as
      robust z-scores against the segment's members (their median, 1.4826 x MAD).
    * **Categories** (``profiles``): each segment's category profile, the members' pooled counts (plus 0.5 per
      category), and each user's ``G`` statistic against it, ``sum_c n_c log(n_c / (n p_c))`` over the user's
      counts ``n_c`` (``n`` in all): the log-likelihood ratio of the user's own category shares against the
      segment's, which grows with the evidence as a light user's direction cannot. Its log is scored as robust
      z-scores against the members, like the direction.
    * A user is far when the two z-scores' Stouffer sum ``(z_d + z_c) / sqrt(2)`` exceeds ``z``; without counts (no
      categories, or a user with none) when ``z_d`` alone does (``score > median + z x scale``, as
      :func:`far_from_segment` decides); and always at a similarity of 0 or less. A segment of under 2 members has
      no limits (nobody is far from it).

    On the planted worlds a light user's vector points every way by chance, so direction alone found half of the
    users who belong nowhere at a precision under 0.5; their category choices, pooled into the G statistic, tell
    them apart (docs/BENCHMARKS.md, issue 14, tenth round). Fitted on the members alone (:meth:`fit`): users
    already outliers take no part in the medians. A run keeps them in ``embeddings/segment_envelopes.npz``.

    Attributes:
        directions: (k, d) float64 unit mean direction of each segment's members.
        centre, scale: (k,) float64 the members' median and robust deviation of the direction score (NaN: nobody
            is far from that segment).
        profiles: (k, c) float64 log category profile of each segment; (k, 0) without category counts.
        category_centre, category_scale: (k,) float64 the same for the log G statistic (empty without counts).
        z: ``cluster.outlier_distance`` of the run.
        evidence: ``cluster.outlier_evidence`` of the run (the direction score weighs each user's interactions).
        choices: (k, m) float64 log profile of each segment's choice counts (per rating level and category, or per
            category: :func:`reassign_by_categories`), or None where the run did not reassign members by them.
        choice_level: ``cluster.category_reassign`` of the run (None with ``choices``).
    """

    directions: np.ndarray
    centre: np.ndarray
    scale: np.ndarray
    profiles: np.ndarray
    category_centre: np.ndarray
    category_scale: np.ndarray
    z: float
    evidence: bool
    choices: np.ndarray | None = None
    choice_level: float | None = None

    @property
    def limits(self) -> np.ndarray:
        """(k,) the direction score above which a user without category counts is far (NaN: nobody is)."""
        return self.centre + self.z * self.scale

    @property
    def reads_categories(self) -> bool:
        return self.profiles.shape[1] > 0

    @classmethod
    def fit(cls, vectors: np.ndarray, labels: np.ndarray, z: float, *, activity: np.ndarray | None = None,
            evidence: bool = True, n_segments: int | None = None, counts=None, choice_counts=None,
            choice_level: float | None = None) -> "SegmentEnvelopes":  # fmt: skip
        """The envelopes of the segments in ``labels`` (outliers, ``< 0``, take no part); ``n_segments`` of them
        (default ``labels.max() + 1``: a segment without members has a zero direction and nobody is far from it).
        ``counts``: (n, c) scipy sparse category counts (:attr:`embeddings.encoder.Embeddings.category_counts`),
        or None for the direction alone (also where no user has any). ``choice_counts`` and ``choice_level``: the
        counts the run's reassignment read and its level (:meth:`choose`), or None."""
        k = (int(labels.max()) + 1 if (labels >= 0).any() else 0) if n_segments is None else n_segments
        directions = _directions(vectors, labels, k)
        centre, scale = _robust_scales(_stray_scores(vectors, labels, directions, activity, evidence), labels, k)
        profiles = np.zeros((k, 0))
        category_centre = category_scale = np.zeros(0)
        if counts is not None and counts.shape[1] and counts.sum() > 0:
            profiles = _category_profiles(counts, labels, k)
            category_centre, category_scale = _robust_scales(_g_scores(counts, labels, profiles), labels, k,
                                                             ties=True)  # fmt: skip
        choices, level = None, None
        if choice_level is not None and choice_counts is not None and choice_counts.shape[1]:
            choices, level = _category_profiles(choice_counts, labels, k), float(choice_level)
        return cls(directions, centre, scale, profiles, category_centre, category_scale, float(z), bool(evidence),
                   choices, level)  # fmt: skip

    @classmethod
    def of_users(cls, users: Embeddings, labels: np.ndarray, cluster: ClusterConfig,
                 n_segments: int | None = None) -> "SegmentEnvelopes":  # fmt: skip
        """:meth:`fit` with the run's settings: ``cluster.outlier_distance`` (set), ``outlier_evidence`` and, with
        ``outlier_categories``, the users' category counts; with ``category_reassign``, the profiles it reads;
        ``labels`` in the users' row order."""
        assert cluster.outlier_distance is not None, "the caller checks outlier_distance"
        return cls.fit(users.vectors, labels, cluster.outlier_distance, activity=users.activity,
                       evidence=cluster.outlier_evidence, n_segments=n_segments,
                       counts=users.category_counts if cluster.outlier_categories else None,
                       choice_counts=_choices(users), choice_level=cluster.category_reassign)  # fmt: skip

    def choose(self, users: Embeddings, segment: np.ndarray) -> np.ndarray:
        """(q,) each user's segment after the run's reassignment (:func:`reassign_by_categories`): a user given
        ``segment`` (``< 0``: left as given) whose choices give it a posterior under the run's level moves to the
        segment that explains them best, unless they are far from it (:meth:`far_users`). Users counted per category
        alone (their ratings unknown) against profiles per (rating level, category) are read against the profiles
        summed over the levels. Unchanged where the run did not reassign, or the users' counts are not of the run's
        columns."""
        segment = self._check(segment).astype(np.int32)
        counts = _choices(users)
        if self.choices is None or self.choice_level is None or counts is None or not counts.shape[1]:
            return segment
        profiles = self.choices
        if counts.shape[1] != profiles.shape[1]:
            levels, rest = divmod(profiles.shape[1], counts.shape[1])
            if rest or levels < 2:
                return segment
            k = len(profiles)  # level-major columns: the marginal over the levels, per category
            profiles = np.log(np.exp(profiles).reshape(k, levels, counts.shape[1]).sum(axis=1))
        new, _ = _most_probable(counts, profiles, segment, self.choice_level)
        return self.unless_far(users, segment, new)

    def unless_far(self, users: Embeddings, given: np.ndarray, proposed: np.ndarray) -> np.ndarray:
        """(q,) ``proposed`` segments, with every move (where it differs from ``given``) that would leave the user far
        from their new segment (:meth:`far_users`) taken back to ``given``."""
        out = np.asarray(proposed).copy()
        cand = np.flatnonzero(out != given)
        if len(cand):
            far = self.far_users(users.subset(cand), out[cand])
            out[cand[far]] = given[cand[far]]
        return out

    def z_scores(
        self, vectors: np.ndarray, segment: np.ndarray, activity: np.ndarray | None = None, counts=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """((q,), (q,)) each user's direction z-score against ``segment`` (``+inf`` at a similarity of 0 or less)
        and category z-score (NaN without counts, for that user or for all); NaN where ``segment < 0``."""
        segment = self._check(segment)
        score = _stray_scores(vectors, segment, self.directions, activity, self.evidence)
        g = np.clip(segment, 0, None)
        with np.errstate(invalid="ignore"):
            zd = (score - self.centre[g]) / self.scale[g]
        zd[segment < 0] = np.nan
        return zd, self._category_z(segment, counts)

    def far(self, vectors: np.ndarray, segment: np.ndarray, activity: np.ndarray | None = None,
            counts=None) -> np.ndarray:  # fmt: skip
        """(q,) bool: users (``vectors``, each given a ``segment``; ``< 0`` is never far) far from that segment;
        ``counts`` (scipy sparse, the envelopes' categories) lets the categories they chose count too."""
        segment = self._check(segment)
        score = _stray_scores(vectors, segment, self.directions, activity, self.evidence)
        out = np.zeros(len(segment), dtype=bool)
        inside = np.flatnonzero(segment >= 0)
        # without category evidence, the direction's own limit (bit for bit far_from_segment's decision)
        out[inside] = _beyond(score[inside], self.limits[segment[inside]])
        zc = self._category_z(segment, counts)
        both = inside[np.isfinite(zc[inside])]
        s = segment[both]
        with np.errstate(invalid="ignore"):
            zd = (score[both] - self.centre[s]) / self.scale[s]
            out[both] = ~np.isnan(self.centre[s]) & (~np.isfinite(zd) | ((zd + zc[both]) / np.sqrt(2.0) > self.z))
        return out

    def far_users(self, users: Embeddings, segment: np.ndarray) -> np.ndarray:
        """:meth:`far` for :class:`Embeddings` (their vectors, interactions and, where they are of the envelopes'
        categories, category counts; otherwise those users are judged by direction alone)."""
        counts = users.category_counts
        if counts is not None and counts.shape[1] != self.profiles.shape[1]:
            counts = None
        return self.far(users.vectors, segment, users.activity, counts if self.reads_categories else None)

    def _check(self, segment: np.ndarray) -> np.ndarray:
        segment = np.asarray(segment)
        if len(segment) and segment.max() >= len(self.centre):
            raise ValueError(f"segment {int(segment.max())} given; the envelopes have {len(self.centre)}")
        return segment

    def _category_z(self, segment: np.ndarray, counts) -> np.ndarray:
        zc = np.full(len(segment), np.nan)
        if not self.reads_categories or counts is None:
            return zc
        if counts.shape[1] != self.profiles.shape[1]:
            raise ValueError(f"category counts of {counts.shape[1]} categories given; the envelopes have "
                             f"{self.profiles.shape[1]}")  # fmt: skip
        g = np.clip(segment, 0, None)
        with np.errstate(invalid="ignore"):
            zc = (_g_scores(counts, segment, self.profiles) - self.category_centre[g]) / self.category_scale[g]
        zc[segment < 0] = np.nan
        return zc

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {"directions": self.directions, "centre": self.centre, "scale": self.scale,
                                         "profiles": self.profiles, "category_centre": self.category_centre,
                                         "category_scale": self.category_scale, "z": np.asarray(self.z),
                                         "evidence": np.asarray(self.evidence)}  # fmt: skip
        if self.choices is not None:
            arrays.update(choices=self.choices, choice_level=np.asarray(self.choice_level, dtype=np.float64))
        np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool

    @classmethod
    def load(cls, path: Path, *, n_segments: int | None = None, dim: int | None = None) -> "SegmentEnvelopes":
        """Read what :meth:`save` wrote (or the direction limits alone, as runs before 2026-12-05's tenth round of
        issue 14 kept them); :class:`DataError` naming the file when it is damaged or does not fit the run
        (``n_segments`` segments, ``dim``-wide user vectors)."""
        try:
            with np.load(path) as a:
                z = float(a["z"])
                if "limits" in a:  # direction only: a limit is a median z robust deviations up, with a scale of 1
                    limits = np.asarray(a["limits"], dtype=np.float64)
                    parts = [limits - z, np.ones_like(limits), np.zeros((len(limits), 0)), np.zeros(0), np.zeros(0)]
                else:
                    parts = [np.asarray(a[key], dtype=np.float64) for key in
                             ("centre", "scale", "profiles", "category_centre", "category_scale")]  # fmt: skip
                centre, scale, profiles, category_centre, category_scale = parts
                choices = np.asarray(a["choices"], dtype=np.float64) if "choices" in a else None
                out = cls(np.asarray(a["directions"], dtype=np.float64), centre, scale, profiles, category_centre,
                          category_scale, z, bool(a["evidence"]), choices,
                          None if choices is None else float(a["choice_level"]))  # fmt: skip
        except (OSError, KeyError, ValueError, TypeError) as e:
            raise DataError(f"{path} cannot be read ({type(e).__name__}: {e}); the run folder is damaged, run it "
                            "again") from e  # fmt: skip
        k, d = out.directions.shape if out.directions.ndim == 2 else (-1, -1)
        shapes_fit = (out.profiles.ndim == 2 and len(out.centre) == len(out.scale) == len(out.profiles) == k and
                      (not out.reads_categories or len(out.category_centre) == len(out.category_scale) == k) and
                      (out.choices is None or (out.choices.ndim == 2 and len(out.choices) == k)))  # fmt: skip
        if not shapes_fit or (n_segments is not None and k != n_segments) or (dim is not None and d != dim):
            raise DataError(f"{path} holds {len(out.centre)} segment limits and directions of shape "
                            f"{out.directions.shape}; the run has {n_segments} segments of {dim}-wide user vectors: "
                            "the run folder is damaged, run it again")  # fmt: skip
        return out

    def reordered(self, new_id: np.ndarray) -> "SegmentEnvelopes":
        """The same envelopes with segment ``s`` renamed ``new_id[s]``."""
        order = np.argsort(new_id)
        cats = self.reads_categories
        return SegmentEnvelopes(self.directions[order], self.centre[order], self.scale[order], self.profiles[order],
                                self.category_centre[order] if cats else self.category_centre,
                                self.category_scale[order] if cats else self.category_scale, self.z, self.evidence,
                                None if self.choices is None else self.choices[order], self.choice_level)  # fmt: skip


def _robust_scales(score: np.ndarray, labels: np.ndarray, k: int, *,
                   ties: bool = False) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """((k,), (k,)) per segment, the members' median and robust deviation (1.4826 x MAD, at least 1e-9) of their
    finite ``score``; NaN under 2 members or no finite score. ``ties``: a score with few distinct values (the G
    statistic of users with one or two interactions) can have a MAD of 0 while its members differ; where 1.4826 x MAD
    is under half of 1.2533 x the mean absolute deviation from the median (both the standard deviation for normal
    scores; on the planted worlds' segments their ratio was 0.91 or more), the latter is the scale."""
    centre, scale = np.full(k, np.nan), np.full(k, np.nan)
    for c in range(k):
        members = labels == c
        if members.sum() < 2:
            continue
        s = score[members]
        s = s[np.isfinite(s)]
        if not len(s):
            continue
        centre[c] = np.median(s)
        spread = 1.4826 * np.median(np.abs(s - centre[c]))
        if ties:
            mean_spread = 1.2533 * np.mean(np.abs(s - centre[c]))
            spread = mean_spread if spread < 0.5 * mean_spread else spread
        scale[c] = max(spread, 1e-9)
    return centre, scale


def _category_profiles(counts, labels: np.ndarray, k: int) -> np.ndarray:
    """(k, c) float64 log of each segment's members' pooled category counts, 0.5 added to every category."""
    import scipy.sparse as sp

    members = np.flatnonzero(labels >= 0)
    onehot = sp.csr_matrix((np.ones(len(members)), (labels[members], members)), shape=(k, len(labels)))
    pooled = np.asarray((onehot @ counts).todense(), dtype=np.float64) + 0.5
    return np.log(pooled / pooled.sum(axis=1, keepdims=True))


def _choices(users: Embeddings):
    """The counts the reassignment reads: per (rating level, category) where the ratings were cut into levels, else
    per category (None without categories)."""
    return users.category_counts if users.choice_counts is None else users.choice_counts


def _most_probable(counts, log_profile: np.ndarray, labels: np.ndarray, level: float,
                   chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """((n,) int32, (n,) float64): each user's segment after one naive Bayes step over ``log_profile`` (equal priors):
    a user of a segment (``labels >= 0``) with counts, whose own segment's posterior is below ``level``, takes the
    most probable segment; and that segment's posterior for those who move (0 for the others)."""
    import scipy.sparse as sp

    counts = sp.csr_matrix(counts)
    new = np.asarray(labels, dtype=np.int32).copy()
    share = np.zeros(len(new))
    has = np.diff(counts.indptr) > 0
    rows = np.flatnonzero((new >= 0) & has)
    for lo in range(0, len(rows), chunk):
        r = rows[lo : lo + chunk]
        ll = np.asarray(counts[r] @ log_profile.T)
        ll -= ll.max(axis=1, keepdims=True)
        post = np.exp(ll)
        post /= post.sum(axis=1, keepdims=True)
        move = post[np.arange(len(r)), new[r]] < level
        best = post.argmax(axis=1)
        share[r[move]] = post[np.flatnonzero(move), best[move]]
        new[r[move]] = best[move]
    return new, share


def _g_scores(counts, labels: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """(n,) log of each user's G statistic against the profile of ``labels`` (``sum_c n_c log(n_c / (n p_c))``, plus
    1e-3): NaN where ``labels < 0`` or the user has no counts. Linear in the counts' non-zeros."""
    import scipy.sparse as sp

    c = sp.csr_matrix(counts)
    n = np.asarray(c.sum(axis=1)).ravel().astype(np.float64)
    rows = np.repeat(np.arange(c.shape[0]), np.diff(c.indptr))
    v = c.data.astype(np.float64)
    keep = (labels[rows] >= 0) & (v > 0)
    rows, cols, v = rows[keep], c.indices[keep], v[keep]
    g = np.bincount(rows, v * (np.log(v / n[rows]) - profiles[labels[rows], cols]), minlength=c.shape[0])
    with np.errstate(invalid="ignore"):
        return np.where((labels >= 0) & (n > 0), np.log(np.maximum(g, 0.0) + 1e-3), np.nan)


def _centres(vectors: np.ndarray, labels: np.ndarray, k: int, chunk: int = 65_536) -> np.ndarray:
    """(k, d) mean of the members' unit vectors per segment (not normalised: its norm is the cohesion)."""
    total = np.zeros((k, vectors.shape[1]), dtype=np.float64)
    for lo in range(0, len(labels), chunk):
        lab = labels[lo : lo + chunk]
        keep = lab >= 0
        v = vectors[lo : lo + chunk][keep].astype(np.float64)
        np.add.at(total, lab[keep], v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12))
    return total / np.maximum(np.bincount(labels[labels >= 0], minlength=k), 1)[:, None]


def incoherent_segments(vectors: np.ndarray, labels: np.ndarray, ratio: float, *,
                        small_only: bool = False) -> np.ndarray:  # fmt: skip
    """Segments whose members do not point one way in the user-vector space: (k,) bool.

    A segment's cohesion is the length of the mean of its members' unit vectors (1: all alike; near 0: they
    point every way). Users who belong nowhere share no direction, yet UMAP packs them into one region and
    HDBSCAN may call that region a segment; its cohesion is far below that of the segments with a common
    taste. A segment whose cohesion is below ``ratio`` times the median segment's is incoherent.

    With ``small_only`` (``cluster.dissolve_large`` off) only segments no larger than the median segment can be
    incoherent: users who belong nowhere are a small crowd, while a large segment of low cohesion was, on the
    tuning planted world of light users, two or three planted segments merged (dissolving it made thousands of
    segment users outliers).
    """
    k = int(labels.max()) + 1 if len(labels) else 0
    if k < 2:
        return np.zeros(k, dtype=bool)
    cohesion = np.linalg.norm(_centres(vectors, labels, k), axis=1)
    out = cohesion < ratio * np.median(cohesion)
    if small_only:
        sizes = np.bincount(labels[labels >= 0], minlength=k)
        out &= sizes <= np.median(sizes)
    return out


def dissolve(labels: np.ndarray, vectors: np.ndarray, drop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make the segments marked in ``drop`` outliers and renumber the rest (their order kept).

    Returns:
        ``(labels, nearest)``: the new labels, and for every user the nearest kept segment (its own if it has one,
        else the kept segment whose mean direction is the most similar to the user's vector).
    """
    keep = np.flatnonzero(~drop)
    new_id = np.full(len(drop), NOISE, dtype=np.int32)
    new_id[keep] = np.arange(len(keep), dtype=np.int32)
    out = _relabel(labels, new_id)
    if not len(keep):
        return out, np.full(len(labels), NOISE, np.int32)
    centres = _centres(vectors, out, len(keep))
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    nearest = out.copy()
    todo = np.flatnonzero(out < 0)
    for lo in range(0, len(todo), 65_536):
        rows = todo[lo : lo + 65_536]
        nearest[rows] = (vectors[rows].astype(np.float64) @ centres.T).argmax(axis=1)
    return out, nearest


@dataclass(frozen=True)
class NoiseApart:
    """What :func:`keep_noise_apart` did to a clustering.

    Attributes:
        labels: (n,) int32 labels after the incoherent segments were dissolved and the rest renumbered (users
            far from their segment still carry it here; ``demoted`` marks them).
        kept: the segments of the labels given that were kept, as their old ids in the new numbering's order
            (new segment ``j`` is old segment ``kept[j]``): segments are renumbered by decreasing size, the
            demoted users left out, so segment 0 is still the largest.
        dissolved_nearest: (n,) int32 nearest kept segment of every user (see :func:`dissolve`), or None when
            nothing was dissolved.
        demoted: (n,) bool, users far from their segment (``cluster.early_outlier_distance``): outliers.
    """

    labels: np.ndarray
    kept: np.ndarray
    dissolved_nearest: np.ndarray | None
    demoted: np.ndarray


def keep_noise_apart(vectors: np.ndarray, labels: np.ndarray, cluster: ClusterConfig,
                     n_segments: int | None = None, activity: np.ndarray | None = None) -> NoiseApart:  # fmt: skip
    """The outlier rules that act after HDBSCAN, in the user-vector space: ``cluster.min_cohesion``
    (:func:`incoherent_segments`, :func:`dissolve`), then ``cluster.early_outlier_distance`` (:func:`far_from_segment`).
    Once the segments are final (after the split tests), :func:`judge_outliers` judges every user again.

    UMAP with ``min_dist = 0`` packs users who belong nowhere into one region, which HDBSCAN calls a segment, and
    draws the others onto the edges of real segments; HDBSCAN itself then calls almost nobody an outlier. The
    first rule dissolves the packed region (its members point no common way), the second demotes members that
    lie far below their segment's typical similarity to its mean direction. ``n_segments``: segments in
    ``labels`` (default: ``labels.max() + 1``). Dissolving every segment is never done (nothing would be left).
    ``activity``: each user's interactions (:attr:`embeddings.encoder.Embeddings.activity`), which the second rule
    weighs with ``cluster.outlier_evidence``.
    """
    k = (int(labels.max()) + 1 if len(labels) else 0) if n_segments is None else n_segments
    kept = np.arange(k)
    dissolved_nearest = None
    if cluster.min_cohesion is not None and k:
        drop = np.zeros(k, dtype=bool)
        incoherent = incoherent_segments(vectors, labels, cluster.min_cohesion, small_only=not cluster.dissolve_large)
        drop[: len(incoherent)] = incoherent
        if drop.any() and not drop.all():
            logger.info("cluster: %d of %d segments (%d users) have no common direction in the user-vector space "
                        "(cluster.min_cohesion %.2f): their users are outliers", int(drop.sum()), k,
                        int(np.isin(labels, np.flatnonzero(drop)).sum()), cluster.min_cohesion)  # fmt: skip
            labels, dissolved_nearest = dissolve(labels, vectors, drop)
            kept = np.flatnonzero(~drop)
    demoted = np.zeros(len(labels), dtype=bool)
    if cluster.early_outlier_distance is not None:
        demoted = far_from_segment(vectors, labels, cluster.early_outlier_distance, activity=activity,
                                   evidence=cluster.outlier_evidence)  # fmt: skip
        if demoted.any():
            logger.info("cluster: %d users (%.1f%%) are far from their segment in the user-vector space "
                        "(cluster.early_outlier_distance %.2f): outliers", int(demoted.sum()), 100 * demoted.mean(),
                        cluster.early_outlier_distance)  # fmt: skip
    # renumber by decreasing size without the demoted users (ties keep their order): segment 0 stays the largest
    new_id = _by_size(np.where(demoted, NOISE, labels), len(kept))
    if (new_id != np.arange(len(kept))).any():
        labels = _relabel(labels, new_id)
        if dissolved_nearest is not None:
            dissolved_nearest = _relabel(dissolved_nearest, new_id)
        kept = kept[np.argsort(new_id)]
    if dissolved_nearest is not None:
        dissolved_nearest = dissolved_nearest.astype(np.int32)
    return NoiseApart(np.asarray(labels, dtype=np.int32), kept, dissolved_nearest, demoted)


def reassign_by_categories(assignments: pl.DataFrame, users: Embeddings, cluster: ClusterConfig, n_segments: int,
                           chunk: int = 65_536) -> tuple[pl.DataFrame, dict]:  # fmt: skip
    """Members whose choices their segment explains poorly move to the segment that explains them best
    (``cluster.category_reassign``).

    A user's choices are their interactions counted per (rating level, category) (``users.choice_counts``,
    ``represent.rating_levels``; per category alone where the ratings were not cut into levels). Each segment's
    profile is its members' pooled counts (plus 0.5 per cell); a member's posterior over the segments is the
    multinomial likelihood of their counts under each profile, normalised (a naive Bayes over what they chose and how
    they rated it, with equal priors: one step of the mixture started from the segments). A member whose
    own segment's posterior is below ``level`` joins the most probable one, with ``membership`` that posterior,
    unless the final outlier rule would call them far from it (``cluster.outlier_distance``,
    :class:`SegmentEnvelopes` of the segments as they are): a move the user's vector contradicts is not made. Moves
    that would leave a segment under 2 members are not made either. Members without counts and outliers stay. One
    pass: the profiles are not refitted.

    A light user's vector is too noisy to place them among segments that choose differently, and UMAP's layout
    leaves the members of a segment nested in a broader one on its parent's side; pooled over the members, the counts
    tell such segments apart. Segments that choose alike and rate differently (rating-style twins) differ in the
    levels: by category counts alone the twins' likelihoods are near-equal and the moves drained one into the other
    (docs/BENCHMARKS.md, issue 14, tenth and eleventh rounds; with the segments' shares as priors a small twin's
    members drained into its large twin). Linear in the users and their counts' non-zeros.

    Returns:
        ``(assignments, record)``: ``moved`` (members moved), ``refused`` (moves the vector contradicted),
        ``level``, ``rating_levels`` (1: categories alone), ``proposed_share`` (the members with counts whom the
        profiles would move, before the vector's check), ``max_share`` (``cluster.category_reassign_max_share``) and
        ``applied`` (False where ``proposed_share`` exceeded it: then nobody moves and ``assignments`` is returned as
        given).
    """

    level = cluster.category_reassign
    assert level is not None and users.category_counts is not None, "the caller checks both"
    labels = assignments["segment_id"].to_numpy().astype(np.int32)
    members = np.flatnonzero(labels >= 0)
    counts = _choices(users).tocsr()
    new, share = _most_probable(counts, _category_profiles(counts, labels, n_segments), labels, level, chunk)
    levels = 1 if users.choice_counts is None else counts.shape[1] // max(users.category_counts.shape[1], 1)
    with_counts = np.diff(counts.indptr)[members] > 0
    proposed = float((new[members] != labels[members]).sum() / max(with_counts.sum(), 1))
    record = {"level": level, "rating_levels": levels, "proposed_share": round(proposed, 4),
              "max_share": cluster.category_reassign_max_share}  # fmt: skip
    if cluster.category_reassign_max_share is not None and proposed > cluster.category_reassign_max_share:
        logger.info("cluster: the segments' choice profiles (%d categories x %d rating levels) would move %.1f%% of "
                    "the members, over cluster.category_reassign_max_share %.0f%%: the segments are set apart by more "
                    "than what their members chose, so nobody moves", users.category_counts.shape[1], levels,
                    100 * proposed, 100 * cluster.category_reassign_max_share)  # fmt: skip
        return assignments, {**record, "applied": False, "moved": 0, "refused": 0}
    refused = 0
    if cluster.outlier_distance is not None and (new != labels).any():
        kept = SegmentEnvelopes.of_users(users, labels, cluster, n_segments).unless_far(users, labels, new)
        refused = int(((new != labels) & (kept == labels)).sum())
        new = kept
    left = np.bincount(new[new >= 0], minlength=n_segments)
    drained = (left < 2) & (np.bincount(labels[members], minlength=n_segments) >= 2)
    if drained.any():  # no segment is left under 2 members: its members stay
        stay = np.isin(labels, np.flatnonzero(drained)) & (new != labels)
        new[stay] = labels[stay]
    moved = new != labels
    out = assignments.with_columns(
        pl.Series("segment_id", new, dtype=pl.Int32),
        pl.Series("nearest_segment", np.where(moved, new, assignments["nearest_segment"].to_numpy()), dtype=pl.Int32),
        pl.Series("membership", np.where(moved, share, assignments["membership"].to_numpy()), dtype=pl.Float32),
    )
    logger.info("cluster: %d members (%.1f%%) moved to the segment whose profile explains their choices best "
                "(%d categories x %d rating levels; their own's posterior below cluster.category_reassign %.2f); %d "
                "moves refused, far from that segment", int(moved.sum()), 100 * moved.mean() if len(moved) else 0.0,
                users.category_counts.shape[1], levels, level, refused)  # fmt: skip
    return out, {**record, "applied": True, "moved": int(moved.sum()), "refused": refused}


def judge_outliers(users: Embeddings, assignments: pl.DataFrame, cluster: ClusterConfig,
                   n_segments: int) -> tuple[pl.DataFrame, SegmentEnvelopes | None, dict | None]:  # fmt: skip
    """The run's last word on outliers, on its final segments (``cluster.outlier_distance``; off: nothing changes).

    Every user is judged against a segment: a member against their own, an outlier against their nearest
    (:class:`SegmentEnvelopes`, fitted on the members; ``cluster.outlier_categories`` lets the categories users chose
    count). A member who is far becomes an outlier with their segment as nearest; an outlier who is not far joins
    their nearest segment (``membership`` their nearest membership, ``soft_assigned``), as HDBSCAN's outliers in
    UMAP's layout, the users of a dissolved segment and the distance rule's own outliers before the split tests are
    judged again against the segments as they end. Users whose segment has no limits (under 2 members) stay as they
    were, and the rule never empties a segment (its members stay). Segments are renumbered by decreasing size.

    Returns:
        ``(assignments, envelopes, record)``: the assignments, the envelopes that decided (segments in the new
        numbering, None when off) and ``outliers``, ``demoted`` (members made outliers), ``joined`` (outliers who
        joined), ``reads_categories``, ``outlier_distance`` and ``new_id`` (each old segment's new id).
    """
    if cluster.outlier_distance is None or not n_segments:
        return assignments, None, None
    labels = assignments["segment_id"].to_numpy().astype(np.int32)
    nearest = assignments["nearest_segment"].to_numpy().astype(np.int32)
    given = np.where(labels >= 0, labels, nearest).astype(np.int32)
    envelopes = SegmentEnvelopes.of_users(users, labels, cluster, n_segments)
    far = envelopes.far_users(users, given)
    judged = (given >= 0) & np.isfinite(envelopes.centre[np.clip(given, 0, None)])  # a segment with limits
    final = np.where(judged, np.where(far, NOISE, given), labels).astype(np.int32)  # the others stay as they were
    emptied = (np.bincount(final[final >= 0], minlength=n_segments) == 0) & (
        np.bincount(labels[labels >= 0], minlength=n_segments) > 0
    )
    if emptied.any():  # the rule never empties a segment: its members stay
        keep = np.isin(labels, np.flatnonzero(emptied))
        final[keep] = labels[keep]
    demoted, joined = (labels >= 0) & (final < 0), (labels < 0) & (final >= 0)
    new_id = _by_size(final, n_segments)  # segment 0 stays the largest
    membership = assignments["membership"].to_numpy()
    membership = np.where(joined, assignments["nearest_membership"].to_numpy(), np.where(demoted, 0.0, membership))
    soft = (assignments["soft_assigned"].to_numpy() | joined) & (final >= 0)
    out = assignments.with_columns(
        pl.Series("segment_id", _relabel(final, new_id), dtype=pl.Int32),
        pl.Series("nearest_segment", _relabel(given, new_id), dtype=pl.Int32),
        pl.Series("membership", membership, dtype=pl.Float32),
        pl.Series("soft_assigned", soft, dtype=pl.Boolean),
    )
    record = {"outlier_distance": cluster.outlier_distance, "outlier_evidence": cluster.outlier_evidence,
              "reads_categories": envelopes.reads_categories,
              "outliers": int((final < 0).sum()), "demoted": int(demoted.sum()), "joined": int(joined.sum()),
              "new_id": new_id.tolist()}  # fmt: skip
    logger.info("cluster: judged against the final segments (cluster.outlier_distance %.2f, %s), %d users (%.1f%%) "
                "are outliers: %d members became outliers, %d outliers joined their nearest segment",
                cluster.outlier_distance, "direction and categories" if envelopes.reads_categories else "direction",
                record["outliers"], 100 * record["outliers"] / max(len(final), 1), record["demoted"],
                record["joined"])  # fmt: skip
    return out, envelopes.reordered(new_id), record


def _nearest_centre(vectors: np.ndarray, rows: np.ndarray, centres: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """For each of ``rows``, the index of the most similar of ``centres`` (unit, float32), a block of rows at a time."""
    out = np.empty(len(rows), dtype=np.int32)
    for lo in range(0, len(rows), chunk):
        out[lo : lo + chunk] = (vectors[rows[lo : lo + chunk]] @ centres.T).argmax(axis=1)
    return out


SPLIT_MIN_USERS = 500
"""Segments smaller than this are not tested by :func:`split_merged`. Fitted on a few hundred users, UMAP draws
clumps inside one Gaussian group that subsamples reproduce: a 133-user group of the unit tests' blobs split in two
at stability 0.91. On the tuning planted worlds the segments of one planted segment (351-2,569 users) scored at
most 0.85 and the smallest merged pair had 1,137 users."""


def split_merged(users: Embeddings, assignments: pl.DataFrame, reduce: ReduceConfig, cluster: ClusterConfig,
                 min_size: float, *, seed: int = 0, exact_knn: bool = False) -> tuple[pl.DataFrame, int, list[dict]]:  # fmt: skip
    """Split the segments that come apart when fitted on their own (``cluster.split_stability``).

    UMAP over every user can draw two segments that share much (a category, most of their items) as one region,
    and HDBSCAN's parameter choice then keeps them together. Fitted on its own members, such a segment falls
    into two groups that every subsample reproduces; a segment with one common taste does not. So each segment
    is refitted on its members alone (UMAP with the run's settings, then :func:`segmentation.selection.
    choose_parameters` with at least 2 segments), and split when the chosen candidate's subsample stability
    reaches ``cluster.split_stability`` and at least two of its parts hold ``min_size`` users (the run's
    ``min_cluster_size`` in all users' terms). Segments under :data:`SPLIT_MIN_USERS` users are not tested. Every member joins the part whose mean direction in the
    user-vector space is the nearest (HDBSCAN's local outliers and parts under ``min_size`` included): a member
    of a segment stays a member. Outliers whose nearest segment was split get the nearest part.

    Then, where ``users.category_counts`` is given, every segment of that result (the parts of a split included, but
    not the parts this second test makes) meets a second test: a mixture of multinomials over the categories its
    members chose (:func:`segmentation.mixture.split_by_categories`; the number of parts by BIC, kept only when they
    come back on subsamples at ``cluster.split_stability``, and parts under ``min_size`` or the default segment size
    (:func:`default_min_cluster_size`), the smaller, joined to their most probable kept part; segments of at least
    twice that and :data:`SPLIT_MIN_USERS` are tested). Light users' vectors are too noisy for any layout to pull two planted segments apart,
    while their pooled category choices differ plainly. Members and the segment's outliers join their most
    probable part. A segment the categories keep whole is tested once more on what its members chose per (rating
    level, category) (``users.choice_counts``, with ``cluster.split_reads_levels``), with BIC's number of parts
    alone (no fewer tried): a segment nested in a broader one with its own rating style is one multinomial by
    categories and two by categories and ratings, while on MovieLens 100k the refits' segments that BIC cut into 5
    by levels came back only as fewer parts (the refits' seed-to-seed agreement fell from 0.68 to 0.59 where fewer
    parts were tried; docs/BENCHMARKS.md, issue 14, twelfth round).

    Given more than ``reduce.sample_size`` users, each segment is fitted on its share of that sample size (at least
    1,000 users) and the rest placed by their nearest fitted users (:func:`fit_segments` calls it only up to that
    size: at 100,000 users the tests cost 12 % of a run).

    Args:
        users: the user vectors, rows as in ``assignments``.
        assignments: ``ASSIGNMENTS`` frame of the fit.
        reduce: UMAP settings of the run.
        cluster: the run's cluster configuration (``split_stability`` read; its other settings shape the choice).
        min_size: smallest part kept, in users.
        seed: the run's seed.
        exact_knn: give each segment's UMAP its exact neighbours from one matrix product (:class:`Reducer`'s
            ``exact_knn``; see :func:`fit_segments`' ``fast_split``).

    Returns:
        ``(assignments, n_segments, tested)``: the assignments with the parts as segments (renumbered by decreasing
        size; every other column kept, ``membership`` and ``nearest_membership`` still the fit's), the number of
        segments, and one record per segment of the fit: ``segment`` (its id in the fit, before this step's
        renumbering), ``users``, ``split``, ``segments`` (the ids it has in the result: its parts when split),
        and where a choice was made ``n_fitted``, ``parts``, ``stability``, ``min_cluster_size``,
        ``cluster_selection_method``; ``sizes`` of the parts when split; ``outcome`` ("split", "unstable": parts
        found that did not come back on subsamples, "parts too small", "no parts", "not tested": too few users) and,
        when not split, ``why`` in words; ``test`` ("layout", "categories", "ratings" (by the levels), or "layout, then
        categories" or "layout, then ratings") when
        split; ``categories``: one entry per segment of it the second test read (``segment``: that segment's id in the
        result, the first of its parts when split; ``users``, ``min_size``, ``bic_parts``, ``stability`` per number of parts tried, ``split``, ``why``); and when only the second test
        split it, ``layout`` (the first test's outcome, why, stability and parts), its ``stability`` then the
        second test's. An entry of ``categories`` whose categories kept the segment whole holds ``levels`` where the
        levels were read (``bic_parts``, ``stability``, ``split``, ``why``); ``split`` is then the levels'.
    """
    labels = assignments["segment_id"].to_numpy().astype(np.int32)
    nearest = assignments["nearest_segment"].to_numpy().astype(np.int32)
    n = len(labels)
    k = int(max(labels.max(), nearest.max())) + 1 if n else 0
    bar = cluster.split_stability
    if bar is None:
        return assignments, k, []
    local = cluster.model_copy(update={"min_cluster_size": None, "cluster_selection_method": "auto",
                                       "min_segments": 2})  # fmt: skip
    tested: list[dict] = []
    next_id = k
    smallest = max(2 * min_size, SPLIT_MIN_USERS)
    origin: dict[int, dict] = {}  # each segment of the result (before renumbering): the record of its fit segment
    for s in range(k):  # first test: each segment in its own layout
        members = np.flatnonzero(labels == s)
        record: dict = {"segment": s, "users": len(members), "split": False, "ids": [s]}
        tested.append(record)
        origin[s] = record
        if len(members) < smallest:
            record["outcome"] = "not tested"
            record["why"] = f"under {round(smallest)} users: not tested"
            continue
        vectors = users.vectors[members]
        part, centres = _split_by_layout(vectors, record, reduce, local, min_size, bar, len(members) / n, seed,
                                         exact_knn)  # fmt: skip
        if part is None:
            continue
        ids = _apply_split(labels, nearest, members, part, s, next_id)
        next_id += len(ids) - 1
        out = np.flatnonzero((labels < 0) & (nearest == s))
        if len(out):  # the segment's outliers: the nearest part
            nearest[out] = ids[_nearest_centre(users.vectors, out, centres)]
        record.update(split=True, outcome="split", test="layout", ids=ids.tolist())
        origin.update({int(i): record for i in ids})
        logger.info("cluster: segment %d (%d users) splits into %d parts of %s users in its own layout (stability "
                    "%.3f >= cluster.split_stability %.2f)", s, len(members), len(ids),
                    np.bincount(part).tolist(), record["stability"], bar)  # fmt: skip
    counts = users.category_counts
    choices = users.choice_counts if cluster.split_reads_levels else None
    if counts is not None:  # second test: every segment now, parts of the first included, by what its users chose
        from segmentation.mixture import split_by_categories

        # its parts come from a fitted model, not from HDBSCAN clumps: a part of the default segment size (4 % of the
        # users) reads as a segment even where the parameter choice took coarser segments
        part_min = min(min_size, default_min_cluster_size(n))
        for s in range(next_id):
            members = np.flatnonzero(labels == s)
            if len(members) < max(2 * part_min, SPLIT_MIN_USERS):
                continue
            record = origin[s]
            found = split_by_categories(counts[members], min_size=part_min, bar=bar, seed=seed)
            entry = {"tested_id": s, "users": len(members), "min_size": round(part_min), **_mixture_record(found)}
            record.setdefault("categories", []).append(entry)
            read, by, test = counts, "the categories its users chose", "categories"
            if found.parts is None and choices is not None:  # the same test per (rating level, category)
                again = split_by_categories(choices[members], min_size=part_min, bar=bar, seed=seed, fewer=False)
                entry["levels"] = _mixture_record(again)
                if again.parts is not None:
                    found, read, by, test = again, choices, "what its users chose and how they rated it", "ratings"
                    entry["split"] = True
            if found.parts is None:
                continue
            part = found.parts.copy()
            centres = _part_directions(users.vectors[members], part)
            blind = np.flatnonzero(part < 0)  # members who chose no categorised item: the part nearest by direction
            part[blind] = _nearest_centre(users.vectors[members], blind, centres)
            ids = _apply_split(labels, nearest, members, part, s, next_id)
            next_id += len(ids) - 1
            out = np.flatnonzero((labels < 0) & (nearest == s))
            if len(out):  # the segment's outliers: their most probable part (by direction without counts)
                to = found.assign(read[out])
                blind = np.flatnonzero(to < 0)
                to[blind] = _nearest_centre(users.vectors, out[blind], centres)
                nearest[out] = ids[to]
            stability = found.stability[min(found.stability)]
            if not record["split"]:  # the first test's figures move aside
                record["layout"] = {key: record.pop(key) for key in ("outcome", "why", "stability", "parts")
                                    if key in record}  # fmt: skip
                record.update(split=True, outcome="split", test=test, stability=stability)
            elif record["test"] == "layout":
                record["test"] = f"layout, then {test}"
            record["ids"] = [*record["ids"], *ids[1:].tolist()]
            record["parts"] = len(record["ids"])
            origin.update({int(i): record for i in ids})
            logger.info("cluster: segment %d (%d users) splits into %d parts of %s users by %s (%d by BIC; "
                        "stability %.3f >= cluster.split_stability %.2f)", s, len(members), len(ids),
                        np.bincount(part).tolist(), by, found.bic_parts, stability, bar)  # fmt: skip
    for record in tested:
        if record["split"]:
            record["sizes"] = [int((labels == i).sum()) for i in record["ids"]]
    new_id = _by_size(labels, next_id) if next_id > k else np.arange(k)  # segment 0 is still the largest
    for record in tested:  # which segments of the result each tested segment became, and each part tested
        record["segments"] = [int(new_id[v]) for v in record.pop("ids")]
        for entry in record.get("categories", []):
            entry["segment"] = int(new_id[entry.pop("tested_id")])
    if next_id == k:
        return assignments, k, tested
    columns = {"segment_id": _relabel(labels, new_id), "nearest_segment": _relabel(nearest, new_id)}
    return assignments.with_columns(pl.Series(c, v, dtype=pl.Int32) for c, v in columns.items()), next_id, tested


def _mixture_record(found) -> dict:
    """What a split test by a mixture (:class:`segmentation.mixture.MixtureSplit`) found, as ``metrics.json`` keeps
    it: ``bic_parts``, ``stability`` per number of parts tried, ``split`` and ``why``."""
    return {"bic_parts": found.bic_parts, "stability": {str(j): v for j, v in found.stability.items()},
            "split": found.parts is not None, "why": found.why}  # fmt: skip


def _part_directions(vectors: np.ndarray, part: np.ndarray) -> np.ndarray:
    """(parts, d) float32 unit mean direction of each part's rows (``part < 0`` rows left out)."""
    centres = _centres(vectors, part, int(part.max()) + 1)
    return (centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _apply_split(labels: np.ndarray, nearest: np.ndarray, members: np.ndarray, part: np.ndarray, s: int,
                 next_id: int) -> np.ndarray:  # fmt: skip
    """Members of segment ``s`` take their ``part`` (0 keeps ``s``, the others new ids from ``next_id``), in place;
    every member is its own nearest. Returns the parts' ids."""
    ids = np.array([s, *range(next_id, next_id + int(part.max()))], dtype=np.int32)
    labels[members] = ids[part]
    nearest[members] = labels[members]
    return ids


def _split_by_layout(vectors: np.ndarray, record: dict, reduce: ReduceConfig, local: ClusterConfig, min_size: float,
                     bar: float, share: float, seed: int, exact_knn: bool) -> tuple[np.ndarray | None, np.ndarray]:  # fmt: skip
    """:func:`split_merged`'s first test on one segment's member ``vectors`` (``share`` of the run's users): its
    own UMAP layout and the label-free parameter choice. Returns ``(part, centres)``: each member's part (None when
    not split; ``record`` says why) and the parts' unit mean directions."""
    from segmentation.selection import choose_parameters

    none = np.zeros((0, vectors.shape[1]), dtype=np.float32)
    reducer = Reducer(reduce.n_components, n_neighbors=reduce.n_neighbors, min_dist=reduce.min_dist,
                      metric=reduce.metric, sample_size=max(1000, round(reduce.sample_size * share)),
                      assign=reduce.assign, knn_dims=reduce.knn_dims, random_state=seed,
                      exact_knn=exact_knn)  # fmt: skip
    coords = reducer.fit_transform(vectors)
    sample = reducer.sample_
    assert sample is not None, "Reducer.fit_transform sets sample_"
    try:
        # no part smaller than the run's smallest segment: the grid starts there (in the scored points' terms)
        scored = min(len(sample), 20_000)
        choice = choose_parameters(coords[sample], local, seed=seed, quiet=True, max_points=scored,
                                   smallest=int(np.ceil(min_size * scored / len(vectors))))  # fmt: skip
    except DataError:
        record["outcome"], record["why"] = "no parts", "too few users for two parts"
        return None, none
    c = choice.chosen
    record.update(n_fitted=len(sample), parts=c.n_segments, stability=c.stability,
                  min_cluster_size=choice.config.min_cluster_size,
                  cluster_selection_method=c.cluster_selection_method)  # fmt: skip
    if not c.eligible or c.n_segments < 2:
        record["outcome"], record["why"] = "no parts", "no candidate with two or more parts"
        return None, none
    if c.stability < bar:
        record["outcome"], record["why"] = (
            "unstable",
            f"stability {c.stability:.3f} of {c.n_segments} parts below {bar}",
        )
        return None, none
    cfg = choice.config
    sub = Clusterer(cfg.min_cluster_size, min_samples=cfg.min_samples,
                    cluster_selection_method=cfg.cluster_selection_method,
                    cluster_selection_epsilon=cfg.cluster_selection_epsilon, sample_size=len(sample),
                    random_state=seed).fit(coords, sample=sample, neighbours=reducer.neighbours_)  # fmt: skip
    parts = sub.labels_
    assert parts is not None, "Clusterer.fit sets labels_"
    sizes = np.bincount(parts[parts >= 0], minlength=sub.n_segments_)
    big = np.flatnonzero(sizes >= min_size)
    if len(big) < 2:
        record["outcome"] = "parts too small"
        record["why"] = f"fewer than two parts of at least {round(min_size)} users"
        return None, none
    part = np.full(len(vectors), NOISE, dtype=np.int32)
    for j, b in enumerate(big):
        part[parts == b] = j
    centres = _part_directions(vectors, part)
    rest = np.flatnonzero(part < 0)
    part[rest] = _nearest_centre(vectors, rest, centres)
    return part, centres


def require_users(m: int, min_cluster_size: int) -> None:
    """Raise :class:`DataError` when ``m`` fitted users cannot make two segments of ``min_cluster_size``."""
    if m < 2 * min_cluster_size:
        raise DataError(
            f"cluster: {m} users are too few for segments of at least {min_cluster_size} users "
            f"(min_cluster_size); need at least {2 * min_cluster_size} users or a smaller cluster.min_cluster_size"
        )


def check_enough_users(n: int, reduce: ReduceConfig, cluster: ClusterConfig) -> None:
    """Raise :class:`DataError` before any UMAP work when ``n`` users cannot make two segments."""
    from segmentation.selection import MIN_SIZE

    require_umap_users(n, reduce.n_components)
    require_users(min(n, reduce.sample_size), cluster.min_cluster_size or MIN_SIZE)


def require_segments(segmentation: Segmentation, users: Embeddings) -> None:
    """Raise :class:`DataError` when the run's segmentation found no segment at all (every user an outlier).

    Nothing downstream (profiles, per-segment models, the report) has anything to work on then, and the
    cause is in the data or in ``cluster``'s settings, so the message says which.
    """
    if segmentation.n_segments:
        return
    n = len(users.ids)
    if n and not (users.vectors != users.vectors[:1]).any():
        raise DataError(
            f"cluster: all {n} users have the same user vector, so nothing tells them apart (for example every "
            "user rated the same item or items); segments need users whose choices differ. Check that the "
            "ratings file is the whole export and not one item's slice of it"
        )
    raise DataError(
        f"cluster: HDBSCAN found no segment among {segmentation.n_fitted} users: no group of at least "
        f"{segmentation.min_cluster_size} users (min_cluster_size) stands out from the rest, so every user is an "
        "outlier. Give more users with more varied histories, or set a smaller cluster.min_cluster_size"
    )


def fit_segments(users: Embeddings, reduce: ReduceConfig, cluster: ClusterConfig, *, seed: int = 0,
                 picture: bool = True, partitions: Partitions | None = None,
                 fast_split: bool = False) -> Segmentation:  # fmt: skip
    """Reduce user vectors with UMAP (5-d for clustering, 2-d for pictures) and cluster with HDBSCAN.

    Past ``reduce.sample_size`` users, UMAP and HDBSCAN are fitted on a uniform sample and every
    other user is placed by its nearest sample users (see :mod:`segmentation.reduce`). Which users the
    sample holds can decide whether two touching segments come apart, so there the step is fitted on
    ``reduce.sample_fits`` samples (seeds ``seed``, ``seed + 1``, ...) and the fit that agrees most with
    the others (the highest mean ARI over every user, outliers as one label; the first on a tie) is kept:
    the medoid, recorded in ``Segmentation.sample_fits``. Clustering parameters left unset in ``cluster``
    (``min_cluster_size``, ``min_samples``, or ``cluster_selection_method = "auto"``) are chosen without
    labels by :func:`segmentation.selection.choose_parameters`; the choice is in ``Segmentation.selection``.
    Once the segments are final (after the split tests, :func:`split_merged`), members may move by the categories
    they chose and how they rated it (``cluster.category_reassign``: :func:`reassign_by_categories`, unless the
    segments' profiles would move more than ``cluster.category_reassign_max_share`` of them), and every user is
    judged again against them (``cluster.outlier_distance``: :func:`judge_outliers`).

    Args:
        users: user vectors (ids + (n, d) float32).
        reduce: UMAP settings.
        cluster: HDBSCAN settings.
        seed: the run's seed (UMAP, sampling, parameter selection).
        picture: also fit the 2-d layout for pictures (without it, ``x``/``y`` are the first two
            clustering coordinates; refits that only compare labels skip it).
        partitions: where the users outside the fitted sample are assigned to segments, in blocks (default: here).
        fast_split: the split test gives UMAP its exact neighbours from one matrix product (``Reducer(exact_knn=
            True)``) instead of UMAP's own pairwise loop: the same neighbours, several times faster, but another
            random layout (as another seed gives). The stability refits use it; the run's own fit does not.

    Raises:
        DataError: too few users for a UMAP layout or for two segments (checked before any fitting).
    """
    n = len(users.ids)
    check_enough_users(n, reduce, cluster)
    fits = reduce.sample_fits if n > reduce.sample_size else 1
    tried, took = [], []
    for j in range(fits):
        t = time.perf_counter()
        tried.append(_fit_once(users, reduce, cluster, seed + j, partitions))
        took.append(time.perf_counter() - t)
    chosen, reducer = tried[0]
    if fits > 1:
        best, agree, mean = most_agreeing([s.assignments["segment_id"].to_numpy() for s, _ in tried])
        chosen, reducer = tried[best]
        record = {"seeds": [seed + j for j in range(fits)], "chosen_seed": seed + best,
                  "segments": [s.n_segments for s, _ in tried],
                  "mean_ari_with_the_others": [round(float(v), 4) for v in mean],
                  "ari": [[round(float(v), 4) for v in row] for row in agree],
                  "seconds": [round(v, 2) for v in took]}  # fmt: skip
        chosen = replace(chosen, sample_fits=record)
        logger.info("fitted on %d samples (seeds %d-%d): segments %s, mean ARI with the others %s; kept seed %d",
                    fits, seed, seed + fits - 1, record["segments"], record["mean_ari_with_the_others"],
                    seed + best)  # fmt: skip
    del tried
    if cluster.split_stability is not None and chosen.n_segments and n <= reduce.sample_size:
        # past the sample size the three-sample medoid above is what keeps touching segments apart; there the test
        # cost S (100,000 users) 12 % of its run (docs/BENCHMARKS.md), so it runs where the fit saw every user
        t = time.perf_counter()
        # the run's smallest segment in every user's terms (the fit's min_cluster_size counts the fitted sample)
        min_size = chosen.min_cluster_size * n / max(chosen.n_fitted, 1)
        assignments, k, tested = split_merged(users, chosen.assignments, reduce, cluster, min_size, seed=seed,
                                              exact_knn=fast_split)  # fmt: skip
        logger.info("split test: %d of %d segments tested, %d split, %d segments now (%.1fs)",
                    sum("stability" in r for r in tested), len(tested), sum(r["split"] for r in tested), k,
                    time.perf_counter() - t)  # fmt: skip
        chosen = replace(chosen, assignments=assignments, n_segments=k,
                         splits={"split_stability": cluster.split_stability, "min_size": round(min_size),
                                 "tested": tested},
                         seconds={**chosen.seconds, "split": time.perf_counter() - t})  # fmt: skip
    if cluster.category_reassign is not None and chosen.n_segments and users.category_counts is not None:
        t = time.perf_counter()
        moved, record = reassign_by_categories(chosen.assignments, users, cluster, chosen.n_segments)
        chosen = replace(chosen, assignments=moved, reassigned=record,
                         seconds={**chosen.seconds, "reassign": time.perf_counter() - t})  # fmt: skip
    if cluster.outlier_distance is not None and chosen.n_segments:
        t = time.perf_counter()
        judge = cluster if moved_by_choices(chosen) else cluster.model_copy(update={"category_reassign": None})
        judged, envelopes, verdict = judge_outliers(users, chosen.assignments, judge, chosen.n_segments)
        assert verdict is not None, "judge_outliers decides wherever outlier_distance is set"
        new_id = np.asarray(verdict.pop("new_id"), dtype=np.int32)
        if chosen.splits is not None:  # the split records name segments of the result: in the new numbering
            for entry in chosen.splits["tested"]:
                entry["segments"] = [int(new_id[v]) for v in entry["segments"]]
                for part in entry.get("categories", []):
                    part["segment"] = int(new_id[part["segment"]])
        chosen = replace(chosen, assignments=judged, envelopes=envelopes, outliers=verdict,
                         seconds={**chosen.seconds, "outliers": time.perf_counter() - t})  # fmt: skip
    if picture and reduce.n_components > 2:
        # the picture starts from the clustering layout's principal axes; 100 epochs refine it
        t = time.perf_counter()
        layout = Reducer(2, n_neighbors=reduce.n_neighbors, min_dist=0.1, metric=reduce.metric,
                         sample_size=reduce.sample_size, assign=reduce.assign, knn_dims=reduce.knn_dims,
                         n_epochs=100, random_state=reducer.random_state)  # fmt: skip
        xy = layout.fit_transform(users.vectors, like=reducer)
        assignments = chosen.assignments.with_columns(
            pl.Series("x", xy[:, 0], dtype=pl.Float32), pl.Series("y", xy[:, 1], dtype=pl.Float32)
        )
        chosen = replace(chosen, assignments=assignments,
                         seconds={**chosen.seconds, "umap_2d": time.perf_counter() - t})  # fmt: skip
    return chosen


def moved_by_choices(segmentation: "Segmentation") -> bool:
    """Whether members moved by their choices in this fit (:func:`reassign_by_categories` ran and was not held back by
    ``cluster.category_reassign_max_share``), so that users placed later move as they did."""
    record = segmentation.reassigned
    return record is not None and bool(record.get("applied", True))  # records before the share's check: applied


def most_agreeing(labels: list[np.ndarray]) -> tuple[int, np.ndarray, np.ndarray]:
    """The labelling that agrees most with the others (the medoid): its index, the first on a tie; the (k, k) matrix
    of ARI between every two labellings (outliers as one more label; 1 on the diagonal); and each one's mean ARI with
    the others (k >= 2)."""
    from segmentation.selection import _ari

    k = len(labels)
    agree = np.ones((k, k))
    for a in range(k):
        for b in range(a + 1, k):
            agree[a, b] = agree[b, a] = _ari(labels[a], labels[b])
    mean = (agree.sum(axis=1) - 1) / max(k - 1, 1)
    return int(np.argmax(mean)), agree, mean


def _fit_once(users: Embeddings, reduce: ReduceConfig, cluster: ClusterConfig, seed: int,
              partitions: Partitions | None) -> tuple[Segmentation, Reducer]:  # fmt: skip
    """One UMAP + parameter choice + HDBSCAN + outlier rules fit with ``seed`` (its sample, past
    ``reduce.sample_size`` users), ``x``/``y`` the first two clustering coordinates; and its reducer."""
    from segmentation.selection import choose_parameters, needs_selection

    n = len(users.ids)
    reducer = Reducer(reduce.n_components, n_neighbors=reduce.n_neighbors, min_dist=reduce.min_dist,
                      metric=reduce.metric, sample_size=reduce.sample_size, assign=reduce.assign,
                      knn_dims=reduce.knn_dims, random_state=seed)  # fmt: skip
    coords = reducer.fit_transform(users.vectors)
    t1 = time.perf_counter()
    sample = reducer.sample_
    assert sample is not None, "Reducer.fit_transform sets sample_"
    selection = None
    if needs_selection(cluster):
        selection = choose_parameters(coords[sample], cluster, seed=seed)
        cluster = selection.config
    t2 = time.perf_counter()
    clusterer = Clusterer(cluster.min_cluster_size, min_samples=cluster.min_samples,
                          cluster_selection_method=cluster.cluster_selection_method,
                          cluster_selection_epsilon=cluster.cluster_selection_epsilon,
                          outlier_membership=cluster.outlier_membership, sample_size=reduce.sample_size,
                          random_state=seed).fit(coords, sample=sample, neighbours=reducer.neighbours_,
                                                 partitions=partitions)  # fmt: skip
    fitted_labels = clusterer.labels_
    assert fitted_labels is not None, "Clusterer.fit sets labels_"
    labels = fitted_labels
    soft = clusterer.soft_
    n_segments = clusterer.n_segments_
    apart = keep_noise_apart(users.vectors, labels, cluster, n_segments, users.activity)
    labels, dissolved_nearest, demoted = apart.labels, apart.dissolved_nearest, apart.demoted
    soft = soft[:, apart.kept]
    n_segments = len(apart.kept)
    t3 = time.perf_counter()
    nearest = soft.argmax(axis=1).astype(np.int32) if soft.shape[1] else np.full(n, NOISE, np.int32)
    if dissolved_nearest is not None:  # users of a dissolved segment: the kept segment nearest in vector space
        nearest = np.where(fitted_labels >= 0, dissolved_nearest, nearest).astype(np.int32)
    nearest = np.where(labels >= 0, labels, nearest).astype(np.int32)  # a demoted user's nearest is its old segment
    nearest_m = soft[np.arange(n), np.clip(nearest, 0, None)] if soft.shape[1] else np.zeros(n, np.float32)
    final = np.where(demoted, NOISE, labels).astype(np.int32)
    assignments = pl.DataFrame(
        {
            "user_id": users.ids.astype(str),
            "segment_id": final,
            "membership": np.where(demoted | (final < 0), 0.0, clusterer.probabilities_).astype(np.float32),
            "nearest_segment": nearest,
            "nearest_membership": nearest_m.astype(np.float32),
            "soft_assigned": clusterer.soft_assigned_ & (final >= 0),
            "x": coords[:, 0].astype(np.float32),
            "y": coords[:, 1].astype(np.float32),
        },
        schema=ASSIGNMENTS,
    )
    seconds = {"umap": reducer.seconds_["umap"] + reducer.seconds_["extend"], "select": t2 - t1,
               "hdbscan": t3 - t2, "umap_2d": 0.0, "numba_import": reducer.seconds_["import"]}  # fmt: skip
    segmentation = Segmentation(assignments=assignments, coords=coords, n_segments=n_segments,
                                min_cluster_size=clusterer.min_cluster_size_, seconds=seconds, selection=selection,
                                n_fitted=len(sample))  # fmt: skip
    return segmentation, reducer


def assign_by_neighbours(vectors: np.ndarray, index, assignments: pl.DataFrame, *, k: int = 15) -> pl.DataFrame:
    """Assign new users to existing segments by a similarity-weighted vote of their nearest users.

    Works from a saved run (FAISS user index + ``users.parquet``), with no UMAP or HDBSCAN
    objects: the vote uses the ``k`` most similar segmented users in the original space.

    Args:
        vectors: (q, d) float32 L2-normalised vectors of the new users.
        index: a fitted :class:`embeddings.index.VectorIndex` over the segmented users.
        assignments: the run's assignments (``user_id``, ``segment_id``).
        k: neighbours that vote.

    Returns:
        Frame with ``segment_id`` (Int32; the winning segment, never noise) and ``confidence``
        (Float32; the winner's share of the similarity mass), one row per query.
    """
    if index.ids_ is None:
        raise ValueError("assign_by_neighbours needs a fitted index")
    seg_of = dict(zip(assignments["user_id"].to_list(), assignments["nearest_segment"].to_list()))
    ids, sims = index.search(vectors, k)
    out_seg, out_conf = [], []
    for row_ids, row_sims in zip(ids, sims):
        votes: dict[int, float] = {}
        for uid, s in zip(row_ids, row_sims):
            if uid is None or seg_of.get(uid, NOISE) < 0:
                continue
            votes[seg_of[uid]] = votes.get(seg_of[uid], 0.0) + max(float(s), 0.0) + 1e-6
        if not votes:
            out_seg.append(NOISE)
            out_conf.append(0.0)
            continue
        best = max(sorted(votes), key=lambda c: votes[c])
        out_seg.append(best)
        out_conf.append(votes[best] / sum(votes.values()))
    return pl.DataFrame(
        {"segment_id": out_seg, "confidence": out_conf}, schema={"segment_id": pl.Int32, "confidence": pl.Float32}
    )


def segment_users(users: Embeddings, reduce: ReduceConfig, cluster: ClusterConfig, seed: int,
                  partitions: Partitions | None = None) -> Segmentation:  # fmt: skip
    """The flow's segment stage: UMAP + HDBSCAN segments; :class:`DataError` when there is not one segment.

    ``partitions``: where the users outside UMAP's and HDBSCAN's sample are assigned (:func:`fit_segments`)."""
    segmentation = fit_segments(users, reduce, cluster, seed=seed, partitions=partitions)
    require_segments(segmentation, users)
    return segmentation
