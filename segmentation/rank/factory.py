"""Rankers by name: the names the configuration accepts (``ranker.name``) and the classes behind them, and which of
them a run of a given size uses (:func:`choose_rankers`)."""

import logging
from dataclasses import dataclass

from segmentation.config import RankerConfig
from segmentation.rank.als import ALS
from segmentation.rank.base import MatrixRanker, Ranker, dense_mib
from segmentation.rank.ease import EASE
from segmentation.rank.knn import ItemKNN
from segmentation.rank.popularity import MostPopular
from segmentation.rank.rp3beta import RP3beta
from segmentation.rank.segflow import SegflowRanker

__all__ = ["RANKERS", "RankerChoice", "choose_rankers", "make_ranker"]

logger = logging.getLogger(__name__)

#: Names accepted by :func:`make_ranker`.
RANKERS = ("most-popular", "item-knn", "ease", "rp3beta", "als", "segflow")

_CLASSES: dict[str, type[MatrixRanker]] = {
    "most-popular": MostPopular, "item-knn": ItemKNN, "ease": EASE, "rp3beta": RP3beta, "als": ALS,
    "segflow": SegflowRanker,
}  # fmt: skip


def make_ranker(name: str, config: RankerConfig | None = None) -> Ranker:
    """Build an unfitted ranker by name.

    Args:
        name: one of ``RANKERS``: most-popular, item-knn, ease, rp3beta, als, segflow.
        config: ranker settings; defaults when None.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid ones).
    """
    config = config or RankerConfig()
    if name not in _CLASSES:
        raise ValueError(f"unknown ranker {name!r}; expected one of: {', '.join(RANKERS)}")
    return _CLASSES[name](config)


@dataclass(frozen=True)
class RankerChoice:
    """The rankers a run fits, in order (the last one is the primary), and why."""

    names: list[str]
    reason: str


def choose_rankers(config: RankerConfig, n_users: int, n_items: int) -> RankerChoice:
    """Which of ``config.rankers`` a run over ``n_users`` x ``n_items`` fits, chosen by size and logged.

    Within ``dense_budget_mib`` (estimated by :func:`~segmentation.rank.base.dense_mib` over the items a dense ranker
    keeps, at most ``max_items``) the configured list is kept as it is. Above it the dense items x items rankers
    (item-kNN, EASE, RP3beta) are left out, the segflow ranker is replaced by ALS (what it would fall back to),
    and ALS is the primary ranker; most-popular stays. Users count only linearly (every ranker scores them in
    batches), so the rule reads the item count; ``n_users`` is logged beside it.

    >>> choose_rankers(RankerConfig(), 943, 1682).names
    ['most-popular', 'item-knn', 'ease', 'segflow']
    >>> choose_rankers(RankerConfig(), 610, 9742).names
    ['most-popular', 'als']
    """
    unknown = [n for n in config.rankers if n not in _CLASSES]
    if unknown:
        raise ValueError(f"unknown ranker {unknown[0]!r}; expected one of: {', '.join(RANKERS)}")
    kept = min(n_items, config.max_items)
    mib = dense_mib(kept)
    if mib <= config.dense_budget_mib:
        reason = (f"{n_users:,} users x {n_items:,} items: dense rankers need about {mib:,.0f} MiB, within "
                  f"ranker.dense_budget_mib = {config.dense_budget_mib:,}; rankers as configured")  # fmt: skip
        choice = RankerChoice(list(config.rankers), reason)
    else:
        names = [n for n in config.rankers if not _CLASSES[n].dense and n != "als"]
        dropped = [n for n in config.rankers if _CLASSES[n].dense]
        names.append("als")
        over = f" (on the {kept:,} items ranker.max_items keeps)" if kept < n_items else ""
        reason = (f"{n_users:,} users x {n_items:,} items: dense items x items rankers would need about {mib:,.0f} "
                  f"MiB{over}, over ranker.dense_budget_mib = {config.dense_budget_mib:,}; left out: "
                  f"{', '.join(dropped) or 'none'}; ALS (implicit) ranks instead and is the primary ranker")  # fmt: skip
        choice = RankerChoice(names, reason)
    logger.info("rankers %s: %s", choice.names, choice.reason)
    return choice
