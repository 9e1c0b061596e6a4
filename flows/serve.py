"""``segflow serve``: a long-running process that holds the segflow deployment and executes its runs.

It registers the deployment (cron schedule, default parameters = the effective
configuration with absolute paths) with the Prefect server at ``PREFECT_API_URL``
and polls it for scheduled runs and runs started from the UI or the API. Each
run executes in a child process. Ctrl-C and SIGTERM both stop it the same clean
way: the schedule is paused until serve starts again, which resumes it (runs
that fell due meanwhile start at once).

It also serves the runs folder (``output_dir``) read-only over HTTP, on 127.0.0.1 by default, so that the
report link artifact is an ``http://`` link the Prefect UI can open (:func:`serve_runs_folder`).
"""

import asyncio
import logging
import os
import signal
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from segmentation._errors import ConfigError
from segmentation.config import PipelineConfig

__all__ = ["RunsFolderServer", "deployment_parameters", "serve", "serve_runs_folder"]

logger = logging.getLogger("flows.serve")

DEFAULT_HTTP_PORT = 4280  # next to the Prefect server's 4200


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


class _RunsFolderHandler(SimpleHTTPRequestHandler):
    """GET and HEAD of files under the served folder, nothing else.

    No directory listings, no hidden entries (``.partial-*`` folders of unfinished runs), and no path that leads
    outside the folder: ``..`` segments are dropped by the standard handler, and a path whose real location
    (symlinks resolved; ``latest`` points inside) is not under the folder is refused with 403. Writes (POST,
    PUT, ...) are answered 501 by the standard handler.
    """

    server_version = "segflow-runs"

    def send_head(self):  # noqa: ANN201 - the standard handler's signature
        root = Path(self.directory).resolve()
        target = Path(self.translate_path(self.path))  # under self.directory: it drops '..' and '.' segments
        if any(p.startswith(".") for p in target.relative_to(self.directory).parts):
            self.send_error(404, "File not found")
            return None
        real = target.resolve()
        if not real.is_relative_to(root):
            self.send_error(403, "Outside the served runs folder")
            return None
        if real.is_dir() and not (real / "index.html").is_file():
            self.send_error(404, "No directory listings")
            return None
        return super().send_head()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the standard handler's signature
        logger.debug("%s %s", self.address_string(), format % args)


class RunsFolderServer:
    """A read-only HTTP server of a runs folder in a daemon thread; :attr:`url` is its base URL."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        root = Path(root).resolve()
        handler = lambda *a, **kw: _RunsFolderHandler(*a, directory=str(root), **kw)  # noqa: E731
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as err:
            raise ConfigError(f"segflow serve cannot serve the runs folder over HTTP on {host}:{port}: "
                              f"{err.strerror or err}. Choose another --http-port (0 picks a free one), another "
                              "--http-host, or --no-http") from None  # fmt: skip
        self.httpd.daemon_threads = True
        self.root = root
        shown = socket.getfqdn() if host in ("", "0.0.0.0", "::") else host
        shown = f"[{shown}]" if ":" in shown else shown
        self.url = f"http://{shown}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="segflow-runs-http", daemon=True)

    def start(self) -> "RunsFolderServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "RunsFolderServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_runs_folder(root: Path, host: str = "127.0.0.1", port: int = 0) -> RunsFolderServer:
    """Start serving ``root`` read-only over HTTP in a thread (stop it with ``.stop()``).

    Raises:
        ConfigError: the address cannot be bound (the port is taken, or the host is not this machine's).
    """
    return RunsFolderServer(root, host, port).start()


def _stop_like_ctrl_c(*_: Any) -> None:
    """SIGTERM handler: stop exactly as Ctrl-C does (Prefect's own handler leaves the schedule running)."""
    signal.raise_signal(signal.SIGINT)


def serve(config: PipelineConfig, *, name: str = "segflow-nightly", cron: str | None = "0 2 * * *",
          timezone: str = "UTC", limit: int = 1, http_host: str | None = "127.0.0.1",
          http_port: int = DEFAULT_HTTP_PORT) -> UUID:  # fmt: skip
    """Register the deployment ``segflow/<name>`` and run its flow runs until stopped.

    Args:
        config: the deployment's default parameters (the UI's run form starts from them).
        name: deployment name.
        cron: cron schedule, or None/empty for runs started only from the UI or the API.
        timezone: IANA time zone of the cron schedule.
        limit: flow runs of the deployment at once, enforced by the Prefect server (the deployment's
            concurrency limit: further runs wait in AwaitingConcurrencySlot, whichever process runs them).
        http_host: address to serve ``config.output_dir`` on over HTTP (read-only); None: no HTTP server.
        http_port: its port (0: a free one).

    Raises:
        ConfigError: no Prefect server is configured, the schedule is invalid, or the HTTP address is taken.
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.runner import Runner
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    from flows.artifacts import BASE_DIR_ENV, BASE_URL_ENV
    from flows.pipeline import segflow_pipeline

    if not PREFECT_API_URL.value():
        raise ConfigError("segflow serve needs a running Prefect server, and PREFECT_API_URL is not set. Start one "
                          "with `prefect server start --host 127.0.0.1` and `export PREFECT_API_URL="
                          "http://127.0.0.1:4200/api` (see docs/OPERATIONS.md)")  # fmt: skip
    schedule = _schedule(cron, timezone)
    params = deployment_parameters(config)
    runs_dir = Path(params["config"]["output_dir"])
    http = RunsFolderServer(runs_dir, http_host, http_port) if http_host is not None else None
    signal.signal(signal.SIGINT, signal.default_int_handler)  # `segflow serve &` in a script starts with SIGINT ignored

    # No limit of the process's own: the deployment's concurrency limit on the server queues further runs as
    # AwaitingConcurrencySlot. A local limit would leave them plain Scheduled, and the server marks those Late.
    class StopsLikeCtrlC(Runner):
        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:  # Runner.start installs it for SIGTERM
            _stop_like_ctrl_c()

    runner = StopsLikeCtrlC(name=f"segflow-serve-{name}", pause_on_shutdown=True, limit=None)
    # Runner.add_flow is @async_dispatch'ed, typed "UUID | Coroutine"; called here from sync code it returns the UUID
    deployment_id = cast(UUID, runner.add_flow(
        segflow_pipeline, name=name, schedule=schedule, parameters=params, tags=["segflow"],
        enforce_parameter_schema=True, concurrency_limit=ConcurrencyLimitConfig(limit=limit),
    ))  # fmt: skip
    when = f"cron '{cron}' ({timezone})" if schedule else "no schedule (start runs from the UI or the API)"
    ui = PREFECT_UI_URL.value()
    reports = "Reports:     not served over HTTP (--no-http)\n"
    if http is not None:
        http.start()
        if not os.environ.get(BASE_URL_ENV):  # the operator's own public URL wins; runs inherit this environment
            os.environ[BASE_URL_ENV], os.environ[BASE_DIR_ENV] = http.url, str(runs_dir)
        reports = f"Reports:     {http.url}/latest/report/index.html (the runs folder {runs_dir}, read-only)\n"
    print(f"Serving deployment 'segflow/{name}' ({deployment_id}), {when}, at most {limit} run(s) at a time.\n"
          f"Run it now:  prefect deployment run 'segflow/{name}'\n"
          + (f"UI:          {ui}/deployments/deployment/{deployment_id}\n" if ui else "") + reports
          + "Stop with Ctrl-C or SIGTERM: the schedule is paused until serve starts again.", flush=True)  # fmt: skip
    try:
        asyncio.run(runner.start())
    finally:
        if http is not None:
            http.stop()
    return deployment_id
