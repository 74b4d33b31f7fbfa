"""``executor: serial``: one unit at a time, in the command's own process (the default).

The unit's log file is added in front of the run's handlers (the run's log keeps receiving everything); the unit
keeps the command's devices and torch threads."""

from __future__ import annotations

from recbole_adaptssr.execution.executor import Executor
from recbole_adaptssr.execution.worker import run_job


class SerialExecutor(Executor):
    name = "serial"
    isolated = False

    def __init__(self, settings, ranks=None, options=None):
        super().__init__(settings, ranks, options)
        self._job = None

    @property
    def capacity(self) -> int:
        return 1

    def submit(self, job) -> str:
        self._job = job
        return "in this process"

    def wait(self) -> list:
        job, self._job = self._job, None
        return [run_job(job)]
