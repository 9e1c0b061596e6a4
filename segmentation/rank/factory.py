"""Rankers by name: the names the configuration accepts (``ranker.name``) and the classes behind them."""

from segmentation.config import RankerConfig
from segmentation.rank.base import MatrixRanker, Ranker
from segmentation.rank.ease import EASE
from segmentation.rank.knn import ItemKNN
from segmentation.rank.popularity import MostPopular
from segmentation.rank.rp3beta import RP3beta
from segmentation.rank.segflow import SegflowRanker

__all__ = ["RANKERS", "make_ranker"]

#: Names accepted by :func:`make_ranker`.
RANKERS = ("most-popular", "item-knn", "ease", "rp3beta", "segflow")


def make_ranker(name: str, config: RankerConfig | None = None) -> Ranker:
    """Build an unfitted ranker by name.

    Args:
        name: one of ``RANKERS``: most-popular, item-knn, ease, rp3beta, segflow.
        config: ranker settings; defaults when None.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid ones).
    """
    config = config or RankerConfig()
    classes: dict[str, type[MatrixRanker]] = {
        "most-popular": MostPopular, "item-knn": ItemKNN, "ease": EASE, "rp3beta": RP3beta, "segflow": SegflowRanker,
    }  # fmt: skip
    if name not in classes:
        raise ValueError(f"unknown ranker {name!r}; expected one of: {', '.join(RANKERS)}")
    return classes[name](config)  # type: ignore[return-value]
