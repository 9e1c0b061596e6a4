"""Label-free choice of the clustering parameters, and the stability of a segmentation.

Real users come with no truth, so the HDBSCAN settings are chosen from signals that need none:

* **DBCV** (density-based clustering validation, Moulavi et al., SDM 2014), in HDBSCAN's fast
  form over the mutual-reachability minimum spanning tree (:func:`relative_validity`): for each
  segment, how much sparser the links to other segments are than the links inside it,
  weighted by segment size over *all* points (outliers count against it).
* **Stability**: the candidate's labels are compared (ARI, outliers as one more label) with the
  labels of the same candidate fitted on random 80 % subsamples of the users, on the users both saw.

:func:`choose_parameters` scores a grid of ``min_cluster_size`` (0.5-8 % of the users) by
``cluster_selection_method`` (``eom``, ``leaf``) as ``score = stability * (1 + DBCV) / 2``,
keeps the candidates with ``min_segments..max_segments`` segments, and takes the best; it returns
a :class:`ParameterChoice` whose ``to_dict()`` goes into ``metrics.json``.

:func:`segmentation_stability` measures a finished configuration: ARI between runs with different
seeds (UMAP is the main source of variation) and between the full run and runs on bootstrap
subsamples of the users.
"""

import logging
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.metrics import adjusted_rand_score

from segmentation._errors import DataError
from segmentation.config import ClusterConfig, ReduceConfig

__all__ = [
    "Candidate",
    "ParameterChoice",
    "StabilityResult",
    "choose_parameters",
    "needs_selection",
    "relative_validity",
    "segment_stability",
    "segmentation_stability",
]

logger = logging.getLogger(__name__)

SIZE_FRACTIONS = (0.005, 0.01, 0.02, 0.04, 0.08)
"""Candidate ``min_cluster_size`` values, as shares of the users fitted (at least :data:`MIN_SIZE`)."""
MIN_SIZE = 15
SUBSAMPLE = 0.8
TENTATIVE = 0.6
"""A segment whose mean clusterwise Jaccard is below this is *tentative* (Hennig 2007 calls clusters below 0.6
"indicating patterns in the data, but which points exactly should belong to them is highly doubtful")."""
DISSOLVED = 0.5
"""A refit in which a segment's best Jaccard is at most this *dissolves* it (Hennig 2007)."""


@dataclass(frozen=True)
class Candidate:
    """One clustering setting and its label-free scores.

    Attributes:
        min_cluster_size: HDBSCAN's smallest segment, for the points scored.
        cluster_selection_method: ``eom`` or ``leaf``.
        n_segments: segments found on all scored points.
        noise_share: share of outliers (before any soft assignment).
        dbcv: :func:`relative_validity` of the labels, in [-1, 1].
        stability: mean ARI against the subsample refits, in [-1, 1].
        score: ``stability * (1 + dbcv) / 2``.
        eligible: whether ``n_segments`` lies within the configured bounds.
    """

    min_cluster_size: int
    cluster_selection_method: str
    n_segments: int
    noise_share: float
    dbcv: float
    stability: float
    score: float
    eligible: bool


@dataclass(frozen=True)
class ParameterChoice:
    """What :func:`choose_parameters` chose, and why.

    Attributes:
        config: the cluster configuration to use (the input with the chosen values filled in).
        chosen: the winning candidate (its ``min_cluster_size`` is for the scored points; ``config``
            holds it rescaled to the users HDBSCAN is fitted on).
        candidates: every candidate scored.
        n_points: points scored (a uniform subsample of the fitted users when there are many).
        seconds: wall time of the selection.
        reason: one line for the report.
    """

    config: ClusterConfig
    chosen: Candidate
    candidates: tuple[Candidate, ...]
    n_points: int
    seconds: float
    reason: str

    def to_dict(self) -> dict:
        """A JSON-ready summary (for ``metrics.json`` under ``segmentation.selection``)."""
        return {
            "min_cluster_size": self.config.min_cluster_size,
            "min_samples": self.config.min_samples,
            "cluster_selection_method": self.config.cluster_selection_method,
            "criterion": "stability * (1 + DBCV) / 2 among candidates with min_segments..max_segments segments",
            "reason": self.reason,
            "n_points": self.n_points,
            "seconds": round(self.seconds, 3),
            "chosen": asdict(self.chosen),
            "candidates": [asdict(c) for c in self.candidates],
        }


def needs_selection(cluster: ClusterConfig) -> bool:
    """True when ``cluster`` leaves a parameter to :func:`choose_parameters`."""
    return cluster.min_cluster_size is None or cluster.cluster_selection_method == "auto"


def relative_validity(mst: np.ndarray, labels: np.ndarray) -> float:
    """DBCV over a mutual-reachability minimum spanning tree, for any labelling of its points.

    ``V = sum_i |C_i| / N * (sep_i - spread_i) / max(sep_i, spread_i)``, where ``spread_i`` is the longest
    tree edge inside segment ``i``, ``sep_i`` the shortest edge from ``i`` to another segment, and ``N``
    counts outliers too (so outliers lower the score). A segment with no edge to another segment gets
    ``sep_i = 2 x`` the longest edge. This is HDBSCAN's ``relative_validity_`` (a fast approximation
    of Moulavi et al.'s DBCV) generalised to labels other than the fitted ones.

    Args:
        mst: (n - 1, 3) edges ``(from, to, distance)`` of the tree over the n points.
        labels: (n,) segment ids, -1 for outliers.
    """
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if labels.size else 0
    if k == 0 or len(mst) == 0:
        return -1.0
    a, b, d = mst[:, 0].astype(np.intp), mst[:, 1].astype(np.intp), mst[:, 2]
    la, lb = labels[a], labels[b]
    both = (la >= 0) & (lb >= 0)
    spread = np.zeros(k)
    same = both & (la == lb)
    np.maximum.at(spread, la[same], d[same])
    sep = np.full(k, np.inf)
    diff = both & (la != lb)
    np.minimum.at(sep, la[diff], d[diff])
    np.minimum.at(sep, lb[diff], d[diff])
    sep[~np.isfinite(sep)] = 2.0 * d.max()
    sizes = np.bincount(labels[labels >= 0], minlength=k)
    v = (sep - spread) / np.maximum(np.maximum(sep, spread), 1e-12)
    return float((sizes * v).sum() / len(labels))


class _Hierarchy:
    """One HDBSCAN hierarchy (per ``min_samples``) from which labels for any size/method are cut cheaply."""

    def __init__(self, points: np.ndarray, min_samples: int | None, *, max_size: int) -> None:
        import hdbscan

        ms = min_samples if min_samples is not None else max_size
        model = hdbscan.HDBSCAN(min_cluster_size=max(2, min(ms, len(points) // 2)), min_samples=ms,
                                gen_min_span_tree=True, core_dist_n_jobs=1).fit(points)  # fmt: skip
        self.points = points
        self.linkage = model.single_linkage_tree_.to_numpy()
        self.mst = model.minimum_spanning_tree_.to_numpy()

    def labels(self, min_cluster_size: int, method: str, epsilon: float) -> np.ndarray:
        # hdbscan's own step from a single-linkage tree to labels: private (no public API re-cuts a fitted tree at
        # another min_cluster_size), pinned to a public fit by tests/unit/test_library_crosschecks.py
        from hdbscan.hdbscan_ import _tree_to_labels

        out = _tree_to_labels(self.points, self.linkage, min_cluster_size, method, False, False, epsilon)
        return np.asarray(out[0], dtype=np.int64)


def _ari(a: np.ndarray, b: np.ndarray) -> float:
    return float(adjusted_rand_score(a, b))


def _size_grid(m: int, cluster: ClusterConfig) -> list[int]:
    if cluster.min_cluster_size is not None:
        return [min(cluster.min_cluster_size, max(2, m // 2))]
    return sorted({max(MIN_SIZE, round(f * m)) for f in SIZE_FRACTIONS if max(MIN_SIZE, round(f * m)) * 2 <= m})


def choose_parameters(coords: np.ndarray, cluster: ClusterConfig, *, seed: int = 0, max_points: int = 20_000,
                      n_fitted: int | None = None) -> ParameterChoice:  # fmt: skip
    """Choose ``min_cluster_size`` and the selection method from DBCV and subsample stability.

    Args:
        coords: (n, d) clustering coordinates of the users HDBSCAN will be fitted on.
        cluster: the configuration; a given ``min_cluster_size`` or method is kept, unset ones are chosen.
        seed: seed of the subsamples.
        max_points: score on a uniform subsample of this many points at most (the chosen
            ``min_cluster_size`` and the given ``min_samples`` are rescaled to ``n_fitted``).
        n_fitted: the number of users HDBSCAN will be fitted on (default ``len(coords)``).

    Returns:
        :class:`ParameterChoice`. If no candidate has ``min_segments..max_segments`` segments, the
        best-scoring candidate with the most segments below ``max_segments`` is taken and the
        reason says so.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    n = len(coords)
    n_fitted = n if n_fitted is None else n_fitted
    pts = np.asarray(coords, dtype=np.float64)
    if n > max_points:
        pts = pts[np.sort(rng.choice(n, max_points, replace=False))]
    m = len(pts)
    sizes = _size_grid(m, cluster)
    if not sizes:
        raise DataError(
            f"cluster: {m} users are too few for segments of at least {MIN_SIZE} users; need at least "
            f"{2 * MIN_SIZE} users or a smaller cluster.min_cluster_size"
        )
    methods = ["eom", "leaf"] if cluster.cluster_selection_method == "auto" else [cluster.cluster_selection_method]
    eps = cluster.cluster_selection_epsilon
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        full = _Hierarchy(pts, cluster.min_samples, max_size=sizes[0])
        subs = []
        for _ in range(cluster.selection_resamples):
            idx = np.sort(rng.choice(m, int(SUBSAMPLE * m), replace=False))
            subs.append((idx, _Hierarchy(pts[idx], cluster.min_samples, max_size=sizes[0])))
        candidates = []
        for size in sizes:
            for method in methods:
                labels = full.labels(size, method, eps)
                k = int(labels.max()) + 1
                sub_size = max(2, round(size * SUBSAMPLE))
                stab = float(np.mean([_ari(labels[idx], h.labels(sub_size, method, eps)) for idx, h in subs]))
                dbcv = relative_validity(full.mst, labels)
                candidates.append(Candidate(size, method, k, float((labels < 0).mean()), round(dbcv, 4),
                                            round(stab, 4), round(stab * (1 + dbcv) / 2, 4),
                                            cluster.min_segments <= k <= cluster.max_segments))  # fmt: skip
    eligible = [c for c in candidates if c.eligible]
    if eligible:
        chosen = max(eligible, key=lambda c: (c.score, -c.min_cluster_size))
        reason = (f"best of {len(eligible)} candidates with {cluster.min_segments}-{cluster.max_segments} segments "
                  f"(score {chosen.score:.3f}: stability {chosen.stability:.3f}, DBCV {chosen.dbcv:.3f})")  # fmt: skip
    else:
        below = [c for c in candidates if c.n_segments <= cluster.max_segments] or candidates
        most = max(c.n_segments for c in below)
        chosen = max((c for c in below if c.n_segments == most), key=lambda c: c.score)
        reason = (f"no candidate found {cluster.min_segments}-{cluster.max_segments} segments; "
                  f"took the best with the most segments ({chosen.n_segments})")  # fmt: skip
        logger.warning("parameter selection: %s", reason)
    scale = n_fitted / m
    mcs = chosen.min_cluster_size if cluster.min_cluster_size is not None else \
        max(MIN_SIZE, round(chosen.min_cluster_size * scale))  # fmt: skip
    update = {"min_cluster_size": mcs, "cluster_selection_method": chosen.cluster_selection_method}
    if cluster.min_samples is not None and scale > 1:
        # the density scale scored on the subsample, carried to the fitted users (10 of 20k ~ 25 of 50k);
        # fitted on 50k with min_samples 10, two planted segments of 1M vectors merged through a thin bridge
        update["min_samples"] = round(cluster.min_samples * scale)
    config = cluster.model_copy(update=update)
    dt = time.perf_counter() - t0
    logger.info("parameter selection on %d points in %.1fs: min_cluster_size %d, %s (%s)", m, dt, mcs,
                chosen.cluster_selection_method, reason)  # fmt: skip
    return ParameterChoice(config, chosen, tuple(candidates), m, dt, reason)


@dataclass(frozen=True)
class SegmentStability:
    """How well one segment comes back when the users are refitted (:func:`segment_stability`).

    Attributes:
        segment_id: the run's segment.
        jaccards: per refit, the best Jaccard overlap with any refit segment (on the users both saw).
        fates: per refit with a Jaccard below :data:`TENTATIVE`, what happened to the members: ``"merged"``
            (most of them sit in a refit segment that is mostly made of another segment), ``"split"`` (spread
            over several refit segments) or ``"outliers"`` (most became outliers); ``"kept"`` otherwise.
        merged_with: per ``"merged"`` refit, the run's segment that dominates the refit segment it merged into.
    """

    segment_id: int
    jaccards: tuple[float, ...]
    fates: tuple[str, ...]
    merged_with: tuple[int, ...] = ()

    @property
    def jaccard(self) -> float | None:
        return float(np.mean(self.jaccards)) if self.jaccards else None

    @property
    def tentative(self) -> bool:
        return self.jaccard is not None and self.jaccard < TENTATIVE

    def to_dict(self) -> dict:
        """``{"jaccard", "min", "n_refits", "dissolved", "fate", "merged_with"}`` for ``metrics.json``."""
        out: dict = {"jaccard": None if self.jaccard is None else round(self.jaccard, 4),
                     "min": round(min(self.jaccards), 4) if self.jaccards else None,
                     "n_refits": len(self.jaccards),
                     "dissolved": sum(j <= DISSOLVED for j in self.jaccards)}  # fmt: skip
        low = [f for f in self.fates if f != "kept"]
        if low:
            out["fate"] = max(("merged", "split", "outliers"), key=lambda f: (low.count(f), f == "merged"))
            if out["fate"] == "merged" and self.merged_with:
                out["merged_with"] = max(set(self.merged_with), key=lambda s: (self.merged_with.count(s), -s))
        return out


def _overlaps(reference: np.ndarray, refit: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contingency of the run's segments (rows, ids 0..k-1) by the refit's labels (columns, -1 last)."""
    ref_ids = np.unique(reference[reference >= 0])
    fit_ids = np.unique(refit[refit >= 0])
    r = np.searchsorted(ref_ids, reference)
    f = np.where(refit >= 0, np.searchsorted(fit_ids, refit), len(fit_ids))  # outliers: the last column
    table = np.zeros((len(ref_ids), len(fit_ids) + 1), dtype=np.int64)
    keep = reference >= 0
    np.add.at(table, (r[keep], f[keep]), 1)
    fit_sizes = np.bincount(f, minlength=len(fit_ids) + 1)  # refit segment sizes over every common user
    return ref_ids, table, fit_sizes


def clusterwise_jaccard(reference: np.ndarray, refit: np.ndarray) -> dict[int, tuple[float, str, int | None]]:
    """For each segment of ``reference`` (not -1): its best Jaccard with a segment of ``refit``, and its fate.

    Both label arrays cover the same users (those both fits saw), ``-1`` is an outlier. The Jaccard of
    segment A and refit segment B is ``|A ∩ B| / |A ∪ B|``; refit outliers are no segment, so a segment
    that became outliers scores 0. Returns ``{segment: (jaccard, fate, merged_with)}`` (see
    :class:`SegmentStability` for the fates).
    """
    reference, refit = np.asarray(reference), np.asarray(refit)
    ref_ids, table, fit_sizes = _overlaps(reference, refit)
    sizes = table.sum(axis=1)
    inter = table[:, :-1]
    union = sizes[:, None] + fit_sizes[None, :-1] - inter
    jac = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    out = {}
    for i, sid in enumerate(ref_ids):
        best = float(jac[i].max()) if jac.shape[1] else 0.0
        fate, partner = "kept", None
        if best < TENTATIVE:
            host = int(inter[i].argmax()) if inter.shape[1] else -1
            if table[i, -1] * 2 >= sizes[i]:
                fate = "outliers"
            elif host >= 0 and inter[i, host] * 2 > sizes[i]:
                fate = "merged"  # most members stayed together, in a refit segment mostly made of others
                others = table[:, host].copy()
                others[i] = -1
                partner = int(ref_ids[int(others.argmax())]) if len(others) > 1 and others.max() > 0 else None
            else:
                fate = "split"
        out[int(sid)] = (best, fate, partner)
    return out


def segment_stability(reference: np.ndarray, refits: list[tuple[np.ndarray, np.ndarray]]) -> list[SegmentStability]:
    """Per-segment stability: the mean over refits of each segment's best Jaccard overlap (clusterboot).

    Hennig's ``clusterboot`` (C. Hennig, "Cluster-wise assessment of cluster stability", Computational
    Statistics & Data Analysis 52, 2007, pp. 258-271) refits the clustering on resampled data and, for
    every original cluster A, takes ``max_B |A ∩ B| / |A ∪ B|`` over the refit's clusters B, both
    restricted to the points present in the resample; the mean over refits is the cluster's stability.
    Hennig reads a mean below 0.5 as a dissolved cluster, 0.6-0.75 as a pattern whose members are
    doubtful, and above 0.85 as highly stable. Here the refits are the stability stage's own: other
    seeds (every user) and 80 % subsamples (their users); a refit's outliers form no cluster, and the
    run's outliers (-1) get no stability. A segment with no member among a refit's users skips that refit.

    Args:
        reference: (n,) the run's segment ids of the users, -1 for outliers.
        refits: one ``(rows, labels)`` per refit: the positions in ``reference`` of the users the refit
            saw, and the refit's labels of those users.

    Returns:
        One :class:`SegmentStability` per segment id of ``reference`` (outliers excluded), by id.
    """
    reference = np.asarray(reference)
    ids = sorted(int(s) for s in np.unique(reference[reference >= 0]))
    jac: dict[int, list[float]] = {s: [] for s in ids}
    fates: dict[int, list[str]] = {s: [] for s in ids}
    partners: dict[int, list[int]] = {s: [] for s in ids}
    for rows, labels in refits:
        for sid, (j, fate, partner) in clusterwise_jaccard(reference[np.asarray(rows)], np.asarray(labels)).items():
            jac[sid].append(j)
            fates[sid].append(fate)
            if partner is not None:
                partners[sid].append(partner)
    return [SegmentStability(s, tuple(jac[s]), tuple(fates[s]), tuple(partners[s])) for s in ids]


@dataclass(frozen=True)
class StabilityResult:
    """How reproducible a segmentation is.

    Attributes:
        seed_ari: ARI between the segmentation with ``seeds[0]`` and each other seed (outliers as a label).
        bootstrap_ari: ARI between the full segmentation and each subsample refit, on the users both saw.
        seeds: the seeds compared.
        fraction: share of users in each subsample.
        seconds: wall time.
        n_segments: segments found by the reference and each seed refit.
        per_segment: :func:`segment_stability` of the measured segments over every refit.
    """

    seed_ari: tuple[float, ...]
    bootstrap_ari: tuple[float, ...]
    seeds: tuple[int, ...]
    fraction: float
    seconds: float
    n_segments: tuple[int, ...] = field(default=())
    per_segment: tuple[SegmentStability, ...] = field(default=())

    def to_dict(self) -> dict:
        """A JSON-ready summary (for ``metrics.json`` under ``segmentation.stability``)."""

        def stats(v: tuple[float, ...]) -> dict:
            return {"mean": round(float(np.mean(v)), 4), "min": round(float(np.min(v)), 4), "values": [round(x, 4) for x in v]} if v else {}

        return {"seed_ari": stats(self.seed_ari), "bootstrap_ari": stats(self.bootstrap_ari), "seeds": list(self.seeds),
                "fraction": self.fraction, "n_segments": list(self.n_segments), "seconds": round(self.seconds, 2),
                "per_segment": {str(p.segment_id): p.to_dict() for p in self.per_segment}}  # fmt: skip


def segmentation_stability(users, reduce: ReduceConfig, cluster: ClusterConfig, *, seeds: tuple[int, ...] = (0, 1, 2),
                           n_bootstrap: int = 3, fraction: float = 0.8, reference=None,
                           segments: np.ndarray | None = None) -> StabilityResult:  # fmt: skip
    """Seed-to-seed and subsample ARI of :func:`segmentation.cluster.fit_segments` on ``users``, and the
    per-segment stability (:func:`segment_stability`) of the same refits.

    Each refit runs the whole reduce + cluster step (parameter selection included, so the measure
    covers it). Subsample refits use ``seeds[0]`` and a subsample drawn with seed ``1000 + b``.

    Args:
        users: :class:`embeddings.encoder.Embeddings` of the users.
        reduce, cluster: the configuration measured.
        seeds: seeds of the seed-to-seed comparison (the first is the reference run).
        n_bootstrap: subsample refits.
        fraction: share of users in each subsample (drawn without replacement, so no user repeats).
        reference: a :class:`Segmentation` already fitted with ``seeds[0]`` (saves one fit).
        segments: (n,) the segments whose per-segment stability is measured, in ``users`` order (default:
            the reference's). When given and no ``reference`` is, the reference fit counts as one more refit
            (the run's segments on a sample of its users, :func:`segmentation.stages.stability`).

    Returns:
        :class:`StabilityResult`.
    """
    from embeddings.encoder import Embeddings
    from segmentation.cluster import fit_segments

    t0 = time.perf_counter()
    base = reference if reference is not None else fit_segments(users, reduce, cluster, seed=seeds[0], picture=False)
    base_labels = base.assignments["segment_id"].to_numpy()
    n = len(users.ids)
    everyone = np.arange(n)
    refits = [] if segments is None or reference is not None else [(everyone, base_labels)]
    segments = base_labels if segments is None else np.asarray(segments)
    counts = [base.n_segments]
    seed_ari = []
    for s in seeds[1:]:
        fitted = fit_segments(users, reduce, cluster, seed=s, picture=False)
        counts.append(fitted.n_segments)
        other = fitted.assignments["segment_id"].to_numpy()
        seed_ari.append(_ari(base_labels, other))
        refits.append((everyone, other))
    boot = []
    for b in range(n_bootstrap):
        idx = np.sort(np.random.default_rng(1000 + b).choice(n, int(fraction * n), replace=False))
        sub = fit_segments(Embeddings(users.ids[idx], users.vectors[idx], users.model), reduce, cluster, seed=seeds[0],
                           picture=False).assignments["segment_id"].to_numpy()  # fmt: skip
        boot.append(_ari(base_labels[idx], sub))
        refits.append((idx, sub))
    return StabilityResult(tuple(seed_ari), tuple(boot), tuple(seeds), fraction, time.perf_counter() - t0, tuple(counts),
                           tuple(segment_stability(segments, refits)))  # fmt: skip
