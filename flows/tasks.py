"""The pieces of the flow's tasks that travel to other processes: cache keys, retry rule, log routing, stage runner.

They live in an importable module (not in ``flows/pipeline.py``) because a task is pickled with its function and
options when it runs on a Dask worker, by reference to its module; a deployment's worker loads
``flows/pipeline.py`` as a script (module ``pipeline``), which a Dask worker could not import.
"""

import inspect
import time
from datetime import timedelta
from functools import wraps
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.tasks import exponential_backoff

from flows.code_digest import library_digest, stage_digest
from flows.result_blobs import BlobSerializer, drop_lost_record
from flows.run_logs import library_logs_to_run
from segmentation._errors import SegflowError
from segmentation.cache import RESULT_BLOBS, fingerprint
from segmentation.config import PipelineConfig
from segmentation.data import cache_root

__all__ = ["Stages", "cache_key", "code_digest", "key_part", "on_cluster", "retry_unless_user_error",
           "with_library_logs"]  # fmt: skip

CACHE_EXPIRATION = timedelta(days=30)
IO_RETRIES = 3  # stages that read or write files: 3 retries, about 5, 10 and 20 s apart (with jitter)
NON_RESULT_FIELDS = {
    "output_dir",
    "cache_dir",
    "orchestration",
    "report",
    "output",
    "cache",
}  # change no cached stage's result


def code_digest() -> str:
    """Hash of the library source (segmentation, embeddings): the key part of code that is not a stage function.

    Prefect's TASK_SOURCE policy would hash only the thin task wrappers.
    Stages use :func:`flows.code_digest.stage_digest`, which hashes only the code each stage can run.
    """
    return library_digest()


def key_part(value: Any) -> Any:
    return value.model_dump(mode="json", exclude=NON_RESULT_FIELDS) if isinstance(value, PipelineConfig) else value


def cache_key(stage: str, fn: Any = None, store: Path | None = None):
    """The cache key of ``stage``: its code (:func:`stage_digest` of ``fn``, else the whole library) and inputs.

    ``store``: the result storage folder; a record there under this key whose data file is gone is removed first
    (:func:`flows.result_blobs.drop_lost_record`), so the stage runs instead of failing to load it.
    """

    def key(context: Any, parameters: dict[str, Any]) -> str:
        code = stage_digest(fn) if fn is not None else code_digest()
        name = f"{stage}-{fingerprint(code, *map(key_part, parameters.values()))}"
        if store is not None:
            drop_lost_record(store / name)
        return name

    return key


def retry_unless_user_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry transient failures, never bad input or configuration: those fail the same way again."""
    # _sync: the error itself even where an event loop runs in this thread (else Prefect hands back a coroutine)
    return not isinstance(state.result(raise_on_failure=False, _sync=True), SegflowError)


def with_library_logs(fn):
    """``fn`` that first routes the libraries' logs into the run's logs (in whichever process runs it)."""

    @wraps(fn)
    def stage(*args, **kwargs):
        library_logs_to_run()
        return fn(*args, **kwargs)

    return stage


def on_cluster(fn, rows: int):
    """``fn`` (a stage with a ``partitions`` parameter) that, run as a task on a Dask worker, sends its per-row
    blocks to the whole cluster (:func:`flows._dask.worker_partitions`); anywhere else it runs as it is.

    The partitions enter no cache key (a stage's result is the same wherever its blocks ran).
    """

    signature = inspect.signature(fn)

    @wraps(fn)
    def stage(*args, **kwargs):
        from flows._dask import worker_partitions

        call = signature.bind(*args, **kwargs)  # Prefect passes every parameter, ``partitions=None`` included
        with worker_partitions(rows) as partitions:
            call.arguments["partitions"] = partitions
            return fn(*call.args, **call.kwargs)

    return stage


class Stages:
    """Tasks of one run (cache store, retries, time limits) and their futures, timings and cache hits."""

    def __init__(self, config: PipelineConfig) -> None:
        orch = config.orchestration
        self.store = cache_root(config) / "prefect-results"
        self.timeout = orch.timeout_minutes * 60 if orch.timeout_minutes else None
        self.partition_rows = orch.partition_rows if orch.task_runner == "dask" else None
        self.io_timeout = orch.io_timeout_minutes * 60 if orch.io_timeout_minutes else None
        self.futures: dict[str, PrefectFuture] = {}
        self.upstream: dict[str, list[str]] = {}
        self.started: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.values: dict[str, Any] = {}

    def task(self, fn, name: str, *, cached: bool = True, io: bool = False, partitioned: bool = False):
        """The stage ``fn`` as a Prefect task; ``partitioned``: on Dask, its per-row blocks go to the cluster."""
        opts: dict[str, Any] = {"name": name, "timeout_seconds": self.io_timeout if io else self.timeout,
                                "retry_condition_fn": retry_unless_user_error}  # fmt: skip
        if io:
            opts |= {"retries": IO_RETRIES, "retry_delay_seconds": exponential_backoff(backoff_factor=5),
                     "retry_jitter_factor": 0.5}  # fmt: skip
        if cached:
            opts |= {"cache_key_fn": cache_key(name, fn, self.store), "persist_result": True,
                     "result_storage": self.store, "cache_expiration": CACHE_EXPIRATION,
                     "result_serializer": BlobSerializer(folder=str(self.store / RESULT_BLOBS))}  # fmt: skip
        else:
            opts |= {"cache_policy": NO_CACHE}
        run = on_cluster(fn, self.partition_rows) if partitioned and self.partition_rows else fn
        return task(with_library_logs(run), **opts)

    def call(self, name: str, fn, *args, **opts) -> Any:
        """Run a stage now, in the flow's process; raises its error."""
        t0 = time.perf_counter()
        self.values[name] = self.task(fn, name, **opts)(*args)
        self.started[name], self.finished[name] = t0, time.perf_counter()
        return self.values[name]

    def submit(self, name: str, fn, *args, kwargs: dict[str, Any] | None = None, **opts) -> PrefectFuture:
        """Start a stage on the task runner once the stages whose futures are among its arguments are done.

        ``kwargs``: the stage function's keyword arguments (``opts`` are the task's options).
        """
        kwargs = kwargs or {}
        names = {id(f): n for n, f in self.futures.items()}
        self.upstream[name] = [names[id(a)] for a in (*args, *kwargs.values()) if isinstance(a, PrefectFuture)]
        self.started[name] = time.perf_counter()
        future = self.task(fn, name, **opts).submit(*args, **kwargs)
        future.add_done_callback(lambda _, n=name: self.finished.setdefault(n, time.perf_counter()))
        self.futures[name] = future
        return future

    def result(self, name: str) -> Any:
        """A stage's value; a failed upstream stage raises its own error first, not a downstream 'not ready'."""
        if name not in self.values:
            for up in self.upstream.get(name, []):
                self.result(up)
            self.values[name] = self.futures[name].result()
        return self.values[name]

    def wait_all(self) -> dict[str, Any]:
        for name in self.futures:
            self.result(name)
        return self.values

    def timings(self) -> dict[str, float]:
        """Seconds per stage from when its inputs were ready to when it finished (0 for a cache hit or so)."""
        out = {}
        for name, end in self.finished.items():
            ready = max([self.started[name], *(self.finished.get(u, 0.0) for u in self.upstream.get(name, []))])
            out[name] = round(max(end - ready, 0.0), 3)
        return out

    def cached(self) -> list[str]:
        return [n for n, f in self.futures.items() if f.state.is_completed() and f.state.name == "Cached"]
