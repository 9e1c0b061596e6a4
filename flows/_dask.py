"""Dask-only helpers, imported only when ``orchestration.task_runner = 'dask'`` (distributed is an optional extra)."""

from distributed.diagnostics.plugin import WorkerPlugin

from flows.run_logs import library_logs_to_run


class StageLoggingPlugin(WorkerPlugin):
    """Set up each Dask worker process like the flow's own before it runs a stage: the libraries' logs go to the
    run logs, and Prefect's per-task note on time limits in worker threads is dropped (docs/OPERATIONS.md)."""

    name = "segflow-stage-logging"

    def setup(self, worker) -> None:  # noqa: ANN001 - distributed's signature
        library_logs_to_run()
