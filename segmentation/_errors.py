"""The errors every layer raises, re-exported from the bottom layer (:mod:`embeddings.errors`).

The same class objects, so ``except DataError`` catches what ``embeddings`` and ``segmentation`` raise alike.
"""

from embeddings.errors import (
    ConfigError,
    DataError,
    DataWarning,
    NotFittedError,
    SchemaError,
    SegflowError,
    check_is_fitted,
)

__all__ = [
    "ConfigError",
    "DataError",
    "DataWarning",
    "NotFittedError",
    "SchemaError",
    "SegflowError",
    "check_is_fitted",
]
