"""The data contracts: the frames every loader ends in, the train/valid/test split and id vocabularies.

- ``INTERACTIONS``: ``user_id`` String, ``item_id`` String, ``rating`` Float64 (for implicit
  data the weight column, e.g. a play count, else 1.0), ``timestamp`` Int64 (epoch seconds; 0 where
  the data has none);
- ``ITEMS``: ``item_id`` String, ``title`` String, ``year`` Int32 (nullable),
  ``categories`` List(String), ``text`` String;
- users: ``user_id`` String plus attribute columns (String), or None.

External ids stay strings in every table; contiguous ``*_num`` indices exist
only inside a stage, through :class:`Vocab`.
"""

import re
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from segmentation._errors import SchemaError

__all__ = ["INTERACTIONS", "ITEMS", "Dataset", "Split", "Vocab", "check_schema", "sorted_ids"]

INTERACTIONS = pl.Schema({"user_id": pl.String, "item_id": pl.String, "rating": pl.Float64, "timestamp": pl.Int64})
ITEMS = pl.Schema(
    {  # instances throughout (a Schema stores instances anyway), so the mapping has one value type
        "item_id": pl.String(),
        "title": pl.String(),
        "year": pl.Int32(),
        "categories": pl.List(pl.String),
        "text": pl.String(),
    }
)


@dataclass(frozen=True)
class Dataset:
    """Validated interactions, items and optional users. Treat the frames as read-only.

    Attributes:
        interactions: frame with schema ``INTERACTIONS``.
        items: frame with schema ``ITEMS``; every interacted item is in it.
        users: ``user_id`` plus String attribute columns, or None.
        name: a short label for reports.
        implicit: True when the source had no rating column: every rating is the row's weight
            (``data.columns.weight``, e.g. a play count), or 1.0 without a weight column.
        notes: repairs made while loading (for the report), e.g. dropped duplicates.
    """

    interactions: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame | None
    name: str
    implicit: bool = False
    notes: tuple[str, ...] = ()

    @property
    def n_users(self) -> int:
        return self.interactions["user_id"].n_unique()

    @property
    def n_items(self) -> int:
        return self.items.height


@dataclass(frozen=True)
class Split:
    """Train (for fitting), validation (carved from train) and test interactions."""

    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    method: str

    @property
    def train_full(self) -> pl.DataFrame:
        """Train plus validation rows: everything a final model may see."""
        return pl.concat([self.train, self.valid])


_DICT_LOOKUP_MAX = 50_000
"""Vocab.lookup: the most ids looked up through the dict; more go through a polars join."""


@dataclass(frozen=True)
class Vocab:
    """A fixed mapping between external string ids and contiguous ``*_num`` indices."""

    ids: np.ndarray  # (n,) object array of str, in index order
    _index: dict[str, int] = field(repr=False, compare=False)

    @classmethod
    def from_ids(cls, ids: "pl.Series | list[str] | np.ndarray") -> "Vocab":
        arr = np.asarray(list(ids), dtype=object)
        return cls(ids=arr, _index={s: i for i, s in enumerate(arr)})

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, ids: "pl.Series | list[str] | np.ndarray", *, missing: int | None = None) -> np.ndarray:
        """Indices of ``ids``; unknown ids raise KeyError unless ``missing`` gives a fill value.

        Up to :data:`_DICT_LOOKUP_MAX` ids go through a dict; more, through one polars hash join (a training
        set's 25M rows: seconds instead of minutes of Python, without a Python string per row).
        """
        if len(ids) <= _DICT_LOOKUP_MAX:
            if missing is None:
                return np.fromiter((self._index[s] for s in ids), dtype=np.int64, count=len(ids))
            return np.fromiter((self._index.get(s, missing) for s in ids), dtype=np.int64, count=len(ids))
        keys = pl.Series("id", np.asarray(ids, dtype=object) if not isinstance(ids, pl.Series) else ids, pl.String)
        num = keys.to_frame().join(self._frame(), on="id", how="left", maintain_order="left")["num"]
        if missing is None and num.null_count():
            raise KeyError(keys.filter(num.is_null())[0])
        return num.fill_null(-1 if missing is None else missing).to_numpy().astype(np.int64, copy=False)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_frame_cache"}  # rebuilt on demand

    def _frame(self) -> pl.DataFrame:
        frame = self.__dict__.get("_frame_cache")
        if frame is None:
            frame = pl.DataFrame({"id": pl.Series(self.ids, dtype=pl.String),
                                  "num": pl.Series(np.arange(len(self.ids)), dtype=pl.Int64)})  # fmt: skip
            object.__setattr__(self, "_frame_cache", frame)
        return frame


def check_schema(frame: pl.DataFrame | pl.LazyFrame, schema: pl.Schema, *, what: str) -> None:
    """Raise :class:`SchemaError` listing missing and mistyped columns of ``frame``."""
    actual = frame.collect_schema()
    missing = [c for c in schema if c not in actual]
    wrong = [f"{c} is {actual[c]}, expected {t}" for c, t in schema.items() if c in actual and actual[c] != t]
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"missing columns {missing} (found {list(actual)})")
        if wrong:
            parts.append("; ".join(wrong))
        raise SchemaError(f"{what}: " + "; ".join(parts))


def sorted_ids(ids: pl.Series) -> list[str]:
    """Sort ids numerically when they all are integers, else as strings."""
    values = ids.to_list()
    if all(re.fullmatch(r"-?\d+", v) for v in values):
        return sorted(values, key=int)
    return sorted(values)
