"""segmentation._polars.to_float: float() of polars scalars, as the stages used it (``float(x or 0)``)."""

import datetime as dt
import math

import polars as pl
import pytest

from segmentation._polars import to_float


def test_numbers_pass_and_an_empty_series_gives_the_default():
    assert to_float(pl.Series([1, 2, 4]).mean()) == pytest.approx(7 / 3)
    assert to_float(pl.Series([3, 5], dtype=pl.Int64).median(), 0.0) == 4.0
    assert to_float(pl.Series([2.5, None]).sum()) == 2.5
    assert to_float(pl.Series([1.5], dtype=pl.Decimal(4, 1)).max()) == 1.5
    assert to_float(pl.Series([], dtype=pl.Float64).mean(), 0.0) == 0.0
    assert math.isnan(to_float(pl.Series([math.nan, 1.0]).mean(), 0.0))  # as float(nan or 0): NaN stays NaN


def test_anything_but_a_number_is_refused_as_float_would():
    with pytest.raises(TypeError, match="expected a number from polars, got NoneType"):
        to_float(pl.Series([], dtype=pl.Float64).mean())
    with pytest.raises(TypeError, match="got date"):
        to_float(pl.Series([dt.date(2026, 1, 1)]).max(), 0.0)
