"""Dask-only helpers, imported only when ``orchestration.task_runner = 'dask'`` (distributed is an optional extra)."""

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from distributed import Client, get_task_stream, get_worker, worker_client
from distributed.diagnostics.plugin import WorkerPlugin

from embeddings.partitions import Partitions
from flows.run_logs import library_logs_to_run


class StageLoggingPlugin(WorkerPlugin):
    """Set up each Dask worker process like the flow's own before it runs a stage: the libraries' logs go to the
    run logs, and Prefect's per-task note on time limits in worker threads is dropped (docs/OPERATIONS.md)."""

    name = "segflow-stage-logging"

    def setup(self, worker) -> None:  # noqa: ANN001 - distributed's signature
        library_logs_to_run()


def dask_partitions(client: Client, rows: int) -> Partitions:
    """Partitions whose blocks run as Dask tasks on ``client``'s cluster, wherever its scheduler puts them.

    ``pure=False``: every block is a new task (no hashing of its rows for a key). The read-only inputs every block
    needs (item vectors, a fitted model or ranker) are scattered once to every worker (``broadcast=True``), so each
    block's task carries only its own rows.
    """

    def share(values: list[Any]) -> list[Any]:
        return client.scatter(values, broadcast=True, hash=False)

    return Partitions(executor=client.get_executor(pure=False), rows=rows, share=share)


@contextmanager
def worker_partitions(rows: int) -> Iterator[Partitions | None]:
    """For a stage running as a task on a Dask worker: partitions on the whole cluster; elsewhere None (in-process).

    The stage's thread secedes from the worker's pool while it waits for its blocks (``distributed.worker_client``),
    so that worker runs blocks too, and stages waiting at once on one cluster never hold every thread.
    """
    try:
        get_worker()
    except ValueError:  # not in a Dask task: the stage's blocks run here
        yield None
        return
    with worker_client() as client, get_task_stream(client) as stream:
        yield dask_partitions(client, rows)
    _log_spread(stream.data)


BLOCK_FUNCTIONS = ("encode_chunk", "_weighted_mean", "_assign_block", "_recommend_block")
"""The library's partition functions (a block's Dask task key starts with its function's name)."""


def _log_spread(tasks: list[dict]) -> None:
    """Log, in the stage's run logs, how many blocks of each kind ran on which worker."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        log: Any = get_run_logger()
    except MissingContextError:  # a stage called outside a Prefect task (tests)
        log = logging.getLogger(__name__)
    spread: dict[str, Counter] = {}
    for t in tasks:
        key = str(t.get("key", ""))
        kind = next((f for f in BLOCK_FUNCTIONS if key.startswith(f"{f}-")), None)  # "<function>-<uuid4>"
        if kind is not None:
            spread.setdefault(kind, Counter())[t.get("worker", "?")] += 1
    for kind, workers in spread.items():
        log.info("%d blocks of %s ran on %d Dask workers (%s)", sum(workers.values()), kind, len(workers),
                              ", ".join(f"{w}: {n}" for w, n in sorted(workers.items())))  # fmt: skip
