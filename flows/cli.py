"""The ``segflow`` command: run the pipeline, serve it on a schedule, inspect runs.

    segflow run [--config FILE] [--set KEY=VALUE ...] [--ratings F --items F --users F ...]
    segflow serve [--config FILE] [--cron "0 2 * * *"] [--timezone UTC] [--name NAME]
                  [--http-host 127.0.0.1 --http-port 4280 | --no-http]
    segflow alerts --webhook URL [--deployment NAME ...] [--no-retry-crashed] [--dry-run]
    segflow config [--config FILE] [--set ...] [--json] print the effective configuration as TOML (or JSON)
    segflow show [RUN]                                print a run's headline figures
    segflow report [RUN] [--out DIR]                  render a run's HTML report again from its folder
    segflow assign [RUN] --ratings F [--out F]        place users from an interactions file in a run's segments
    segflow clean [--output DIR] [--dry-run]          remove unfinished run folders left by killed runs
    segflow clean --cache [--max-size SIZE] [--older-than DAYS] [--embeddings] [--dry-run]   bound the task cache
    segflow prune [--output DIR] [--keep-last N] [--dry-run]   remove the oldest complete runs beyond N

Bad input or configuration ends with a one-paragraph message and exit status 2
(``--debug`` adds the traceback); the last published run is never touched. ``run`` and
``serve`` check the configuration and the data before they import Prefect, so such an
error comes in about a second (see :func:`_check_before_flow`).
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
EXIT_BUG = 1


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
    if args.tags:
        out.append(f"data.tags={_q(args.tags)}")
    mapping = {"user_col": "user", "item_col": "item", "rating_col": "rating", "time_col": "timestamp",
               "item_id_col": "item_id", "title_col": "title", "category_col": "categories",
               "category_sep": "category_separator", "user_id_col": "user_id", "weight_col": "weight"}  # fmt: skip
    for arg, key in mapping.items():
        value = getattr(args, arg)
        if value is not None:
            out.append(f"data.columns.{key}={_q(value)}" if value != "" else f"data.columns.{key}=''")
    if args.text_cols:
        out.append("data.columns.text=[" + ",".join(_q(c) for c in args.text_cols.split(",")) + "]")
    if args.encoding:
        out.append(f"data.encoding={_q(args.encoding)}")
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
    args.config_model = config
    return config


def _resume_hint(args: argparse.Namespace) -> str:
    """Where the stages that finished before a failure are kept, so that a rerun resumes from them."""
    config = getattr(args, "config_model", None)
    if config is None:
        return "Stages that finished are kept in the task cache; a rerun resumes from them."
    from segmentation.data import cache_root

    return (f"The stages that finished are kept in {cache_root(config) / 'prefect-results'}; a rerun with the same "
            "data and configuration resumes from them.")  # fmt: skip


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


def _check_before_flow(config, *, keep: bool) -> None:
    """Fail fast: check the output folder, the encoder model and the data (load + validate + the checks that need
    no fitting) before Prefect is imported or started, so bad input is reported in seconds, not after 20-40 s.

    ``keep``: hand the loaded data to the flow's load stage (same process; reused only while the files are
    unchanged), so it is read once. Nothing here may import Prefect, torch or sentence-transformers.
    """
    import time

    from segmentation.preflight import check_before_run

    t0 = time.perf_counter()
    dataset = check_before_run(config, keep=keep)
    logging.getLogger("segflow").info("checked the configuration and the data (%d interactions, %d users, %d items) "
                                      "in %.1f s", dataset.interactions.height, dataset.n_users, dataset.n_items,
                                      time.perf_counter() - t0)  # fmt: skip


def cmd_run(args: argparse.Namespace) -> int:
    from segmentation.preflight import forget_checked

    config = _load(args)
    _check_before_flow(config, keep=True)
    try:
        from flows.artifacts import summary_markdown
        from flows.pipeline import segflow_pipeline

        _quiet_user_error_tracebacks(args)
        path = segflow_pipeline(config)
    finally:
        forget_checked()  # the flow took it, or never started: do not hold the data any longer
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


def cmd_report(args: argparse.Namespace) -> int:
    """Render a complete run's report again from the run folder alone (into its report/ or --out)."""
    from reports import render_report
    from segmentation.run_folder import load_run_folder

    data = load_run_folder(Path(args.run))
    out = Path(args.out) if args.out else Path(args.run).resolve() / "report"
    print(f"Report: {render_report(data, out)}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from flows.artifacts import summary_markdown

    print(summary_markdown(Path(args.run)))
    return 0


def cmd_assign(args: argparse.Namespace) -> int:
    """Place users from an interactions file in a run's segments (:meth:`segmentation.runs.Run.place_users`)."""
    import polars as pl

    from segmentation._errors import ConfigError, DataError
    from segmentation._polars import to_float
    from segmentation.config import ColumnMapping, load_config
    from segmentation.data import load_interactions
    from segmentation.runs import load_run

    if args.neighbours < 1:
        raise ConfigError(f"segflow assign --neighbours {args.neighbours}: at least 1 of the run's users must vote")
    run = load_run(Path(args.run))
    try:  # the run's own column names, encoding and quoting are the defaults
        data = load_config(run.path / "config.toml").data
    except (ConfigError, OSError) as err:
        raise DataError(f"{run.path / 'config.toml'} cannot be read ({err}); segflow assign takes the run's column "
                        "names and its kind of feedback from it") from err  # fmt: skip
    base = data.columns
    given = {"user": args.user_col, "item": args.item_col, "rating": args.rating_col, "timestamp": args.time_col,
             "weight": args.weight_col}  # fmt: skip
    # when users chose does not place them: no timestamp column is read unless one is named
    fields = {**base.model_dump(), "timestamp": None, **{k: (v or None) for k, v in given.items() if v is not None}}
    try:
        columns = ColumnMapping.model_validate(fields)
    except ValueError as err:
        raise ConfigError(f"segflow assign: the column flags do not make a column mapping: {err}") from err
    if (base.rating is None) != (columns.rating is None):
        run_kind, file_kind = (("ratings", "implicit feedback (no rating column)") if base.rating is not None
                               else ("implicit feedback", f"ratings (column {columns.rating!r})"))  # fmt: skip
        raise ConfigError(f"segflow assign: the run was fitted on {run_kind}, the flags read {file_kind}; users are "
                          "placed from the same kind of feedback (--rating-col, --weight-col)")  # fmt: skip
    interactions = load_interactions(Path(args.ratings), columns=columns, encoding=args.encoding or data.encoding,
                                     quote_char=data.quote_char)  # fmt: skip
    duplicates = "sum" if columns.rating is None and columns.weight else "keep-latest"  # as the run's loader
    placed = run.place_users(interactions, k=args.neighbours, source=f"ratings file {args.ratings}",
                             duplicates=duplicates)  # fmt: skip
    out = Path(args.out)
    partial = out.with_name(f".{out.name}.partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        (placed.write_parquet if out.suffix == ".parquet" else placed.write_csv)(partial)
        partial.replace(out)  # whole or absent
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise DataError(f"segflow assign --out {out}: cannot write it ({err}); give a writable file path") from err
    none = placed.filter(pl.col("nearest_segment") < 0).height
    outliers = placed.filter((pl.col("segment_id") < 0) & (pl.col("nearest_segment") >= 0)).height
    median = to_float(placed.filter(pl.col("segment_id") >= 0)["confidence"].median(), default=0.0)
    print(f"Placed {placed.height - none - outliers} of {placed.height} users in the segments of {run.path} (median "
          f"confidence {median:.2f}); outliers, far from their nearest segment (given): {outliers}; with no item the "
          f"run knows: {none}. Wrote {out}")  # fmt: skip
    return 0


def _size(n: int) -> str:
    from pydantic import ByteSize

    return f"{n} bytes ({ByteSize(n).human_readable(decimal=True)})"


def cmd_clean_cache(args: argparse.Namespace) -> int:
    """``segflow clean --cache``: remove task-cache entries by age and least recent use (never datasets)."""
    from segmentation.cache import clean_cache, parse_size
    from segmentation.config import load_config
    from segmentation.data import default_cache_dir

    config = load_config(args.config, list(args.set or []))
    cache_dir = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    max_size = parse_size(args.max_size) if args.max_size is not None else config.cache.max_size
    done = clean_cache(cache_dir, max_size=max_size, older_than_days=args.older_than, embeddings=args.embeddings,
                       dry_run=args.dry_run)  # fmt: skip
    verb = "would remove" if args.dry_run else "removed"
    for e in done.removed:
        print(f"{verb} {e.path} ({e.size} bytes)")
    what = "task cache and embeddings" if args.embeddings else "task cache"
    takes = "would then take" if args.dry_run else "now take" + ("" if args.embeddings else "s")
    print(f"{cache_dir}: {verb} {len(done.removed)} entries, {'would free' if args.dry_run else 'freed'} "
          f"{_size(done.freed_bytes)}; the {what} {takes} {_size(done.remaining_bytes)}")  # fmt: skip
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    """``segflow prune``: remove the oldest complete runs beyond N (never latest, never a live .partial-*)."""
    from segmentation._errors import ConfigError
    from segmentation.config import load_config
    from segmentation.runs import prune_runs

    config = load_config(args.config, list(args.set or []))
    output = Path(args.output) if args.output else config.output_dir
    keep_last = args.keep_last if args.keep_last is not None else config.output.keep_last
    if keep_last is None:
        raise ConfigError("segflow prune needs --keep-last N (or output.keep_last in the configuration): how many "
                          "of the newest complete runs to keep")  # fmt: skip
    pruned = prune_runs(output, keep_last, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for p in pruned.removed:
        print(f"{verb} {p}")
    print(f"{output}: {verb} {len(pruned.removed)} folder(s), {'would free' if args.dry_run else 'freed'} "
          f"{_size(pruned.freed_bytes)}; kept {len(pruned.kept)} run(s)")  # fmt: skip
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from segmentation.config import load_config
    from segmentation.runs import PARTIAL_PREFIX, clean_output_dir

    if args.cache:
        return cmd_clean_cache(args)
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
    config = _load(args)
    _check_before_flow(config, keep=False)  # the deployment's runs load the data in their own processes
    from flows.serve import serve

    _quiet_user_error_tracebacks(args)
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
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. cluster.min_cluster_size=20"
    )
    g = p.add_argument_group("your own data (sets data.source=files)")
    g.add_argument("--ratings", help="interactions file: CSV, TSV, Parquet or RecBole .inter")
    g.add_argument("--items", help="item catalogue file")
    g.add_argument("--users", help="optional user attributes file")
    g.add_argument("--tags", help="optional tags file (user, item, tag per row; columns data.columns.tag_user, "
                   "tag_item, tag): each item's most frequent tags join its text")  # fmt: skip
    g.add_argument("--user-col", help="ratings: user id column (default user_id)")
    g.add_argument("--item-col", help="ratings: item id column (default item_id)")
    g.add_argument("--rating-col", help="ratings: rating column (default rating; '' for implicit feedback)")
    g.add_argument("--time-col", help="ratings: timestamp column (default timestamp)")
    g.add_argument("--weight-col", help="ratings, implicit data: a count or duration column that becomes the rating "
                   "(sums over duplicate rows; no rating column then)")  # fmt: skip
    g.add_argument("--item-id-col", help="items: id column (default item_id)")
    g.add_argument("--title-col", help="items: title column (default title)")
    g.add_argument("--category-col", help="items: category/genre/tag column (default categories)")
    g.add_argument("--category-sep", help="items: separator between categories (default |)")
    g.add_argument("--text-cols", help="items: comma-separated free-text columns")
    g.add_argument("--user-id-col", help="users: id column (default user_id)")
    g.add_argument("--encoding", help="text encoding of the files: utf-8 (default), latin-1, cp1252, any Python codec")
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
    p = sub.add_parser("assign", help="place users from an interactions file in a run's segments (no refit)")
    p.add_argument("run", nargs="?", default="runs/latest")
    p.add_argument("--ratings", required=True, help="the users' interactions: CSV, TSV or Parquet (user, item, "
                   "rating); the run's column names are the defaults")  # fmt: skip
    p.add_argument("--out", default="assignments.csv", help="where to write one row per user (.csv or .parquet; "
                   "default assignments.csv)")  # fmt: skip
    p.add_argument("--user-col", help="user id column (default: the run's data.columns.user)")
    p.add_argument("--item-col", help="item id column (default: the run's data.columns.item)")
    p.add_argument("--rating-col", help="rating column (default: the run's; '' for implicit feedback)")
    p.add_argument("--weight-col", help="implicit feedback: count or duration column (default: the run's)")
    p.add_argument("--time-col", help="timestamp column, checked if given (default: none is read)")
    p.add_argument("--encoding", help="text encoding of the file (default utf-8)")
    p.add_argument("--neighbours", type=int, default=15, help="the run's users that vote on each user (default 15)")
    p.set_defaults(func=cmd_assign)

    p = sub.add_parser("report", help="render a run's HTML report again from its run folder")
    p.add_argument("run", nargs="?", default="runs/latest")
    p.add_argument("--out", help="folder to write the report into (default: the run's report/)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("clean", help="remove unfinished run folders (.partial-*) left by killed or crashed runs")
    p.add_argument("--output", help="folder of the run folders (default: output_dir of the configuration)")
    p.add_argument("--config", type=Path, help="TOML configuration file whose output_dir to clean")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. output_dir=runs")
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    g = p.add_argument_group("the task cache (with --cache; never the datasets)")
    g.add_argument("--cache", action="store_true", help="clean the task cache in cache_dir instead of output_dir")
    g.add_argument("--max-size", metavar="SIZE", help="remove least recently used entries until they take at "
                   "most SIZE, e.g. 2GB or 500MiB (default: cache.max_size)")  # fmt: skip
    g.add_argument("--older-than", type=float, metavar="DAYS", help="remove entries unused for DAYS days")
    g.add_argument("--embeddings", action="store_true", help="the embedding cache counts and may go too")
    p.set_defaults(func=cmd_clean)
    p = sub.add_parser("prune", help="remove the oldest complete run folders beyond --keep-last N (never latest)")
    p.add_argument("--output", help="folder of the run folders (default: output_dir of the configuration)")
    p.add_argument("--config", type=Path, help="TOML configuration file (output_dir, output.keep_last)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. output.keep_last=30")
    p.add_argument("--keep-last", type=int, metavar="N", help="complete runs to keep (default: output.keep_last)")
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    p.set_defaults(func=cmd_prune)
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
    except Exception as err:  # a bug, not bad input: show where, and say that the finished work is kept
        if args.command != "run":
            raise
        traceback.print_exc()
        print(f"segflow: unexpected error: {type(err).__name__}: {err}", file=sys.stderr)
        print(f"Nothing was published. {_resume_hint(args)} Please report this error with the traceback above.",
              file=sys.stderr)  # fmt: skip
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
