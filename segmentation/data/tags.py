"""A tags file (user, item, tag per row): each item's most frequent tags, appended to its text."""

import logging
import warnings
from pathlib import Path

import polars as pl

from segmentation._errors import DataError, DataWarning
from segmentation.config import ColumnMapping
from segmentation.data.contracts import Dataset
from segmentation.data.sources import collect_table, read_table, with_scratch
from segmentation.data.tables import not_blank, require_columns

__all__ = ["MAX_TAGS_PER_ITEM", "load_tags", "with_tags"]

logger = logging.getLogger(__name__)

MAX_TAGS_PER_ITEM = 10
"""Tags kept per item from a tags file, most frequent first."""


@with_scratch
def load_tags(path: Path, *, columns: ColumnMapping | None = None, encoding: str = "utf-8",
              quote_char: str = "auto") -> pl.DataFrame:  # fmt: skip
    """Read a tags file (user, item, tag per row) into ``item_id``, ``tags`` (most frequent first, capped).

    Read like the other files (CSV, TSV/.dat without quoting, Parquet, gzip/zstd, ``encoding``). Tags are
    compared without case and extra spaces; each counts once per user who gave it (per row when the file
    has no user column and ``data.columns.tag_user`` is not set), and every item keeps its
    :data:`MAX_TAGS_PER_ITEM` most frequent tags, ties in alphabetical order.
    """
    cols = columns or ColumnMapping()
    path = Path(path)
    item, tag = cols.tag_item or cols.item, cols.tag
    lf = read_table(path, "tags", encoding=encoding, quote_char=quote_char)
    require_columns(lf, [item, tag], path, "tags", "Set data.columns.tag_item and data.columns.tag to the file's item and "
             "tag columns.")  # fmt: skip
    have = lf.collect_schema().names()
    if cols.tag_user:
        require_columns(lf, [cols.tag_user], path, "tags", "Set data.columns.tag_user to the file's user column, or leave "
                 "it empty to count rows.")  # fmt: skip
    user = cols.tag_user or (cols.user if cols.user in have else None)
    df = collect_table(lf.with_row_index("_row").filter(not_blank(have)).select(
        "_row", pl.col(item).str.strip_chars().alias("item_id"),
        pl.col(tag).str.strip_chars().str.replace_all(r"\s+", " ").alias("tag"),
        (pl.col(user).str.strip_chars() if user else pl.col("_row").cast(pl.String)).alias("who"),
    ), path, "tags")  # fmt: skip
    if df.height == 0:
        raise DataError(f"tags file {path} has a header but no data rows")
    for column, name, what in ((item, "item_id", "an empty item id"), (tag, "tag", "an empty tag")):
        empty = df.filter(pl.col(name).is_null() | (pl.col(name) == ""))
        if empty.height:
            raise DataError(f"tags file {path}, column {column!r}: row {empty['_row'][0] + 1} has {what} "
                            f"({empty.height} such row{'s' if empty.height != 1 else ''}); every row needs an item "
                            "and a tag")  # fmt: skip
    control = df.filter(pl.col("tag").str.contains(r"[\x00-\x1f]"))
    if control.height:
        raise DataError(f"tags file {path}, column {tag!r}: row {control['_row'][0] + 1} has a tag with a control "
                        "character (tab, newline, NUL, ...); a tag must be printable text")  # fmt: skip
    counted = (
        df.with_columns(pl.col("tag").str.to_lowercase().alias("key"))
        .group_by("item_id", "key")
        .agg(pl.col("who").n_unique().alias("n"), pl.col("tag").mode().sort().first().alias("tag"))
        .sort(["item_id", "n", "key"], descending=[False, True, False])
    )  # fmt: skip
    return counted.group_by("item_id", maintain_order=True).agg(pl.col("tag").head(MAX_TAGS_PER_ITEM).alias("tags"))


def with_tags(ds: Dataset, tags: pl.DataFrame, path: Path) -> Dataset:
    """``ds`` with each item's tags appended to its text (``"... Tags: a, b"``), as :func:`load_tags` ranks them.

    Tags of items missing from the catalogue are left out and noted; a tags file none of whose items is in the
    catalogue is an error (its item column is most likely the wrong one).
    """
    known = tags.filter(pl.col("item_id").is_in(ds.items["item_id"].implode()))
    if known.height == 0:
        raise DataError(f"tags file {path}: none of its {tags.height} item ids is in the items file (e.g. "
                        f"{tags['item_id'][0]!r}, items have e.g. {ds.items['item_id'][0]!r}); set "
                        "data.columns.tag_item to the tags file's item id column")  # fmt: skip
    notes = list(ds.notes)
    if known.height < tags.height:
        stray = tags.filter(~pl.col("item_id").is_in(ds.items["item_id"].implode()))["item_id"]
        msg = (f"tags file {path}: tags of {stray.len()} items not in the items file were left out "
               f"(e.g. {stray[0]!r})")  # fmt: skip
        warnings.warn(msg, DataWarning, stacklevel=2)
        notes.append(msg)
    text = pl.col("text").fill_null("")
    items = (
        ds.items.join(known, on="item_id", how="left")
        .with_columns(
            pl.when(pl.col("tags").list.len() > 0)
            .then(
                pl.concat_str(
                    [
                        text,
                        pl.when(text.str.len_chars() > 0).then(pl.lit(". ")).otherwise(pl.lit("")),
                        pl.lit("Tags: "),
                        pl.col("tags").list.join(", "),
                    ]
                )  # fmt: skip
            )
            .otherwise(text)
            .alias("text")
        )
        .select(ds.items.columns)
    )
    logger.info("tags file %s: tags for %d of %d items", path, known.height, ds.items.height)
    return Dataset(ds.interactions, items, ds.users, ds.name, ds.implicit, tuple(notes))
