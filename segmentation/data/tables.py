"""Typed tables from string-typed scans, through the column mapping: interactions, items and users.

Each function takes what :func:`~segmentation.data.sources.read_table` scanned and returns a frame
of the contract's columns (:mod:`segmentation.data.contracts`), raising a :class:`DataError` that names
the file, the column and the first offending row for values that do not fit (ids, numbers, dates).
"""

import warnings
from pathlib import Path

import polars as pl

from segmentation._errors import DataError, DataWarning, SchemaError
from segmentation.config import ColumnMapping
from segmentation.data.sources import collect_table

__all__ = ["interactions_from", "items_from", "not_blank", "require_columns", "users_from"]


def require_columns(lf: pl.LazyFrame, cols: list[str], path: Path, role: str, hint: str) -> None:
    have = lf.collect_schema().names()
    missing = [c for c in cols if c not in have]
    if missing:
        raise SchemaError(f"{role} file {path}: no column(s) {missing}; the file has {have}. {hint}")


def _first_bad_row(df: pl.DataFrame, raw: str, cast: str) -> str:
    bad = df.filter(pl.col(raw).is_not_null() & pl.col(cast).is_null())
    r = bad.row(0, named=True)
    return f"row {r['_row'] + 1} has {r[raw]!r} ({bad.height} such row{'s' if bad.height != 1 else ''})"


def _parse_timestamp(df: pl.DataFrame, path: Path, column: str) -> pl.Series:
    raw = df["timestamp"]
    as_int = raw.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)  # NaN, inf, past int64: null, reported
    if as_int.null_count() == raw.null_count():
        return as_int
    as_dt = pl.Series("_t", [None] * len(raw), dtype=pl.Datetime("us"))
    for fmt in (None, "%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            as_dt = raw.str.strip_chars().str.to_datetime(fmt, strict=False, time_unit="us")
        except pl.exceptions.ComputeError:  # no format could be inferred from the values
            continue
        if as_dt.null_count() == raw.null_count():
            break
    if as_dt.null_count() == raw.null_count():
        return (as_dt.dt.epoch("s")).cast(pl.Int64)
    # report the rows that break the reading most values follow (epoch seconds or dates), not the others
    probe = df.select(
        "_row", pl.col("timestamp"), (as_int if as_int.null_count() <= as_dt.null_count() else as_dt).alias("_t")
    )
    raise DataError(
        f"ratings file {path}, column {column!r}: expected epoch seconds or ISO dates; "
        + _first_bad_row(probe, "timestamp", "_t")
    )


def _first_bad(lf: pl.LazyFrame, bad: pl.Expr, raw: str) -> str:
    """'row N has VALUE (M such rows)' for the first row where ``bad`` holds (1-based data rows).

    ``lf`` carries the file's row numbers in ``_row`` (taken before blank lines were dropped).
    """
    hits = lf.filter(bad).select("_row", raw)
    first = hits.head(1).collect()
    count = hits.select(pl.len()).collect().item()
    value = first[raw][0]
    shown = "an empty value" if value is None or value == "" else repr(value)
    return f"row {first['_row'][0] + 1} has {shown} ({count} such row{'s' if count != 1 else ''})"


def not_blank(columns: list[str]) -> pl.Expr:
    """False for rows where every one of ``columns`` is null: blank lines, e.g. at the end of an export."""
    return ~pl.all_horizontal([pl.col(c).is_null() for c in columns])


def interactions_from(lf: pl.LazyFrame, path: Path, cols: ColumnMapping,
                       scale: tuple[float, float] | None = None) -> tuple[pl.DataFrame, bool, list[str]]:  # fmt: skip
    """Typed interactions from a string-typed scan; casts run lazily so only typed columns are held.

    On a failed cast a second lazy pass finds the first offending row for the message. Implicit data
    (no rating column) takes its ratings from ``cols.weight``, else 1.0; rows of weight 0 are dropped
    and noted (the third value: notes for :class:`Dataset`).
    """
    weight = None if cols.rating else cols.weight
    value = cols.rating or weight  # the column whose numbers become ``rating``
    need = [cols.user, cols.item] + [c for c in (value, cols.timestamp) if c]
    require_columns(lf, need, path, "ratings",
             "Set the column mapping (data.columns.user / item / rating / weight / timestamp, or --user-col etc.).")  # fmt: skip
    implicit = not cols.rating
    raw = (
        lf.with_row_index("_row")
        .filter(not_blank(need))
        .select(
            "_row",
            pl.col(cols.user).str.strip_chars().alias("user_id"),
            pl.col(cols.item).str.strip_chars().alias("item_id"),
            (pl.col(value).str.strip_chars() if value else pl.lit("1")).alias("rating_raw"),
            (pl.col(cols.timestamp).str.strip_chars() if cols.timestamp else pl.lit("0")).alias("ts_raw"),
        )
    )
    df = collect_table(raw.select(
        "user_id", "item_id",
        pl.col("rating_raw").cast(pl.Float64, strict=False).alias("rating"),
        pl.col("ts_raw").cast(pl.Float64, strict=False).cast(pl.Int64, strict=False).alias("timestamp"),
    ), path, "ratings")  # fmt: skip
    if df.height == 0:
        raise DataError(f"ratings file {path} has a header but no data rows")
    for c, name in (("user_id", cols.user), ("item_id", cols.item)):
        is_empty = pl.col(c).is_null() | (pl.col(c) == "") | (pl.col(c).str.to_lowercase() == "nan")
        if df.select(is_empty.any()).item():
            where = _first_bad(raw, is_empty, c).split(" has ")[0]
            raise DataError(
                f"ratings file {path}, column {name!r}: {where} has an empty or NaN id; "
                f"every interaction needs a {c.replace('_', ' ')}"
            )
    rating = pl.col("rating_raw").cast(pl.Float64, strict=False)
    if weight:
        if df["rating"].null_count():
            raise DataError(f"ratings file {path}, column {weight!r}: weights must be numbers (counts, durations); "
                            + _first_bad(raw, rating.is_null(), "rating_raw"))  # fmt: skip
        if not df.select(pl.col("rating").is_finite().all()).item():
            raise DataError(f"ratings file {path}, column {weight!r}: weights must be finite numbers; "
                            + _first_bad(raw, ~rating.is_finite(), "rating_raw"))  # fmt: skip
        if df.select((pl.col("rating") < 0).any()).item():
            raise DataError(f"ratings file {path}, column {weight!r}: weights must be > 0 (rows of weight 0 are "
                            "dropped); " + _first_bad(raw, rating < 0, "rating_raw"))  # fmt: skip
    if df["rating"].null_count():
        raise DataError(f"ratings file {path}, column {cols.rating!r}: expected numbers; "
                        + _first_bad(raw, pl.col("rating_raw").cast(pl.Float64, strict=False).is_null(), "rating_raw"))  # fmt: skip
    if not df.select(pl.col("rating").is_finite().all()).item():
        raise DataError(f"ratings file {path}, column {cols.rating!r}: ratings must be finite numbers; "
                        + _first_bad(raw, ~rating.is_finite(), "rating_raw"))  # fmt: skip
    if df.select((pl.col("rating") < 0).any()).item():
        raise DataError(f"ratings file {path}, column {cols.rating!r}: ratings (or implicit counts) must be >= 0; "
                        + _first_bad(raw, rating < 0, "rating_raw"))  # fmt: skip
    if scale is not None and cols.rating:
        lo, hi = scale
        if df.select(((pl.col("rating") < lo) | (pl.col("rating") > hi)).any()).item():
            raise DataError(f"ratings file {path}, column {cols.rating!r}: ratings must lie in data.rating_scale "
                            f"[{lo:g}, {hi:g}]; " + _first_bad(raw, (rating < lo) | (rating > hi), "rating_raw")
                            + ". Fix the rows, or widen data.rating_scale")  # fmt: skip
    if df["timestamp"].null_count():
        if raw.select(pl.col("ts_raw").is_null().any()).collect().item():
            raise DataError(f"ratings file {path}, column {cols.timestamp!r}: expected epoch seconds or ISO dates; "
                            + _first_bad(raw, pl.col("ts_raw").is_null(), "ts_raw")
                            + ". Set data.columns.timestamp = '' (or --time-col '') if the data has no times")  # fmt: skip
        ts = _parse_timestamp(collect_table(raw.select("_row", pl.col("ts_raw").alias("timestamp")), path, "ratings"), path,
                              cols.timestamp or "timestamp")  # fmt: skip
        df = df.with_columns(ts.alias("timestamp"))
    notes = []
    if weight and df.select((pl.col("rating") == 0).any()).item():
        msg = (f"ratings file {path}, column {weight!r}: dropped the rows of weight 0 (they count nothing); first: "
               + _first_bad(raw, rating == 0, "rating_raw"))  # fmt: skip
        warnings.warn(msg, DataWarning, stacklevel=3)
        notes.append(msg)
        df = df.filter(pl.col("rating") != 0)
    return df, implicit, notes


def _split_categories(expr: pl.Expr, sep: str) -> pl.Expr:
    return (
        expr.fill_null("")
        .str.split(sep)
        .list.eval(pl.element().str.strip_chars())
        .list.eval(pl.element().filter(pl.element() != ""))
    )


def _article_first(title: pl.Expr) -> pl.Expr:
    """'Truth About Cats & Dogs, The' -> 'The Truth About Cats & Dogs' (MovieLens files the articles last)."""
    return title.str.replace(r"^(.*), (The|A|An|Les|La|Le|Il|Das|Der|Die|El)$", "$2 $1")


def items_from(lf: pl.LazyFrame, path: Path, cols: ColumnMapping) -> pl.DataFrame:
    have = lf.collect_schema().names()
    require_columns(lf, [cols.item_id], path, "items", "Set data.columns.item_id (or --item-id-col).")
    title = pl.col(cols.title) if cols.title in have else pl.col(cols.item_id)
    missing_text = [c for c in cols.text if c not in have]
    if missing_text:
        raise SchemaError(f"items file {path}: no text column(s) {missing_text}; the file has {have}")
    if cols.categories and cols.categories not in have and cols.categories != "categories":
        raise SchemaError(f"items file {path}: no category column {cols.categories!r}; the file has {have}")
    cat = cols.categories if cols.categories in have else None
    text = pl.concat_str([pl.col(c).fill_null("") for c in cols.text], separator=". ") if cols.text else pl.lit("")
    year = (
        pl.col(cols.year).str.extract(r"(\d{4})").cast(pl.Int32, strict=False)
        if cols.year and cols.year in have
        else title.str.extract(r"\((\d{4})\)\s*$").cast(pl.Int32, strict=False)
    )
    df = collect_table(lf.with_row_index("_row").filter(not_blank(have)).select(
        "_row",
        pl.col(cols.item_id).str.strip_chars().alias("item_id"),
        _article_first(title.fill_null("").str.strip_chars()).alias("title"),
        year.alias("year"),
        (_split_categories(pl.col(cat), cols.category_separator) if cat else pl.lit([], dtype=pl.List(pl.String))).alias("categories"),
        text.alias("text"),
    ), path, "items")  # fmt: skip
    if df.height == 0:
        raise DataError(f"items file {path} has a header but no data rows")
    empty = df.filter(pl.col("item_id").is_null() | (pl.col("item_id") == ""))
    if empty.height:
        raise DataError(f"items file {path}, column {cols.item_id!r}: row {empty['_row'][0] + 1} has an empty item id")
    return df.drop("_row")


def users_from(lf: pl.LazyFrame, path: Path, cols: ColumnMapping) -> pl.DataFrame:
    require_columns(lf, [cols.user_id], path, "users", "Set data.columns.user_id (or --user-id-col).")
    have = lf.collect_schema().names()
    attrs = cols.user_attributes or [c for c in have if c != cols.user_id]
    missing = [c for c in attrs if c not in have]
    if missing:
        raise SchemaError(f"users file {path}: no attribute column(s) {missing}; the file has {have}")
    df = collect_table(lf.with_row_index("_row").filter(not_blank(have)).select(
        "_row", pl.col(cols.user_id).str.strip_chars().alias("user_id"), *[pl.col(a) for a in attrs]
    ), path, "users")  # fmt: skip
    if df.height == 0:
        raise DataError(f"users file {path} has a header but no data rows")
    empty = df.filter(pl.col("user_id").is_null() | (pl.col("user_id") == ""))
    if empty.height:
        raise DataError(f"users file {path}, column {cols.user_id!r}: row {empty['_row'][0] + 1} has an empty user id")
    dup = df.filter(pl.col("user_id").is_duplicated())
    if dup.height:
        raise DataError(
            f"users file {path}, column {cols.user_id!r}: user id {dup['user_id'][0]!r} appears {dup.height} times"
        )
    return df.drop("_row")
