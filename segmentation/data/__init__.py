"""Load, validate and split a recommender's interactions, items and users.

Every loader ends in the same three polars frames (``INTERACTIONS``, ``ITEMS`` and the users; their columns are
described in :mod:`~segmentation.data.contracts`), checked once by :func:`validate_dataset`. External ids stay
strings in every table.

One concept per module:

- :mod:`~segmentation.data.contracts`: the schemas, :class:`Dataset`, :class:`Split`, :class:`Vocab`;
- :mod:`~segmentation.data.sources`: reading one file (CSV/TSV/``.dat``/Parquet, compression, encodings);
- :mod:`~segmentation.data.tables`: typed interactions, items and users through the column mapping;
- :mod:`~segmentation.data.validation`: :func:`validate_dataset`, the checks across the tables;
- :mod:`~segmentation.data.load`: :func:`load_files`, :func:`load_dataset` (a ``DataConfig``'s data) and
  :func:`load_interactions` (an interactions file alone);
- :mod:`~segmentation.data.recbole`, :mod:`~segmentation.data.movielens`: RecBole atomic files, MovieLens 100k;
- :mod:`~segmentation.data.tags`: a tags file appended to the items' text;
- :mod:`~segmentation.data.split`: train/validation/test splits;
- :mod:`~segmentation.data.cache_dir`: where segflow keeps its caches.
"""

from segmentation.data.cache_dir import cache_root, default_cache_dir
from segmentation.data.contracts import INTERACTIONS, ITEMS, Dataset, Split, Vocab, check_schema
from segmentation.data.load import load_dataset, load_files, load_interactions
from segmentation.data.movielens import ensure_movielens_100k, load_grouplens, load_movielens_100k
from segmentation.data.recbole import load_recbole
from segmentation.data.split import split_ratings
from segmentation.data.tags import MAX_TAGS_PER_ITEM, load_tags, with_tags
from segmentation.data.validation import validate_dataset

__all__ = [
    "INTERACTIONS",
    "ITEMS",
    "MAX_TAGS_PER_ITEM",
    "Dataset",
    "Split",
    "Vocab",
    "cache_root",
    "check_schema",
    "default_cache_dir",
    "ensure_movielens_100k",
    "load_dataset",
    "load_files",
    "load_grouplens",
    "load_interactions",
    "load_movielens_100k",
    "load_recbole",
    "load_tags",
    "split_ratings",
    "validate_dataset",
    "with_tags",
]
