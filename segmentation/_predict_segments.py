"""Per-segment fine-tuning of the global rating model behind an honest validation gate."""

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from safetensors.numpy import load_file, save_file

from embeddings.encoder import resolve_device
from segmentation._errors import DataError, check_is_fitted
from segmentation._metrics import paired_bootstrap_ci, rmse
from segmentation._predict_common import (
    _FORMAT,
    _FORMAT_VERSION,
    SEGMENT_REPORT,
    _child_seed,
    _read_manifest,
    _settings,
    _versions,
    cpu_threads,
)
from segmentation._predict_global import GlobalPredictor, _fingerprint, _ridge
from segmentation._predict_mf import MFParams, Ratings, finetune_mf
from segmentation.cluster import NOISE
from segmentation.config import PredictorConfig
from segmentation.data import Split, check_schema

logger = logging.getLogger(__name__)


_MF_STRATEGIES = ("bias+lowrank-delta", "full-l2")
_BLEND_STRATEGIES = ("blend-weights", "blend-recalibrate")


@dataclass(frozen=True)
class _SegmentModel:
    """A kept segment model.

    Attributes:
        strategy: how it was fine-tuned.
        user_nums: (m,) int64 sorted global user numbers of the segment's users.
        mf: MF strategies: the fine-tuned MF parameters, user rows following ``user_nums``.
        weights: ``blend-weights``: ``[intercept, w...]``; ``blend-recalibrate``: ``[a, b]``.
    """

    strategy: str
    user_nums: np.ndarray
    mf: MFParams | None = None
    weights: np.ndarray | None = None

    def local_users(self, users: np.ndarray) -> np.ndarray:
        """Rows of ``mf``'s user tables for global user numbers (-1 where not in the segment)."""
        n = len(self.user_nums)
        if n == 0:
            return np.full(len(users), -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.user_nums, users), 0, n - 1)
        return np.where((users >= 0) & (self.user_nums[pos] == users), pos, -1)

    def tensors(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}user_nums": np.ascontiguousarray(self.user_nums, dtype=np.int64)}
        if self.mf is not None:
            out.update(self.mf.tensors(prefix=f"{prefix}mf."))
        if self.weights is not None:
            out[f"{prefix}weights"] = np.asarray(self.weights, np.float64)
        return out

    @classmethod
    def from_tensors(cls, strategy: str, tensors: dict[str, np.ndarray], prefix: str) -> "_SegmentModel":
        mf = MFParams.from_tensors(tensors, prefix=f"{prefix}mf.") if f"{prefix}mf.mu" in tensors else None
        return cls(strategy, tensors[f"{prefix}user_nums"], mf, tensors.get(f"{prefix}weights"))


def _segment_output(
    global_model: GlobalPredictor, model: _SegmentModel, data: Ratings, preds: np.ndarray
) -> np.ndarray:
    """Unclipped output of a segment model for rows of its users, given the global component predictions."""
    if model.strategy in _MF_STRATEGIES:
        assert model.mf is not None
        j = global_model.component_names.index("mf")
        preds = preds.copy()
        preds[:, j] = model.mf.predict(model.local_users(data.users), data.items)
        return global_model.combine(preds)
    assert model.weights is not None
    if model.strategy == "blend-weights":
        return global_model.combine(preds, model.weights)
    return model.weights[0] + model.weights[1] * global_model.combine(preds)


def _restrict_users(params: MFParams, user_nums: np.ndarray) -> MFParams:
    return MFParams(params.mu, params.user_factors[user_nums].copy(), params.item_factors,
                    params.user_bias[user_nums].copy(), params.item_bias)  # fmt: skip


class SegmentedPredictor:
    """The global model plus a fine-tuned model for each segment where validation says it helps.

    Attributes:
        global_model: the global predictor (used for every user whose segment kept no model).
        assignments_: ``user_id`` String, ``segment_id`` Int32 (-1 = outlier, never fine-tuned).
        models_: kept segment models by segment id.
        report_: one row per segment, schema :data:`SEGMENT_REPORT`.
        trials_: one row per (segment, strategy) tried, with its RMSE on the segment's select rows.
    """

    def __init__(self, global_model: GlobalPredictor, assignments: pl.DataFrame,
                 models: dict[int, _SegmentModel], report: pl.DataFrame, trials: pl.DataFrame) -> None:  # fmt: skip
        self.global_model = global_model
        self.assignments_ = assignments
        self.models_ = models
        self.report_ = report
        self.trials_ = trials
        self._segment_of = dict(zip(assignments["user_id"].to_list(), assignments["segment_id"].to_list()))

    def __repr__(self) -> str:
        return f"SegmentedPredictor({self.report_.height} segments, {len(self.models_)} kept)"

    def segments_of(self, user_ids: pl.Series) -> np.ndarray:
        """Segment ids of users (-1 for outliers and users without an assignment)."""
        get = self._segment_of.get
        return np.fromiter((get(u, NOISE) for u in user_ids), dtype=np.int64, count=len(user_ids))

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Predict with the user's segment model where one was kept, else with the global model.

        Args:
            frame: has ``user_id`` and ``item_id`` (String), optionally ``timestamp``.

        Returns:
            (n,) float64 clipped to the training rating range; unknown users and items never raise.
        """
        g = self.global_model
        data = g._encode(frame)
        preds = g.component_predictions(data)
        out = g.combine(preds)
        seg = self.segments_of(frame["user_id"]) if self.models_ else np.zeros(0)
        for s, model in self.models_.items():
            m = seg == s
            if m.any():
                out[m] = _segment_output(g, model, data.subset(m), preds[m])
        return np.clip(out, *g.rating_range_)

    def save(self, folder: Path, *, global_model_dir: Path | None = None) -> None:
        """Write ``global/`` (the global model), ``segments.safetensors``, ``assignments.parquet`` and
        ``manifest.json`` (report, trials, versions) into ``folder``.

        ``global_model_dir``: where ``self.global_model`` is saved already (e.g. a run's ``models/global``).
        The manifest then refers to it by a path relative to ``folder`` instead of writing a second copy.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if global_model_dir is None:
            global_ref = "global"
            self.global_model.save(folder / global_ref)
        else:
            global_ref = os.path.relpath(Path(global_model_dir).resolve(), folder.resolve())
        tensors: dict[str, np.ndarray] = {}
        for s, model in self.models_.items():
            tensors.update(model.tensors(prefix=f"segment{s}."))
        if tensors:
            save_file(tensors, str(folder / "segments.safetensors"))
        self.assignments_.write_parquet(folder / "assignments.parquet")
        manifest = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "kind": "segmented",
            "global_model": Path(global_ref).as_posix(),
            "models": {str(s): m.strategy for s, m in self.models_.items()},
            "report": self.report_.to_dicts(),
            "trials": self.trials_.to_dicts(),
            "versions": _versions(),
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "SegmentedPredictor":
        """Read a predictor written by :meth:`save`.

        Raises:
            DataError: the folder holds no saved segmented predictor.
        """
        folder = Path(folder)
        manifest = _read_manifest(folder, "segmented")
        global_dir = folder / manifest.get("global_model", "global")  # older folders hold their own copy
        if not (global_dir / "manifest.json").is_file():
            raise DataError(f"{folder}: the global model it refers to ({global_dir}) is missing; a run's "
                            "models/segments needs the models/global folder beside it")  # fmt: skip
        global_model = GlobalPredictor.load(global_dir)
        tensors = load_file(str(folder / "segments.safetensors")) if manifest["models"] else {}
        models = {int(s): _SegmentModel.from_tensors(strategy, tensors, f"segment{s}.")
                  for s, strategy in manifest["models"].items()}  # fmt: skip
        assignments = pl.read_parquet(folder / "assignments.parquet")
        report = pl.DataFrame(manifest["report"], schema=SEGMENT_REPORT)
        trials = pl.DataFrame(manifest["trials"]) if manifest["trials"] else pl.DataFrame()
        return cls(global_model, assignments, models, report, trials)


def _strategies(global_model: GlobalPredictor, config: PredictorConfig) -> list[str]:
    """The configured strategies that this global model supports (the others are logged and skipped)."""
    names = global_model.component_names
    usable: list[str] = []
    for strategy in config.per_segment.strategies:
        if strategy in _MF_STRATEGIES and "mf" not in names:
            logger.info("fine-tuning strategy %s needs an MF model or blend component; skipped", strategy)
        elif strategy in _MF_STRATEGIES and global_model.config.refit:
            # the refitted MF has seen the validation rows that early stopping and the gate use
            logger.info("fine-tuning strategy %s needs refit = false (the refitted MF has seen the validation "
                        "rows the gate judges on); skipped", strategy)  # fmt: skip
        elif strategy in _BLEND_STRATEGIES and global_model.weights_ is None:
            logger.info("fine-tuning strategy %s needs model = 'blend'; skipped", strategy)
        else:
            usable.append(strategy)
    return usable


def fit_segment_predictors(global_model: GlobalPredictor, split: Split, assignments: pl.DataFrame,
                           config: PredictorConfig, *, seed: int = 0) -> SegmentedPredictor:  # fmt: skip
    """Fine-tune a copy of the global model per segment, kept only where validation says it helps.

    For each segment (outliers, ``segment_id == -1``, excluded) the segment's validation rows are split
    at random into a *select* part (early stopping, choice of strategy) and a *gate* part
    (``config.per_segment.gate_fraction``). Each usable strategy in ``config.per_segment.strategies`` fine-tunes a copy:
    MF strategies on the segment's training rows, blend strategies (the segment's own blend weights, or
    a recalibration ``a + b * prediction``, both shrunk to the global ones) on the select rows. The best
    on the select part is kept only if its RMSE is below the global model's on all the segment's
    validation rows and the paired user-bootstrap interval of the change on the gate part
    (``config.per_segment.gate_level``, Bonferroni-corrected for the number of segments tried) lies wholly below zero.

    Args:
        global_model: a fitted :class:`GlobalPredictor` (not modified).
        split: the split the global model was trained on; test is never read.
        assignments: ``user_id`` String, ``segment_id`` Int32 (-1 = outlier).
        config: fine-tuning settings (``per_segment.enabled = False`` keeps the global model everywhere).
        seed: the run's seed.

    Returns:
        A :class:`SegmentedPredictor` with its ``report_``.
    """
    check_is_fitted(global_model, "components_")
    check_schema(assignments, pl.Schema({"user_id": pl.String, "segment_id": pl.Int32}), what="segment assignments")
    with cpu_threads(config.threads):
        return _fit_segments(global_model, split, assignments, config, seed=seed)


def gate_level(config: PredictorConfig, n_tested: int) -> float:
    """The two-sided level of each segment's gate interval: ``per_segment.gate_level``, Bonferroni-corrected for the
    ``n_tested`` segments tried when ``per_segment.gate_correction = "bonferroni"``."""
    ft = config.per_segment
    if ft.gate_correction == "none" or n_tested <= 1:
        return ft.gate_level
    return 1.0 - (1.0 - ft.gate_level) / n_tested


def _fit_segments(global_model: GlobalPredictor, split: Split, assignments: pl.DataFrame, config: PredictorConfig,
                  *, seed: int) -> SegmentedPredictor:  # fmt: skip
    assignments = assignments.select("user_id", "segment_id").unique("user_id", keep="first", maintain_order=True)
    device = resolve_device(config.device)
    clip = global_model.rating_range_
    t_all = time.perf_counter()
    strategies = _strategies(global_model, config) if config.per_segment.enabled else []

    train = global_model._encode(split.train)
    valid = global_model._encode(split.valid)
    cached = global_model._valid_preds
    if cached is not None and cached[0] == _fingerprint(split.valid):
        valid_preds = cached[1]  # out-of-sample: the components before any refit
    else:
        if global_model.config.refit:
            logger.warning("the refitted global model has seen split.valid and its pre-refit validation "
                           "predictions are not at hand (a loaded model?): the gate will be biased towards it")  # fmt: skip
        valid_preds = global_model.component_predictions(valid)
    valid_out = global_model.combine(valid_preds)
    seg_of = dict(zip(assignments["user_id"].to_list(), assignments["segment_id"].to_list()))
    train_seg = np.fromiter((seg_of.get(u, NOISE) for u in split.train["user_id"]), np.int64, split.train.height)
    valid_seg = np.fromiter((seg_of.get(u, NOISE) for u in split.valid["user_id"]), np.int64, split.valid.height)
    pred_valid_global = np.clip(valid_out, *clip)

    rows: list[dict] = []
    trials: list[dict] = []
    models: dict[int, _SegmentModel] = {}
    segments = sorted(s for s in set(assignments["segment_id"].to_list()) if s != NOISE)
    # one gate per segment tried: with Bonferroni, the chance that any segment passes by luck stays 1 - gate_level
    n_tested = (
        sum(int((valid_seg == s).sum()) >= config.per_segment.min_segment_valid for s in segments) if strategies else 0
    )
    level = gate_level(config, n_tested)
    for s in segments:
        t0 = time.perf_counter()
        tr = train.subset(train_seg == s)
        vidx = np.flatnonzero(valid_seg == s)
        n_users = int((assignments["segment_id"] == s).sum())
        g_full = rmse(valid.ratings[vidx], pred_valid_global[vidx])
        row = {"segment_id": s, "strategy": "none", "n_users": n_users, "n_train": len(tr), "n_valid": len(vidx),
               "valid_rmse_global": g_full, "valid_rmse_segment": g_full, "gate_rmse_global": None,
               "gate_rmse_segment": None, "gate_ci_low": None, "gate_ci_high": None, "best_epoch": 0,
               "kept": False, "seconds": 0.0}  # fmt: skip
        if not strategies or len(tr) == 0 or len(vidx) < config.per_segment.min_segment_valid:
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            continue
        rng = np.random.default_rng(_child_seed(seed, f"segment-{s}-gate"))
        perm = rng.permutation(vidx)
        n_gate = max(1, int(round(len(perm) * config.per_segment.gate_fraction)))
        gate_idx, select_idx = np.sort(perm[:n_gate]), np.sort(perm[n_gate:])
        select = valid.subset(select_idx)
        g_select = rmse(select.ratings, pred_valid_global[select_idx])
        user_nums = global_model.user_vocab_.lookup(  # type: ignore[union-attr]
            assignments.filter(pl.col("segment_id") == s)["user_id"], missing=-1
        )
        user_nums = np.unique(user_nums[user_nums >= 0])
        best: tuple[float, _SegmentModel, int] | None = None
        for strategy in strategies:
            candidate, epoch = _fine_tune(global_model, strategy, tr, select, valid_preds[select_idx], user_nums,
                                          config, seed=_child_seed(seed, f"segment-{s}-{strategy}"), device=device)  # fmt: skip
            out = _segment_output(global_model, candidate, select, valid_preds[select_idx])
            s_select = rmse(select.ratings, np.clip(out, *clip))
            trials.append({"segment_id": s, "strategy": strategy, "best_epoch": epoch, "select_rmse_global": g_select,
                           "select_rmse_segment": s_select})  # fmt: skip
            if epoch > 0 and s_select < g_select and (best is None or s_select < best[0]):
                best = (s_select, candidate, epoch)
        if best is not None:
            _, candidate, epoch = best
            sub = valid.subset(vidx)
            p_valid = np.clip(_segment_output(global_model, candidate, sub, valid_preds[vidx]), *clip)
            s_full = rmse(sub.ratings, p_valid)
            gate = np.searchsorted(vidx, gate_idx)
            p_gate = p_valid[gate]
            _, ci_lo, ci_hi = paired_bootstrap_ci(valid.ratings[gate_idx], pred_valid_global[gate_idx], p_gate,
                                                  valid.users[gate_idx], n_boot=config.per_segment.gate_bootstrap,
                                                  seed=_child_seed(seed, f"segment-{s}-bootstrap"),
                                                  level=level)  # fmt: skip
            g_gate = rmse(valid.ratings[gate_idx], pred_valid_global[gate_idx])
            s_gate = rmse(valid.ratings[gate_idx], p_gate)
            kept = bool(ci_hi < 0.0 and s_gate < g_gate and s_full < g_full)
            row.update(strategy=candidate.strategy, valid_rmse_segment=s_full, gate_rmse_global=g_gate,
                       gate_rmse_segment=s_gate, gate_ci_low=ci_lo, gate_ci_high=ci_hi, best_epoch=epoch, kept=kept)  # fmt: skip
            if kept:
                models[s] = candidate
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        logger.info("segment %d: %s, valid RMSE global %.4f -> segment %.4f, %s", s, row["strategy"], g_full,
                    row["valid_rmse_segment"], "kept" if row["kept"] else "not kept")  # fmt: skip
    report = pl.DataFrame(rows, schema=SEGMENT_REPORT)
    trial_frame = pl.DataFrame(trials) if trials else pl.DataFrame()
    logger.info("per-segment fine-tuning: %d of %d segments kept, %.1f s", len(models), len(segments),
                time.perf_counter() - t_all)  # fmt: skip
    return SegmentedPredictor(global_model, assignments, models, report, trial_frame)


def _fine_tune(global_model: GlobalPredictor, strategy: str, train: Ratings, select: Ratings, select_preds: np.ndarray,
               user_nums: np.ndarray, config: PredictorConfig, *, seed: int, device: str) -> tuple[_SegmentModel, int]:  # fmt: skip
    """One strategy's candidate segment model and its kept epoch (0 = nothing beat the global model)."""
    if strategy in _MF_STRATEGIES:
        base = global_model.params_
        assert base is not None
        params, _, epoch = finetune_mf(base, train, select, strategy=strategy, rank=config.per_segment.rank,
                                       settings=_settings(config, finetune=True),
                                       generator=torch.Generator().manual_seed(seed), clip=global_model.rating_range_,
                                       shrink=config.mf.reg if strategy == "full-l2" else 0.0, device=device)  # fmt: skip
        return _SegmentModel(strategy, user_nums, mf=_restrict_users(params, user_nums)), epoch
    assert global_model.weights_ is not None
    y = select.ratings
    if strategy == "blend-weights":
        w = _ridge(select_preds, y, config.per_segment.blend_reg, prior=global_model.weights_)
    else:  # blend-recalibrate
        out = global_model.combine(select_preds)[:, None]
        w = _ridge(out, y, config.per_segment.blend_reg, prior=np.array([0.0, 1.0]))
    return _SegmentModel(strategy, user_nums, weights=w), 1
