"""Per-user and per-item work split into partitions, run in this process or on an executor (a Dask cluster's).

A stage that accepts ``partitions`` cuts its heaviest per-row step (embedding chunks, user vectors, assigning
users to segments, scoring and top-k) into blocks of rows and hands each block to :meth:`Partitions.map`:

>>> Partitions(rows=2).blocks(5)
[(0, 2), (2, 4), (4, 5)]
>>> list(Partitions().map(pow, [2, 3], 2))
[4, 9]

Without an executor (the default, and the ``threads`` task runner) every block runs here, in order: the
same numbers as one pass over all rows (each block's rows are computed exactly as before; the stages'
tests compare the two). With an executor (anything with ``map(fn, *iterables)``: a
``concurrent.futures.Executor``, or the one ``distributed.Client.get_executor()`` returns), the blocks run
wherever it sends them. The large read-only inputs every block needs (item vectors, a fitted model) are
passed once through ``share`` when one is given: the flow's Dask partitions scatter them to every worker
(``client.scatter(..., broadcast=True)``), so each block ships only its own rows. This package never imports
Dask: :mod:`flows._dask` builds the Dask flavour.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["DEFAULT_ROWS", "Mapper", "Partitions", "in_process"]

DEFAULT_ROWS = 8192
"""Users per partition of the per-user steps (``orchestration.partition_rows``)."""


class Mapper(Protocol):
    """What runs the partitions: ``concurrent.futures.Executor.map``'s signature (results in input order)."""

    def map(self, fn: Callable[..., Any], /, *iterables: Any) -> Iterator[Any]: ...


@dataclass(frozen=True)
class Partitions:
    """How a stage splits its per-row work and who runs the blocks.

    Attributes:
        executor: runs the blocks (``map(fn, *iterables)``, results in input order); None: this process.
        rows: rows (users) per block of the per-user steps. Embedding keeps its own chunk of texts
            (:data:`embeddings.encoder.CHUNK_TEXTS`), so that every batch holds the same texts as in one pass.
        share: sends the read-only inputs every block needs once and returns what to pass in their place
            (Dask: futures of the scattered values); None: pass them as they are.
    """

    executor: Mapper | None = None
    rows: int = DEFAULT_ROWS
    share: Callable[[list[Any]], list[Any]] | None = None

    def __post_init__(self) -> None:
        if self.rows < 1:
            raise ValueError(f"Partitions.rows must be at least 1 (given: {self.rows})")

    @property
    def remote(self) -> bool:
        """True when the blocks run on an executor (possibly other processes or machines)."""
        return self.executor is not None

    def blocks(self, n: int, rows: int | None = None) -> list[tuple[int, int]]:
        """``(start, stop)`` of consecutive blocks of at most ``rows`` (default :attr:`rows`) over ``n`` rows."""
        size = rows or self.rows
        return [(lo, min(lo + size, n)) for lo in range(0, n, size)]

    def map(self, fn: Callable[..., Any], parts: Sequence[Any], *shared: Any) -> Iterator[Any]:
        """``fn(part, *shared)`` for every part, results in the order of ``parts``.

        ``fn`` must be a module-level function (it is pickled by reference when the blocks leave this process).
        """
        if self.executor is None:
            return (fn(p, *shared) for p in parts)
        handles = list(shared)
        if self.share is not None and handles:
            handles = list(self.share(handles))
        return self.executor.map(fn, parts, *([h] * len(parts) for h in handles))


def in_process(partitions: "Partitions | None") -> Partitions:
    """``partitions``, or the default (every block in this process)."""
    return partitions if partitions is not None else Partitions()
