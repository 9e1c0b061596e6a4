"""Task runners for the segflow flow (``orchestration`` section of the configuration).

* ``threads`` (default): Prefect's ThreadPoolTaskRunner in the flow's process.
* ``dask``: prefect-dask's DaskTaskRunner, on a temporary ``LocalCluster`` bound to
  127.0.0.1 or on an existing scheduler (``orchestration.scheduler_address``).
  prefect-dask is an optional extra (``pip install 'segflow[dask]'``), imported only here.
"""

import logging
from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from segmentation._errors import ConfigError
from segmentation.config import OrchestrationConfig

__all__ = [
    "DEFAULT_THREADS",
    "dask_without_server",
    "make_task_runner",
    "needs_own_runner",
    "prepare_workers",
]

DEFAULT_THREADS = 2  # the flow's own ThreadPoolTaskRunner; other settings run the stages in a subflow

logger = logging.getLogger(__name__)


def needs_own_runner(orch: OrchestrationConfig) -> bool:
    """True when the stages need a task runner other than the flow's built-in ``threads`` x DEFAULT_THREADS."""
    return orch.task_runner != "threads" or orch.max_workers != DEFAULT_THREADS


def make_task_runner(orch: OrchestrationConfig) -> Any:
    """The Prefect task runner that ``orch`` asks for.

    Raises:
        ConfigError: ``dask`` was asked for but prefect-dask is not installed.
    """
    if orch.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=orch.max_workers)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError(
            "orchestration.task_runner = 'dask' needs prefect-dask, which is not installed: "
            "pip install 'segflow[dask]' (or pip install prefect-dask), or set orchestration.task_runner = 'threads'"
        ) from None
    if orch.scheduler_address:
        return DaskTaskRunner(address=orch.scheduler_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": orch.max_workers, "threads_per_worker": 1, "processes": True,
                        "host": "127.0.0.1", "dashboard_address": ":0"},  # loopback only, a free port
    )  # fmt: skip


def prepare_workers() -> None:
    """On a Dask task runner, set up every worker process (now and later ones) for the stages' logging."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        return
    if ctx is not None and isinstance(ctx.task_runner, DaskTaskRunner):
        from flows._dask import StageLoggingPlugin

        ctx.task_runner.client.register_plugin(StageLoggingPlugin())


def dask_without_server() -> bool:
    """True when Dask would run against Prefect's ephemeral mode (each worker process starts its own server)."""
    from prefect.settings import PREFECT_API_URL

    return not PREFECT_API_URL.value()
