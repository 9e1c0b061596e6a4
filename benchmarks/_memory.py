"""Peak resident memory of a call in this process, for the benchmarks that measure one stage in a fresh process
(``stage_memory.py``, ``result_memory.py``).

``ru_maxrss`` cannot serve there: it is the process's peak since it started (loading the inputs included), and a
child inherits its parent's at fork. :class:`PeakSampler` reads ``VmRSS`` in a daemon thread instead, so a call's
peak over the RSS just before it can be read.
"""

import threading
import time
from pathlib import Path

__all__ = ["PeakSampler", "rss_mib"]


def rss_mib() -> int:
    """This process's resident set now (``VmRSS``), in MiB."""
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) // 1024


class PeakSampler:
    """Samples :func:`rss_mib` every ``every`` seconds in a daemon thread from construction on.

    ``start()`` sets the base (the RSS now) and restarts the peak from it; ``over_base`` is the highest sample
    since, less the base. A peak shorter than ``every`` can be missed: keep it well under the call's seconds.
    """

    def __init__(self, every: float = 0.02) -> None:
        self.every = every
        self.base = rss_mib()
        self.high = self.base
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while True:
            self.high = max(self.high, rss_mib())
            time.sleep(self.every)

    def start(self) -> int:
        """Set the base to the RSS now and return it."""
        self.base = rss_mib()
        self.high = self.base
        return self.base

    @property
    def over_base(self) -> int:
        """The highest RSS sampled since :meth:`start` (and at the end, now), less the base, in MiB."""
        self.high = max(self.high, rss_mib())
        return self.high - self.base
