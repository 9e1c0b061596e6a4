"""RecBole atomic files (``.inter``, ``.item``, ``.user``): tab-separated, ``name:type`` headers."""

from pathlib import Path

import polars as pl

from segmentation.config import ColumnMapping
from segmentation.data.contracts import Dataset
from segmentation.data.sources import read_table, with_scratch
from segmentation.data.tables import interactions_from, items_from, users_from
from segmentation.data.validation import validate_dataset

__all__ = ["load_recbole"]


def _recbole_scan(path: Path, role: str, encoding: str = "utf-8") -> pl.LazyFrame:
    lf = read_table(path, role, separator="\t", encoding=encoding)
    names = lf.collect_schema().names()
    return lf.rename({n: n.split(":")[0] for n in names})


@with_scratch
def load_recbole(inter: Path, item: Path, user: Path | None = None, *,
                 rating_scale: tuple[float, float] | None = None, encoding: str = "utf-8") -> Dataset:  # fmt: skip
    """Load RecBole atomic files (tab-separated, ``name:type`` headers, space-separated token_seq)."""
    inter, item = Path(inter), Path(item)
    ilf = _recbole_scan(inter, "ratings", encoding)
    icols = ilf.collect_schema().names()
    cols = ColumnMapping(
        rating="rating" if "rating" in icols else None,
        timestamp="timestamp" if "timestamp" in icols else None,
    )
    df, implicit, notes = interactions_from(ilf, inter, cols, rating_scale)
    itlf = _recbole_scan(item, "items", encoding)
    names = itlf.collect_schema().names()
    title = next((c for c in ("movie_title", "title", "name", "item_name") if c in names), "item_id")
    cats = next((c for c in ("class", "genre", "genres", "categories", "category", "tags") if c in names), None)
    year = next((c for c in ("release_year", "year") if c in names), None)
    text: list[str] = [c for c in ("description", "overview", "plot", "text") if c in names]
    item_cols = ColumnMapping(title=title, categories=cats, category_separator=" ", year=year, text=text)
    item_df = items_from(itlf, item, item_cols)
    user_df = None
    if user is not None:
        ulf = _recbole_scan(Path(user), "users", encoding)
        ucols = [c for c in ulf.collect_schema().names() if c not in ("user_id", "zip_code")]
        user_df = users_from(ulf, Path(user), ColumnMapping(user_attributes=ucols))
    return validate_dataset(df, item_df, user_df, name=inter.stem, implicit=implicit,
                            files={"ratings": inter, "items": item, "users": user}, notes=notes)  # fmt: skip
