"""The stability of a segmentation: how well its segments come back when the users are refitted.

:func:`segmentation_stability` measures a finished configuration: ARI between runs with different
seeds (UMAP is the main source of variation) and between the full run and runs on bootstrap
subsamples of the users; :func:`segment_stability` scores each segment over the same refits
(clusterwise Jaccard, Hennig's clusterboot). :func:`measure_stability` is the flow's stability stage.
The label-free choice of the clustering parameters is in :mod:`segmentation.selection`.
"""

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from embeddings.encoder import Embeddings
from segmentation.cluster import Segmentation, fit_segments
from segmentation.config import ClusterConfig, EvalConfig, ReduceConfig
from segmentation.selection import _ari

__all__ = ["StabilityResult", "measure_stability", "segment_stability", "segmentation_stability"]

logger = logging.getLogger(__name__)

TENTATIVE = 0.6
"""A segment whose mean clusterwise Jaccard is below this is *tentative* (Hennig 2007 calls clusters below 0.6
"indicating patterns in the data, but which points exactly should belong to them is highly doubtful")."""
DISSOLVED = 0.5
"""A refit in which a segment's best Jaccard is at most this *dissolves* it (Hennig 2007)."""


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
            return (
                {
                    "mean": round(float(np.mean(v)), 4),
                    "min": round(float(np.min(v)), 4),
                    "values": [round(x, 4) for x in v],
                }
                if v
                else {}
            )

        return {"seed_ari": stats(self.seed_ari), "bootstrap_ari": stats(self.bootstrap_ari), "seeds": list(self.seeds),
                "fraction": self.fraction, "n_segments": list(self.n_segments), "seconds": round(self.seconds, 2),
                "per_segment": {str(p.segment_id): p.to_dict() for p in self.per_segment}}  # fmt: skip


def segmentation_stability(users, reduce: ReduceConfig, cluster: ClusterConfig, *, seeds: tuple[int, ...] = (0, 1, 2),
                           n_bootstrap: int = 3, fraction: float = 0.8, reference=None,
                           segments: np.ndarray | None = None) -> StabilityResult:  # fmt: skip
    """Seed-to-seed and subsample ARI of :func:`segmentation.cluster.fit_segments` on ``users``, and the
    per-segment stability (:func:`segment_stability`) of the same refits.

    Each refit runs the whole reduce + cluster step (parameter selection and the split test included, so the
    measure covers them; the split test with ``fast_split``: UMAP's exact neighbours from one matrix product, the
    same neighbours found faster, docs/BENCHMARKS.md). Subsample refits use ``seeds[0]`` and a subsample drawn with seed ``1000 + b``.

    Args:
        users: :class:`embeddings.encoder.Embeddings` of the users.
        reduce, cluster: the configuration measured.
        seeds: seeds of the seed-to-seed comparison (the first is the reference run).
        n_bootstrap: subsample refits.
        fraction: share of users in each subsample (drawn without replacement, so no user repeats).
        reference: a :class:`Segmentation` already fitted with ``seeds[0]`` (saves one fit).
        segments: (n,) the segments whose per-segment stability is measured, in ``users`` order (default:
            the reference's). When given and no ``reference`` is, the reference fit counts as one more refit
            (the run's segments on a sample of its users, :func:`measure_stability`).

    Returns:
        :class:`StabilityResult`.
    """
    t0 = time.perf_counter()
    base = (
        reference
        if reference is not None
        else fit_segments(users, reduce, cluster, seed=seeds[0], picture=False, fast_split=True)
    )
    base_labels = base.assignments["segment_id"].to_numpy()
    n = len(users.ids)
    everyone = np.arange(n)
    refits = [] if segments is None or reference is not None else [(everyone, base_labels)]
    segments = base_labels if segments is None else np.asarray(segments)
    counts = [base.n_segments]
    seed_ari = []
    for s in seeds[1:]:
        fitted = fit_segments(users, reduce, cluster, seed=s, picture=False, fast_split=True)
        counts.append(fitted.n_segments)
        other = fitted.assignments["segment_id"].to_numpy()
        seed_ari.append(_ari(base_labels, other))
        refits.append((everyone, other))
    boot = []
    for b in range(n_bootstrap):
        idx = np.sort(np.random.default_rng(1000 + b).choice(n, int(fraction * n), replace=False))
        sub = fit_segments(users.subset(idx), reduce, cluster, seed=seeds[0], picture=False,
                           fast_split=True).assignments["segment_id"].to_numpy()  # fmt: skip
        boot.append(_ari(base_labels[idx], sub))
        refits.append((idx, sub))
    return StabilityResult(tuple(seed_ari), tuple(boot), tuple(seeds), fraction, time.perf_counter() - t0, tuple(counts),
                           tuple(segment_stability(segments, refits)))  # fmt: skip


def measure_stability(users: Embeddings, segmentation: Segmentation, reduce: ReduceConfig, cluster: ClusterConfig,
                      config: EvalConfig, seed: int) -> dict:  # fmt: skip
    """Seed-to-seed and subsample ARI of the segmentation, for ``metrics.json`` under ``segmentation.stability``,
    and every segment's stability over the same refits (``per_segment``: clusterwise Jaccard, Hennig's
    clusterboot; :func:`segment_stability`), which also goes into ``segments.parquet``.

    Every refit repeats the whole reduce + cluster step (parameter selection and the split test included, the
    latter only where the run made it) without the 2-d picture. Past ``config.stability_max_users`` users the measure runs on a uniform sample of
    that many, against a reference fitted on the same sample with the run's seed; the run's own segments,
    restricted to the sample, are then compared with that reference fit and every refit.
    """
    if config.stability_seeds == 0 and config.stability_subsamples == 0:
        return {"skipped": "evaluate.stability_seeds and evaluate.stability_subsamples are 0"}
    n = len(users.ids)
    if segmentation.splits is None and cluster.split_stability is not None:
        # the run made no split test (past reduce.sample_size users): the refits, on fewer users, do not either
        cluster = cluster.model_copy(update={"split_stability": None})
    reference: Segmentation | None = segmentation
    of_user = dict(zip(segmentation.assignments["user_id"].to_list(), segmentation.assignments["segment_id"].to_list()))
    if n > config.stability_max_users:
        rows = np.sort(np.random.default_rng(seed).choice(n, config.stability_max_users, replace=False))
        users = users.subset(rows)
        reference = None
    labels = np.array([of_user[u] for u in users.ids], dtype=np.int64)  # the run's segments, in users' order
    seeds = (seed, *(seed + 1 + i for i in range(config.stability_seeds)))
    result = segmentation_stability(users, reduce, cluster, seeds=seeds, n_bootstrap=config.stability_subsamples,
                                    reference=reference, segments=labels)  # fmt: skip
    out = result.to_dict()
    out["n_users"] = len(users.ids)
    out["note"] = ("ARI with the run's segments (outliers as one more label): between seeds, and on the users "
                   f"both saw for refits on {result.fraction:.0%} subsamples; 1 = identical. per_segment: each "
                   "segment's best Jaccard overlap with a refit's segment, averaged over the refits (Hennig's "
                   f"clusterboot); below {TENTATIVE} the segment is tentative")  # fmt: skip
    return out
