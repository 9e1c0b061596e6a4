"""The ``segflow`` command: run the pipeline, serve it on a schedule, inspect runs.

    segflow run [--config FILE] [--set KEY=VALUE ...] [--ratings F --items F --users F ...]
    segflow serve [--config FILE] [--cron "0 2 * * *"] [--timezone UTC] [--name NAME]
                  [--http-host 127.0.0.1 --http-port 4280 | --no-http]
    segflow alerts --webhook URL [--deployment NAME ...] [--no-retry-crashed] [--dry-run]
    segflow config [--config FILE] [--set ...] [--json] print the effective configuration as TOML (or JSON)
    segflow show [RUN]                                print a run's headline figures
    segflow clean [--output DIR] [--dry-run]          remove unfinished run folders left by killed runs

Bad input or configuration ends with a one-paragraph message and exit status 2
(``--debug`` adds the traceback); the last published run is never touched.
Prefect still logs the error and, to its API (the UI), the traceback; on the
console the traceback of such an error is left out unless ``--debug`` is given.
"""

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

EXIT_USER_ERROR = 2


def _environment() -> None:
    """Offline-friendly defaults, set before Prefect or transformers are imported."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "embeddings,segmentation,reports")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _data_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    if args.ratings:
        out += ["data.source=files", f"data.ratings={_q(args.ratings)}"]
    if args.items:
        out.append(f"data.items={_q(args.items)}")
    if args.users:
        out.append(f"data.users={_q(args.users)}")
    mapping = {"user_col": "user", "item_col": "item", "rating_col": "rating", "time_col": "timestamp",
               "item_id_col": "item_id", "title_col": "title", "category_col": "categories",
               "category_sep": "category_separator", "user_id_col": "user_id"}  # fmt: skip
    for arg, key in mapping.items():
        value = getattr(args, arg)
        if value is not None:
            out.append(f"data.columns.{key}={_q(value)}" if value != "" else f"data.columns.{key}=''")
    if args.text_cols:
        out.append("data.columns.text=[" + ",".join(_q(c) for c in args.text_cols.split(",")) + "]")
    if args.output:
        out.append(f"output_dir={_q(args.output)}")
    if args.seed is not None:
        out.append(f"seed={args.seed}")
    return out


def _q(value: str) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _load(args: argparse.Namespace):
    from segmentation.config import load_config

    overrides = _data_overrides(args) + list(args.set or [])
    config = load_config(args.config, overrides)
    if getattr(args, "rating_col", None) == "" and config.data.columns.rating is not None:
        config = config.model_copy(update={"data": config.data.model_copy(update={
            "columns": config.data.columns.model_copy(update={"rating": None})})})  # fmt: skip
    args.output_dir = config.output_dir
    args.data_config = config.data
    return config


def _data_context(err: Exception, args: argparse.Namespace) -> str:
    """' (data: ...)' for a data error raised past loading (e.g. too few users), whose message names no file."""
    from segmentation._errors import DataError

    data = getattr(args, "data_config", None)
    if not isinstance(err, DataError) or data is None:
        return ""
    if data.source != "files":
        return f" (data: {data.source})"
    files = [(role, p) for role, p in (("ratings", data.ratings), ("items", data.items), ("users", data.users)) if p]
    if any(str(p) in str(err) for _, p in files):
        return ""
    return " (data: " + ", ".join(f"{role} file {p}" for role, p in files) + ")"


class _RunFormatter(logging.Formatter):
    """The CLI's console format, naming the Prefect task or flow run a record comes from ("[load-c99] ...").

    Prefect keeps a root handler that is already there (this one) instead of installing its own console format.
    """

    def format(self, record: logging.LogRecord) -> str:
        name = getattr(record, "task_run_name", None) or getattr(record, "flow_run_name", None)
        record.run = f"[{name}] " if name else ""
        return super().format(record)


class _UserErrorTracebackFilter(logging.Filter):
    """Keep the one-line log of a :class:`SegflowError` but drop its traceback: the CLI explains it itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        from segmentation._errors import SegflowError

        if record.exc_info and isinstance(record.exc_info[1], SegflowError):
            record.exc_info = None
            record.exc_text = None
        return True


def _quiet_user_error_tracebacks(args: argparse.Namespace) -> None:
    """Filter the console handlers Prefect installed (on the root logger) unless ``--debug``."""
    if args.debug:
        return
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _UserErrorTracebackFilter) for f in handler.filters):
            handler.addFilter(_UserErrorTracebackFilter())


def cmd_run(args: argparse.Namespace) -> int:
    from flows.artifacts import summary_markdown
    from flows.pipeline import segflow_pipeline

    _quiet_user_error_tracebacks(args)
    config = _load(args)
    path = segflow_pipeline(config)
    print(summary_markdown(Path(path)))
    print(f"\nReport: {Path(path) / 'report' / 'index.html'}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from segmentation.config import config_reference_markdown, dump_config_toml

    if args.reference:
        print(config_reference_markdown())
    elif args.json:  # e.g. the parameters of a custom deployment run: {"config": <this>}
        print(_load(args).model_dump_json())
    else:
        print(dump_config_toml(_load(args)))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from flows.artifacts import summary_markdown

    print(summary_markdown(Path(args.run)))
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from segmentation.config import load_config
    from segmentation.runs import PARTIAL_PREFIX, clean_output_dir

    output = Path(args.output) if args.output else load_config(args.config, list(args.set or [])).output_dir
    removed = clean_output_dir(output, dry_run=args.dry_run)
    for p in removed:
        print(f"{'would remove' if args.dry_run else 'removed'} {p}")
    kept = [p for p in output.glob(PARTIAL_PREFIX + "*") if p not in removed] if output.is_dir() else []
    for p in kept:
        print(f"kept {p} (a run that may still be writing it)")
    if not removed:
        print(f"nothing to clean in {output}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from flows.serve import serve

    _quiet_user_error_tracebacks(args)
    config = _load(args)
    try:
        serve(config, name=args.name, cron=args.cron, timezone=args.timezone, limit=args.limit,
              http_host=None if args.no_http else args.http_host, http_port=args.http_port)  # fmt: skip
    except KeyboardInterrupt:
        print(f"segflow serve: stopped; the schedule of 'segflow/{args.name}' is paused until serve starts again",
              file=sys.stderr)  # fmt: skip
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    from flows.alerts import install_alerts

    plan = install_alerts(args.webhook, deployments=args.deployment, retry_crashed=not args.no_retry_crashed,
                          dry_run=args.dry_run)  # fmt: skip
    for line in plan.lines:
        print(line)
    return 0


def _add_serve_http_args(p: argparse.ArgumentParser) -> None:
    from flows.serve import DEFAULT_HTTP_PORT

    g = p.add_argument_group("reports over HTTP (the report link artifacts point here)")
    g.add_argument("--http-host", default="127.0.0.1",
                   help="address to serve output_dir on, read-only (default 127.0.0.1; 0.0.0.0 for every interface, "
                        "only behind your own access control)")  # fmt: skip
    g.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT,
                   help=f"its port (default {DEFAULT_HTTP_PORT}; 0 picks a free one)")  # fmt: skip
    g.add_argument("--no-http", action="store_true", help="do not serve the runs folder")


def _add_alerts_parser(sub: Any) -> None:
    p = sub.add_parser("alerts", help="notify a webhook of failed, crashed or late runs; retry a crashed run once",
                       description="Create or update (never duplicate) a webhook notification block and Prefect "
                                   "automations on the server at PREFECT_API_URL (docs/OPERATIONS.md, alerts).")  # fmt: skip
    p.add_argument("--webhook", required=True, help="URL that receives a JSON POST {subject, body} per event")
    p.add_argument("--deployment", action="append", metavar="NAME",
                   help="only runs of this deployment of the segflow flow (repeatable; default: all of them)")  # fmt: skip
    p.add_argument("--no-retry-crashed", action="store_true",
                   help="do not retry crashed runs (removes the retry automation if there is one)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="only print what would be created, updated or deleted")
    p.set_defaults(func=cmd_alerts)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML configuration file (see docs/CONFIG.md)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. cluster.min_cluster_size=20")
    g = p.add_argument_group("your own data (sets data.source=files)")
    g.add_argument("--ratings", help="interactions file: CSV, TSV, Parquet or RecBole .inter")
    g.add_argument("--items", help="item catalogue file")
    g.add_argument("--users", help="optional user attributes file")
    g.add_argument("--user-col", help="ratings: user id column (default user_id)")
    g.add_argument("--item-col", help="ratings: item id column (default item_id)")
    g.add_argument("--rating-col", help="ratings: rating column (default rating; '' for implicit feedback)")
    g.add_argument("--time-col", help="ratings: timestamp column (default timestamp)")
    g.add_argument("--item-id-col", help="items: id column (default item_id)")
    g.add_argument("--title-col", help="items: title column (default title)")
    g.add_argument("--category-col", help="items: category/genre/tag column (default categories)")
    g.add_argument("--category-sep", help="items: separator between categories (default |)")
    g.add_argument("--text-cols", help="items: comma-separated free-text columns")
    g.add_argument("--user-id-col", help="users: id column (default user_id)")
    p.add_argument("--output", help="folder for run folders (default runs)")
    p.add_argument("--seed", type=int, help="the run's seed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segflow", description="LLM-based user segmentation for recommender systems.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the whole pipeline once and publish a run folder with its report")
    _add_config_args(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("config", help="print the effective configuration as TOML")
    _add_config_args(p)
    p.add_argument("--reference", action="store_true", help="print the reference of every field (docs/CONFIG.md)")
    p.add_argument("--json", action="store_true", help="print it as JSON (a deployment run's config parameter)")
    p.set_defaults(func=cmd_config)
    p = sub.add_parser("show", help="print a run's headline figures")
    p.add_argument("run", nargs="?", default="runs/latest")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("clean", help="remove unfinished run folders (.partial-*) left by killed or crashed runs")
    p.add_argument("--output", help="folder of the run folders (default: output_dir of the configuration)")
    p.add_argument("--config", type=Path, help="TOML configuration file whose output_dir to clean")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. output_dir=runs")
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    p.set_defaults(func=cmd_clean)
    p = sub.add_parser("serve", help="serve the flow as a Prefect deployment with a cron schedule")
    _add_config_args(p)
    p.add_argument("--cron", default="0 2 * * *", help="cron schedule (default nightly at 02:00; '' for none)")
    p.add_argument("--timezone", default="UTC", help="IANA time zone of the schedule (default UTC)")
    p.add_argument("--name", default="segflow-nightly", help="deployment name")
    p.add_argument("--limit", type=int, default=1,
                   help="runs of the deployment at once, enforced by the Prefect server (default 1)")  # fmt: skip
    _add_serve_http_args(p)
    p.set_defaults(func=cmd_serve)
    _add_alerts_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    _environment()
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_RunFormatter("%(asctime)s %(levelname)s %(name)s: %(run)s%(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    from segmentation._errors import SegflowError

    try:
        return args.func(args)
    except SegflowError as err:
        if args.debug:
            traceback.print_exc()
        print(f"segflow: error: {err}{_data_context(err, args)}", file=sys.stderr)
        if args.command in ("run", "serve"):
            latest = Path(getattr(args, "output_dir", None) or args.output or "runs") / "latest"
            print(f"Nothing was published; earlier runs and {latest} are unchanged.", file=sys.stderr)
        if not args.debug:
            print("Use --debug for the traceback.", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("segflow: interrupted; nothing was published", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
