"""The data section: which files a run reads and how their columns map (``data``, ``data.columns``)."""

import codecs
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from segmentation.config._base import _Section


class ColumnMapping(_Section):
    """Which columns of the user's own files hold what segflow needs."""

    user: str = Field("user_id", description="Ratings file: the user id column.")
    item: str = Field("item_id", description="Ratings file: the item id column.")
    rating: str | None = Field(
        "rating",
        description="Ratings file: the rating column. Empty means implicit feedback (every row counts as 1, or as "
        "its data.columns.weight).",
    )
    timestamp: str | None = Field(
        "timestamp", description="Ratings file: epoch seconds or ISO date/time. Empty if there is none."
    )
    item_id: str = Field("item_id", description="Items file: the item id column.")
    title: str = Field("title", description="Items file: the title column.")
    text: list[str] = Field(
        default_factory=list, description="Items file: free-text columns joined into the description."
    )
    categories: str | None = Field(
        "categories", description="Items file: the category/genre/tag column (empty if none)."
    )
    category_separator: str = Field("|", description="Separator between categories in that column.")
    year: str | None = Field(None, description="Items file: a release-year column, if any.")
    user_id: str = Field("user_id", description="Users file: the user id column.")
    user_attributes: list[str] = Field(
        default_factory=list,
        description="Users file: attribute columns to describe segments by (empty: all other columns).",
    )
    tag_user: str | None = Field(
        None, description="Tags file: the user column (empty: data.columns.user; counted once per user and tag)."
    )
    tag_item: str | None = Field(None, description="Tags file: the item column (empty: data.columns.item).")
    tag: str = Field("tag", description="Tags file: the tag column.")
    weight: str | None = Field(
        None,
        description="Ratings file, implicit feedback only: a weight column (play or purchase counts, durations) "
        "that becomes the interaction's rating. Numbers > 0; rows of weight 0 are dropped (noted); duplicate "
        "(user, item) rows are summed. Setting it makes the data implicit: leave data.columns.rating unset or empty.",
    )

    @model_validator(mode="before")
    @classmethod
    def _weight_means_implicit(cls, data: Any) -> Any:
        """A weight column without an explicit rating column makes the data implicit (no default 'rating')."""
        if isinstance(data, dict) and data.get("weight") and "rating" not in data:
            data = {**data, "rating": None}
        return data

    @model_validator(mode="after")
    def _weight_or_rating(self) -> "ColumnMapping":
        if self.weight and self.rating:
            raise ValueError(
                f"weight column {self.weight!r} and rating column {self.rating!r} are both set; a weight is for "
                "implicit data (counts, durations) and becomes the rating, so give one of them: set "
                "data.columns.rating = '' (or --rating-col '') to use the weight, or drop data.columns.weight"
            )
        return self


class DataConfig(_Section):
    """Where the interactions, items and users come from, and how they are split."""

    source: Literal["movielens-100k", "files"] = Field(
        "movielens-100k",
        description="'movielens-100k' (built in, taken offline from the recbole wheel) or 'files'.",
    )
    ratings: Path | None = Field(None, description="Interactions file (CSV, TSV, Parquet, or RecBole .inter).")
    items: Path | None = Field(None, description="Item catalogue file (CSV, TSV, Parquet, or RecBole .item).")
    users: Path | None = Field(None, description="Optional user attributes file.")
    tags: Path | None = Field(
        None,
        description="Optional tags file (user, item, tag per row, as MovieLens and Last.fm exports carry; CSV, TSV, "
        ".dat or Parquet): each item's most frequent tags (10 at most) join its text, so they describe it to the "
        "encoder and name segment keywords. Columns: data.columns.tag_user, tag_item, tag.",
    )
    columns: ColumnMapping = Field(
        default_factory=ColumnMapping, title="Columns",
        description="Which columns of your own files hold what segflow needs (for data.source = files).",
    )  # fmt: skip
    split: Literal["random90", "random80", "temporal"] = Field(
        "random90", description="Test split, as in BENCHMARK_PROTOCOL.md."
    )
    valid_fraction: float = Field(
        0.1, gt=0.0, lt=0.5, description="Share of train rows held out for early stopping and gating."
    )
    duplicates: Literal["keep-latest", "error"] = Field(
        "keep-latest", description="Duplicate (user, item) rows: keep the latest and warn, or refuse."
    )
    max_users: int | None = Field(
        None, ge=10, description="Keep only the first N users (by id) — for quick trials and tests."
    )
    rating_scale: tuple[float, float] | None = Field(
        None,
        description="Lowest and highest valid rating, e.g. [1, 5]: a rating outside is an error naming its file, "
        "row and value. Empty: any rating of 0 or more (implicit counts included).",
    )
    encoding: str = Field(
        "utf-8",
        description="Text encoding of the CSV/TSV files (every file): utf-8, latin-1, cp1252 or any Python codec. "
        "Files in another encoding, and gzip- or zstd-compressed files, are streamed into a temporary UTF-8 copy "
        "(under $TMPDIR) while loading.",
    )
    quote_char: str = Field(
        "auto",
        description="CSV quoting: 'auto' reads a double quote as quoting in comma-, semicolon- or pipe-separated "
        "files and as plain text in tab-separated ones (.tsv, .dat, a tab in the header); '' never quotes; one "
        "character quotes with that character.",
    )

    @model_validator(mode="after")
    def _files_given(self) -> "DataConfig":
        if self.source == "files" and (self.ratings is None or self.items is None):
            raise ValueError("data.source = 'files' needs both data.ratings and data.items")
        if self.rating_scale is not None and not self.rating_scale[0] < self.rating_scale[1]:
            raise ValueError(f"data.rating_scale must be [lowest, highest] with lowest < highest, got "
                             f"{list(self.rating_scale)}")  # fmt: skip
        return self

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}; use a Python codec name such as utf-8, latin-1 or "
                             "cp1252") from None  # fmt: skip
        return value

    @field_validator("quote_char")
    @classmethod
    def _one_quote_char(cls, value: str) -> str:
        if value not in ("auto", "") and not (len(value) == 1 and value.isascii() and value.isprintable()):
            raise ValueError("quote_char must be 'auto', '' (no quoting) or one printable ASCII character")
        return value
