"""The segflow Prefect flow: each stage a task, the run configuration its one parameter.

Expensive stages are cached on a key made of their inputs' content hash and the
relevant configuration (never on Prefect's TASK_SOURCE, which misses library
changes), with results persisted under ``<cache_dir>/prefect-results``, so a
rerun on unchanged data, or after a failure, resumes instead of starting over.

No ``from __future__ import annotations`` here: Prefect validates the pydantic
parameter from real annotations.
"""

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.task_runners import ThreadPoolTaskRunner

from flows.artifacts import publish_artifacts
from segmentation import stages
from segmentation.config import PipelineConfig
from segmentation.pipeline import cache_root, fingerprint

CACHE_EXPIRATION = timedelta(days=30)


def _cache_key(stage: str):
    def key(context: Any, parameters: dict[str, Any]) -> str:
        return f"{stage}-{fingerprint(*parameters.values())}"

    return key


def _stage(fn, name: str, store: Path | None, *, retries: int = 0):
    """Wrap a library function as a task; cached (and persisted in ``store``) when ``store`` is given."""
    opts: dict[str, Any] = {"name": name, "retries": retries, "retry_delay_seconds": [2, 10, 30][:retries]}
    if store is not None:
        opts |= {"cache_key_fn": _cache_key(name), "persist_result": True, "result_storage": str(store),
                 "cache_expiration": CACHE_EXPIRATION}  # fmt: skip
    else:
        opts |= {"cache_policy": None}
    return task(fn, **opts)


@flow(name="segflow", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=False)
def segflow_pipeline(config: PipelineConfig = PipelineConfig()) -> str:
    """Segment users, explain the segments, fit and evaluate predictors, and publish a run folder with its report."""
    log = get_run_logger()
    cache = cache_root(config)
    store = cache / "prefect-results"
    timings: dict[str, float] = {}

    def run(fn, name: str, *args, cached: bool = True, retries: int = 0, **kwargs):
        t0 = time.perf_counter()
        out = _stage(fn, name, store if cached else None, retries=retries)(*args, **kwargs)
        timings[name] = round(time.perf_counter() - t0, 3)
        return out

    log.info("segflow run: data=%s, encoder=%s, seed=%d", config.data.source, config.encoder.model, config.seed)
    dataset = run(stages.load, "load", config.data, cache, cached=False, retries=2)
    split = run(stages.split, "split", dataset, config.data, config.seed)
    items, encoder_stats = run(stages.embed_items, "embed-items", dataset.items, config.encoder, cache, cached=False)
    users, profiles = run(stages.represent, "represent", split, dataset.items, items, config, cache)
    segmentation = run(stages.segment, "segment", users, config.reduce, config.cluster, config.seed)
    described = run(stages.describe, "describe", segmentation, split, dataset, profiles, users, config.report)
    indexes = run(stages.index, "index", items, users, segmentation, config.index, cached=False)
    global_model = run(stages.train_global, "train-global", split, items, config.predictor, config.seed)
    segment_models = run(stages.fine_tune, "fine-tune-segments", global_model, split, segmentation,
                         config.predictor, config.seed)  # fmt: skip
    rankings = run(stages.rank, "rank", split, dataset, items, segmentation, config.ranker, config.evaluate, config.seed)
    metrics = run(stages.evaluate, "evaluate", dataset, split, segmentation, global_model, segment_models,
                  rankings, items, config.evaluate, config.seed)  # fmt: skip
    path = run(stages.publish, "publish", config, dataset, split, segmentation, described, items, users, indexes,
               global_model, segment_models, rankings, metrics, encoder_stats, timings, cached=False, retries=1)  # fmt: skip
    publish_artifacts(path)
    log.info("report: %s", Path(path) / "report" / "index.html")
    return str(path)
