"""The loaders' entry points: the user's own files through a column mapping, and a :class:`DataConfig`'s data."""

import functools
from pathlib import Path

import polars as pl

from segmentation._errors import DataError
from segmentation.config import ColumnMapping, DataConfig
from segmentation.data.contracts import Dataset, sorted_ids
from segmentation.data.movielens import load_movielens_100k
from segmentation.data.recbole import load_recbole
from segmentation.data.sources import format_suffix, read_table, with_scratch
from segmentation.data.tables import interactions_from, items_from, users_from
from segmentation.data.tags import load_tags, with_tags
from segmentation.data.validation import validate_dataset

__all__ = ["load_dataset", "load_files", "load_interactions"]


@with_scratch
def load_files(ratings: Path, items: Path, users: Path | None = None, *, columns: ColumnMapping | None = None,
               name: str | None = None, rating_scale: tuple[float, float] | None = None, encoding: str = "utf-8",
               quote_char: str = "auto") -> Dataset:  # fmt: skip
    """Load the user's own CSV/TSV/Parquet files through a column mapping, then validate.

    RecBole atomic files (``.inter``/``.item``/``.user``) are recognised by their suffix. With
    ``rating_scale = (lowest, highest)``, a rating outside it is an error naming its row. Text files
    may be gzip- or zstd-compressed and in any ``encoding`` (a Python codec name); ``quote_char`` is
    ``data.quote_char``. With ``columns.weight`` (implicit data), duplicate (user, item) rows are summed.
    """
    cols = columns or ColumnMapping()
    ratings, items = Path(ratings), Path(items)
    if format_suffix(ratings) == ".inter":  # also ml-100k.inter.gz
        return load_recbole(ratings, items, users, rating_scale=rating_scale, encoding=encoding)
    read = functools.partial(read_table, encoding=encoding, quote_char=quote_char)
    inter, implicit, notes = interactions_from(read(ratings, "ratings"), ratings, cols, rating_scale)
    item_df = items_from(read(items, "items", list_separator=cols.category_separator), items, cols)
    user_df = users_from(read(Path(users), "users"), Path(users), cols) if users else None
    return validate_dataset(inter, item_df, user_df, name=name or ratings.stem, implicit=implicit,
                            files={"ratings": ratings, "items": items, "users": users},
                            duplicates="sum" if implicit and cols.weight else "keep-latest", notes=notes)  # fmt: skip


@with_scratch
def load_interactions(path: Path, *, columns: ColumnMapping | None = None, encoding: str = "utf-8",
                      quote_char: str = "auto") -> pl.DataFrame:  # fmt: skip
    """An interactions file alone (CSV/TSV/Parquet, compressed or not) as an ``INTERACTIONS`` frame, through the
    same column mapping and checks as :func:`load_files`' ratings file (a bad row is an error naming it), e.g. new
    users' interactions to place in a run's segments. Duplicate (user, item) rows are kept."""
    path = Path(path)
    inter, _, _ = interactions_from(read_table(path, "ratings", encoding=encoding, quote_char=quote_char), path,
                                    columns or ColumnMapping())  # fmt: skip
    return inter


def load_dataset(config: DataConfig, cache_dir: Path | None = None) -> Dataset:
    """Load the data a :class:`DataConfig` describes, optionally cut to ``max_users`` users."""
    if config.source == "movielens-100k":
        ds = load_movielens_100k(cache_dir)
    else:
        assert config.ratings is not None and config.items is not None
        ds = load_files(config.ratings, config.items, config.users, columns=config.columns,
                        rating_scale=config.rating_scale, encoding=config.encoding, quote_char=config.quote_char)  # fmt: skip
        duplicate = next((n for n in ds.notes if "duplicate (user, item) rows" in n), None)
        if config.duplicates == "error" and duplicate:
            raise DataError(duplicate + "; data.duplicates='error' forbids that")
    if config.tags is not None:
        ds = with_tags(ds, load_tags(config.tags, columns=config.columns, encoding=config.encoding,
                                     quote_char=config.quote_char), Path(config.tags))  # fmt: skip
    if config.max_users is not None:
        keep = sorted_ids(ds.interactions["user_id"].unique())[: config.max_users]
        inter = ds.interactions.filter(pl.col("user_id").is_in(pl.Series(keep).implode()))
        ds = Dataset(inter, ds.items, ds.users, ds.name + f" (first {config.max_users} users)", ds.implicit, ds.notes)
    return ds
