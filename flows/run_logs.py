"""The libraries' logs in the run's logs: used by the flow, by every stage and by each Dask worker process.

Its own module, below :mod:`flows.runners` and :mod:`flows._dask`, so neither imports the other for it.
"""

import logging

__all__ = ["LIBRARY_LOGGERS", "library_logs_to_run"]

LIBRARY_LOGGERS = ("embeddings", "segmentation", "reports")


def library_logs_to_run() -> None:
    """Route the libraries' INFO logs into the current flow/task run's logs (the Prefect UI).

    ``PREFECT_LOGGING_EXTRA_LOGGERS`` (set by the CLI) attaches Prefect's API handler to these loggers but leaves
    their level to the root logger (WARNING), and a worker's or Dask worker's process may lack the variable. This
    attaches the handler where missing (and drops duplicates), and lowers an unset level to
    ``PREFECT_LOGGING_LEVEL`` (INFO). Idempotent; called at the start of every stage, wherever it runs.
    """
    from prefect.logging.handlers import APILogHandler
    from prefect.settings import PREFECT_LOGGING_LEVEL

    level = PREFECT_LOGGING_LEVEL.value()
    task_log = logging.getLogger("prefect.task_runs")
    if not any(isinstance(f, _ThreadTimeoutNoteFilter) for f in task_log.filters):
        task_log.addFilter(_ThreadTimeoutNoteFilter())
    for name in LIBRARY_LOGGERS:
        lib = logging.getLogger(name)
        api = [h for h in lib.handlers if isinstance(h, APILogHandler)]
        if not api:
            api = [APILogHandler()]
            lib.addHandler(api[0])
        if not any(isinstance(f, _OutsideRunsFilter) for f in api[0].filters):
            api[0].addFilter(_OutsideRunsFilter())
        for extra in api[1:]:  # a Dask worker re-runs Prefect's logging set-up, adding a second one: each log twice
            lib.removeHandler(extra)
        if lib.level == logging.NOTSET:
            lib.setLevel(level)


class _ThreadTimeoutNoteFilter(logging.Filter):
    """Drop Prefect's per-task warning that a timeout in a worker thread cannot interrupt a blocking call.

    Every stage on the threads or Dask runner runs in a worker thread, so the note would repeat on every
    task of every run. docs/OPERATIONS.md says it once: there, a stage's time limit takes effect at its
    next Python-level step; the stages that read and write files run in the flow's main thread, where
    the limit also interrupts a blocked read or write.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "running in a worker thread. Timeouts in worker threads" not in record.getMessage()


class _OutsideRunsFilter(logging.Filter):
    """Keep records logged outside any flow or task run away from Prefect's API handler.

    The blocks a stage sends to Dask workers (embedding chunks, user blocks) run in a worker's thread with no run
    context; Prefect's handler would warn on each of their records that it has no flow run id. Their records
    still reach the worker's console, like every other log line of that worker.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.context import FlowRunContext, TaskRunContext

        return bool(getattr(record, "flow_run_id", None) or getattr(record, "task_run_id", None)
                    or TaskRunContext.get() or FlowRunContext.get())  # fmt: skip
