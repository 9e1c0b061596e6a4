"""``segflow serve``: a long-running process that holds the segflow deployment and executes its runs.

It registers the deployment (cron schedule, default parameters = the effective
configuration with absolute paths) with the Prefect server at ``PREFECT_API_URL``
and polls it for scheduled runs and runs started from the UI or the API. Each
run executes in a child process. Ctrl-C and SIGTERM both stop it the same clean
way: the schedule is paused until serve starts again, which resumes it (runs
that fell due meanwhile start at once).
"""

import asyncio
import signal
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from segmentation._errors import ConfigError
from segmentation.config import PipelineConfig

__all__ = ["deployment_parameters", "serve"]


def _absolute(path: Path | None) -> Path | None:
    return None if path is None else Path(path).expanduser().resolve()


def absolute_paths(config: PipelineConfig) -> PipelineConfig:
    """``config`` with output_dir, cache_dir and data files made absolute (runs may start in another folder)."""
    data = config.data.model_copy(update={k: _absolute(getattr(config.data, k)) for k in ("ratings", "items", "users")})
    return config.model_copy(update={"output_dir": _absolute(config.output_dir),
                                     "cache_dir": _absolute(config.cache_dir), "data": data})  # fmt: skip


def deployment_parameters(config: PipelineConfig) -> dict[str, Any]:
    """The deployment's default parameters: the whole configuration, as the UI's run form shows it."""
    return {"config": absolute_paths(config).model_dump(mode="json")}


def _schedule(cron: str | None, timezone: str):
    from prefect.schedules import Cron

    if not cron:
        return None
    try:
        ZoneInfo(timezone)
        return Cron(cron, timezone=timezone)
    except (ValueError, ZoneInfoNotFoundError) as err:
        raise ConfigError(f"invalid schedule --cron {cron!r} --timezone {timezone!r}: {err}. A cron string has "
                          "five fields (minute hour day month weekday), e.g. '0 2 * * *' for 02:00 every night; "
                          "the time zone is an IANA name such as UTC or Europe/Berlin") from None  # fmt: skip


def _stop_like_ctrl_c(*_: Any) -> None:
    """SIGTERM handler: stop exactly as Ctrl-C does (Prefect's own handler leaves the schedule running)."""
    signal.raise_signal(signal.SIGINT)


def serve(config: PipelineConfig, *, name: str = "segflow-nightly", cron: str | None = "0 2 * * *",
          timezone: str = "UTC", limit: int = 1) -> UUID:  # fmt: skip
    """Register the deployment ``segflow/<name>`` and run its flow runs until stopped.

    Args:
        config: the deployment's default parameters (the UI's run form starts from them).
        name: deployment name.
        cron: cron schedule, or None/empty for runs started only from the UI or the API.
        timezone: IANA time zone of the cron schedule.
        limit: flow runs executed at once by this process (1: a night's run never overlaps the next).

    Raises:
        ConfigError: no Prefect server is configured, or the schedule is invalid.
    """
    from prefect.runner import Runner
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    from flows.pipeline import segflow_pipeline

    if not PREFECT_API_URL.value():
        raise ConfigError("segflow serve needs a running Prefect server, and PREFECT_API_URL is not set. Start one "
                          "with `prefect server start --host 127.0.0.1` and `export PREFECT_API_URL="
                          "http://127.0.0.1:4200/api` (see docs/OPERATIONS.md)")  # fmt: skip
    schedule = _schedule(cron, timezone)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # `segflow serve &` in a script starts with SIGINT ignored
    runner = Runner(name=f"segflow-serve-{name}", pause_on_shutdown=True, limit=limit)
    runner.handle_sigterm = _stop_like_ctrl_c  # Runner.start installs self.handle_sigterm for SIGTERM
    deployment_id = runner.add_flow(
        segflow_pipeline, name=name, schedule=schedule, parameters=deployment_parameters(config), tags=["segflow"],
        enforce_parameter_schema=True,
    )  # fmt: skip
    when = f"cron '{cron}' ({timezone})" if schedule else "no schedule (start runs from the UI or the API)"
    ui = PREFECT_UI_URL.value()
    print(f"Serving deployment 'segflow/{name}' ({deployment_id}), {when}, at most {limit} run(s) at a time.\n"
          f"Run it now:  prefect deployment run 'segflow/{name}'\n"
          + (f"UI:          {ui}/deployments/deployment/{deployment_id}\n" if ui else "")
          + "Stop with Ctrl-C or SIGTERM: the schedule is paused until serve starts again.", flush=True)  # fmt: skip
    asyncio.run(runner.start())
    return deployment_id
