"""The pipeline's stages as plain typed functions, one per flow task.

Each takes the previous stages' typed values plus its config section and returns
a typed value; ``flows/pipeline.py`` wraps them as Prefect tasks (caching,
retries, logging). They run the same in a notebook:

>>> from segmentation import stages                      # doctest: +SKIP
>>> ds = stages.load(cfg.data, cache)                    # doctest: +SKIP
"""

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

from embeddings.encoder import Embeddings
from segmentation.cluster import NOISE, Segmentation, fit_segments, require_segments
from segmentation.config import (
    ClusterConfig,
    DataConfig,
    EncoderConfig,
    EvalConfig,
    IndexConfig,
    PipelineConfig,
    PredictorConfig,
    RankerConfig,
    ReduceConfig,
    ReportConfig,
)
from segmentation.data import Dataset, Split, load_dataset, split_ratings
from segmentation.describe import SegmentProfile, describe_segments
from segmentation.pipeline import (
    Indexes,
    build_indexes,
    category_lift_table,
    json_safe,
    recommend_for_segments,
    represent_users,
    segment_neighbours,
    summarise_data,
    summarise_segmentation,
    versions,
    write_outputs,
)
from segmentation.pipeline import embed_items as _embed_items

__all__ = [
    "Described",
    "Rankings",
    "describe",
    "embed_items",
    "evaluate",
    "fine_tune",
    "index",
    "load",
    "rank",
    "represent",
    "segment",
    "split",
    "stability",
    "train_global",
    "with_stability",
    "write_run",
]

logger = logging.getLogger(__name__)

IMPLICIT_NO_RATINGS = ("implicit feedback: the data has no ratings to predict, so no rating model was trained and "
                       "no per-segment model was tried; the rankers are judged on every held-out interaction")  # fmt: skip


@dataclass(frozen=True)
class Described:
    """Segment profiles and the tables the report draws from them."""

    profiles: list[SegmentProfile]
    category_lift: pl.DataFrame


@dataclass(frozen=True)
class Rankings:
    """Top-k lists of every ranker for the test users, and what to recommend to each segment."""

    recs: dict[str, pl.DataFrame]
    by_segment: dict[int, list[tuple[str, str, float]]] = field(default_factory=dict)
    primary: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


def load(config: DataConfig, cache_dir: Path) -> Dataset:
    """Load and validate the configured data (or take what ``segflow run`` checked before the flow, if unchanged)."""
    from segmentation.preflight import checked_dataset

    dataset = checked_dataset(config, cache_dir)
    if dataset is None:
        return load_dataset(config, cache_dir)
    logger.info("loaded %s: %d interactions, %d users, %d items (checked before the flow started; the files have "
                "not changed since, so they were not read again)", dataset.name, dataset.interactions.height,
                dataset.n_users, dataset.n_items)  # fmt: skip
    return dataset


def split(dataset: Dataset, config: DataConfig, seed: int) -> Split:
    """Train/valid/test split (BENCHMARK_PROTOCOL.md); validation drawn with the run's seed."""
    return split_ratings(dataset.interactions, config.split, valid_fraction=config.valid_fraction, seed=seed)


def embed_items(items: pl.DataFrame, config: EncoderConfig, cache_dir: Path, split: Split | None = None,
                seed: int = 0, implicit: bool = False) -> tuple[Embeddings, dict]:  # fmt: skip
    """Describe and embed every item (embedding cache by model and text hash).

    With ``config.finetune`` the encoder is first fine-tuned on ``split``'s train rows (seeded by ``seed``).
    """
    return _embed_items(items, config, cache_dir, split, seed, implicit)


def represent(split: Split, items: pl.DataFrame, item_vectors: Embeddings, config: PipelineConfig,
              cache_dir: Path, implicit: bool = False) -> tuple[Embeddings, pl.DataFrame]:  # fmt: skip
    """One vector and one behaviour profile per user, from train rows only."""
    return represent_users(split, items, item_vectors, config, cache_dir, implicit)


def segment(users: Embeddings, reduce: ReduceConfig, cluster: ClusterConfig, seed: int) -> Segmentation:
    """UMAP + HDBSCAN segments; :class:`DataError` when there is not one segment."""
    segmentation = fit_segments(users, reduce, cluster, seed=seed)
    require_segments(segmentation, users)
    return segmentation


def stability(users: Embeddings, segmentation: Segmentation, reduce: ReduceConfig, cluster: ClusterConfig,
              config: EvalConfig, seed: int) -> dict:  # fmt: skip
    """Seed-to-seed and subsample ARI of the segmentation, for ``metrics.json`` under ``segmentation.stability``,
    and every segment's stability over the same refits (``per_segment``: clusterwise Jaccard, Hennig's
    clusterboot; :func:`segmentation.stability.segment_stability`), which also goes into ``segments.parquet``.

    Every refit repeats the whole reduce + cluster step (parameter selection included) without the
    2-d picture. Past ``config.stability_max_users`` users the measure runs on a uniform sample of
    that many, against a reference fitted on the same sample with the run's seed; the run's own segments,
    restricted to the sample, are then compared with that reference fit and every refit.
    """
    from segmentation.stability import TENTATIVE, segmentation_stability

    if config.stability_seeds == 0 and config.stability_subsamples == 0:
        return {"skipped": "evaluate.stability_seeds and evaluate.stability_subsamples are 0"}
    n = len(users.ids)
    reference = segmentation
    of_user = dict(zip(segmentation.assignments["user_id"].to_list(), segmentation.assignments["segment_id"].to_list()))
    if n > config.stability_max_users:
        rows = np.sort(np.random.default_rng(seed).choice(n, config.stability_max_users, replace=False))
        users = Embeddings(users.ids[rows], users.vectors[rows], users.model)
        reference = None
    labels = np.array([of_user[u] for u in users.ids], dtype=np.int64)  # the run's segments, in users' order
    seeds = (seed, *(seed + 1 + i for i in range(config.stability_seeds)))
    result = segmentation_stability(users, reduce, cluster, seeds=seeds, n_bootstrap=config.stability_subsamples,
                                    reference=reference, segments=labels)  # fmt: skip
    out = result.to_dict()
    out["n_users"] = len(users.ids)
    out["note"] = ("ARI with the run's segments (outliers as one more label): between seeds, and on the users "
                   f"both saw for refits on {result.fraction:.0%} subsamples; 1 = identical. per_segment: each "
                   "segment's best Jaccard overlap with a refit's segment, averaged over the refits (Hennig's "
                   f"clusterboot); below {TENTATIVE} the segment is tentative")  # fmt: skip
    return out


def with_stability(profiles: list[SegmentProfile], stability: dict | None) -> list[SegmentProfile]:
    """The profiles with each segment's stability (``per_segment`` of :func:`stability`) filled in.

    Outliers and segments the stability stage did not measure keep ``None``.
    """
    per = (stability or {}).get("per_segment") or {}
    return [replace(p, stability=(per.get(str(p.segment_id)) or {}).get("jaccard") if p.segment_id != NOISE else None)
            for p in profiles]  # fmt: skip


def describe(segmentation: Segmentation, split: Split, dataset: Dataset, profiles: pl.DataFrame,
             users: Embeddings, config: ReportConfig) -> Described:  # fmt: skip
    """Profiles of every segment from train behaviour, item texts and user attributes."""
    from embeddings.text import describe_items

    pos = {u: i for i, u in enumerate(users.ids)}
    rows = [pos[u] for u in segmentation.assignments["user_id"]]
    out = describe_segments(segmentation.assignments, split.train_full, dataset.items, describe_items(dataset.items),
                            dataset.users, top_n=config.top_n, user_vectors=users.vectors[rows],
                            implicit=dataset.implicit)  # fmt: skip
    return Described(out, category_lift_table(out))


def index(items: Embeddings, users: Embeddings, segmentation: Segmentation, config: IndexConfig) -> Indexes:
    """FAISS indexes over items, users and segment centroids."""
    return build_indexes(items, users, segmentation.assignments, config)


def train_global(split: Split, items: Embeddings, config: PredictorConfig, seed: int):
    """The global rating model, early-stopped on validation rows."""
    from segmentation.predict import fit_global_predictor

    return fit_global_predictor(split, config, item_embeddings=items, seed=seed)


@dataclass(frozen=True)
class FineTuned:
    """Per-segment models, and the same procedure on random partitions of the same sizes (the control).

    The control answers "do the segments carry the gain, or would any split of the users do?".
    """

    models: object  # segmentation.predict.SegmentedPredictor
    control: object | None
    control_assignments: pl.DataFrame | None


def random_partition(assignments: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Users reassigned to segments at random, keeping every segment's size (seeded permutation)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E6]))
    labels = assignments["segment_id"].to_numpy()
    return assignments.select("user_id").with_columns(pl.Series("segment_id", labels[rng.permutation(len(labels))]))


def fine_tune(global_model, split: Split, segmentation: Segmentation, config: PredictorConfig, seed: int) -> FineTuned:
    """A fine-tuned copy of the global model per segment, kept only where validation says it helps,
    plus the random-partition control."""
    from segmentation.predict import fit_segment_predictors

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


def rank(split: Split, dataset: Dataset, items: Embeddings, segmentation: Segmentation, config: RankerConfig,
         evaluation: EvalConfig, seed: int) -> Rankings:  # fmt: skip
    """Fit each configured ranker on train and list top-k unseen items for every test user."""
    from segmentation.rank import make_ranker

    train = split.train_full
    test_users = split.test["user_id"].unique().sort().to_list()
    primary = config.rankers[-1]
    recs, seconds, by_segment = {}, {}, {}
    for name in config.rankers:
        t0 = time.perf_counter()
        ranker = make_ranker(name, config).fit(train, items=dataset.items, item_embeddings=items, seed=seed,
                                               implicit=dataset.implicit)  # fmt: skip
        recs[name] = ranker.recommend(test_users, evaluation.k, exclude_seen=True)
        if name == primary:  # what to recommend to each segment, from every member's list
            everyone = ranker.recommend(segmentation.assignments["user_id"].to_list(), evaluation.k, exclude_seen=True)
            by_segment = recommend_for_segments(everyone, segmentation.assignments, dataset.items, n=evaluation.k)
        seconds[name] = round(time.perf_counter() - t0, 3)
    return Rankings(recs, by_segment, primary, seconds)


def user_groups_frame(dataset: Dataset, split: Split, segmentation: Segmentation) -> pl.DataFrame:
    """user_id, segment_id (nearest segment for outliers kept as -1) and fairness groups."""
    from segmentation.evaluate import user_groups

    groups = user_groups(dataset.users, split.train_full)
    return segmentation.assignments.select("user_id", "segment_id").join(groups, on="user_id", how="left")


def evaluate(dataset: Dataset, split: Split, segmentation: Segmentation, global_model, segment_models,
             rankings: Rankings, items: Embeddings, config: EvalConfig, seed: int) -> dict:  # fmt: skip
    """Accuracy, per-segment gains with CIs, ranking, beyond-accuracy and fairness metrics."""
    from segmentation.evaluate import evaluate_rankings

    test = split.test
    groups = user_groups_frame(dataset, split, segmentation)
    relevance = None if dataset.implicit else config.relevance_threshold  # implicit: every held-out interaction
    ranking, beyond = evaluate_rankings(rankings.recs, test, split.train_full, k=config.k,
                                        relevance_threshold=relevance, item_embeddings=items,
                                        items=dataset.items, groups=groups, n_boot=config.bootstrap, seed=seed)  # fmt: skip
    quality = segmentation_quality(segmentation)
    rated = global_model is not None  # implicit feedback trains no rating model
    rating = _rating_metrics(test, groups, global_model, segment_models, config, seed) if rated else {
        "skipped": IMPLICIT_NO_RATINGS}  # fmt: skip
    fairness = {}
    if rated:
        fairness["rating"] = {name: r.get("fairness", {}) for name, r in rating.items()
                              if isinstance(r, dict) and "fairness" in r}  # fmt: skip
    fairness["ranking"] = {name: r.get("fairness", {}) for name, r in ranking.items() if isinstance(r, dict)}
    return json_safe({"rating": rating, "ranking": ranking, "beyond_accuracy": beyond, "fairness": fairness,
                      "segmentation_quality": quality})  # fmt: skip


def _rating_metrics(test: pl.DataFrame, groups: pl.DataFrame, global_model, segment_models, config: EvalConfig,
                    seed: int) -> dict:  # fmt: skip
    """Rating accuracy of the global and segmented models, the segmented gain and the random-partition control."""
    from segmentation.evaluate import evaluate_ratings, rmse
    from segmentation.predict import paired_bootstrap_ci

    p_global = global_model.predict(test)
    p_seg = segment_models.models.predict(test)
    rating = evaluate_ratings(test, {"global": p_global, "segmented": p_seg}, groups, n_boot=config.bootstrap, seed=seed)
    y = test["rating"].to_numpy()
    diff, lo, hi = paired_bootstrap_ci(y, p_global, p_seg, test["user_id"].to_numpy(), n_boot=max(config.bootstrap, 50),
                                       seed=seed)  # fmt: skip
    gain = {"rmse_change": diff, "ci": [lo, hi], "helped": bool(hi < 0), "hurt": bool(lo > 0), "per_segment": {}}
    seg_of = dict(zip(groups["user_id"], groups["segment_id"]))
    test_seg = np.array([seg_of.get(u, NOISE) for u in test["user_id"]])
    for s in sorted(set(test_seg.tolist())):
        m = test_seg == s
        d, a, b = paired_bootstrap_ci(y[m], p_global[m], p_seg[m], test["user_id"].to_numpy()[m],
                                      n_boot=max(config.bootstrap, 50), seed=seed)  # fmt: skip
        gain["per_segment"][str(s)] = {"rmse_change": d, "ci": [a, b], "n": int(m.sum())}
    rating["gain"] = gain
    if segment_models.control is not None:
        p_ctl = segment_models.control.predict(test)
        d, a, b = paired_bootstrap_ci(y, p_global, p_ctl, test["user_id"].to_numpy(), n_boot=max(config.bootstrap, 50),
                                      seed=seed)  # fmt: skip
        report = getattr(segment_models.control, "report_", None)
        rating["random_partition_control"] = {
            "rmse": rmse(y, p_ctl), "rmse_change": d, "ci": [a, b],
            "segments_kept": int(report["kept"].sum()) if report is not None else None,
            "note": "same fine-tuning and gate on random partitions of the same sizes",
        }  # fmt: skip
    return rating


def segmentation_quality(segmentation: Segmentation) -> dict:
    """Label-free quality of the segments on their clustering coordinates (outliers excluded)."""
    from sklearn.metrics import calinski_harabasz_score, silhouette_score

    labels = segmentation.assignments["segment_id"].to_numpy()
    mask = labels != NOISE
    out: dict = {"n_segments": segmentation.n_segments, "noise_share": segmentation.noise_share}
    if segmentation.n_segments >= 2 and mask.sum() > segmentation.n_segments:
        x = segmentation.coords[mask]
        out["silhouette"] = float(silhouette_score(x, labels[mask], sample_size=min(5000, int(mask.sum())), random_state=0))
        out["calinski_harabasz"] = float(calinski_harabasz_score(x, labels[mask]))
        try:
            from hdbscan.validity import validity_index

            if mask.sum() <= 5000:
                out["dbcv"] = float(validity_index(x.astype(np.float64), labels[mask]))
        except (ValueError, ZeroDivisionError, FloatingPointError) as err:  # DBCV is undefined for some shapes
            logger.warning("DBCV not computed: %s", err)
    return out


def _compare_with_previous(output_dir: Path, writer) -> dict | None:
    """Compare the run being written with the newest complete run before it (for the report's comparison page).

    Both runs are read through :func:`segmentation.run_folder.load_run_folder` (so the run's own files must be
    written first). Written to ``comparison.json`` in the run folder; a failed comparison (an unreadable previous
    run, or one of an older schema) only warns: the run itself is fine.
    """
    from segmentation.compare import compare_runs
    from segmentation.run_folder import COMPARISON, load_run_folder
    from segmentation.runs import previous_run

    previous = previous_run(output_dir, writer.final_path)
    if previous is None:
        return None
    try:
        result = json_safe(compare_runs(previous, load_run_folder(writer.path, allow_partial=True)))
    except (OSError, ValueError, KeyError, pl.exceptions.PolarsError) as err:  # DataError is a ValueError
        logger.warning("comparison with the previous run %s failed: %s", previous.name, err)
        return None
    result["run_b"] = str(writer.final_path)
    (writer.path / COMPARISON).write_text(json.dumps(result, indent=2))
    return result


def _same_global_model(a, b) -> bool:
    """Whether two global predictors hold the same parameters (then a run stores them once, in models/global)."""
    if a is None or b is None:
        return False
    if a is b:
        return True
    try:
        sa, sb = [c.state() for c in a.components_], [c.state() for c in b.components_]
        return _same_states(a, b, sa, sb)
    except (AttributeError, TypeError, ValueError):  # not a GlobalPredictor, or meta holding arrays
        return False


def _same_states(a, b, sa: list, sb: list) -> bool:
    same_arrays = all(xa.keys() == xb.keys() and all(np.array_equal(xa[k], xb[k]) for k in xa)
                      for (xa, _), (xb, _) in zip(sa, sb))  # fmt: skip
    return (len(sa) == len(sb) and same_arrays and [m for _, m in sa] == [m for _, m in sb]
            and a.user_vocab_.ids.tolist() == b.user_vocab_.ids.tolist()
            and a.item_vocab_.ids.tolist() == b.item_vocab_.ids.tolist()
            and np.array_equal(np.asarray(a.weights_), np.asarray(b.weights_)) and a.config == b.config
            and a.seed == b.seed and tuple(a.rating_range_) == tuple(b.rating_range_))  # fmt: skip


def write_run(writer, config: PipelineConfig, dataset: Dataset, split: Split, segmentation: Segmentation,
              described: Described, items: Embeddings, users: Embeddings, indexes: Indexes, global_model,
              segment_models, rankings: Rankings, metrics: dict, encoder_stats: dict, timings: dict,
              stability: dict | None = None) -> None:  # fmt: skip
    """Write every file of the run folder but the report into ``writer``'s partial folder (a
    :class:`segmentation.runs.RunWriter` entered by the caller): data files, indexes, models, ``metrics.json``
    with the verdicts (:func:`segmentation.verdicts.run_verdicts`), ``report_input.json``
    (:func:`segmentation.run_folder.write_run_details`) and ``comparison.json`` (against the previous run).

    The flow's publish task (``flows/publish.py``) then renders the report from the folder and publishes it.
    """
    from segmentation.run_folder import RunFolder, rating_summary, write_run_details
    from segmentation.verdicts import run_verdicts

    full = {
        "run_id": writer.run_id,
        "data": summarise_data(dataset, split),
        "segmentation": {
            **summarise_segmentation(segmentation),
            **metrics.get("segmentation_quality", {}),
            "selection": segmentation.selection.to_dict() if segmentation.selection is not None else None,
            "stability": stability,
        },
        **{k: v for k, v in metrics.items() if k != "segmentation_quality"},
        "models": {"global": getattr(global_model, "summary", lambda: {})() if global_model is not None else None,
                   "segments": segment_models.models.report_.to_dicts()
                   if segment_models is not None and hasattr(segment_models.models, "report_") else []},
        "timings": {**timings, "embedding": encoder_stats, "rankers": rankings.seconds},
        "versions": versions(),
    }  # fmt: skip
    full = json_safe(full)
    described = Described(with_stability(described.profiles, stability), described.category_lift)
    config_json = config.model_dump(mode="json")
    full["verdicts"] = run_verdicts(full, config_json, [(p.segment_id, p.name, p.stability) for p in described.profiles])
    write_outputs(writer.path, config=config, run_id=writer.run_id, segmentation=segmentation,
                  profiles=described.profiles, items=items, users=users, indexes=indexes, metrics=full,
                  device=str(encoder_stats.get("device")))  # fmt: skip
    if global_model is not None:  # implicit feedback trains no rating model
        global_model.save(writer.path / "models" / "global")
        segmented = segment_models.models
        shared = _same_global_model(getattr(segmented, "global_model", None), global_model)
        segmented.save(writer.path / "models" / "segments",
                       **({"global_model_dir": writer.path / "models" / "global"} if shared else {}))  # fmt: skip
    write_run_details(writer.path, RunFolder(
        title=config.report.title, run_id=writer.run_id, config=config_json, metrics=full,
        assignments=segmentation.assignments, profiles=described.profiles,
        segment_models=getattr(segment_models.models, "report_", None) if segment_models is not None else None,
        recommendations=rankings.by_segment, neighbours=segment_neighbours(indexes),
        category_lift=described.category_lift,
        rating_summary=None if dataset.implicit else rating_summary(split.train_full.select("user_id", "rating")),
    ))  # fmt: skip
    _compare_with_previous(config.output_dir, writer)
