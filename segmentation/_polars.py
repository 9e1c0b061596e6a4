"""Python numbers out of polars scalars.

``Series.mean``, ``median``, ``std`` and ``sum`` are typed to return any Python literal polars knows (or None, for
an empty or all-null series), so ``float()`` of one does not type-check. :func:`to_float` takes the numbers and
refuses the rest as ``float()`` would.
"""

from decimal import Decimal

__all__ = ["to_float"]


def to_float(value: object, default: float | None = None) -> float:
    """``float(value)`` for a polars scalar; None (empty or all-null series) gives ``default`` where one is given.

    Raises:
        TypeError: ``value`` is not a real number (a date, a string, a list), or None with no ``default``.
    """
    if value is None and default is not None:
        return default
    if isinstance(value, int | float | Decimal):
        return float(value)
    raise TypeError(f"expected a number from polars, got {type(value).__name__}")
