"""Typed glue between stages that belongs to no single stage: fingerprints, summaries, the run's outputs.

The Prefect flow (``flows/pipeline.py``) calls these; they import no Prefect and
run in a notebook just as well.
"""

import hashlib
import importlib.metadata as md
import json
import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel

from embeddings.encoder import Embeddings, Encoder
from embeddings.index import VectorIndex, build_index
from embeddings.text import describe_items
from segmentation._errors import ConfigError
from segmentation.cluster import NOISE, Segmentation
from segmentation.config import EncoderConfig, IndexConfig, PipelineConfig, config_hash, dump_config_toml
from segmentation.data import Dataset, Split, cache_root, default_cache_dir
from segmentation.describe import SegmentProfile, profiles_to_frame
from segmentation.runs import SCHEMA_VERSION, write_json

__all__ = [
    "EncoderChoice",
    "Indexes",
    "build_indexes",
    "cache_root",
    "category_lift_table",
    "choose_encoder",
    "embed_items",
    "fingerprint",
    "segment_neighbours",
    "summarise_data",
    "summarise_segmentation",
    "versions",
    "write_outputs",
]

logger = logging.getLogger(__name__)

CODE_VERSION = "segflow-0.1.0/2"  # bump when a cached stage's output would change for the same inputs


def fingerprint(*objs: Any) -> str:
    """A content hash of frames, arrays, embeddings, configs and plain values (for cache keys)."""
    h = hashlib.sha256(CODE_VERSION.encode())
    for o in objs:
        _feed(h, o)
    return h.hexdigest()[:24]


def _feed(h: "hashlib._Hash", o: Any) -> None:
    if isinstance(o, pl.DataFrame):
        h.update(str(o.schema).encode())
        h.update(o.hash_rows(seed=0).to_numpy().tobytes())
    elif isinstance(o, np.ndarray):
        h.update(str(o.dtype).encode() + str(o.shape).encode())
        h.update(np.ascontiguousarray(o).tobytes() if o.dtype != object else "\x1f".join(map(str, o)).encode())
    elif isinstance(o, Embeddings):
        _feed(h, o.ids)
        _feed(h, o.vectors)
        h.update(o.model.encode())
    elif isinstance(o, Dataset):
        for part in (o.interactions, o.items, o.users):
            _feed(h, part)
    elif isinstance(o, Split):
        for part in (o.train, o.valid, o.test):
            _feed(h, part)
    elif isinstance(o, Segmentation):
        _feed(h, o.assignments)
    elif isinstance(o, BaseModel):
        h.update(config_hash(o).encode())
    elif isinstance(o, (list, tuple)):
        for x in o:
            _feed(h, x)
    elif o is None:
        h.update(b"\x00none")
    else:
        h.update(repr(o).encode())


@dataclass(frozen=True)
class EncoderChoice:
    """Which model a run's encoder loads, how its vectors are labelled, and where their cache lies."""

    model: str  # name or folder given to Encoder
    label: str  # Embeddings.model (enters downstream cache keys)
    cache_dir: Path | None  # Encoder's embedding cache root (None: no cache)


def choose_encoder(config: EncoderConfig, cache_dir: Path | None, *, split: Split | None = None,
                   items: pl.DataFrame | None = None, seed: int = 0, implicit: bool = False) -> EncoderChoice:  # fmt: skip
    """The configured encoder, or, with ``config.finetune``, the encoder fine-tuned on the split's train rows.

    The fine-tuned model is trained once and kept under ``<cache_dir>/encoders/finetuned-<key>``, the
    key a hash of the (profile, liked item) pairs, the fine-tuning settings, the base model and ``seed``;
    a rerun on the same train rows and settings loads it instead of training again. Its embeddings are
    cached apart from the base model's (the cache is keyed by the model folder, under a folder named by
    the hash of its weights).

    Raises:
        ConfigError: ``config.finetune`` without the split and items to build the pairs from.
    """
    emb_cache = (cache_dir / "embeddings") if (config.cache and cache_dir) else None
    if not config.finetune:
        return EncoderChoice(config.model, config.model, emb_cache)
    from embeddings.finetune import finetune_encoder, liked_pairs, read_finetune_info
    from embeddings.text import describe_users

    if split is None or items is None:
        raise ConfigError("encoder.finetune = true needs the split's train rows: pass split= and items= "
                          "(the flow does this; see segmentation/stages.py)")  # fmt: skip
    train = split.train_full
    min_rating = None if implicit or train["rating"].n_unique() <= 1 else 4.0  # implicit: every row counts as liked
    pairs = liked_pairs(train, items, describe_users(train, items, implicit=implicit), min_rating=min_rating,
                        max_per_user=5, seed=seed)  # fmt: skip
    settings = (config.model, config.finetune_epochs, config.finetune_batch_size, config.finetune_learning_rate,
                config.finetune_max_pairs, seed, "mnrl/1")  # fmt: skip
    root = cache_dir if cache_dir is not None else default_cache_dir()
    folder = root / "encoders" / f"finetuned-{fingerprint(pairs, settings)}"
    info = read_finetune_info(folder)
    if info is None or not (folder / "modules.json").exists():
        if folder.exists():
            import shutil

            logger.warning("removing an incomplete fine-tuned encoder folder %s", folder)
            shutil.rmtree(folder)
        finetune_encoder(pairs, base_model=config.model, output_dir=folder, epochs=config.finetune_epochs,
                         batch_size=config.finetune_batch_size, learning_rate=config.finetune_learning_rate,
                         max_pairs=config.finetune_max_pairs, seed=seed, device=config.device)  # fmt: skip
        info = read_finetune_info(folder) or {}
    else:
        logger.info("reusing the fine-tuned encoder %s", folder)
    weights = str(info.get("weights_sha256", ""))[:12]
    label = f"{config.model}+finetuned:{weights}"
    return EncoderChoice(str(folder), label, (emb_cache / f"finetuned-{weights}") if emb_cache else None)


def embed_items(items: pl.DataFrame, config: EncoderConfig, cache_dir: Path | None, split: Split | None = None,
                seed: int = 0, implicit: bool = False) -> tuple[Embeddings, dict]:  # fmt: skip
    """Describe and embed every item; returns the embeddings and the encoder's cache statistics.

    ``split`` and ``seed`` matter only with ``config.finetune`` (the pairs come from ``split``'s train rows).
    """
    texts = describe_items(items)
    choice = choose_encoder(config, cache_dir, split=split, items=items, seed=seed, implicit=implicit)
    encoder = Encoder(choice.model, device=config.device, batch_size=config.batch_size, cache_dir=choice.cache_dir)
    vectors = encoder.encode(texts["description"].to_list())
    stats = dict(encoder.stats, device=encoder.device_used or "not loaded (all cached)")
    return Embeddings(texts["item_id"].to_numpy().astype(object), vectors, choice.label), stats


def embed_profiles(profiles: pl.DataFrame, config: EncoderConfig, cache_dir: Path | None,
                   choice: EncoderChoice | None = None) -> tuple[Embeddings, dict]:  # fmt: skip
    """Embed users' behaviour profiles (``USER_PROFILES`` frame) with ``choice`` (default: ``config``'s model)."""
    choice = choice or choose_encoder(config, cache_dir)
    encoder = Encoder(choice.model, device=config.device, batch_size=config.batch_size, cache_dir=choice.cache_dir)
    vectors = encoder.encode(profiles["profile"].to_list())
    return Embeddings(profiles["user_id"].to_numpy().astype(object), vectors, choice.label), dict(encoder.stats)


@dataclass(frozen=True)
class Indexes:
    """FAISS indexes of a run: items, users and segment centroids."""

    items: VectorIndex
    users: VectorIndex
    segments: VectorIndex | None


def segment_centroids(users: Embeddings, assignments: pl.DataFrame) -> Embeddings:
    """L2-normalised mean user vector per segment (outliers excluded); ids are segment ids as str."""
    labels = assignments["segment_id"].to_numpy()
    ids = sorted(int(s) for s in set(labels.tolist()) if s != NOISE)
    cents = np.stack([users.vectors[labels == s].mean(axis=0) for s in ids]) if ids else np.zeros((0, users.dim), np.float32)
    cents = cents / np.maximum(np.linalg.norm(cents, axis=1, keepdims=True), 1e-12)
    return Embeddings(np.asarray([str(s) for s in ids], dtype=object), cents.astype(np.float32), "centroids")


def build_indexes(items: Embeddings, users: Embeddings, assignments: pl.DataFrame, config: IndexConfig) -> Indexes:
    """Item, user and segment-centroid indexes (exact below ``approximate_above`` vectors)."""
    kw = dict(kind=config.kind, approximate_above=config.approximate_above, hnsw_m=config.hnsw_m)
    cents = segment_centroids(users, assignments)
    seg_index = build_index(cents.ids, cents.vectors, kind="flat") if len(cents.ids) else None
    return Indexes(build_index(items.ids, items.vectors, **kw), build_index(users.ids, users.vectors, **kw), seg_index)


def segment_neighbours(indexes: Indexes, k: int = 3) -> dict[int, list[tuple[int, float]]]:
    """For each segment, its ``k`` nearest segments by centroid cosine similarity."""
    if indexes.segments is None:
        return {}
    out = {}
    for sid in indexes.segments.ids_:
        out[int(sid)] = [(int(o), round(s, 4)) for o, s in indexes.segments.similar(sid, k)]
    return out


def category_lift_table(profiles: list[SegmentProfile]) -> pl.DataFrame:
    """Long frame segment_id, category, lift, share for the report's heatmap."""
    rows = [(p.segment_id, c, lift, share) for p in profiles
            for c, lift, share in zip(p.top_categories, p.category_lift, p.category_share)]  # fmt: skip
    return pl.DataFrame(rows, schema={"segment_id": pl.Int32, "category": pl.String, "lift": pl.Float64,
                                      "share": pl.Float64}, orient="row")  # fmt: skip


def summarise_data(dataset: Dataset, split: Split) -> dict:
    inter = dataset.interactions
    return {
        "name": dataset.name,
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        "n_interactions": inter.height,
        "implicit": dataset.implicit,
        "density": inter.height / max(dataset.n_users * dataset.n_items, 1),
        "rating_mean": float(inter["rating"].mean() or 0),
        "split": split.method,
        "n_train": split.train.height,
        "n_valid": split.valid.height,
        "n_test": split.test.height,
        "n_test_users": split.test["user_id"].n_unique(),
        "notes": list(dataset.notes),
        "user_attributes": [c for c in dataset.users.columns if c != "user_id"] if dataset.users is not None else [],
    }


def summarise_segmentation(seg: Segmentation) -> dict:
    a = seg.assignments
    sizes = a.group_by("segment_id").len().sort("segment_id")
    return {
        "n_segments": int(seg.n_segments),
        "n_users": a.height,
        "noise_share": seg.noise_share,
        "soft_assigned": int(a["soft_assigned"].sum()),
        "min_cluster_size": int(seg.min_cluster_size),
        "sizes": {str(s): int(n) for s, n in zip(sizes["segment_id"], sizes["len"])},
        "mean_membership": float(a.filter(pl.col("segment_id") >= 0)["membership"].mean() or 0),
        "seconds": seg.seconds,
    }


def versions() -> dict:
    out = {"python": platform.python_version()}
    # numba, pynndescent, scikit-learn, numpy and scipy move UMAP's and HDBSCAN's results between releases
    for pkg in ("segflow", "torch", "sentence-transformers", "faiss-cpu", "umap-learn", "pynndescent", "numba", "hdbscan",
                "scikit-learn", "numpy", "scipy", "polars", "prefect"):  # fmt: skip
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def write_outputs(folder: Path, *, config: PipelineConfig, run_id: str, segmentation: Segmentation,
                  profiles: list[SegmentProfile], items: Embeddings, users: Embeddings, indexes: Indexes,
                  metrics: dict, device: str) -> None:  # fmt: skip
    """Write the run folder's data files (everything but models and the report)."""
    folder = Path(folder)
    (folder / "config.toml").write_text(dump_config_toml(config))
    write_json(folder / "manifest.json", {
        "run_id": run_id, "schema_version": SCHEMA_VERSION, "seed": config.seed,
        "config_hash": config_hash(config), "device": device, "versions": versions(),
    })  # fmt: skip
    segmentation.assignments.write_parquet(folder / "users.parquet")
    profiles_to_frame(profiles).write_parquet(folder / "segments.parquet")
    emb = folder / "embeddings"
    emb.mkdir()
    np.save(emb / "items.npy", items.vectors)
    np.save(emb / "item_ids.npy", items.ids.astype(str))
    np.save(emb / "users.npy", users.vectors)
    np.save(emb / "user_ids.npy", users.ids.astype(str))
    indexes.items.save(folder / "index" / "items")
    indexes.users.save(folder / "index" / "users")
    if indexes.segments is not None:
        indexes.segments.save(folder / "index" / "segments")
    write_json(folder / "metrics.json", metrics)
    logger.info("wrote run outputs to %s", folder)


def json_safe(data: Any) -> Any:
    """Round-trip through JSON so numpy scalars and paths become plain values."""
    from segmentation.runs import _json_default

    return json.loads(json.dumps(data, default=_json_default))


def represent_users(split: Split, items: pl.DataFrame, item_vectors: Embeddings, config: PipelineConfig,
                    cache_dir: Path | None, implicit: bool = False) -> tuple[Embeddings, pl.DataFrame]:  # fmt: skip
    """User vectors by ``config.represent.method`` plus every user's behaviour profile (train rows only).

    With ``implicit`` the profiles speak of what users chose, not of how they rated.
    """
    from embeddings.text import describe_users
    from segmentation.represent import build_user_vectors

    train = split.train_full
    profiles = describe_users(train, items, implicit=implicit)
    profile_vectors = None
    if "profile" in config.represent.method:
        choice = choose_encoder(config.encoder, cache_dir, split=split, items=items, seed=config.seed,
                                implicit=implicit)  # fmt: skip
        profile_vectors, _ = embed_profiles(profiles, config.encoder, cache_dir, choice)
    users = build_user_vectors(train, item_vectors, method=config.represent.method, profile_embeddings=profile_vectors,
                               items=items, seed=config.seed)  # fmt: skip
    return users, profiles


def recommend_for_segments(recs: pl.DataFrame, assignments: pl.DataFrame, items: pl.DataFrame, *,
                           n: int = 10) -> dict[int, list[tuple[str, str, float]]]:  # fmt: skip
    """What to recommend to each segment: the items most often in its members' top-k lists.

    Score = share of the segment's members who get the item in their list.
    """
    titles = dict(zip(items["item_id"], items["title"]))
    joined = recs.join(assignments.select("user_id", "segment_id"), on="user_id")
    sizes = dict(zip(*assignments.group_by("segment_id").len().get_columns()))
    counts = (
        joined.group_by("segment_id", "item_id").len()
        .sort(["segment_id", "len", "item_id"], descending=[False, True, False])
        .group_by("segment_id", maintain_order=True).head(n)
    )  # fmt: skip
    out: dict[int, list[tuple[str, str, float]]] = {}
    for sid, iid, c in counts.iter_rows():
        out.setdefault(int(sid), []).append((iid, titles.get(iid, iid), round(c / sizes[sid], 4)))
    return out
