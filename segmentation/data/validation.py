"""The one validation step every loader ends in: schemas, duplicates, unknown items, ids."""

import logging
import warnings

import polars as pl

from segmentation._errors import DataError, DataWarning, SchemaError
from segmentation.data.contracts import INTERACTIONS, ITEMS, Dataset, check_schema

__all__ = ["validate_dataset"]

logger = logging.getLogger(__name__)


def validate_dataset(interactions: pl.DataFrame, items: pl.DataFrame, users: pl.DataFrame | None, *,
                     name: str, implicit: bool = False, files: dict | None = None,
                     duplicates: str = "keep-latest", notes: list[str] | tuple[str, ...] = ()) -> Dataset:  # fmt: skip
    """The one validation step every loader ends in.

    Checks schemas, repairs what can be repaired with a :class:`DataWarning` (duplicate
    (user, item) rows keep the latest, or with ``duplicates='sum'`` (weighted implicit data) become
    one row with the summed rating and the latest timestamp; interactions with undescribed items are
    dropped while they are under half the data), and raises :class:`DataError` for the rest.
    ``notes``: repairs the loader made before (kept first in :attr:`Dataset.notes`).
    """
    files = files or {}
    rpath, ipath = files.get("ratings", "ratings"), files.get("items", "items")
    if interactions.collect_schema() != INTERACTIONS:
        interactions = interactions.select(list(INTERACTIONS)).cast(dict(INTERACTIONS))  # type: ignore[arg-type]
    if items.collect_schema() != ITEMS:
        items = items.select(list(ITEMS)).cast(dict(ITEMS))  # type: ignore[arg-type]
    check_schema(interactions, INTERACTIONS, what=f"ratings {rpath}")
    check_schema(items, ITEMS, what=f"items {ipath}")
    notes = list(notes)

    dup_items = items.filter(pl.col("item_id").is_duplicated())
    if dup_items.height:
        raise DataError(
            f"items file {ipath}: item id {dup_items['item_id'][0]!r} is described {dup_items.height} times"
        )

    n_before = interactions.height
    # Find candidate duplicates by a sorted 64-bit hash of (user, item): far less memory than hashing the
    # pairs themselves (10M rows: +0.1 GiB instead of +1.3 GiB); then resolve exactly on that small subset.
    key = interactions.select(pl.struct("user_id", "item_id").hash(seed=0)).to_series()
    ordered = key.sort()
    repeated = ordered.filter(ordered == ordered.shift(1)).unique()
    del ordered
    if repeated.len():
        candidates = interactions.with_row_index("_row").filter(key.is_in(repeated.implode()))
        dups = candidates.filter(pl.struct("user_id", "item_id").is_duplicated())
        kept = dups.sort(["timestamp", "_row"]).unique(["user_id", "item_id"], keep="last")["_row"]
        drop = dups.filter(~pl.col("_row").is_in(kept.implode()))["_row"]
        if drop.len() and duplicates == "sum":  # the kept (latest) row of each pair takes the pair's total
            total = dups.group_by("user_id", "item_id").agg(pl.col("rating").sum().alias("_total"))
            kept_total = dups.filter(pl.col("_row").is_in(kept.implode())).join(total, on=["user_id", "item_id"])
            summed = interactions["rating"].clone().scatter(kept_total["_row"], kept_total["_total"])
            interactions = interactions.with_columns(summed.alias("rating"))
        if drop.len():
            interactions = (
                interactions.with_row_index("_row").filter(~pl.col("_row").is_in(drop.implode())).drop("_row")
            )
    del key
    n_dup = n_before - interactions.height
    if n_dup:
        if duplicates == "error":
            raise DataError(
                f"ratings file {rpath}: {n_dup} duplicate (user, item) rows; set data.duplicates='keep-latest' to keep the latest"
            )
        msg = f"ratings file {rpath}: {n_dup} duplicate (user, item) rows; kept the latest of each"
        if duplicates == "sum":
            msg = (f"ratings file {rpath}: {n_dup} duplicate (user, item) rows; summed the weights of each pair "
                   "into its latest row")  # fmt: skip
        warnings.warn(msg, DataWarning, stacklevel=2)
        notes.append(msg)

    known = interactions["item_id"].is_in(items["item_id"].implode())
    n_unknown = int((~known).sum())
    if n_unknown:
        example = interactions.filter(~known)["item_id"][0]
        if n_unknown * 2 > interactions.height:
            raise DataError(
                f"ratings file {rpath}: {n_unknown} of {interactions.height} interactions refer to items not in "
                f"items file {ipath} (e.g. item {example!r}). Check data.columns.item / item_id."
            )
        msg = (f"ratings file {rpath}: dropped {n_unknown} interactions with items missing from {ipath} "
               f"(e.g. item {example!r})")  # fmt: skip
        warnings.warn(msg, DataWarning, stacklevel=2)
        notes.append(msg)
        interactions = interactions.filter(known)
    if interactions.height == 0:
        raise DataError(f"ratings file {rpath}: no usable interactions left after validation")
    control = pl.col("_id").str.contains(r"[\x00-\x1f\x7f]")  # NUL in an id would be cut when saved with numpy
    for frame, column, where in ((interactions, "user_id", f"ratings file {rpath}"),
                                 (items, "item_id", f"items file {ipath}")):  # every rated item is in items now  # fmt: skip
        bad = frame.select(pl.col(column).alias("_id")).filter(control)["_id"]
        if bad.len():
            raise DataError(
                f"{where}, column {column!r}: id {bad[0]!r} contains a control character (NUL, tab, newline, ...) "
                f"({bad.len()} such row{'s' if bad.len() != 1 else ''}); ids must be printable text"
            )
    if users is not None and "user_id" not in users.columns:
        raise SchemaError(f"users file {files.get('users')}: no user_id column")
    if users is not None:
        silent = users.filter(~pl.col("user_id").is_in(interactions["user_id"].unique().implode()))["user_id"]
        if silent.len():
            msg = (f"users file {files.get('users')}: {silent.len()} users have no ratings (e.g. {silent[0]!r}); "
                   "they are not segmented")  # fmt: skip
            warnings.warn(msg, DataWarning, stacklevel=2)
            notes.append(msg)
    logger.info("loaded %s: %d interactions, %d users, %d items", name, interactions.height,
                interactions["user_id"].n_unique(), items.height)  # fmt: skip
    return Dataset(interactions, items, users, name=name, implicit=implicit, notes=tuple(notes))
