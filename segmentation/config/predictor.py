"""The rating predictor section, nested by component (``predictor``, ``predictor.mf``, ``predictor.svdpp``,
``predictor.autorec``, ``predictor.knn``, ``predictor.blend``, ``predictor.per_segment``, ``predictor.cold_start``),
and the library-only
:class:`EncoderRegressorConfig`."""

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from segmentation._config_legacy import (
    CONVERTED_PREDICTOR_KEYS,
    LEGACY_PREDICTOR_KEYS,
    REMOVED_PREDICTOR_KEYS,
    migrate_predictor_keys,
)
from segmentation.config._base import _factory_defaults_in_schema, _Section

#: Default of ``patience_ratings``, chosen on the planted tuning worlds only (taste, style and light at 2,000, 10,000
#: and 30,000 users, SVD++ and MF; ``benchmarks/patience.py``, ``benchmarks/results/patience.json``): the smallest bound
#: tried (500k to 20M) that stops none of the 18 fits before a best epoch that patience alone would reach. The longest
#: wait there for a better validation RMSE was 1.74M training ratings (MF, style at 30,000 users: 2 epochs of 870k,
#: for 0.0004 RMSE), which 1M cuts short. A log of under 400k training ratings per epoch keeps ``patience`` = 5
#: (MovieLens 100k's random90: about 81k per epoch); one of 2M or more per epoch stops one epoch past its best.
PATIENCE_RATINGS = 2_000_000
PATIENCE_RATINGS_HELP = (
    "Also stop once this many training ratings (epochs x training ratings per epoch) have passed without a better "
    "validation RMSE, if that comes before patience: on a large log one worse epoch over millions of validation "
    "ratings is already clear evidence. 2M: on the planted tuning worlds (benchmarks/patience.py) the smallest bound "
    "that cut no fit short of a best epoch patience alone reaches (the longest wait there for a better validation "
    "RMSE: 1.74M ratings); a log of under 400k training ratings per epoch keeps patience = 5 (MovieLens 100k's "
    "random90 about 81k), one of 2M or more stops one epoch "
    "past its best. The log says which bound stopped it. Empty: patience alone."
)


class MFConfig(_Section):
    """The biased matrix factorisation ('mf'), also the model the MF fine-tuning strategies start from."""

    embedding_size: int = Field(64, ge=1, le=1024, description="Latent factors.")
    epochs: int = Field(100, ge=1, le=1000, description="Most training epochs; early stopping usually ends sooner.")
    learning_rate: float = Field(
        0.01, gt=0.0, description="Adam learning rate (lazy Adam: a step updates the rows its batch reads)."
    )
    reg: float = Field(
        0.1,
        ge=0.0,
        description="L2 on the user and item factors of the rows in a batch (fine-tuning 'full-l2' keeps it as well).",
    )
    bias_reg: float = Field(0.01, ge=0.0, description="L2 on the user and item biases of the rows in a batch.")
    batch_size: int = Field(4096, ge=16, description="Ratings per mini-batch (per-segment fine-tuning too).")
    patience: int = Field(5, ge=1, description="Stop after this many epochs without a better validation RMSE.")
    patience_ratings: int | None = Field(
        PATIENCE_RATINGS,
        ge=1,
        description=PATIENCE_RATINGS_HELP,
    )


class SVDppConfig(_Section):
    """SVD++ with time-aware biases and the item text embeddings as side features ('svdpp')."""

    embedding_size: int = Field(64, ge=1, le=1024, description="Latent factors.")
    epochs: int = Field(100, ge=1, le=1000, description="Most training epochs; early stopping usually ends sooner.")
    learning_rate: float = Field(
        0.005, gt=0.0, description="Adam learning rate (lazy Adam: a step updates the rows its batch reads)."
    )
    reg: float = Field(
        0.1, ge=0.0, description="L2 on the user, item and implicit-feedback factors of the rows in a batch."
    )
    bias_reg: float = Field(0.01, ge=0.0, description="L2 on the user and item biases of the rows in a batch.")
    batch_size: int = Field(4096, ge=16, description="Ratings per mini-batch.")
    patience: int = Field(5, ge=1, description="Stop after this many epochs without a better validation RMSE.")
    patience_ratings: int | None = Field(
        PATIENCE_RATINGS,
        ge=1,
        description=PATIENCE_RATINGS_HELP,
    )
    time_bins: int = Field(20, ge=0, le=1000, description="Item time-bin biases over the training period (0: none).")
    user_day_bias: bool = Field(True, description="Per user-and-day biases (needs timestamps and time_bins > 0).")
    side_features: bool = Field(
        True, description="Add a learned projection of the item text embeddings to the item factors."
    )


class AutoRecConfig(_Section):
    """Item-based AutoRec ('autorec')."""

    hidden: int = Field(500, ge=1, le=10_000, description="Hidden units.")
    epochs: int = Field(100, ge=1, le=1000, description="Most training epochs; early stopping usually ends sooner.")
    learning_rate: float = Field(0.005, gt=0.0, description="Adam learning rate.")
    reg: float = Field(1.0, ge=0.0, description="L2 on the weights.")
    batch_size: int = Field(256, ge=1, description="Items per mini-batch.")
    patience: int = Field(5, ge=1, description="Stop after this many epochs without a better validation RMSE.")
    patience_ratings: int | None = Field(
        PATIENCE_RATINGS,
        ge=1,
        description=PATIENCE_RATINGS_HELP,
    )


class KNNConfig(_Section):
    """kNN on baseline residuals ('item-knn', 'user-knn')."""

    neighbors: int = Field(40, ge=1, description="Neighbours per prediction.")
    shrinkage: float = Field(100.0, ge=0.0, description="Shrinkage of the Pearson-baseline similarity.")


ComponentName = Literal["mf", "svdpp", "autorec", "item-knn", "user-knn"]
FineTuneStrategy = Literal["bias+lowrank-delta", "full-l2", "blend-weights", "blend-recalibrate"]


def _default_components() -> list[ComponentName]:
    return ["svdpp", "autorec", "item-knn", "user-knn"]


def _default_strategies() -> list[FineTuneStrategy]:
    return ["bias+lowrank-delta", "full-l2", "blend-weights", "blend-recalibrate"]


class BlendConfig(_Section):
    """The ridge blend of several models ('blend'), its weights fitted on the validation rows."""

    components: list[ComponentName] = Field(
        default_factory=_default_components,
        min_length=1,
        description="Models combined (chosen on validation data).",
    )
    reg: float = Field(1.0, ge=0.0, description="Ridge penalty on the weights (intercept not penalised).")
    svdpp_max_ratings: int | None = Field(
        5_000_000,
        ge=1,
        description="Above this many training ratings the blend fits 'mf' in place of its 'svdpp' component (or "
        "only drops 'svdpp' when 'mf' is a component too), and the log says so. Per epoch SVD++ costs 1.2-3x MF, "
        "it early-stops later, and a blend without MF makes the new-user priors fit one more MF on the whole log: "
        "at 100,000 users (2.3M training ratings, synthetic log S, 2 cores) SVD++ took 375 s plus a 37 s refit and "
        "the priors' MF 99 s; at 1M users each grows about tenfold. The cap was set from those S timings, not from "
        "any accuracy figure (S: blend valid RMSE 0.776, MF alone 0.788). Empty: never. A single model "
        "(model = 'svdpp') is kept as chosen.",
    )


class FineTuneConfig(_Section):
    """Per-segment fine-tuning of the global model and the validation gate that decides where it is kept."""

    enabled: bool = Field(True, description="Fine-tune a copy of the global model per segment.")
    strategies: list[FineTuneStrategy] = Field(
        default_factory=_default_strategies,
        description="Strategies tried per segment, where the global model allows them: "
        "'bias+lowrank-delta' (frozen MF weights plus learned bias deltas and a low-rank item-factor delta) and "
        "'full-l2' (all MF weights, L2-pulled to the global ones) need an 'mf' model or blend component and "
        "predictor.refit = false; 'blend-weights' (the segment's own blend weights, shrunk to the global ones) and "
        "'blend-recalibrate' (a + b * global prediction) need model = 'blend'.",
    )
    blend_reg: float = Field(
        200.0, ge=0.0, description="Pull of a segment's blend weights / recalibration towards the global ones."
    )
    epochs: int = Field(10, ge=1, description="MF strategies: most epochs per segment and strategy.")
    learning_rate: float = Field(0.002, gt=0.0, description="MF strategies: Adam learning rate.")
    reg: float = Field(
        0.1, ge=0.0, description="L2 on the deltas (bias+lowrank-delta) or pull to the global weights (full-l2)."
    )
    rank: int = Field(4, ge=1, le=256, description="Rank of the item-factor delta of 'bias+lowrank-delta'.")
    gate_fraction: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="Share of a segment's validation rows held back from early stopping and strategy choice; "
        "a segment model is kept only if it beats the global one on these rows (see gate_level) and on all its "
        "validation rows.",
    )
    gate_level: float = Field(
        0.95,
        gt=0.0,
        lt=1.0,
        description="Two-sided level of the paired user-bootstrap interval of the RMSE change on the gate rows; "
        "a segment model is kept only if the whole interval is below zero (one-sided (1+level)/2 confidence).",
    )
    gate_correction: Literal["bonferroni", "none"] = Field(
        "bonferroni",
        description="bonferroni: each segment's gate interval is widened to level 1 - (1 - gate_level) / segments "
        "tried, so that across all segments the chance of keeping a model that only got lucky on its gate rows "
        "stays near 1 - gate_level; none: gate_level per segment.",
    )
    gate_bootstrap: int = Field(500, ge=50, le=100_000, description="Bootstrap resamples of the gate's interval.")
    min_segment_valid: int = Field(
        40, ge=2, description="Segments with fewer validation rows than this keep the global model untried."
    )


def _default_cold_ks() -> list[int]:
    return [1, 3, 5]


def _default_cold_regs() -> list[float]:
    return [1.0, 3.0, 10.0, 30.0, 100.0]


def _default_blend_weights() -> list[float]:
    return [0.1, 0.2, 0.35, 0.5, 0.75, 0.9, 1.0]  # segmentation.rank.conditioned.ALPHAS


class ColdStartConfig(_Section):
    """New and sparse users: a prior from their segment (or from all users) for the ratings of users with few train
    rows, and a blend of segment (or overall) popularity into their top-k lists, each used only where a validation
    gate says it helps (the rating part on explicit ratings only)."""

    enabled: bool = Field(
        True,
        description="Run the cold-start stage: simulate new users inside train, gate the segment prior and the "
        "all-users prior on them, and predict the sparse test users with what the gate kept; likewise the primary "
        "ranker blended with segment or overall popularity for their top-k lists (also on implicit feedback). Costs "
        "per k one fit of the global model, one of an MF (MovieLens 100k, default blend: about 1.5 min per k on 2 "
        "busy cores) and one of the primary ranker; skipped, with the reason, when no user has at most max(ks) "
        "train rows (nothing would change).",
    )
    ks: list[int] = Field(
        default_factory=_default_cold_ks,
        min_length=1,
        description="Train rows a sparse user may have, one gate each: a user with n rows falls under the smallest "
        "k >= n; users with more rows than the largest k are not sparse and keep the global model.",
    )
    new_fraction: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="Share of the users with more than the largest k rows cut to their first k rows to simulate "
        "new users (validation, never test).",
    )
    regs: list[float] = Field(
        default_factory=_default_cold_regs,
        min_length=1,
        description="Candidate pulls of a sparse user's bias and factors toward the prior, in pseudo-ratings; "
        "chosen per k on the simulated new users.",
    )
    blend_weights: list[float] = Field(
        default_factory=_default_blend_weights,
        min_length=1,
        description="Candidate weights of popularity (overall or the segment's) in a sparse user's top-k scores, "
        "(1 - w) z(ranker) + w z(log1p counts); chosen per k on the simulated new users by NDCG@10.",
    )
    gate_level: float = Field(
        0.95,
        gt=0.0,
        lt=1.0,
        description="Two-sided level of the paired user-bootstrap intervals of the gate, Bonferroni-corrected "
        "over the ks (level 1 - (1 - gate_level) / len(ks)). The segment prior is kept for a k only if its RMSE "
        "change is below zero against both the global model and the all-users prior.",
    )
    gate_bootstrap: int = Field(500, ge=50, le=100_000, description="Bootstrap resamples of the gate's intervals.")
    min_users: int = Field(
        10,
        ge=2,
        description="Fewest simulated new users for a gate (fewer: the stage is skipped with the reason) and for a "
        "segment's own interval (fewer: 'too few users to judge').",
    )
    neighbours: int = Field(15, ge=1, le=1000, description="Nearest users whose segments vote to place a sparse user.")
    gate_max_users: int | None = Field(
        5_000,
        ge=100,
        description="Users the gate is judged on: a seeded sample of at most this many users with more than "
        "max(ks) train ratings (their rows only) is the gate's world, a new_fraction of them simulated as new, so the "
        "gate's model fits cost the same at any size (5,000: about 1,000 simulated new users per k). Empty: every "
        "such user. The run's sparse users are then predicted from the run's own global model, as before.",
    )

    @field_validator("ks")
    @classmethod
    def _positive_sorted(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError("every k must be at least 1")
        return sorted(set(v))

    @field_validator("regs")
    @classmethod
    def _positive_regs(cls, v: list[float]) -> list[float]:
        if any(r <= 0 for r in v):
            raise ValueError("every pull must be above 0")
        return v

    @field_validator("blend_weights")
    @classmethod
    def _unit_weights(cls, v: list[float]) -> list[float]:
        if any(not 0.0 < w <= 1.0 for w in v):
            raise ValueError("every blend weight must be above 0 and at most 1")
        return v


def _predictor_schema(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """The section's JSON schema, plus the flat keys of segflow 0.1 as deprecated pattern properties.

    A deployment made with ``enforce_parameter_schema`` has the Prefect server check its parameters against this
    schema, which refuses unknown keys: so that a deployment whose parameters still carry the old keys keeps
    running (the flow renames them, with a warning), they pass here. The run form shows only ``properties``.
    """
    _factory_defaults_in_schema(schema, cls)
    names = "|".join(re.escape(k) for k in (*LEGACY_PREDICTOR_KEYS, *REMOVED_PREDICTOR_KEYS, *CONVERTED_PREDICTOR_KEYS))
    schema["patternProperties"] = {
        f"^({names})$": {"deprecated": True, "description": "A flat key of segflow 0.1, renamed when the run "
                         "starts (docs/CONFIG.md lists the new keys)."},
    }  # fmt: skip


class PredictorConfig(_Section):
    """Global rating model and per-segment fine-tuning."""

    model_config = ConfigDict(json_schema_extra=_predictor_schema)

    model: Literal["mf", "svdpp", "autorec", "item-knn", "user-knn", "blend"] = Field(
        "blend",
        description="Global model. 'mf': biased matrix factorisation (PyTorch, early-stopped on validation); "
        "'svdpp': SVD++ with time-aware biases and the item text embeddings as side features (a hybrid); "
        "'autorec': item-based AutoRec; 'item-knn'/'user-knn': kNN on baseline residuals; 'blend': a ridge blend "
        "of blend.components, its weights fitted on the validation rows (the default: the most accurate, about "
        "15-30 s on ML-100k with 2 CPU cores; 'mf' takes about 5 s). Each model's settings are in its own section.",
    )
    refit: bool = Field(
        True,
        description="After early stopping, refit the model(s) on train + valid with the epochs found (blend weights "
        "stay those fitted on validation). More accurate (random90 RMSE 0.877 -> 0.867) for a few seconds more. "
        "The per-segment gate still judges on the pre-refit validation predictions, which never saw those rows; "
        "the MF fine-tuning strategies need refit = false.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' trains on CUDA when present.")
    threads: int = Field(
        1,
        ge=0,
        description="CPU threads of torch and BLAS while fitting (0: the libraries' defaults). One thread is the "
        "fastest for these small models and keeps results identical across machines; on 2 busy shared cores, "
        "2 threads made the MF fit 27x slower.",
    )
    dense_budget_mib: int = Field(
        1536,
        ge=1,
        description="Memory budget of one blend component, in MiB, the same unit and default as "
        "ranker.dense_budget_mib: each component's peak is estimated from the bytes it was measured to hold while "
        "fitting, temporaries included (item-knn and user-knn: 16 bytes per kept neighbour, 1,000 per item or user, "
        "plus 80 MiB; autorec: 36 bytes per items x users cell plus 192 MiB; mf and svdpp grow with users + items "
        "and are not bound). A blend leaves out the components over it, a single model over it is refused; the log "
        "says which and why. The rating models and the rankers may fit at the same time, so a run's dense tables "
        "take at most about the two budgets together (1536 MiB: autorec up to about 39M items x users cells, "
        "e.g. 14,000 users x 2,800 items; user-knn up to about 95,000 users).",
    )
    mf: MFConfig = Field(default_factory=MFConfig, title="MF", description=MFConfig.__doc__)
    svdpp: SVDppConfig = Field(default_factory=SVDppConfig, title="SVD++", description=SVDppConfig.__doc__)
    autorec: AutoRecConfig = Field(default_factory=AutoRecConfig, title="AutoRec", description=AutoRecConfig.__doc__)
    knn: KNNConfig = Field(default_factory=KNNConfig, title="kNN", description=KNNConfig.__doc__)
    blend: BlendConfig = Field(default_factory=BlendConfig, title="Blend", description=BlendConfig.__doc__)
    per_segment: FineTuneConfig = Field(
        default_factory=FineTuneConfig, title="Per-segment fine-tuning", description=FineTuneConfig.__doc__
    )
    cold_start: ColdStartConfig = Field(
        default_factory=ColdStartConfig, title="New and sparse users", description=ColdStartConfig.__doc__
    )

    @model_validator(mode="before")
    @classmethod
    def _flat_keys(cls, data: Any) -> Any:
        """The flat keys of segflow 0.1 (old TOML files, Prefect deployments, saved models) still load."""
        return migrate_predictor_keys(data) if isinstance(data, dict) else data


class EncoderRegressorConfig(_Section):
    """Settings of the optional :class:`segmentation.predict.EncoderRegressor` (a library predictor; no stage of
    a run uses it, so it is not part of :class:`PipelineConfig`)."""

    model: str = Field(
        "all-MiniLM-L6-v2",
        description="The sentence-transformers model fine-tuned on (user profile, item description) pairs.",
    )
    epochs: int = Field(2, ge=1, le=100, description="Most epochs over the training rows.")
    learning_rate: float = Field(5e-5, gt=0.0, description="AdamW rate of the encoder.")
    head_learning_rate: float = Field(3e-3, gt=0.0, description="AdamW rate of the regression head.")
    batch_size: int = Field(64, ge=2, description="(user, item) pairs per step.")
    max_seq_length: int = Field(128, ge=8, le=512, description="Tokens kept per text.")
    max_train_rows: int | None = Field(
        None, ge=1, description="Train on a seeded sample of this many rows (empty: all)."
    )
    refit: bool = Field(True, description="At the end, fit the baseline biases again on train + valid.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' trains on CUDA when present.")
    threads: int = Field(
        1, ge=0, description="CPU threads of torch and BLAS while fitting (0: the libraries' defaults)."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_flat_predictor(cls, data: Any) -> Any:
        """A flat PredictorConfig dump of segflow 0.1 (the ``config`` of an old saved model) gives its encoder_* fields."""
        if isinstance(data, dict) and "encoder_model" in data:
            kept = {k: data[k] for k in ("refit", "device", "threads") if k in data}
            return {**kept, **{new: data[old] for old, new in REMOVED_PREDICTOR_KEYS.items() if old in data}}
        return data
