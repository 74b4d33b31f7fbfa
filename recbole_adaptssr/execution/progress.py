"""Progress of a plan through RecBole's logger: ``unit k of N`` with an estimate of the time left.

The estimate is this session's pace: the time since the executor started divided by the units it finished, times
the units left (so units running side by side count as the executor's throughput, and units read back from an
earlier session do not make it look faster than it is)."""

from __future__ import annotations

import time
from logging import getLogger


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 04 min``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Counts a plan's units and logs each step (see the module docstring)."""

    def __init__(self, total: int, clock=time.monotonic):
        self.total, self.clock = total, clock
        self.finished = 0  # units with an outcome: done, failed, skipped, read back
        self.finished_here = 0  # of those, run in this session
        self.began = clock()

    def _position(self) -> str:
        return f"unit {self.finished} of {self.total}"

    def eta(self) -> str:
        left = self.total - self.finished
        if left == 0:
            return "none left"
        if self.finished_here == 0:
            return "ETA unknown"
        return "ETA " + duration((self.clock() - self.began) / self.finished_here * left)

    def read_back(self, count: int) -> None:
        """``count`` units finished in an earlier session: their results are reused."""
        if count:
            self.finished += count
            getLogger().info(f"{count} of {self.total} units finished in an earlier session: their results are "
                             "read back, not run again")

    def started(self, name: str, where: str = "") -> None:
        getLogger().info(f"unit {name} started" + (f" ({where})" if where else ""))

    def done(self, name: str, seconds: float, running: int) -> None:
        from recbole.utils import set_color

        self.finished += 1
        self.finished_here += 1
        getLogger().info(set_color(self._position(), "green") + f" done: {name} in {duration(seconds)}; "
                         f"{running} running, {self.eta()}")

    def failed(self, name: str, error: str, log: str, running: int) -> None:
        self.finished += 1
        self.finished_here += 1
        getLogger().error(f"{self._position()} FAILED: {name}: {error} (its log: {log}); {running} running, "
                          f"{self.eta()}")

    def skipped(self, name: str, because: str) -> None:
        self.finished += 1
        getLogger().warning(f"{self._position()} skipped: {name} needs {because}, which failed")
