"""Train, validation and test interactions, split as BENCHMARK_PROTOCOL.md describes."""

import numpy as np
import polars as pl

from segmentation.data.contracts import Split

__all__ = ["split_ratings"]


def _numeric_order(frame: pl.DataFrame) -> pl.DataFrame:
    """Sort by (user_id, item_id) as BENCHMARK_PROTOCOL.md does: numerically when ids are integers."""
    keys = []
    for c in ("user_id", "item_id"):
        as_int = frame[c].cast(pl.Int64, strict=False)
        keys.append(as_int if as_int.null_count() == 0 else frame[c])
    return (
        frame.with_columns(keys[0].alias("_u"), keys[1].alias("_i"))
        .sort(["_u", "_i"], maintain_order=True)
        .drop("_u", "_i")
    )


def split_ratings(interactions: pl.DataFrame, method: str = "random90", *, valid_fraction: float = 0.1,
                  seed: int = 0) -> Split:  # fmt: skip
    """Split interactions exactly as BENCHMARK_PROTOCOL.md describes.

    ``random90``/``random80``: sort by (user_id, item_id), permute with
    ``numpy.random.default_rng(0)``, first 90 %/80 % train. ``temporal``: per user,
    the last ``n_u // 5`` interactions by (timestamp, item_id) are test. Validation rows
    (``valid_fraction`` of train, drawn with ``seed``) come out of train, never test.
    """
    frame = _numeric_order(interactions)
    n = frame.height
    if method in ("random90", "random80"):
        perm = np.random.default_rng(0).permutation(n)
        cut = int(n * (0.9 if method == "random90" else 0.8))
        train = frame[perm[:cut]]
        test = frame[perm[cut:]]
    elif method == "temporal":
        item_key = frame["item_id"].cast(pl.Int64, strict=False)
        item_key = item_key if item_key.null_count() == 0 else frame["item_id"].rank("dense")
        ranked = (
            frame.with_row_index("_row")
            .with_columns(item_key.alias("_item"))
            .sort(["user_id", "timestamp", "_item"], maintain_order=True)
            .with_columns(pl.int_range(pl.len()).over("user_id").alias("_pos"), pl.len().over("user_id").alias("_n"))
        )
        is_test = pl.col("_pos") >= pl.col("_n") - pl.col("_n") // 5
        train = ranked.filter(~is_test).sort("_row").drop("_row", "_item", "_pos", "_n")
        test = ranked.filter(is_test).sort("_row").drop("_row", "_item", "_pos", "_n")
    else:
        raise ValueError(f"unknown split {method!r}; expected random90, random80 or temporal")
    rng = np.random.default_rng(seed)
    vmask = np.zeros(train.height, dtype=bool)
    vmask[rng.permutation(train.height)[: int(round(train.height * valid_fraction))]] = True
    vm = pl.Series(vmask)
    return Split(train=train.filter(~vm), valid=train.filter(vm), test=test, method=method)
