"""Progress of a plan through RecBole's logger: ``unit k of N`` with an estimate of the time left.

The estimate is per kind of unit, from this session's units only (units read back from an earlier session do not
make it look faster than it is): each unit left is expected to take the mean time of the units of its kind
finished so far (a kind none of which finished yet: the mean of all finished units), and the units running side by
side now (the one just finished included, at most the units left) share that work. A plan whose first units are a
long pre-training and whose many fine-tune units run in parallel is then estimated by what each part costs, not by
the pre-training's pace."""

from __future__ import annotations

from collections import Counter
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
    """Counts a plan's units and logs each step (see the module docstring). ``kinds``: the kinds of the units left
    to run when it starts (default: ``total`` units of one kind, ``"unit"``)."""

    def __init__(self, total: int, kinds=None):
        self.total = total
        self.finished = 0  # units with an outcome: done, failed, skipped, read back
        self.left = Counter(kinds if kinds is not None else ["unit"] * total)  # units of each kind not finished
        self.named_kinds = kinds is not None
        self.seconds = {}  # kind -> the durations of this session's finished units of that kind

    def _position(self) -> str:
        return f"unit {self.finished} of {self.total}"

    def _finish(self, kind, seconds=None) -> None:
        if self.left[kind] > 0:
            self.left[kind] -= 1
        if seconds is not None:
            self.seconds.setdefault(kind, []).append(float(seconds))

    def eta(self, running: int = 0) -> str:
        left = self.total - self.finished
        if left == 0:
            return "none left"
        if not self.seconds:
            return "ETA unknown"
        every = [s for durations in self.seconds.values() for s in durations]
        overall = sum(every) / len(every)
        work = sum(count * (sum(self.seconds[kind]) / len(self.seconds[kind]) if kind in self.seconds else overall)
                   for kind, count in self.left.items())
        return "ETA " + duration(work / max(1, min(running + 1, left)))

    def read_back(self, count: int) -> None:
        """``count`` units finished in an earlier session: their results are reused."""
        if count:
            self.finished += count
            if not self.named_kinds:  # ``kinds`` names only the units left; ``total`` counts these too
                self.left["unit"] -= min(count, self.left["unit"])
            getLogger().info(f"{count} of {self.total} units finished in an earlier session: their results are "
                             "read back, not run again")

    def started(self, name: str, where: str = "") -> None:
        getLogger().info(f"unit {name} started" + (f" ({where})" if where else ""))

    def done(self, name: str, seconds: float, running: int, kind: str = "unit") -> None:
        from recbole.utils import set_color

        self.finished += 1
        self._finish(kind, seconds)
        getLogger().info(set_color(self._position(), "green") + f" done: {name} in {duration(seconds)}; "
                         f"{running} running, {self.eta(running)}")

    def failed(self, name: str, error: str, log: str, running: int, kind: str = "unit",
               seconds: float | None = None) -> None:
        self.finished += 1
        self._finish(kind, seconds)
        getLogger().error(f"{self._position()} FAILED: {name}: {error} (its log: {log}); {running} running, "
                          f"{self.eta(running)}")

    def skipped(self, name: str, because: str, kind: str = "unit") -> None:
        self.finished += 1
        self._finish(kind)
        getLogger().warning(f"{self._position()} skipped: {name} needs {because}, which failed")
