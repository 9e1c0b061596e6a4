"""Recommending within segments (issue 16, item 4): a fitted global ranker conditioned on users' segments.

:class:`SegmentConditionedRanker` wraps a fitted :class:`~segmentation.rank.base.MatrixRanker` (the *global*
ranker) and the users' segment assignments, in one of three ways (``kind``):

- ``"segment-popularity"``: ``(1 - alpha) z(global) + alpha z(log1p c_s)``, ``c_s`` the item counts of the
  segment's members (their interactions, or their likes: rating >= ``like_threshold``), ``z`` standardising
  each user's row;
- ``"segment-candidates"``: only items that at least ``min_count`` of the segment's members interacted with
  are ranked (by the global ranker's scores); a user left with fewer than ``k`` unseen such items gets the
  global candidates (every item);
- ``"segment-refit"``: EASE refitted on the segment members' rows alone (ridge ``reg``, over the items the
  segment touched), blended as ``(1 - weight) z(global) + weight z(segment EASE)``; ``weight = 1`` is the
  pure per-segment ranker, the risky one for small segments.

Choices and the gate are made on the global ranker's own validation carve (:func:`~segmentation.rank.base.carve_mask`
with the same seed and ``valid_fraction``: the train rows it held out to choose its hyper-parameters): a copy of the
global ranker with its chosen hyper-parameters fixed is fitted on the rest, the segment statistics (counts, refits)
are taken from the rest too, and each validation user (one with a held-out liked item) is scored by binary NDCG@10
of the carved liked items. Like the rating models' per-segment gate (``predictor.per_segment``,
:func:`segmentation.predict.fit_segment_predictors`), each segment's validation users are split at random into a
*select* part (``1 - gate_fraction``), on which the segment's setting is chosen from the grid, and a *gate* part;
the segment keeps its conditioned ranker only when the chosen setting beats the global ranker on the select part
and on all its validation users, and the percentile bootstrap interval (over gate users) of the mean NDCG@10 gain
lies wholly above zero, at level ``gate_level`` Bonferroni-corrected over the segments tested. Everyone else (other
segments, outliers with ``segment_id == -1``, users unknown to the global ranker) gets the global ranker's list.
After the choice, the segment statistics are recomputed on all of train.

Cost: the global ranker's own scores, in batches of users of one segment at a time (at most what
:meth:`MatrixRanker.recommend` holds), plus one items-vector per segment (``c_s``) or one EASE over the items the
segment touched: linear in the users of each segment, and never a users x items table.

Measured in docs/BENCHMARKS.md ("Recommending within segments (issue 16, item 4)"); not yet used by the flow.

>>> cond = SegmentConditionedRanker(EASE().fit(train), "segment-popularity")           # doctest: +SKIP
>>> cond.fit(train, assignments, seed=0).report_                                       # doctest: +SKIP
>>> cond.recommend(users, 10)                                                          # doctest: +SKIP
"""

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Self

import numpy as np
import polars as pl
import scipy.sparse as sp

from embeddings.encoder import Embeddings
from segmentation._errors import ConfigError, DataError, check_is_fitted
from segmentation._metrics import bootstrap_ci, ndcg_from_hits
from segmentation.config import FineTuneConfig, RankerConfig
from segmentation.data.contracts import check_schema
from segmentation.rank.als import ALS
from segmentation.rank.base import (
    _CHUNK,
    _CHUNK_CELLS,
    _VALID_K,
    RECOMMENDATIONS,
    MatrixRanker,
    carve_mask,
    top_k,
    train_matrices,
    zscore,
)
from segmentation.rank.ease import EASE, ease_weights
from segmentation.rank.rp3beta import RP3beta
from segmentation.rank.segflow import SegflowRanker

__all__ = ["CONDITIONED_KINDS", "SEGMENT_RANKER_REPORT", "SegmentConditionedRanker", "segment_gate_level"]

logger = logging.getLogger(__name__)

#: The ways :class:`SegmentConditionedRanker` conditions a global ranker on segments.
CONDITIONED_KINDS = ("segment-popularity", "segment-candidates", "segment-refit")

#: Default grids, tried per segment on the select part of its validation users.
ALPHAS = (0.1, 0.2, 0.35, 0.5, 0.75, 0.9, 1.0)  # as benchmarks/cold_start.py; 1: the segment's popularity alone
MIN_COUNTS = (1, 2, 3, 5, 10, 20)
REFIT_REGS = (30.0, 100.0, 300.0)
REFIT_WEIGHTS = (0.25, 0.5, 0.75, 1.0)

#: ``report_`` of a fitted :class:`SegmentConditionedRanker`: one row per segment (outliers excluded).
SEGMENT_RANKER_REPORT = pl.Schema({
    "segment_id": pl.Int32, "n_users": pl.Int64, "n_valid": pl.Int64, "n_gate": pl.Int64, "setting": pl.String,
    "valid_ndcg_global": pl.Float64, "valid_ndcg_segment": pl.Float64, "gate_ndcg_global": pl.Float64,
    "gate_ndcg_segment": pl.Float64, "gate_ci_low": pl.Float64, "gate_ci_high": pl.Float64, "kept": pl.Boolean,
})  # fmt: skip

_ASSIGNMENTS = pl.Schema({"user_id": pl.String, "segment_id": pl.Int32})


def segment_gate_level(gate: FineTuneConfig, n_tested: int) -> float:
    """Two-sided level of each segment's gate interval: ``gate.gate_level``, Bonferroni-corrected over the
    ``n_tested`` segments when ``gate.gate_correction = "bonferroni"`` (the rating models' rule,
    ``segmentation._predict_segments.gate_level``)."""
    if gate.gate_correction == "none" or n_tested <= 1:
        return gate.gate_level
    return 1.0 - (1.0 - gate.gate_level) / n_tested


def _fixed_config(ranker: MatrixRanker) -> RankerConfig:
    """The ranker's settings with the hyper-parameters it chose on validation fixed (no grid left to search)."""
    p, cfg = ranker.params_, ranker.config
    if isinstance(ranker, EASE):
        return cfg.model_copy(update={"ease_reg": p["reg"]})
    if isinstance(ranker, SegflowRanker):
        return cfg.model_copy(update={"segflow_like_weights": [p["a"]], "segflow_reg_grid": [p["reg"]],
                                      "segflow_dropouts": [p["dropout"]], "segflow_target_weights": [p["w"]],
                                      "segflow_content_weights": [p["beta"]]})  # fmt: skip
    if isinstance(ranker, RP3beta):
        return cfg.model_copy(update={"rp3_alpha_grid": [p["alpha"]], "rp3_beta_grid": [p["beta"]]})
    if isinstance(ranker, ALS):
        return cfg.model_copy(update={"als_factors_grid": [p["factors"]], "als_reg_grid": [p["reg"]],
                                      "als_iterations_grid": [p["iterations"]]})  # fmt: skip
    return cfg  # most-popular, item-kNN: nothing chosen on validation


@dataclass
class _Segment:
    """What one segment contributes to its members' scores, over one set of train matrices."""

    counts: np.ndarray  # (n_items,) interactions of the members
    likes: np.ndarray  # (n_items,) likes of the members
    x: sp.csr_matrix  # the members' rows (for refits)
    refits: dict[float, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # reg -> (items, EASE weights)

    def refit(self, reg: float) -> tuple[np.ndarray, np.ndarray]:
        if reg not in self.refits:
            cols = np.flatnonzero(self.counts > 0)
            self.refits[reg] = (cols, ease_weights(self.x[:, cols].tocsr(), reg))
        return self.refits[reg]


def _segments(x: sp.csr_matrix, liked: sp.csr_matrix, rows_of: dict[int, np.ndarray]) -> dict[int, _Segment]:
    return {s: _Segment(np.asarray(x[r].sum(axis=0)).ravel(), np.asarray(liked[r].sum(axis=0)).ravel(), x[r].tocsr())
            for s, r in rows_of.items()}  # fmt: skip


class SegmentConditionedRanker:
    """A fitted global ranker conditioned on segments, kept per segment only where validation says it helps.

    Args:
        base: a fitted global ranker (a :class:`MatrixRanker`; the segflow ranker's ALS fallback stands in for it
            when it fell back). Not modified.
        kind: one of ``CONDITIONED_KINDS``.
        gate: the gate's settings (``gate_fraction``, ``gate_level``, ``gate_correction``, ``gate_bootstrap``), the
            rating models' ``predictor.per_segment`` by default.
        grid: the settings tried per segment (dicts: ``{"source", "alpha"}``, ``{"min_count"}`` or
            ``{"reg", "weight"}``); the module's defaults when None.
        min_valid_users: segments with fewer validation users keep the global ranker untried.

    Attributes (after :meth:`fit`):
        report_: one row per segment, schema ``SEGMENT_RANKER_REPORT``.
        settings_: segment -> the setting chosen on validation (tested segments only).
        kept_: the segments whose gate passed.
    """

    def __init__(self, base: MatrixRanker, kind: str, *, gate: FineTuneConfig | None = None,
                 grid: Sequence[dict] | None = None, min_valid_users: int = 10) -> None:  # fmt: skip
        if kind not in CONDITIONED_KINDS:
            raise ConfigError(f"unknown segment-conditioned ranker {kind!r}; expected one of: "
                              f"{', '.join(CONDITIONED_KINDS)}")  # fmt: skip
        self.base = base
        self.kind = kind
        self.gate = gate or FineTuneConfig()
        self.grid = list(grid) if grid is not None else None
        if self.grid is not None and not self.grid:
            raise ConfigError(f"{kind}: the grid of settings to try is empty; give at least one setting")
        self.min_valid_users = max(2, int(min_valid_users))

    def _global(self) -> MatrixRanker:
        check_is_fitted(self.base, "data_")
        fallback = getattr(self.base, "fallback_", None)
        return fallback if fallback is not None else self.base

    def _default_grid(self, distinct_likes: bool) -> list[dict]:
        if self.kind == "segment-popularity":
            sources = ("interactions", "likes") if distinct_likes else ("interactions",)
            return [{"source": s, "alpha": a} for s in sources for a in ALPHAS]
        if self.kind == "segment-candidates":
            return [{"min_count": m} for m in MIN_COUNTS]
        return [{"reg": r, "weight": w} for r in REFIT_REGS for w in REFIT_WEIGHTS]

    # -- scoring ----------------------------------------------------------------------------------

    def _conditioned(self, scores: np.ndarray, x_rows: sp.csr_matrix, seg: _Segment, setting: dict,
                     k: int) -> np.ndarray:  # fmt: skip
        """The conditioned scores of some users of one segment, from the global ranker's ``scores`` of them."""
        if self.kind == "segment-popularity":
            c = seg.likes if setting["source"] == "likes" else seg.counts
            a = float(setting["alpha"])
            return (1.0 - a) * zscore(scores) + a * zscore(np.log1p(c)[None, :])
        if self.kind == "segment-candidates":
            allowed = seg.counts >= setting["min_count"]
            unseen = int(allowed.sum()) - np.asarray(x_rows[:, allowed].sum(axis=1)).ravel()
            out = scores.copy()
            restrict = unseen >= k  # the others get the global candidates
            out[np.ix_(np.flatnonzero(restrict), np.flatnonzero(~allowed))] = -np.inf
            return out
        cols, b = seg.refit(float(setting["reg"]))
        own = np.zeros_like(scores)
        own[:, cols] = np.asarray(x_rows[:, cols] @ b)
        w = float(setting["weight"])
        return (1.0 - w) * zscore(scores) + w * zscore(own)

    @staticmethod
    def _step(n_items: int) -> int:
        return max(1, min(_CHUNK, _CHUNK_CELLS // max(n_items, 1)))

    # -- fitting ----------------------------------------------------------------------------------

    def fit(self, train: pl.DataFrame, assignments: pl.DataFrame, *, items: pl.DataFrame | None = None,
            item_embeddings: Embeddings | None = None, seed: int = 0, implicit: bool = False) -> Self:  # fmt: skip
        """Choose each segment's setting on the global ranker's validation carve, gate it, then fit on all of train.

        Args:
            train: the interactions the global ranker was fitted on (``user_id``, ``item_id``, ``rating``).
            assignments: ``user_id`` (String) and ``segment_id`` (Int32, -1 = outlier) of the users.
            items: the catalogue the global ranker was given (widens the validation copy's catalogue the same way).
            item_embeddings: as given to the global ranker (the segflow ranker's content blend).
            seed: the seed the global ranker was fitted with (its carve).
            implicit: as given to the global ranker.

        Returns:
            self, fitted.

        Raises:
            NotFittedError: the global ranker is not fitted.
            SchemaError: ``assignments`` lacks ``user_id``/``segment_id`` or has other types.
            DataError: no train user has a segment.
        """
        t0 = time.perf_counter()
        base = self._global()
        check_schema(assignments, _ASSIGNMENTS, what="segment assignments")
        a = assignments.select("user_id", "segment_id").unique("user_id", keep="first", maintain_order=True)
        self.segment_of_ = dict(zip(a["user_id"].to_list(), a["segment_id"].to_list()))
        train = train.with_columns(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String))
        if not any(self.segment_of_.get(u, -1) >= 0 for u in base.users_.ids):
            raise DataError(f"{self.kind}: none of the {len(base.users_):,} users of the global ranker has a segment "
                            "in the assignments (given segment_id >= 0 for "
                            f"{int((a['segment_id'] >= 0).sum()):,} users); pass the assignments of the users the "
                            "global ranker was fitted on")  # fmt: skip
        grid = self.grid or self._default_grid((base.data_.liked != base.data_.x).nnz > 0)

        # the global ranker's own carve, and a copy of it with its hyper-parameters fixed, fitted on the rest
        cfg = base.config
        m = pl.Series(carve_mask(train.height, cfg.valid_fraction, np.random.default_rng(seed)))
        fit_part, held = train.filter(~m), train.filter(m)
        catalogue = pl.DataFrame({"item_id": base.items_.ids.tolist()}, schema={"item_id": pl.String})
        if items is not None:
            catalogue = pl.concat([catalogue, items.select(pl.col("item_id").cast(pl.String))]).unique(
                maintain_order=True
            )
        clone = type(base)(_fixed_config(base)).fit(fit_part, items=catalogue, item_embeddings=item_embeddings,
                                                    seed=seed, implicit=implicit)  # fmt: skip
        clone = self._unwrap(clone)
        held = held.filter(pl.col("user_id").is_in(pl.Series(clone.users_.ids.tolist(), dtype=pl.String).implode()))
        vm = train_matrices(held, clone.users_, clone.items_, cfg.like_threshold, implicit)
        relevant = (vm.liked - vm.liked.multiply(clone.data_.x)).tocsr()
        relevant.eliminate_zeros()
        has_rel = np.diff(relevant.indptr) > 0
        seg_clone = np.array([self.segment_of_.get(u, -1) for u in clone.users_.ids], dtype=np.int64)
        segments = sorted(int(s) for s in set(self.segment_of_.values()) if s >= 0)
        valid_rows = {s: np.flatnonzero((seg_clone == s) & has_rel) for s in segments}
        tested = [s for s in segments if len(valid_rows[s]) >= self.min_valid_users]
        level = segment_gate_level(self.gate, len(tested))
        stats = _segments(clone.data_.x, clone.data_.liked, {s: np.flatnonzero(seg_clone == s) for s in tested})

        rows: list[dict] = []
        self.settings_: dict[int, dict] = {}
        self.kept_: set[int] = set()
        n_users = {s: sum(1 for v in self.segment_of_.values() if v == s) for s in segments}
        for s in segments:
            row = {"segment_id": s, "n_users": n_users[s], "n_valid": len(valid_rows[s]), "n_gate": 0, "setting": None,
                   "valid_ndcg_global": None, "valid_ndcg_segment": None, "gate_ndcg_global": None,
                   "gate_ndcg_segment": None, "gate_ci_low": None, "gate_ci_high": None, "kept": False}  # fmt: skip
            if s in tested:
                row.update(self._choose_and_gate(s, clone, valid_rows[s], relevant, stats[s], grid, level, seed))
            rows.append(row)
        self.report_ = pl.DataFrame(rows, schema=SEGMENT_RANKER_REPORT)

        # the chosen settings, on all of train
        seg_full = np.array([self.segment_of_.get(u, -1) for u in base.users_.ids], dtype=np.int64)
        self.segments_ = _segments(base.data_.x, base.data_.liked,
                                   {s: np.flatnonzero(seg_full == s) for s in self.settings_})  # fmt: skip
        self.fit_seconds_ = time.perf_counter() - t0
        logger.info("%s on %s: %d of %d segments tested, %d kept (gate level %.4f), %.1f s", self.kind,
                    type(base).__name__, len(tested), len(segments), len(self.kept_), level, self.fit_seconds_)  # fmt: skip
        return self

    @staticmethod
    def _unwrap(ranker: MatrixRanker) -> MatrixRanker:
        fallback = getattr(ranker, "fallback_", None)
        return fallback if fallback is not None else ranker

    def _choose_and_gate(self, s: int, clone: MatrixRanker, vrows: np.ndarray, relevant: sp.csr_matrix,
                         seg: _Segment, grid: list[dict], level: float, seed: int) -> dict:  # fmt: skip
        """Per-user validation NDCG@10 of the global ranker and of every setting; choose on select, gate on the rest."""
        k = _VALID_K
        glob = np.empty(len(vrows))
        cond = np.empty((len(grid), len(vrows)))
        step = self._step(len(clone.items_))
        for start in range(0, len(vrows), step):
            r = vrows[start : start + step]
            x_rows = clone.data_.x[r]
            rel = relevant[r]
            scores = clone._scores(r)
            glob[start : start + len(r)] = _ndcg(scores, x_rows, rel, k)
            for j, setting in enumerate(grid):
                cond[j, start : start + len(r)] = _ndcg(self._conditioned(scores, x_rows, seg, setting, k), x_rows,
                                                        rel, k)  # fmt: skip
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E9, s]))
        perm = rng.permutation(len(vrows))
        n_gate = min(len(vrows) - 1, max(1, int(round(len(vrows) * self.gate.gate_fraction))))
        gate, select = np.sort(perm[:n_gate]), np.sort(perm[n_gate:])
        j = int(np.argmax(cond[:, select].mean(axis=1)))  # the first on ties
        setting = grid[j]
        self.settings_[s] = setting
        diff = cond[j, gate] - glob[gate]
        lo, hi = (bootstrap_ci(diff, n_boot=self.gate.gate_bootstrap, seed=seed + s, level=level)
                  if np.ptp(diff) > 0 else (float(diff[0]), float(diff[0])))  # fmt: skip
        kept = bool(cond[j, select].mean() > glob[select].mean() and cond[j].mean() > glob.mean() and lo > 0)
        if kept:
            self.kept_.add(s)
        logger.info("%s, segment %d: %s, validation NDCG@10 %.4f -> %.4f, gate interval [%+.4f, %+.4f], %s",
                    self.kind, s, setting, glob.mean(), cond[j].mean(), lo, hi, "kept" if kept else "not kept")  # fmt: skip
        return {"n_gate": len(gate), "setting": json.dumps(setting, sort_keys=True),
                "valid_ndcg_global": float(glob.mean()), "valid_ndcg_segment": float(cond[j].mean()),
                "gate_ndcg_global": float(glob[gate].mean()), "gate_ndcg_segment": float(cond[j, gate].mean()),
                "gate_ci_low": lo, "gate_ci_high": hi, "kept": kept}  # fmt: skip

    # -- recommending -----------------------------------------------------------------------------

    def recommend(self, user_ids: Sequence[str], k: int = 10, *, exclude_seen: bool = True,
                  gated: bool = True) -> pl.DataFrame:  # fmt: skip
        """Top-``k`` items per user: the conditioned ranker for members of kept segments, the global one otherwise.

        Args:
            user_ids: users to recommend to (duplicates are listed once).
            k: list length.
            exclude_seen: leave out the items the user interacted with in train.
            gated: False conditions every tested segment with its chosen setting, whether its gate passed or not
                (to measure what the gate prevents).

        Returns:
            Frame with schema ``RECOMMENDATIONS``, in the order of ``user_ids`` then rank.
        """
        check_is_fitted(self, "segments_")
        if k < 1:
            raise ValueError(f"k must be >= 1 (given: {k})")
        base = self._global()
        users = list(dict.fromkeys(str(u) for u in user_ids))
        active = set(self.kept_) if gated else set(self.settings_)
        rows = base.users_.lookup(users, missing=-1)
        segs = np.array([self.segment_of_.get(u, -1) for u in users], dtype=np.int64)
        on = (rows >= 0) & np.isin(segs, sorted(active))
        parts = [base.recommend([u for u, c in zip(users, on) if not c], k, exclude_seen=exclude_seen)]
        step = self._step(len(base.items_))
        for s in sorted(active):
            idx = np.flatnonzero(on & (segs == s))
            for start in range(0, len(idx), step):
                chunk = idx[start : start + step]
                r = rows[chunk]
                x_rows = base.data_.x[r]
                scores = self._conditioned(base._scores(r), x_rows, self.segments_[s], self.settings_[s], k)
                if exclude_seen:
                    seen = x_rows.tocoo()
                    scores[seen.row, seen.col] = -np.inf
                if np.isnan(scores).any():
                    raise RuntimeError(f"{self.kind} produced NaN scores; this is a bug")
                tops = [t[np.isfinite(row[t])] for t, row in zip(top_k(scores, k), scores)]
                lens = [len(t) for t in tops]
                parts.append(pl.DataFrame({
                    "user_id": np.repeat(np.array([users[i] for i in chunk], dtype=object), lens),
                    "item_id": base.items_.ids[np.concatenate(tops)] if sum(lens) else [],
                    "rank": np.concatenate([np.arange(1, n + 1) for n in lens]) if sum(lens) else [],
                    "score": np.concatenate([row[t] for t, row in zip(tops, scores)]) if sum(lens) else [],
                }, schema=RECOMMENDATIONS))  # fmt: skip
        order = pl.DataFrame({"user_id": users, "_pos": np.arange(len(users))}, schema={"user_id": pl.String,
                                                                                        "_pos": pl.Int64})  # fmt: skip
        out = pl.concat(parts).join(order, on="user_id").sort("_pos", "rank").drop("_pos")
        return out.select([pl.col(c).cast(t) for c, t in RECOMMENDATIONS.items()])


def _ndcg(scores: np.ndarray, x_rows: sp.csr_matrix, relevant: sp.csr_matrix, k: int) -> np.ndarray:
    """Per-user binary NDCG@k of ``scores``, seen items (``x_rows``) excluded."""
    s = scores.copy()
    seen = x_rows.tocoo()
    s[seen.row, seen.col] = -np.inf
    tops = [t[np.isfinite(row[t])] for t, row in zip(top_k(s, k), s)]
    rel = relevant.toarray() > 0  # as many cells as ``scores``
    hits = np.zeros((len(tops), k))
    for i, t in enumerate(tops):
        hits[i, : len(t)] = rel[i, t]
    return ndcg_from_hits(hits, np.diff(relevant.indptr))
