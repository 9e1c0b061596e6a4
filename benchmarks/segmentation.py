"""Segmentation benchmark: segflow against baselines on planted data (and ML-100k without truth).

Every system runs in its own child process, so its peak memory (``VmHWM``) and its numba
compilation (timed apart, by a warm-up UMAP fit on 300 points before the timed fit) are its own.
The data are generated once by the parent, saved under ``--workdir`` and loaded by each child
(the loaded data count in the child's peak memory; the generator's own working memory does not).

    python benchmarks/segmentation.py                  # everything (about an hour on 2 busy cores)
    python benchmarks/segmentation.py --quick          # 10k planted vectors + 10k planted behaviour, main systems
    python benchmarks/segmentation.py --only planted-vectors --sizes 1000000 --systems segflow
    python benchmarks/segmentation.py --representations --ml100k --incremental --no-main

Rows (``benchmarks/results/segmentation.json``, a JSON list; ``--merge`` replaces rows of the same
system, data and size and keeps the others): ``system``, ``data``, ``n_users``, ``ari``,
``ari_excl_noise`` (ARI over the users whose truth is a segment), ``nmi``, ``noise_share``,
``noise_recall`` (share of planted noise called noise), ``n_clusters``, ``seconds`` (fit, without
data loading or numba compilation), ``numba_seconds``, ``embed_seconds``, ``peak_mib``, and
``notes``. ML-100k rows (no truth) carry ``seed_ari``, ``bootstrap_ari``, ``dbcv`` and
``valid_rmse_gain`` (measured on the validation carve of train, never on test) instead of ARI;
incremental-embedding rows carry ``embedded`` and ``cached``. Planted-world rows (``data`` =
``world:<name>``, see ``segmentation.synthetic.WORLDS``) carry ``role`` (``tuning`` or ``held-out``),
``path`` (``library``) and ``noise_precision`` (share of the outliers that are planted noise users):

    python benchmarks/segmentation.py --no-main --worlds taste,style --world-grid --seeds 0,1,2 \
        --out benchmarks/results/segmentation_tuning.json        # the sweep, tuning worlds only
    python benchmarks/segmentation.py --no-main --worlds all --seeds 0,1,2 --merge   # the current defaults
    python benchmarks/segmentation.py --no-main --worlds taste,style --world-candidates --world-size 3000 \
        --seeds 0,1,2 --out benchmarks/results/segmentation_candidates.json   # why segments merge (tuning worlds)
    python benchmarks/segmentation.py --no-main --worlds taste,style --noise-grid --world-size 3000 --seeds 0,1,2 \
        --out benchmarks/results/segmentation_noise.json   # the outlier rules on centred vectors (tuning worlds)
    python benchmarks/segmentation.py --no-main --worlds taste,style,light --evidence-grid --seeds 0,1,2 \
        --out benchmarks/results/segmentation_evidence.json   # the rules weighed by each user's activity (tuning)
    python benchmarks/segmentation.py --no-main --worlds all --worlds-cli --seeds 0 --merge   # the CLI path, per world
    python benchmarks/segmentation.py --no-main --worlds all --oracle --seeds 0,1,2 --merge   # each world's ceiling

World rows of earlier defaults keep their own system names (``segflow[uncentred,score-choice,min_cohesion=0.9]``:
the defaults of 2026-12-03 before the representation was centred and the parameter choice took the finest
stable candidate; ``segflow[min_samples=10,...]``: :data:`OLD_CLUSTER` on that representation;
``segflow[...stability=outliers-as-label]``: the fourth round's rows, measured while the parameter choice's
stability counted outliers as one more label, renamed when issue 14's fifth round made them count against it).
``--oracle`` rows (``oracle[...]``, path ``oracle``) are no system: the Bayes labelling that knows the generator.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

if TYPE_CHECKING:
    from embeddings.encoder import Embeddings

RESULTS = ROOT / "benchmarks" / "results" / "segmentation.json"
VECTOR_K = 20
BEHAVIOUR_K = 12
REPRESENTATIONS = ("item-mean", "liked-mean", "rating-weighted", "category-hist", "liked-category-hist", "svd",
                   "profile", "item-mean+profile", "item-mean+svd", "item-mean+category-hist",
                   "item-mean+liked-category-hist", "liked-mean+liked-category-hist", "liked-mean+svd")  # fmt: skip
ML100K_REPRESENTATIONS = ("item-mean", "liked-mean", "category-hist", "liked-category-hist", "svd",
                          "item-mean+category-hist", "item-mean+liked-category-hist", "item-mean+svd")  # fmt: skip


def _rss_mib() -> float:
    """Peak resident memory of this process (VmHWM) in MiB.

    Not ``ru_maxrss``: on Linux a child inherits its parent's peak at fork and keeps it across exec,
    so every child would report at least the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------ data (parent)


def _vectors_path(workdir: Path, n: int, seed: int) -> Path:
    return workdir / f"planted-vectors-{n}-s{seed}"


def _behaviour_path(workdir: Path, n: int, seed: int) -> Path:
    return workdir / f"planted-behaviour-{n}-s{seed}"


def make_vectors(workdir: Path, n: int, seed: int) -> Path:
    from segmentation.planted import planted_vectors

    out = _vectors_path(workdir, n, seed)
    if not (out / "labels.npy").exists():
        out.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        p = planted_vectors(n, k=VECTOR_K, rng=np.random.default_rng(seed))
        np.save(out / "vectors.npy", p.vectors)
        np.save(out / "labels.npy", p.labels)
        print(f"  planted {n} vectors in {time.perf_counter() - t:.1f}s", flush=True)
    return out


def _ml100k_popularity(ds) -> np.ndarray:
    counts = ds.interactions.group_by("item_id").len()
    return (
        ds.items.select("item_id")
        .join(counts, on="item_id", how="left", maintain_order="left")["len"]
        .fill_null(0)
        .to_numpy()
        + 1.0
    )


def make_behaviour(workdir: Path, n: int, seed: int) -> Path:
    from segmentation.data import load_movielens_100k
    from segmentation.planted import planted_behaviour

    out = _behaviour_path(workdir, n, seed)
    if not (out / "truth.parquet").exists():
        out.mkdir(parents=True, exist_ok=True)
        ds = load_movielens_100k()
        t = time.perf_counter()
        pb = planted_behaviour(ds.items, n, k=BEHAVIOUR_K, item_popularity=_ml100k_popularity(ds),
                               rng=np.random.default_rng(seed))  # fmt: skip
        pb.interactions.write_parquet(out / "interactions.parquet")
        pb.truth.write_parquet(out / "truth.parquet")
        (out / "styles.json").write_text(json.dumps([s.__dict__ for s in pb.styles], indent=1))
        print(f"  planted behaviour of {n} users ({pb.interactions.height} ratings) in {time.perf_counter() - t:.1f}s",
              flush=True)  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------ child side


def _scores(truth: np.ndarray, labels: np.ndarray) -> dict:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    keep = truth >= 0
    noise = truth < 0
    return {
        "ari": round(float(adjusted_rand_score(truth, labels)), 4),
        "ari_excl_noise": round(float(adjusted_rand_score(truth[keep], labels[keep])), 4),
        "nmi": round(float(normalized_mutual_info_score(truth, labels)), 4),
        "noise_share": round(float((labels < 0).mean()), 4),
        "noise_recall": round(float((labels[noise] < 0).mean()), 4) if noise.any() else None,
        "n_clusters": int(len(np.unique(labels[labels >= 0]))),
    }


def _warm_umap() -> float:
    """Compile UMAP's numba code (timed apart from the fit)."""
    import warnings

    t = time.perf_counter()
    import umap

    x = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        umap.UMAP(n_components=5, n_neighbors=15, min_dist=0.0, metric="cosine", random_state=0).fit(x)
        umap.UMAP(n_components=2, n_neighbors=15, min_dist=0.1, metric="cosine", random_state=0).fit(x)
    return time.perf_counter() - t


def _hdbscan_labels(coords: np.ndarray, min_cluster_size: int, min_samples: int | None) -> np.ndarray:
    import hdbscan

    return hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, core_dist_n_jobs=1).fit(
        np.asarray(coords, dtype=np.float64)).labels_  # fmt: skip


def _umap(x: np.ndarray, seed: int) -> np.ndarray:
    import warnings

    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return umap.UMAP(
            n_components=5, n_neighbors=15, min_dist=0.0, metric="cosine", random_state=seed
        ).fit_transform(x)


def _segflow(ids: np.ndarray, x: np.ndarray, seed: int, extra: dict) -> tuple[np.ndarray, dict]:
    from embeddings.encoder import Embeddings
    from segmentation.cluster import fit_segments
    from segmentation.config import ClusterConfig, ReduceConfig

    seg = fit_segments(Embeddings(ids, x, "bench"), ReduceConfig(), ClusterConfig(), seed=seed)
    chosen = seg.selection.to_dict() if seg.selection else {}
    extra.update({"n_fitted": seg.n_fitted, "steps": {k: round(v, 2) for k, v in seg.seconds.items()},
                  "chosen": {k: chosen.get(k) for k in ("min_cluster_size", "cluster_selection_method")},
                  "soft_assigned": round(float(seg.assignments["soft_assigned"].mean()), 4)})  # fmt: skip
    return seg.assignments["segment_id"].to_numpy(), extra


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(k, n_init=3, random_state=seed).fit_predict(x)


def _item_embeddings(cache_dir: Path | None):
    from embeddings.encoder import Embeddings, Encoder
    from embeddings.text import describe_items
    from segmentation.data import default_cache_dir, load_movielens_100k

    ds = load_movielens_100k()
    d = describe_items(ds.items)
    enc = Encoder(cache_dir=cache_dir or default_cache_dir() / "embeddings")
    return ds, Embeddings(d["item_id"].to_numpy(), enc.encode(d["description"].to_list()), "all-MiniLM-L6-v2")


def _profiles(interactions: pl.DataFrame, items: pl.DataFrame, cache_dir: Path | None):
    """MiniLM embeddings of every user's behaviour text (cached on disk); (Embeddings, seconds, embedded)."""
    from embeddings.encoder import Embeddings, Encoder
    from embeddings.text import describe_users
    from segmentation.data import default_cache_dir

    profiles = describe_users(interactions, items)
    enc = Encoder(cache_dir=cache_dir or default_cache_dir() / "embeddings", batch_size=128)
    t = time.perf_counter()
    vec = enc.encode(profiles["profile"].to_list())
    return Embeddings(profiles["user_id"].to_numpy(), vec, "profile"), time.perf_counter() - t, enc.stats["embedded"]


def run_child(spec: dict) -> dict:
    """Run one system on one data set; returns a result row."""
    system, data, path, seed = spec["system"], spec["data"], Path(spec["path"]), spec["seed"]
    row: dict = {"system": system, "data": data, "seed": seed}
    extra: dict = {}
    numba = None
    embed_seconds = None
    uses_umap = system.startswith("segflow") or system in ("umap+hdbscan", "bertopic-style")
    if uses_umap:
        numba = _warm_umap()
    if data == "planted-vectors":
        x = np.load(path / "vectors.npy")
        truth = np.load(path / "labels.npy")
        ids = np.arange(len(x)).astype(str).astype(object)
        t = time.perf_counter()
        if system == "segflow":
            labels, extra = _segflow(ids, x, seed, extra)
        elif system == "umap+hdbscan":
            labels = _hdbscan_labels(_umap(x, seed), max(15, round(0.002 * len(x))), 10)
        elif system == "kmeans-true-k":
            labels = _kmeans(x, VECTOR_K, seed)
        else:
            raise ValueError(f"unknown system {system!r} for {data}")
        seconds = time.perf_counter() - t
    elif data == "planted-behaviour":
        from segmentation.represent import build_user_vectors

        interactions = pl.read_parquet(path / "interactions.parquet")
        truth_frame = pl.read_parquet(path / "truth.parquet")
        ds, items = _item_embeddings(None)
        method = system.split("[", 1)[1].rstrip("]") if "[" in system else None
        profile = None
        if system == "bertopic-style" or (method and "profile" in method):
            profile, embed_seconds, embedded = _profiles(interactions, ds.items, None)
            extra["embedded"] = embedded
        t = time.perf_counter()
        if system.startswith("segflow"):
            from segmentation.config import RepresentConfig

            users = build_user_vectors(interactions, items, method=method or RepresentConfig().method,
                                       items=ds.items, profile_embeddings=profile, seed=seed,
                                       centre=RepresentConfig().centre)  # fmt: skip
            extra["representation"] = method or RepresentConfig().method
            labels, extra = _segflow(users.ids, users.vectors, seed, extra)
            ids = users.ids
        elif system == "kmeans-true-k":
            from segmentation.config import RepresentConfig

            users = build_user_vectors(interactions, items, method=RepresentConfig().method, items=ds.items, seed=seed)
            labels, ids = _kmeans(users.vectors, BEHAVIOUR_K, seed), users.ids
            extra["representation"] = RepresentConfig().method
        elif system in ("kmeans-category-hist", "kmeans-liked-category-hist"):
            method = system.removeprefix("kmeans-")
            users = build_user_vectors(interactions, items, method=method, items=ds.items, seed=seed)
            labels, ids = _kmeans(users.vectors, BEHAVIOUR_K, seed), users.ids
        elif system == "bertopic-style":
            # BERTopic's defaults: UMAP(15 neighbours, 5-d, min_dist 0, cosine) + HDBSCAN(min_cluster_size 10, eom)
            labels, ids = _hdbscan_labels(_umap(profile.vectors, seed), 10, None), profile.ids
        else:
            raise ValueError(f"unknown system {system!r} for {data}")
        seconds = time.perf_counter() - t
        pos = dict(zip(truth_frame["user_id"].to_list(), truth_frame["segment_id"].to_list()))
        truth = np.array([pos[u] for u in ids])
    else:
        raise ValueError(f"unknown data {data!r}")
    row.update({"n_users": int(len(truth)), **_scores(truth, np.asarray(labels)), "seconds": round(seconds, 2),
                "numba_seconds": None if numba is None else round(numba, 2),
                "embed_seconds": None if embed_seconds is None else round(embed_seconds, 2),
                "peak_mib": round(_rss_mib(), 1), "notes": extra})  # fmt: skip
    return row


# ------------------------------------------------------------------------------------------ planted worlds

OLD_CLUSTER = {"min_samples": 10, "outlier_membership": 0.3, "min_cohesion": None, "early_outlier_distance": None,
               "outlier_distance": None}  # fmt: skip
"""The cluster defaults before the worlds' tuning (2026-12-03); reported beside the current ones."""
NO_COHESION = {"min_cohesion": None}
"""The current defaults without dissolving incoherent segments (measured beside them: the rule acts after HDBSCAN)."""
NO_NOISE_RULES = {"min_cohesion": None, "early_outlier_distance": None, "outlier_distance": None}
"""The current defaults without either outlier rule: the defaults before noise was kept apart on centred vectors
(2026-12-03, second round); measured beside them at no extra fit and the baseline of :func:`choose_world_setting`."""
WORLD_GRID = [{"min_samples": ms, "outlier_membership": om, "min_cohesion": mc, "outlier_distance": od}
              for ms in (5, 10, 20) for om in (0.3, None) for mc in (None, 0.8, 0.85, 0.9, 0.95)
              for od in (None, 3.0, 4.0)]  # fmt: skip
"""Settings swept on the tuning worlds only (``--world-grid``). Since issue 14's tenth round ``outlier_distance`` is the
final rule on the final segments; this grid, as the third and fourth rounds' grids, sweeps the final rule, which
then stood right after HDBSCAN (``early_outlier_distance`` now), so its rows are not the rows of that time."""
NOISE_GRID = [{"min_cohesion": mc, "early_outlier_distance": od, "outlier_distance": None}
              for mc in (None, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85) for od in (None, 3.5, 4.0, 4.5, 5.0, 6.0)]  # fmt: skip
"""The outlier rules swept on centred vectors, on the tuning worlds only (``--noise-grid``; one HDBSCAN fit per
world and seed: both rules act after it; the rule right after HDBSCAN, ``early_outlier_distance`` since issue 14's
tenth round, with no final rule, as the third round had it). :func:`choose_world_setting` against
:data:`NO_NOISE_RULES` chose the defaults, ``min_cohesion`` 0.7 and (then) ``outlier_distance`` 6 (3,000 users, seeds
0-2, docs/BENCHMARKS.md)."""


PREVIOUS_RULES = {"outlier_evidence": False, "early_outlier_distance": 6.0, "outlier_distance": None,
                  "dissolve_large": True}  # fmt: skip
"""The outlier rules of the third round (similarity threshold 6 right after HDBSCAN, no final rule, any incoherent
segment dissolved), measured beside the current defaults at no extra fit."""
EVIDENCE_GRID = [NO_NOISE_RULES] + [
    {"min_cohesion": mc, "dissolve_large": large, "outlier_evidence": ev, "early_outlier_distance": od,
     "outlier_distance": None}
    for mc in (None, 0.7) for large in ((True, False) if mc else (False,)) for ev in (False, True)
    for od in ((None,) if not ev and mc else ()) + ((4.0, 5.0, 6.0) if not ev else (3.0, 3.5, 4.0, 5.0))
]  # fmt: skip
"""The outlier rules weighed by each user's evidence, swept on the tuning worlds only (``--evidence-grid``, taste,
style and light; one HDBSCAN fit per world and seed; the rule right after HDBSCAN, now ``early_outlier_distance``,
with no final rule, as the fourth round had it). :func:`choose_world_setting` against :data:`NO_NOISE_RULES` chose the
defaults of the fourth round (10,000 users, seeds 0-2, docs/BENCHMARKS.md)."""


def _setting_name(setting: dict) -> str:
    return "segflow[" + ",".join(f"{k}={v}" for k, v in setting.items()) + "]"


def _noise_scores(truth: np.ndarray, labels: np.ndarray) -> dict:
    """Noise recall (planted noise users labelled outlier) and precision (outliers that are noise users)."""
    noise, out = truth < 0, labels < 0
    both = int((noise & out).sum())
    return {"noise_recall": round(both / max(int(noise.sum()), 1), 4),
            "noise_precision": round(both / int(out.sum()), 4) if out.any() else None}  # fmt: skip


def _world_items(log) -> pl.DataFrame:
    """The synthetic catalogue as the loader would read it (``ITEMS``: name as title, ``|``-separated categories)."""
    from segmentation.data import ITEMS

    return log.items.select(
        "item_id", pl.col("name").alias("title"), pl.lit(None, pl.Int32).alias("year"),
        pl.col("categories").str.split("|").alias("categories"), pl.col("description").alias("text"),
    ).cast(dict(ITEMS))  # fmt: skip


def _world_catalogue(log, enc) -> tuple[pl.DataFrame, Embeddings]:
    """A planted world's catalogue as the loader reads it (:func:`_world_items`) and its item texts embedded by
    ``enc`` (an :class:`~embeddings.encoder.Encoder`), as the CLI's item stage embeds them."""
    from embeddings.encoder import Embeddings
    from embeddings.text import describe_items

    items = _world_items(log)
    d = describe_items(items)
    return items, Embeddings(d["item_id"].to_numpy(), enc.encode(d["description"].to_list()), "all-MiniLM-L6-v2")


def run_worlds(
    names: list[str], n: int, seeds: list[int], settings: list[dict], workdir: Path | None = None
) -> list[dict]:
    """Each planted world through the library path, UMAP fitted once per (world, seed), HDBSCAN per setting.

    The path is the CLI's (item texts → MiniLM → default representation → UMAP → parameter choice by DBCV and
    stability → HDBSCAN → outlier soft-assignment → outlier rules → split test) called as library functions, in one
    process, without the 2-d picture; ``settings`` override ``ClusterConfig`` fields (an empty dict: the current defaults).
    """
    from embeddings.encoder import Embeddings, Encoder
    from embeddings.text import describe_items
    from segmentation.cluster import Clusterer, keep_noise_apart, split_merged
    from segmentation.config import ClusterConfig, ReduceConfig, RepresentConfig
    from segmentation.data import default_cache_dir
    from segmentation.reduce import Reducer
    from segmentation.represent import build_user_vectors
    from segmentation.selection import choose_parameters
    from segmentation.synthetic import WORLDS, world_log

    numba = _warm_umap()
    enc = Encoder(cache_dir=default_cache_dir() / "embeddings", batch_size=128)
    method, centre = RepresentConfig().method, RepresentConfig().centre
    rows = []
    for seed in seeds:
        for name in names:
            world = WORLDS[name]
            log = world_log(name, n, seed=seed)
            items = _world_items(log)
            d = describe_items(items)
            t = time.perf_counter()
            item_vectors = Embeddings(
                d["item_id"].to_numpy(), enc.encode(d["description"].to_list()), "all-MiniLM-L6-v2"
            )
            embed_seconds = time.perf_counter() - t
            t = time.perf_counter()
            users = build_user_vectors(
                log.interactions, item_vectors, method=method, items=items, seed=seed, centre=centre
            )
            rc = ReduceConfig()
            reducer = Reducer(rc.n_components, n_neighbors=rc.n_neighbors, min_dist=rc.min_dist, metric=rc.metric,
                              sample_size=rc.sample_size, assign=rc.assign, knn_dims=rc.knn_dims, random_state=seed)  # fmt: skip
            # UMAP's coordinates depend on the data, the representation and the reduce settings only: cached
            # under the workdir, so a rerun with other cluster settings skips the fit (seconds_umap stays the fit's)
            key = hashlib.sha256(
                json.dumps(
                    [name, n, seed, method, rc.model_dump(), *(["centred"] if centre else [])], sort_keys=True
                ).encode()
            ).hexdigest()[:16]
            cached = (workdir / f"world-coords-{key}.npz") if workdir else None
            if cached is not None and cached.exists() and n <= rc.sample_size:
                got = np.load(cached)
                coords, umap_seconds = got["coords"], float(got["seconds"])
                reducer.sample_, reducer.neighbours_ = np.arange(n), None
            else:
                coords = reducer.fit_transform(users.vectors)
                umap_seconds = time.perf_counter() - t
                if cached is not None and n <= rc.sample_size:
                    np.savez(cached, coords=coords, seconds=umap_seconds)
            pos = dict(zip(log.labels["user_id"].to_list(), log.labels["segment"].to_list()))
            truth = np.array([pos[u] for u in users.ids])
            fits: dict[str, tuple] = {}  # HDBSCAN once per setting without the outlier rules, which only relabel
            for setting in settings:
                t = time.perf_counter()
                cluster = ClusterConfig(**setting)
                post = (
                    "outlier_membership",
                    "min_cohesion",
                    "early_outlier_distance",
                    "outlier_distance",
                    "outlier_categories",
                    "category_reassign",
                    "outlier_evidence",
                    "dissolve_large",
                    "split_stability",
                )  # applied after HDBSCAN
                key = json.dumps({k: v for k, v in cluster.model_dump().items() if k not in post}, sort_keys=True)
                if key not in fits:
                    selection = choose_parameters(coords[reducer.sample_], cluster, seed=seed)
                    c = selection.config
                    clusterer = Clusterer(c.min_cluster_size, min_samples=c.min_samples,
                                          cluster_selection_method=c.cluster_selection_method,
                                          cluster_selection_epsilon=c.cluster_selection_epsilon,
                                          outlier_membership=None, sample_size=rc.sample_size,
                                          random_state=seed).fit(coords, sample=reducer.sample_, neighbours=reducer.neighbours_)  # fmt: skip
                    fits[key] = (c, clusterer, time.perf_counter() - t)
                c, clusterer, fit_seconds = fits[key]
                labels = clusterer.labels_.copy()
                if cluster.outlier_membership is not None and clusterer.soft_.shape[1]:  # as Clusterer.fit does
                    move = (labels < 0) & (clusterer.soft_.max(axis=1) >= cluster.outlier_membership)
                    labels[move] = clusterer.soft_[move].argmax(axis=1)
                apart = keep_noise_apart(users.vectors, labels, cluster, activity=users.activity)  # as fit_segments
                labels = np.where(apart.demoted, -1, apart.labels)
                if cluster.split_stability is not None and labels.max() >= 0:  # as fit_segments, after the rules
                    frame = pl.DataFrame({"user_id": users.ids.astype(str), "segment_id": labels,
                                          "nearest_segment": np.where(labels >= 0, labels, 0)},
                                         schema={"user_id": pl.String, "segment_id": pl.Int32,
                                                 "nearest_segment": pl.Int32})  # fmt: skip
                    # the run's smallest segment in every user's terms, as fit_segments passes it
                    min_size = clusterer.min_cluster_size_ * len(labels) / len(reducer.sample_)
                    frame, _, _ = split_merged(users, frame, rc, cluster, min_size, seed=seed)
                    labels = frame["segment_id"].to_numpy()
                if labels.max() >= 0:  # as fit_segments, at the end
                    labels = _judge_as_fit_segments(users, labels, cluster)
                row = {"system": _setting_name(setting) if setting else "segflow", "data": f"world:{name}",
                       "role": world.role, "path": "library", "seed": seed, "n_users": int(len(truth)),
                       **_scores(truth, labels), **_noise_scores(truth, labels),
                       "seconds": round(umap_seconds + fit_seconds, 2), "numba_seconds": round(numba, 2),
                       "embed_seconds": round(embed_seconds, 2), "peak_mib": round(_rss_mib(), 1),
                       "notes": {"mechanic": world.mechanic, "representation": method, "centre": centre,
                                 "cluster": {"min_cluster_size": c.min_cluster_size, "min_samples": c.min_samples,
                                             "cluster_selection_method": c.cluster_selection_method,
                                             "outlier_membership": cluster.outlier_membership,
                                             "min_cohesion": cluster.min_cohesion,
                                             "outlier_distance": cluster.outlier_distance,
                                             "outlier_evidence": cluster.outlier_evidence,
                                             "dissolve_large": cluster.dissolve_large,
                                             "split_stability": cluster.split_stability},
                                 "interactions": log.interactions.height, "n_planted": int(truth.max()) + 1,
                                 "peak": "the whole in-process run's"}}  # fmt: skip
                _print_row(row)
                rows.append(row)
    return rows


def _judge_as_fit_segments(users, labels: np.ndarray, cluster=None) -> np.ndarray:
    """The library path's last steps, as :func:`segmentation.cluster.fit_segments` ends: members moved by the categories
    they chose (:func:`segmentation.cluster.reassign_by_categories`), then every user judged against the final
    segments (:func:`segmentation.cluster.judge_outliers`). HDBSCAN's soft memberships are not kept on this path, so
    an outlier's nearest segment is the one whose members' mean direction is the most similar."""
    from segmentation.cluster import (
        ASSIGNMENTS,
        _nearest_centre,
        _part_directions,
        judge_outliers,
        reassign_by_categories,  # fmt: skip
    )
    from segmentation.config import ClusterConfig

    k = int(labels.max()) + 1
    out = np.flatnonzero(labels < 0)
    nearest = labels.copy()
    if len(out):
        nearest[out] = _nearest_centre(users.vectors, out, _part_directions(users.vectors, labels))
    n = len(labels)
    frame = pl.DataFrame({"user_id": users.ids.astype(str), "segment_id": labels, "membership": np.ones(n, np.float32),
                          "nearest_segment": nearest, "nearest_membership": np.ones(n, np.float32),
                          "soft_assigned": np.zeros(n, bool), "x": np.zeros(n, np.float32),
                          "y": np.zeros(n, np.float32)}, schema=ASSIGNMENTS)  # fmt: skip
    cluster = cluster or ClusterConfig()
    if cluster.category_reassign is not None and users.category_counts is not None:
        frame, _ = reassign_by_categories(frame, users, cluster, k)
    if cluster.outlier_distance is not None:
        frame, _, _ = judge_outliers(users, frame, cluster, k)
    return frame["segment_id"].to_numpy()


CLI_SETS = ["evaluate.stability_seeds=0", "evaluate.stability_subsamples=0", "predictor.model=mf",
            'ranker.rankers=["most-popular"]']  # fmt: skip
"""The CLI rows skip the stability refits and fit the fastest rating model and ranker (none of them changes the
run's segments) to save time: with the defaults one 10,000-user world took more than 9 minutes here."""


def run_worlds_cli(
    names: list[str], n: int, seeds: list[int], workdir: Path, extra_sets: list[str] | None = None
) -> list[dict]:
    """Each planted world through the CLI (``--worlds-cli``): the log written as CSV, ``python -m flows.cli run`` in
    a fresh process with the defaults (and :data:`CLI_SETS`), ARI and noise scores from the run's ``users.parquet``.

    The CLI builds user vectors from the train split only (the library path above from every interaction), so a
    user whose interactions all fell into validation or test is not segmented; ``users_scored`` says how many were.
    ``extra_sets`` (``--cli-set``) are more ``--set`` overrides: the rows' system is then ``segflow[<sets>]``.
    """
    extra_sets = extra_sets or []
    sets = CLI_SETS + extra_sets
    system = f"segflow[{';'.join(extra_sets)}]" if extra_sets else "segflow"
    tag = hashlib.sha256(json.dumps(extra_sets).encode()).hexdigest()[:8] if extra_sets else ""
    from segmentation.synthetic import CLI_COLUMNS, WORLDS, world_log

    rows = []
    for seed in seeds:
        for name in names:
            world, log = WORLDS[name], world_log(name, n, seed=seed)
            folder = workdir / f"cli-{name}-{n}-{seed}{'-' + tag if tag else ''}"
            files = log.write(folder / "data", fmt="csv")
            argv = ["/usr/bin/time", "-v", sys.executable, "-m", "flows.cli", "run", "--ratings", str(files["ratings"]), "--items",
                    str(files["items"]), *CLI_COLUMNS[log.feedback], "--output", str(folder / "runs"), "--seed",
                    str(seed), *(a for x in sets for a in ("--set", x))]  # fmt: skip
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
                   "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1"}  # fmt: skip
            t = time.perf_counter()
            proc = subprocess.run(argv, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - t
            (folder / "run.log").write_text(proc.stdout + proc.stderr)
            peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)  # from /usr/bin/time -v
            row = {"system": system, "data": f"world:{name}", "role": world.role, "path": "cli", "seed": seed,
                   "n_users": n, "run": "cli", "seconds": round(seconds, 1), "exit": proc.returncode,
                   "peak_mib": round(int(peak.group(1)) / 1024) if peak else None,
                   "notes": {"mechanic": world.mechanic, "sets": sets, "log": str(folder / "run.log"),
                             "n_planted": log.generator.n_segments if log.generator else None}}  # fmt: skip
            users = folder / "runs" / "latest" / "users.parquet"
            if proc.returncode == 0 and users.is_file():
                found = log.labels.join(pl.read_parquet(users).select("user_id", "segment_id"), on="user_id")
                truth, labels = found["segment"].to_numpy(), found["segment_id"].to_numpy()
                row.update(_scores(truth, labels), **_noise_scores(truth, labels), users_scored=found.height)
                metrics = json.loads((folder / "runs" / "latest" / "metrics.json").read_text())
                row.update(split_effect(truth, labels, metrics["segmentation"].get("splits")))
            else:
                row["error"] = proc.stderr[-2000:]
            _print_row(row)
            rows.append(row)
    return rows


def unsplit(labels: np.ndarray, splits: dict | None) -> np.ndarray:
    """A run's labels with the split test undone: the parts of each split segment (``segmentation.splits`` of its
    ``metrics.json``) one label again; outliers stay outliers."""
    out = labels.copy()
    for t in (splits or {}).get("tested", []):
        if t.get("split"):
            out[np.isin(labels, t["segments"])] = min(t["segments"])
    return out


def split_effect(truth: np.ndarray, labels: np.ndarray, splits: dict | None) -> dict:
    """What a run's split test did, from the run itself: the segments it split, and the ARI (outliers as one more
    label) with the splits undone beside the run's (a paired comparison: the same fit with and without the step)."""
    if splits is None:
        return {}
    from sklearn.metrics import adjusted_rand_score

    made = [t for t in splits.get("tested", []) if t.get("split")]
    return {"splits": [{"users": t["users"], "stability": t["stability"], "sizes": t["sizes"]} for t in made],
            "ari_without_splits": round(float(adjusted_rand_score(truth, unsplit(labels, splits))), 4)}  # fmt: skip


ORACLE_VIEWS = (("oracle[all interactions]", None), ("oracle[random90 train_full]", "random90"))
"""The oracle's rows: the Bayes labelling from every interaction (what the library path segments) and from the
train rows of the default split (``split.train_full`` of ``random90``: what a CLI run segments)."""


def run_worlds_oracle(names: list[str], n: int, seeds: list[int]) -> list[dict]:
    """The ceiling per world (``--oracle``): ARI of the Bayes labelling that knows the generator's parameters.

    Each user gets the most probable label (a planted segment or noise) given that user's interactions alone, under
    the parameters the world was drawn with (:meth:`segmentation.synthetic.GenerativeModel.bayes_labels`; what it
    conditions on is in its docstring). No UMAP, no encoder: seconds per world. ``calibration`` in the notes is the
    mean highest posterior beside the share labelled right (equal when the posterior is the generator's).
    """
    from segmentation.data import split_ratings
    from segmentation.synthetic import WORLDS, world_log

    rows = []
    for seed in seeds:
        for name in names:
            world, log = WORLDS[name], world_log(name, n, seed=seed)
            model = log.generator
            seen = log.interactions.group_by("user_id").len()
            drawn = pl.DataFrame({"user_id": [f"u{i}" for i in range(len(model.drawn_activity))],
                                  "drawn": model.drawn_activity})  # fmt: skip
            collapsed = float(seen.join(drawn, on="user_id").select(pl.col("len") < pl.col("drawn")).mean().item())
            for system, split in ORACLE_VIEWS:
                inter = log.interactions if split is None else split_ratings(log.interactions, split).train_full
                kept = inter.height / log.interactions.height
                t = time.perf_counter()
                users, post = model.log_posterior(inter, kept=kept)
                best = post.argmax(axis=1)
                found = pl.DataFrame({"user_id": users, "oracle": np.where(best == model.n_segments, -1, best)})
                found = log.labels.join(found, on="user_id")
                truth, labels = found["segment"].to_numpy(), found["oracle"].to_numpy()
                row = {"system": system, "data": f"world:{name}", "role": world.role, "path": "oracle", "seed": seed,
                       "n_users": n, "users_scored": found.height, **_scores(truth, labels),
                       **_noise_scores(truth, labels), "seconds": round(time.perf_counter() - t, 2),
                       "peak_mib": round(_rss_mib(), 1),
                       "notes": {"mechanic": world.mechanic, "kept": round(kept, 4), "n_planted": model.n_segments,
                                 "interactions": inter.height,
                                 "calibration": {"mean_max_posterior": round(float(np.exp(post.max(axis=1)).mean()), 4),
                                                 "accuracy": round(float((truth == labels).mean()), 4)},
                                 "users_with_collapsed_repeats": round(collapsed, 4)}}  # fmt: skip
                _print_row(row)
                rows.append(row)
    return rows


def run_world_candidates(names: list[str], n: int, seeds: list[int]) -> list[dict]:
    """Why segments merge, on tuning worlds: the representation, UMAP or the parameter choice (``--world-candidates``).

    Per (world, seed) and with the representation uncentred and centred (``represent.centre``): the share of a
    segment user's 15 cosine neighbours from their own planted segment, k-means with the true k on the raw
    vectors (a diagnostic, not a system), then UMAP with the default settings and every candidate of the label-free
    parameter choice with its ARI on the segment users, and the candidate each choice rule takes (the best score,
    the rule until 2026-12-03; the finest of the most stable, :func:`segmentation.selection.finest_stable`, with
    stability counting outliers as one more label and no margin on the outlier share, ``finest_stable_rule``; with them
    counted against a candidate, ``finest_stable_clustered_rule``: issue 14's fifth round, measured and not adopted;
    the default, with ``cluster.max_extra_outlier_share``, ``finest_stable_margin_rule``: the sixth round). Each
    candidate's ARI is given on the segment users (``ari_excl_noise``) and on all users with the noise as one more
    label (``ari``, as the CLI rows are scored).
    The truth only scores; nothing here feeds a choice back.
    """
    import warnings

    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    from sklearn.neighbors import NearestNeighbors

    from embeddings.encoder import Encoder
    from segmentation.config import ClusterConfig, ReduceConfig, RepresentConfig
    from segmentation.data import default_cache_dir
    from segmentation.reduce import Reducer
    from segmentation.represent import build_user_vectors
    from segmentation.selection import _Hierarchy, choose_parameters, finest_stable
    from segmentation.synthetic import WORLDS, world_log

    numba = _warm_umap()
    enc = Encoder(cache_dir=default_cache_dir() / "embeddings", batch_size=128)
    method, rc, cc = RepresentConfig().method, ReduceConfig(), ClusterConfig()
    rows = []
    for seed in seeds:
        for name in names:
            log = world_log(name, n, seed=seed)
            items, item_vectors = _world_catalogue(log, enc)
            pos = dict(zip(log.labels["user_id"].to_list(), log.labels["segment"].to_list()))
            for centre in (False, True):
                t0 = time.perf_counter()
                users = build_user_vectors(log.interactions, item_vectors, method=method, items=items, seed=seed,
                                           centre=centre)  # fmt: skip
                truth = np.array([pos[u] for u in users.ids])
                keep = truth >= 0
                nn = NearestNeighbors(n_neighbors=16, metric="cosine").fit(users.vectors)
                idx = nn.kneighbors(users.vectors[keep], return_distance=False)[:, 1:]
                purity = float((truth[idx] == truth[keep][:, None]).mean())
                km = KMeans(int(truth.max()) + 1, n_init=3, random_state=seed).fit_predict(users.vectors)
                reducer = Reducer(rc.n_components, n_neighbors=rc.n_neighbors, min_dist=rc.min_dist, metric=rc.metric,
                                  sample_size=rc.sample_size, random_state=seed)  # fmt: skip
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    coords = reducer.fit_transform(users.vectors)
                    choice = choose_parameters(coords, cc, seed=seed)
                    tree = _Hierarchy(np.asarray(coords, dtype=np.float64), cc.min_samples, max_size=15)
                cands = []
                for c in choice.candidates:
                    labels = tree.labels(c.min_cluster_size, c.cluster_selection_method, cc.cluster_selection_epsilon)
                    cands.append({**{k: getattr(c, k) for k in ("min_cluster_size", "cluster_selection_method",
                                                                "n_segments", "noise_share", "dbcv", "stability",
                                                                "stability_clustered", "score", "eligible")},
                                  "ari_excl_noise": round(float(adjusted_rand_score(truth[keep], labels[keep])), 4),
                                  "ari": round(float(adjusted_rand_score(truth, labels)), 4)})  # fmt: skip
                # the rules before the margin read the segment bounds alone
                eligible = [c for c in choice.candidates if cc.min_segments <= c.n_segments <= cc.max_segments]

                def picked(c, cands=cands):
                    return next(x for x in cands if x["min_cluster_size"] == c.min_cluster_size
                                and x["cluster_selection_method"] == c.cluster_selection_method)  # fmt: skip

                old = picked(max(eligible, key=lambda c: (c.score, -c.min_cluster_size)))
                new = picked(finest_stable(eligible))
                # the finest-stable rule reading the clustered stability (outliers counted against a candidate)
                was = picked(finest_stable([dataclasses.replace(c, stability=c.stability_clustered)
                                            for c in eligible]))  # fmt: skip
                margin = picked(choice.chosen)
                row = {"system": f"candidates[centre={centre}]", "data": f"world:{name}", "role": WORLDS[name].role,
                       "seed": seed, "n_users": int(len(truth)), "representation": method, "centre": centre,
                       "knn_purity": round(purity, 4),
                       "kmeans_true_k_ari_excl_noise": round(float(adjusted_rand_score(truth[keep], km[keep])), 4),
                       "score_rule": old, "finest_stable_rule": new, "finest_stable_clustered_rule": was,
                       "finest_stable_margin_rule": margin, "max_extra_outlier_share": cc.max_extra_outlier_share,
                       "candidates": cands,
                       "seconds": round(time.perf_counter() - t0, 1), "numba_seconds": round(numba, 1)}  # fmt: skip
                print(f"  {name:16s} seed {seed} centre={centre!s:5s} purity {purity:.3f} kmeans {row['kmeans_true_k_ari_excl_noise']:.3f} "
                      f"score rule {old['ari_excl_noise']:.3f} (k={old['n_segments']}) finest stable, outliers as a "
                      f"label {new['ari_excl_noise']:.3f} (k={new['n_segments']}, {new['noise_share']:.1%} out), "
                      f"outliers against {was['ari_excl_noise']:.3f} (k={was['n_segments']}, {was['noise_share']:.1%} "
                      f"out) margin {margin['ari']:.3f} all users (k={margin['n_segments']}, "
                      f"{margin['noise_share']:.1%} out; no margin {new['ari']:.3f}) best candidate "
                      f"{max(x['ari_excl_noise'] for x in cands):.3f}", flush=True)  # fmt: skip
                rows.append(row)
    return rows


def choose_world_setting(rows: list[dict], baseline: str | None = None) -> dict:
    """The declared rule for the cluster defaults, applied to tuning-world rows only.

    1. No loss on the segment users: mean and minimum ARI over the users whose truth is a segment (over the
       tuning runs) at most 0.005 below the baseline's (the system name ``baseline``; by default the old
       defaults, :data:`OLD_CLUSTER`).
    2. Among those, the settings whose mean noise recall and mean noise precision are both at least 0.5
       (if none is: all of step 1).
    3. The highest noise F1 (recall and precision's harmonic mean), then the highest mean ARI.
    """
    tuning = [r for r in rows if r.get("role") == "tuning" and "error" not in r]
    by: dict[str, list[dict]] = {}
    for r in tuning:
        by.setdefault(r["system"], []).append(r)
    summary = {}
    for system, rs in by.items():
        recall = float(np.mean([r["noise_recall"] for r in rs]))
        precision = float(np.mean([r["noise_precision"] or 0.0 for r in rs]))
        summary[system] = {"min_ari": min(r["ari"] for r in rs), "mean_ari": float(np.mean([r["ari"] for r in rs])),
                           "min_excl": min(r["ari_excl_noise"] for r in rs),
                           "mean_excl": float(np.mean([r["ari_excl_noise"] for r in rs])),
                           "recall": recall, "precision": precision, "runs": len(rs),
                           "f1": 2 * recall * precision / max(recall + precision, 1e-12)}  # fmt: skip
    base = summary.get(baseline or _setting_name(OLD_CLUSTER))
    keep = {k: v for k, v in summary.items() if base is None or (v["min_excl"] >= base["min_excl"] - 0.005
                                                                  and v["mean_excl"] >= base["mean_excl"] - 0.005)}  # fmt: skip
    ok = {k: v for k, v in keep.items() if v["recall"] >= 0.5 and v["precision"] >= 0.5} or keep
    best = max(ok, key=lambda k: (ok[k]["f1"], ok[k]["mean_ari"]))
    return {"chosen": best, "summary": summary}


# ------------------------------------------------------------------------------------------ ML-100k (no truth)


def heldout_rmse(train: pl.DataFrame, test: pl.DataFrame, segments: pl.DataFrame) -> tuple[float, float]:
    """RMSE on held-out rows (``test``: the validation carve, never the test split) without and with a
    per-(segment, item) offset.

    Baseline: ``mu + b_u + b_i`` (biases shrunk by 5 ratings). With segments: plus the segment's mean
    residual on the item, shrunk by 10 ratings. ``segments`` has ``user_id`` and ``seg``.
    """
    from segmentation.evaluate import rmse

    mu = float(train["rating"].mean())
    bu = train.group_by("user_id").agg(((pl.col("rating") - mu).sum() / (pl.len() + 5)).alias("bu"))
    t = train.join(bu, on="user_id")
    bi = t.group_by("item_id").agg(((pl.col("rating") - mu - pl.col("bu")).sum() / (pl.len() + 5)).alias("bi"))
    t = t.join(bi, on="item_id").join(segments, on="user_id")
    resid = pl.col("rating") - mu - pl.col("bu") - pl.col("bi")
    bsi = t.group_by("seg", "item_id").agg((resid.sum() / (pl.len() + 10)).alias("bsi"))
    e = (test.join(bu, on="user_id", how="left").join(bi, on="item_id", how="left")
         .join(segments, on="user_id", how="left").join(bsi, on=["seg", "item_id"], how="left").fill_null(0.0))  # fmt: skip
    base = (mu + e["bu"] + e["bi"]).clip(1, 5).to_numpy()
    seg = (base + e["bsi"].to_numpy()).clip(1, 5)
    y = e["rating"].to_numpy()
    return rmse(y, base), rmse(y, seg)


def _repr_system(method: str, weights: dict[str, float] | None, evidence: float | None = None) -> str:
    """A representation row's system: ``segflow[<method>]``, with ``@part=w,...`` when its weights are given
    (``represent.weights``; none given: the default's) and ``;evidence=e`` with ``represent.evidence``."""
    tail = f"@{','.join(f'{p}={w:g}' for p, w in weights.items())}" if weights else ""
    return f"segflow[{method}{tail}{f';evidence={evidence:g}' if evidence else ''}]"


def run_ml100k(method: str, seed: int, weights: dict[str, float] | None = None, evidence: float | None = None) -> dict:
    """Representation ``method`` on ML-100k without labels or test ratings: seed/bootstrap ARI, DBCV, validation gain.

    Vectors and segments are fitted on random90's train rows without its validation carve (``split.train``); the
    segments are judged on that carve (``split.valid``, held out of train), never on the test rows.
    """
    from segmentation.cluster import fit_segments
    from segmentation.config import ClusterConfig, ReduceConfig, RepresentConfig
    from segmentation.data import split_ratings
    from segmentation.represent import build_user_vectors
    from segmentation.stability import segmentation_stability

    numba = _warm_umap()
    ds, items = _item_embeddings(None)
    split = split_ratings(ds.interactions, "random90")
    profile = None
    if "profile" in method:
        profile, _, _ = _profiles(split.train, ds.items, None)
    users = build_user_vectors(split.train, items, method=method, items=ds.items, profile_embeddings=profile,
                               seed=seed, centre=RepresentConfig().centre, weights=weights, evidence=evidence)  # fmt: skip
    t = time.perf_counter()
    seg = fit_segments(users, ReduceConfig(), ClusterConfig(), seed=seed)
    seconds = time.perf_counter() - t
    stab = segmentation_stability(users, ReduceConfig(), ClusterConfig(), seeds=(seed, seed + 1, seed + 2),
                                  n_bootstrap=3, reference=seg)  # fmt: skip
    a = seg.assignments
    base, with_seg = heldout_rmse(split.train, split.valid, a.select("user_id", pl.col("nearest_segment").alias("seg")))
    sizes = a.group_by("segment_id").len().sort("len", descending=True)
    return {
        "system": _repr_system(method, weights, evidence), "data": "movielens-100k", "seed": seed, "n_users": a.height,
        "ari": None, "ari_excl_noise": None, "nmi": None,
        "noise_share": round(seg.noise_share, 4), "n_clusters": seg.n_segments,
        "seed_ari": round(float(np.mean(stab.seed_ari)), 4), "bootstrap_ari": round(float(np.mean(stab.bootstrap_ari)), 4),
        "dbcv": seg.selection.chosen.dbcv if seg.selection else None,
        "valid_rmse_gain": round(base - with_seg, 5), "valid_rmse": round(with_seg, 5), "valid_rows": split.valid.height,
        "seconds": round(seconds, 2), "numba_seconds": round(numba, 2), "peak_mib": round(_rss_mib(), 1),
        "notes": {"sizes": dict(zip(map(str, sizes["segment_id"]), sizes["len"])),
                  "selection": seg.selection.to_dict()["reason"] if seg.selection else None,
                  "n_segments_by_seed": list(stab.n_segments), "soft_assigned": int(a["soft_assigned"].sum())},
    }  # fmt: skip


# ------------------------------------------------------------------------------------------ incremental embedding


NO_SEGMENTS = ("ari", "ari_excl_noise", "nmi", "noise_share", "n_clusters")


def run_incremental(changed_share: float = 0.05, seed: int = 0) -> list[dict]:
    """Embed ML-100k's item texts and user profiles into an empty cache, rerun, then rerun after changes."""
    from embeddings.encoder import Encoder
    from embeddings.text import describe_items, describe_users
    from segmentation.data import load_movielens_100k

    ds = load_movielens_100k()
    rng = np.random.default_rng(seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="segflow-bench-cache-") as tmp:

        def embed(items: pl.DataFrame, inter: pl.DataFrame, label: str) -> None:
            enc = Encoder(cache_dir=Path(tmp))
            t = time.perf_counter()
            texts = describe_items(items)["description"].to_list() + describe_users(inter, items)["profile"].to_list()
            enc.encode(texts)
            # no clustering here: the segmentation keys are present (the rows' contract) and empty
            rows.append({"system": "encoder cache", "data": "ml-100k item + profile texts", "run": label,
                         "n_users": inter["user_id"].n_unique(), **dict.fromkeys(NO_SEGMENTS),
                         "texts": len(texts), "embedded": enc.stats["embedded"],
                         "cached": enc.stats["cache_hits"], "seconds": round(time.perf_counter() - t, 2),
                         "peak_mib": round(_rss_mib(), 1)})  # fmt: skip
            print("  ", rows[-1], flush=True)

        embed(ds.items, ds.interactions, "cold")
        embed(ds.items, ds.interactions, "rerun, nothing changed")
        n_items = int(changed_share * ds.items.height)
        pick = set(rng.choice(ds.items["item_id"].to_list(), n_items, replace=False).tolist())
        items = ds.items.with_columns(pl.when(pl.col("item_id").is_in(list(pick))).then(pl.lit("Remastered edition."))
                                      .otherwise(pl.col("text")).alias("text"))  # fmt: skip
        users = sorted(ds.interactions["user_id"].unique().to_list())
        drop_users = set(rng.choice(users, int(changed_share * len(users)), replace=False).tolist())
        # each changed user loses their most recent rating (a new profile text), everyone else is untouched
        last = (ds.interactions.filter(pl.col("user_id").is_in(list(drop_users)))
                .sort("timestamp").group_by("user_id").agg(pl.col("item_id").last()))  # fmt: skip
        inter = ds.interactions.join(last, on=["user_id", "item_id"], how="anti")
        embed(items, inter, f"rerun after {changed_share:.0%} of items and users changed")
    return rows


# ------------------------------------------------------------------------------------------ parent


def _child(spec: dict, timeout: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {**{k: spec[k] for k in ("system", "data", "seed")}, "error": f"timed out after {timeout}s"}
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (out.stderr or out.stdout)[-2000:]
    return {**{k: spec[k] for k in ("system", "data", "seed")}, "error": f"exit {out.returncode} after "
            f"{time.perf_counter() - t:.0f}s: {tail}"}  # fmt: skip


def _print_row(r: dict) -> None:
    if "error" in r:
        print(f"  {r['system']:34s} {r['data']:18s} ERROR {r['error'][-400:]}", flush=True)
        return
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    print(f"  {r['system']:34s} {r['data']:18s} n={r.get('n_users', 0):>8} ari={fmt(r.get('ari'), '.3f')} "
          f"excl={fmt(r.get('ari_excl_noise'), '.3f')} nmi={fmt(r.get('nmi'), '.3f')} noise={fmt(r.get('noise_share'), '.3f')} "
          f"k={r.get('n_clusters')} {fmt(r.get('seconds'), '.1f')}s (+{fmt(r.get('numba_seconds'), '.0f')}s numba, "
          f"+{fmt(r.get('embed_seconds'), '.0f')}s embed) {fmt(r.get('peak_mib'), '.0f')} MiB"
          + (f" noiseP={r.get('noise_precision')} noiseR={r.get('noise_recall')}" if "noise_precision" in r else "")
          + (f" seedARI={r['seed_ari']} bootARI={r['bootstrap_ari']} dbcv={r['dbcv']} gain={r['valid_rmse_gain']}"
             if "seed_ari" in r else ""), flush=True)  # fmt: skip


def markdown_tables(rows: list[dict]) -> str:
    """The result rows as the markdown tables of docs/BENCHMARKS.md."""

    def f(v, spec: str = ".3f") -> str:
        return "" if v is None else format(v, spec)

    out = []
    planted = [r for r in rows if r.get("data", "").startswith("planted") and "error" not in r]
    if planted:
        out += ["| data | users | system | ARI | ARI excl. noise | NMI | noise share | noise recall | clusters | fit s | numba s | embed s | peak MiB |",
                "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for r in sorted(planted, key=lambda r: (r["data"], r["n_users"], r.get("seed", 0), -(r.get("ari") or 0))):
            out.append(f"| {r['data']} | {r['n_users']:,} | {r['system']} | {f(r['ari'])} | {f(r['ari_excl_noise'])} | "
                       f"{f(r['nmi'])} | {f(r['noise_share'])} | {f(r.get('noise_recall'))} | {r['n_clusters']} | "
                       f"{f(r['seconds'], '.1f')} | {f(r.get('numba_seconds'), '.0f')} | {f(r.get('embed_seconds'), '.0f')} | "
                       f"{f(r.get('peak_mib'), '.0f')} |")  # fmt: skip
        out.append("")
    ml = [r for r in rows if r.get("data") == "movielens-100k" and "error" not in r and "valid_rmse_gain" in r]
    if ml:
        out += ["| representation (ML-100k, random90 train without its validation carve) | segments | outliers | seed-to-seed ARI | bootstrap ARI | DBCV | validation RMSE gain |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for r in sorted(ml, key=lambda r: -(r.get("valid_rmse_gain") or 0)):
            out.append(f"| {r['system']} | {r['n_clusters']} | {f(r['noise_share'])} | {f(r['seed_ari'])} | "
                       f"{f(r['bootstrap_ari'])} | {f(r['dbcv'])} | {f(r['valid_rmse_gain'], '.4f')} |")  # fmt: skip
        out.append("")
    worlds = [r for r in rows if r.get("data", "").startswith("world:") and "error" not in r]
    if worlds:
        out += ["| world | role | system | seeds | ARI mean (min) | ARI excl. noise mean (min) | noise recall | noise precision | outliers | segments (planted) | path |",
                "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]  # fmt: skip
        groups: dict[tuple, list[dict]] = {}
        for r in worlds:
            key = (r["role"] != "tuning", r["data"], r["system"] != "segflow", r["system"], r.get("path", ""))
            groups.setdefault((*key, r["n_users"]), []).append(r)  # the CLI's and the library's rows apart
        for (_, data, _, system, _, n), rs in sorted(groups.items()):
            a = [r["ari"] for r in rs]
            x = [r["ari_excl_noise"] for r in rs]
            m = lambda key, rs=rs: f(float(np.mean([r[key] or 0.0 for r in rs])))  # noqa: E731
            out.append(f"| {data.removeprefix('world:')} ({n:,} users) | {rs[0]['role']} | {system} | {len(rs)} | "
                       f"{f(float(np.mean(a)))} ({f(min(a))}) | {f(float(np.mean(x)))} ({f(min(x))}) | {m('noise_recall')} | "
                       f"{m('noise_precision')} | {m('noise_share')} | {', '.join(str(r['n_clusters']) for r in rs)} "
                       f"({rs[0]['notes'].get('n_planted', '')}) | {rs[0].get('path', '')} |")  # fmt: skip
        out.append("")
    inc = [r for r in rows if r.get("system") == "encoder cache"]
    if inc:
        out += [
            "| embedding run (ML-100k item texts + user profiles) | texts | embedded | from cache | seconds |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for r in inc:
            out.append(
                f"| {r['run']} | {r['texts']:,} | {r['embedded']:,} | {r['cached']:,} | {f(r['seconds'], '.1f')} |"
            )
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="10k users only, segflow and the k-means baselines")
    p.add_argument("--only", choices=["planted-vectors", "planted-behaviour"], help="one data kind")
    p.add_argument(
        "--sizes", help="comma-separated user counts (default 10000,100000 and 1000000 for segflow on vectors)"
    )
    p.add_argument("--systems", help="comma-separated systems (default: all for the data kind)")
    p.add_argument("--no-main", action="store_true", help="skip the planted-data comparison")
    p.add_argument(
        "--representations", action="store_true", help="each representation through segflow on planted behaviour"
    )
    p.add_argument("--repr-size", type=int, default=10_000)
    p.add_argument(
        "--ml100k", action="store_true", help="representations on MovieLens 100k (stability, DBCV, held-out)"
    )
    p.add_argument(
        "--ml100k-method",
        action="append",
        metavar="METHOD[@PART=W,...]",
        help="with --ml100k: only this representation (repeatable), optionally with represent.weights",
    )
    p.add_argument("--ml100k-evidence", type=float, help="with --ml100k: represent.evidence for every representation")
    p.add_argument("--incremental", action="store_true", help="embedding-cache reruns on ML-100k texts")
    p.add_argument(
        "--worlds", help="comma-separated planted worlds (segmentation.synthetic.WORLDS) or 'all', library path"
    )
    p.add_argument("--world-size", type=int, default=10_000, help="users per planted world")
    p.add_argument(
        "--world-grid",
        action="store_true",
        help="sweep WORLD_GRID instead of the current and the old cluster defaults (tuning worlds only)",
    )
    p.add_argument(
        "--noise-grid",
        action="store_true",
        help="sweep NOISE_GRID (the outlier rules) instead of the current defaults (tuning worlds only)",
    )
    p.add_argument(
        "--worlds-cli",
        action="store_true",
        help="with --worlds: each world written as CSV and run through `python -m flows.cli run` (path 'cli')",
    )
    p.add_argument(
        "--cli-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --worlds-cli: one more --set for every run (repeatable); rows are named segflow[<sets>]",
    )
    p.add_argument(
        "--evidence-grid",
        action="store_true",
        help="with --worlds (tuning worlds only): the outlier rules weighed by each user's interactions (EVIDENCE_GRID)",
    )
    p.add_argument(
        "--oracle",
        action="store_true",
        help="with --worlds: the Bayes labelling that knows each world's generator (the ceiling; no UMAP)",
    )
    p.add_argument(
        "--world-candidates",
        action="store_true",
        help="why segments merge: neighbours, k-means, every parameter candidate's ARI (tuning worlds only)",
    )
    p.add_argument(
        "--bertopic-max", type=int, default=10_000, help="run the BERTopic-style baseline up to this many users"
    )
    p.add_argument("--seeds", default="0", help="comma-separated seeds (data and method)")
    p.add_argument("--timeout", type=int, default=3600)
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "segflow-bench")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--merge", action="store_true", help="keep rows of the existing file that this run does not redo")
    p.add_argument("--table", action="store_true", help="print the markdown tables of --out and exit")
    args = p.parse_args(argv)
    if args.table:
        print(markdown_tables(json.loads(args.out.read_text())))
        return 0
    if args.child:
        spec = json.loads(args.child)
        result = (
            run_ml100k(spec["method"], spec["seed"], spec.get("weights"), spec.get("evidence"))
            if spec["data"] == "movielens-100k"
            else run_child(spec)
        )
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([10_000] if args.quick else [10_000, 100_000])
    systems_v = ["segflow", "kmeans-true-k"] + ([] if args.quick else ["umap+hdbscan"])
    systems_b = ["segflow", "kmeans-true-k", "kmeans-category-hist", "kmeans-liked-category-hist"] + (
        [] if args.quick else ["bertopic-style"]
    )
    if args.systems:
        wanted = args.systems.split(",")
        systems_v = [s for s in wanted if not s.startswith("kmeans-") or s == "kmeans-true-k"]
        systems_b = wanted
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"segmentation benchmark on {platform.node()} ({os.cpu_count()} cores), workdir {args.workdir}", flush=True)
    rows: list[dict] = []
    jobs: list[dict] = []
    if not args.no_main:
        for seed in seeds:
            if args.only in (None, "planted-vectors"):
                v_sizes = sizes + ([1_000_000] if not args.quick and not args.sizes else [])
                for n in v_sizes:
                    for system in systems_v:
                        if n >= 1_000_000 and system != "segflow":
                            continue
                        if system == "umap+hdbscan" and n > 100_000:
                            continue
                        jobs.append({"system": system, "data": "planted-vectors", "n": n, "seed": seed})
            if args.only in (None, "planted-behaviour"):
                for n in [s for s in sizes if s <= 100_000]:
                    for system in systems_b:
                        if system == "bertopic-style" and n > args.bertopic_max:
                            continue
                        jobs.append({"system": system, "data": "planted-behaviour", "n": n, "seed": seed})
    if args.representations:
        for seed in seeds:
            for method in REPRESENTATIONS:
                jobs.append(
                    {"system": f"segflow[{method}]", "data": "planted-behaviour", "n": args.repr_size, "seed": seed}
                )
    for job in jobs:
        make = make_vectors if job["data"] == "planted-vectors" else make_behaviour
        path = make(args.workdir, job["n"], job["seed"])
        row = _child(
            {"system": job["system"], "data": job["data"], "path": str(path), "seed": job["seed"]}, args.timeout
        )
        row.setdefault("n_users", job["n"])
        _print_row(row)
        rows.append(row)
    if args.ml100k:
        for spec in args.ml100k_method or ML100K_REPRESENTATIONS:
            method, _, w = spec.partition("@")
            weights = {p: float(x) for p, _, x in (kv.partition("=") for kv in w.split(","))} if w else None
            from segmentation.config import RepresentConfig  # a typo in a part's name stops here, not in a row

            RepresentConfig(method=method, weights=weights or {}, evidence=args.ml100k_evidence)
            row = _child({"system": _repr_system(method, weights, args.ml100k_evidence), "data": "movielens-100k",
                          "method": method, "weights": weights, "evidence": args.ml100k_evidence,
                          "seed": seeds[0]}, args.timeout)  # fmt: skip
            _print_row(row)
            rows.append(row)
    if args.incremental:
        rows.extend(run_incremental(seed=seeds[0]))
    if args.worlds:
        from segmentation.synthetic import WORLDS

        names = list(WORLDS) if args.worlds == "all" else args.worlds.split(",")
        if args.world_grid or args.world_candidates or args.noise_grid or args.evidence_grid:
            held = [w for w in names if WORLDS[w].role != "tuning"]
            if held:
                p.error(
                    f"--world-grid, --noise-grid, --evidence-grid and --world-candidates read tuning worlds only; "
                    f"{held} are held out"
                )
            settings = NOISE_GRID if args.noise_grid else EVIDENCE_GRID if args.evidence_grid else WORLD_GRID
        else:  # the current defaults and, at no extra fit, without the outlier rules and with the previous ones
            settings = [{}, NO_NOISE_RULES, PREVIOUS_RULES]
        if args.oracle:
            rows.extend(run_worlds_oracle(names, args.world_size, seeds))
        elif args.worlds_cli:
            rows.extend(run_worlds_cli(names, args.world_size, seeds, args.workdir, args.cli_set))
        elif args.world_candidates:
            rows.extend(run_world_candidates(names, args.world_size, seeds))
        else:
            rows.extend(run_worlds(names, args.world_size, seeds, settings, args.workdir))
        if args.world_grid:
            print(json.dumps(choose_world_setting(rows), indent=1), flush=True)
        elif args.noise_grid or args.evidence_grid:
            print(json.dumps(choose_world_setting(rows, baseline=_setting_name(NO_NOISE_RULES)), indent=1), flush=True)
        elif (  # keep the outlier rules only if the rule prefers them on the tuning worlds (if any ran)
            not args.world_candidates
            and not args.worlds_cli
            and not args.oracle
            and any(WORLDS[w].role == "tuning" for w in names)
        ):
            choice = choose_world_setting(rows, baseline=_setting_name(NO_NOISE_RULES))
            print(json.dumps(choice, indent=1), flush=True)
    stamp = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.node()}, {os.cpu_count()} cores"}
    rows = [{**r, **stamp} for r in rows]
    if args.merge and args.out.exists():
        key = lambda r: (r.get("system"), r.get("data"), r.get("n_users"), r.get("seed"), r.get("run"))  # noqa: E731
        mine = {key(r) for r in rows}
        rows = [r for r in json.loads(args.out.read_text()) if key(r) not in mine] + rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {len(rows)} rows to {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
