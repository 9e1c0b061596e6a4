"""The segflow Prefect flow: each stage a task, the run configuration its one parameter.

Expensive stages are cached on a key made of their inputs' content hash and the
relevant configuration (never on Prefect's TASK_SOURCE, which misses library
changes), with results persisted under ``<cache_dir>/prefect-results``, so a
rerun on unchanged data, or after a failure, resumes instead of starting over.

Independent stages run at once on the task runner that ``config.orchestration``
picks (threads by default, or a Dask cluster): the rating models train while the
users are embedded, segmented and described; ranking, fine-tuning, description
indexing and the stability refits run side by side once the segments exist.

No ``from __future__ import annotations`` here: Prefect validates the pydantic
parameter from real annotations.
"""

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from embeddings.encoder import embed_items
from embeddings.finetune import choose_encoder
from embeddings.index import build_indexes
from flows.artifacts import compare_with_previous, publish_artifacts
from flows.publish import publish
from flows.run_logs import library_logs_to_run
from flows.runners import DEFAULT_THREADS, dask_without_server, make_task_runner, needs_own_runner, prepare_workers
from flows.tasks import Stages
from flows.tasks import retry_unless_user_error as _retry_unless_user_error  # noqa: F401  (tests import it from here)
from segmentation.cache import clean_cache
from segmentation.cluster import segment_users
from segmentation.coldstart import cold_start_users
from segmentation.config import PipelineConfig
from segmentation.data import cache_root, split_ratings
from segmentation.describe import describe_run
from segmentation.evaluate import evaluate_run
from segmentation.predict import fine_tune_segments, fit_global_predictor
from segmentation.preflight import check_dataset, load_for_run
from segmentation.rank import rank_test_users
from segmentation.represent import represent_users
from segmentation.runs import check_output_dir
from segmentation.stability import measure_stability

DEFAULT_CONFIG = PipelineConfig()  # frozen: safe as a shared default


def _run_stages(config: PipelineConfig) -> str:
    """Run every stage in dependency order, independent ones at once, and publish the run folder."""
    # a large index waits on disk until publish writes the run folder (in this process's reach: not on Dask,
    # whose workers may not share this disk); removed when the run ends, published or not
    spill = None
    if config.orchestration.task_runner == "threads":
        cache_root(config).mkdir(parents=True, exist_ok=True)
        spill = Path(tempfile.mkdtemp(prefix="index-spill-", dir=cache_root(config)))
    try:
        return _stages(config, spill)
    finally:
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)


def _stages(config: PipelineConfig, spill: Path | None) -> str:
    log = get_run_logger()
    cache = cache_root(config)
    s = Stages(config)
    t0 = time.perf_counter()
    dataset = s.call("load", load_for_run, config.data, cache, cached=False, io=True)  # bad input fails here, first
    check_dataset(dataset, config)  # too few users etc.: before hours of embedding (a deployment's run skips the CLI)
    split = s.submit("split", split_ratings, dataset.interactions, config.data.split,
                     kwargs={"valid_fraction": config.data.valid_fraction, "seed": config.seed})  # fmt: skip
    # the run's encoder, chosen (and its model found) once, before any embedding; fine-tuning needs the train rows
    finetune = ((s.result("split").train_full, dataset.items, config.seed, dataset.implicit)
                if config.encoder.finetune else ())  # fmt: skip
    encoder = s.call("choose-encoder", choose_encoder, config.encoder, cache, *finetune, cached=False, io=True)
    s.submit("embed-items", embed_items, dataset.items, encoder, config.encoder, cached=False, io=True,
             partitioned=True)  # fmt: skip
    items, encoder_stats = s.result("embed-items")
    # implicit feedback has no ratings to predict: no rating model, no per-segment fine-tuning (rankers only)
    rated = not dataset.implicit
    global_model: PrefectFuture[Any] | None
    segment_models: PrefectFuture[Any] | None
    cold_start: PrefectFuture[Any] | None = None
    if rated:
        global_model = s.submit("train-global", fit_global_predictor, split, config.predictor,
                                kwargs={"item_embeddings": items, "seed": config.seed})  # fmt: skip
    s.submit("represent", represent_users, split, dataset.items, items, config, encoder, dataset.implicit,
             partitioned=True)  # fmt: skip
    users, profiles, space = s.result("represent")
    segmentation = s.submit("segment", segment_users, users, config.reduce, config.cluster, config.seed,
                            partitioned=True)  # fmt: skip
    s.submit("stability", measure_stability, users, segmentation, config.reduce, config.cluster, config.evaluate,
             config.seed)  # fmt: skip
    s.submit("describe", describe_run, segmentation, split, dataset, profiles, users, config.report)
    s.submit("index", build_indexes, items, users, segmentation, config.index, spill, cached=False)
    if rated:
        segment_models = s.submit("fine-tune-segments", fine_tune_segments, global_model, split, segmentation,
                                  config.predictor, config.seed)  # fmt: skip
    else:
        log.info("implicit feedback (no rating column): no rating model and no per-segment fine-tuning; "
                 "the rankers are fitted and evaluated on every held-out interaction")  # fmt: skip
        global_model = segment_models = None
    if config.predictor.cold_start.enabled:  # new and sparse users: segment or all-users priors and blends, gated
        relevance = None if dataset.implicit else config.evaluate.relevance_threshold
        cold_start = s.submit("cold-start", cold_start_users, split, dataset.items, items, segmentation,
                              global_model, config.predictor, config.represent, config.index, config.seed,
                              config.ranker, relevance, dataset.implicit, kwargs={"user_vectors": users})  # fmt: skip
    # after cold-start: the sparse test users' lists come from the blend its ranking gate kept, if any
    rankings = s.submit("rank", rank_test_users, split, dataset, items, segmentation, config.ranker, config.evaluate,
                        config.seed, kwargs={"cold_start": cold_start}, partitioned=True)  # fmt: skip
    s.submit("evaluate", evaluate_run, dataset, split, segmentation, global_model, segment_models, rankings, items,
             config.evaluate, config.seed, cold_start)  # fmt: skip
    v = s.wait_all()
    hits = s.cached()
    log.info("cache: %d of %d cached stages reused (%s); stages took %.1f s", len(hits),
             sum(1 for n in s.futures if n not in ("embed-items", "index")), ", ".join(hits) or "none",
             time.perf_counter() - t0)  # fmt: skip
    timings = {**s.timings(), "flow": round(time.perf_counter() - t0, 3)}
    return s.call("publish", publish, config, dataset, v["split"], v["segment"], v["describe"], items, users,
                  v["index"], v.get("train-global"), v.get("fine-tune-segments"), v["rank"], v["evaluate"], encoder_stats,
                  timings, v["stability"], space, cached=False, io=True)  # fmt: skip


@flow(name="segflow-stages", log_prints=False)
def segflow_stages(config: PipelineConfig) -> str:
    """The stages of one segflow run on the task runner that ``config.orchestration`` asks for (a subflow)."""
    prepare_workers()
    return _run_stages(config)


# Prefect types TaskRunner as invariant in its future type, so no ThreadPoolTaskRunner (of PrefectConcurrentFuture)
# matches the decorator's TaskRunner[PrefectFuture]: a limitation of Prefect's annotations, not of this runner
@flow(name="segflow", task_runner=ThreadPoolTaskRunner(max_workers=DEFAULT_THREADS), log_prints=False)  # type: ignore[arg-type]
def segflow_pipeline(config: PipelineConfig = DEFAULT_CONFIG) -> str:
    """Segment users, explain the segments, fit and evaluate predictors, and publish a run folder with its report.

    Args:
        config: the whole run: data, encoder, user representation, segmentation, rating predictor, rankers,
            evaluation, report and orchestration (docs/CONFIG.md). Every field has a default.
    """
    log = get_run_logger()
    library_logs_to_run()
    orch = config.orchestration
    log.info("segflow run: data=%s, encoder=%s, seed=%d, task runner=%s", config.data.source, config.encoder.model,
             config.seed, orch.task_runner)  # fmt: skip
    check_output_dir(config.output_dir)  # fail before the work, not after it (the encoder's model: see choose-encoder)
    if needs_own_runner(orch):
        if orch.task_runner == "dask" and dask_without_server():
            log.warning("task_runner = 'dask' without a Prefect server (PREFECT_API_URL unset): every Dask worker "
                        "starts its own temporary server, which is slow; see docs/OPERATIONS.md")  # fmt: skip
        path = segflow_stages.with_options(task_runner=make_task_runner(orch))(config)
    else:
        path = _run_stages(config)
    publish_artifacts(path)
    io_timeout = orch.io_timeout_minutes * 60 if orch.io_timeout_minutes else None
    # task(options)(fn), not task(fn, options): only the former is among Prefect's typed overloads (the same Task)
    compared = task(name="compare-with-previous", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5,
                    timeout_seconds=io_timeout)(compare_with_previous)(config.output_dir, path, return_state=True)  # fmt: skip
    if not compared.is_completed():  # the run is published already: a failed comparison only warns
        log.warning("comparison with the previous run failed: %s", compared.message)
    if config.cache.max_size is not None:  # housekeeping after the run: a removed entry only costs a recomputation
        try:
            done = clean_cache(cache_root(config), max_size=int(config.cache.max_size))
            log.info("cache.max_size = %d bytes: removed %d least recently used task-cache entries (%d bytes)",
                     int(config.cache.max_size), len(done.removed), done.freed_bytes)  # fmt: skip
        except OSError as err:
            log.warning("bounding the task cache in %s failed: %s", cache_root(config), err)
    log.info("report: %s", Path(path) / "report" / "index.html")
    return str(path)
