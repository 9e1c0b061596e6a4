"""Rating prediction: a strong global model, then a fine-tuned copy per segment, kept only where it helps.

>>> model = fit_global_predictor(split, PredictorConfig(), item_embeddings=items, seed=42)    # doctest: +SKIP
>>> segmented = fit_segment_predictors(model, split, assignments, PredictorConfig(), seed=42)  # doctest: +SKIP
>>> segmented.report_                                                                         # doctest: +SKIP

Global models (``PredictorConfig.model``; each model's settings in its own section, ``PredictorConfig.mf`` ...):

- ``mf``: biased matrix factorisation ``r = mu + b_u + b_i + p_u . q_i`` (Adam, early-stopped on
  ``split.valid``); about 5 s on MovieLens 100k, random90 test RMSE 0.912.
- ``svdpp``, ``autorec``, ``item-knn``, ``user-knn``: the blend's components alone (see
  :mod:`segmentation._predict_components`); ``svdpp`` is a hybrid that adds a learned projection of the
  item text embeddings to the item factors, with item time-bin and user-day biases.
- ``blend`` (default): a ridge blend of ``blend.components`` whose weights are fitted on the validation
  rows (never test), then, with ``refit``, every component refitted on train + valid for the epochs early
  stopping chose. Random90 test RMSE 0.867 (tuned scikit-surprise SVD: 0.904), about 15-30 s.

Per segment, copies of the global model are fine-tuned with each configured strategy that the model
supports (MF strategies need an ``mf`` model or blend component; blend strategies need a blend).
Early stopping and the choice of strategy use one part of the segment's validation rows, and the gate
uses the rest: a segment model is kept only if it beats the global model on all of the segment's
validation rows *and* the paired user-bootstrap interval of its RMSE change on the held-back part lies
below zero. So on validation data the segmented predictor is never worse than the global one, and
chance gains of a few ten-thousandths are not kept. Measured gains are about zero (DESIGN.md), so expect
few segments kept; report the change with :func:`paired_bootstrap_ci`.

Optional, not the default and not used by the pipeline: :class:`EncoderRegressor`
(:func:`fit_encoder_predictor`, settings :class:`segmentation.config.EncoderRegressorConfig`), the text encoder itself fine-tuned with a regression head on (user profile
text, item description) pairs (a bi-encoder predicting the residual of baseline biases; see
:mod:`segmentation._predict_llm` and BENCHMARKS.md for what it costs and gains).

Models are saved as safetensors weights plus a ``manifest.json`` (config, vocabularies, versions); no
pickle anywhere.

:func:`fine_tune_segments` is the flow's fine-tuning stage: the per-segment models and, as the control, the same
procedure on :func:`random_partition` of the users.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl

from segmentation._metrics import paired_bootstrap_ci, rmse
from segmentation._predict_common import PAIRS, SEGMENT_REPORT
from segmentation._predict_global import GlobalPredictor, fit_global_predictor
from segmentation._predict_llm import EncoderRegressor, fit_encoder_predictor
from segmentation._predict_mf import FINETUNE_STRATEGIES
from segmentation._predict_segments import SegmentedPredictor, fit_segment_predictors
from segmentation.cluster import Segmentation
from segmentation.config import PredictorConfig
from segmentation.data import Split

__all__ = [
    "FINETUNE_STRATEGIES",
    "PAIRS",
    "SEGMENT_REPORT",
    "EncoderRegressor",
    "FineTuned",
    "GlobalPredictor",
    "SegmentedPredictor",
    "fine_tune_segments",
    "fit_encoder_predictor",
    "fit_global_predictor",
    "fit_segment_predictors",
    "paired_bootstrap_ci",
    "random_partition",
    "rmse",
]


@dataclass(frozen=True)
class FineTuned:
    """Per-segment models, and the same procedure on random partitions of the same sizes (the control).

    The control answers "do the segments carry the gain, or would any split of the users do?".
    """

    models: SegmentedPredictor
    control: SegmentedPredictor | None
    control_assignments: pl.DataFrame | None


def random_partition(assignments: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Users reassigned to segments at random, keeping every segment's size (seeded permutation)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E6]))
    labels = assignments["segment_id"].to_numpy()
    return assignments.select("user_id").with_columns(pl.Series("segment_id", labels[rng.permutation(len(labels))]))


def fine_tune_segments(global_model: GlobalPredictor, split: Split, segmentation: Segmentation, config: PredictorConfig,
                       seed: int) -> FineTuned:  # fmt: skip
    """The flow's fine-tuning stage: a fine-tuned copy of the global model per segment, kept only where validation
    says it helps, plus the random-partition control."""
    real = _segments_for_models(segmentation)
    models = fit_segment_predictors(global_model, split, real, config, seed=seed)
    if not config.per_segment.enabled:
        return FineTuned(models, None, None)
    shuffled = random_partition(real, seed)
    control = fit_segment_predictors(global_model, split, shuffled, config, seed=seed)
    return FineTuned(models, control, shuffled)


def _segments_for_models(segmentation: Segmentation) -> pl.DataFrame:
    """Users with their segment for per-segment models: outliers use their nearest segment's model."""
    return segmentation.assignments.select("user_id", pl.col("nearest_segment").alias("segment_id"))
