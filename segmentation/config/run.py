"""The evaluation, report, orchestration, output and cache sections, and :class:`PipelineConfig`, the whole run."""

import re
from pathlib import Path
from typing import Literal

from pydantic import ByteSize, Field, field_validator, model_validator

from segmentation.config._base import _Section
from segmentation.config.data import DataConfig
from segmentation.config.embedding import EncoderConfig, IndexConfig, RepresentConfig
from segmentation.config.predictor import PredictorConfig
from segmentation.config.ranker import RankerConfig
from segmentation.config.segments import ClusterConfig, ReduceConfig


class EvalConfig(_Section):
    """Evaluation settings."""

    k: int = Field(10, ge=1, le=1000, description="List length for top-k metrics.")
    relevance_threshold: float = Field(4.0, description="Test ratings at or above this are relevant.")
    bootstrap: int = Field(200, ge=0, le=10_000, description="Bootstrap resamples for confidence intervals.")
    ranking_max_users: int | None = Field(
        50_000,
        ge=0,
        description="Top-k lists and the ranking and beyond-accuracy metrics are computed for at most this many "
        "test users: above it, for a uniform sample of them drawn with the run's seed (metrics.json's "
        "ranking_sample says how many and that the figures are on a sample; the bootstrap CIs are over the "
        "sampled users). 0 or empty: every test user. With the default a run of up to 50,000 test users "
        "(MovieLens 100k: 943) is evaluated on all of them.",
    )
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
    partition_rows: int = Field(
        8192,
        ge=1,
        description="dask: users per partition of the per-user work that a stage sends to the cluster's workers "
        "(user vectors, assigning users to segments, scoring and top-k); embedding sends chunks of 8,192 texts. "
        "Smaller: more, shorter partitions.",
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
