"""``executor: processes``: worker processes on this machine, several units at once.

``executor_workers`` processes are spawned (the ``spawn`` start method: a fresh interpreter, never a fork of a
process that holds CUDA or threads). Each is given its GPUs through ``CUDA_VISIBLE_DEVICES`` and its CPUs through
``OMP_NUM_THREADS`` in its environment before it starts, so they apply when its unit's runner imports torch
(:meth:`ExecutorSettings.worker_devices`: with ``gpus_per_unit: 0.25``, four workers share each GPU). A worker runs
one unit at a time and keeps running units until the plan is done; a worker that dies (killed, out of memory)
fails its unit and is replaced.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from contextlib import contextmanager
from multiprocessing import connection

from recbole_adaptssr.execution.executor import Executor
from recbole_adaptssr.execution.process_worker import serve
from recbole_adaptssr.execution.result import UnitResult, write_result
from recbole_adaptssr.execution.worker import crashed_result

JOIN_SECONDS = 10


@contextmanager
def environment(values: dict):
    """``os.environ`` with ``values`` while the block runs (a spawned process inherits it when it starts)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class ProcessExecutor(Executor):
    name = "processes"

    def __init__(self, settings, ranks=None, options=None):
        super().__init__(settings, ranks, options)
        self.devices = settings.worker_devices()
        self._context = multiprocessing.get_context("spawn")
        self._workers: list = [None] * len(self.devices)  # (process, connection) per worker
        self._busy: dict = {}  # worker index -> job

    @property
    def capacity(self) -> int:
        return len(self.devices)

    def start(self) -> None:
        for index in range(len(self.devices)):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        ours, theirs = self._context.Pipe()
        env = {"CUDA_VISIBLE_DEVICES": self.devices[index],
               "OMP_NUM_THREADS": str(max(1, math.ceil(self.settings.cpus_per_unit)))}
        with environment(env):
            process = self._context.Process(target=serve, args=(theirs,), name=f"unit-worker-{index}")
            process.start()
        theirs.close()
        self._workers[index] = (process, ours)

    def submit(self, job) -> str:
        index = next(i for i in range(len(self._workers)) if i not in self._busy)
        job.gpu_id = self.devices[index]
        job.where.update(worker=index)
        self._workers[index][1].send(job)
        self._busy[index] = job
        return f"worker {index}" + (f", GPU {self.devices[index]}" if self.devices[index] else "")

    def wait(self) -> list:
        while True:
            watched = {}
            for index in self._busy:
                process, conn = self._workers[index]
                watched[conn] = watched[process.sentinel] = index
            ready = connection.wait(list(watched))
            results = []
            for index in sorted({watched[r] for r in ready}):
                result = self._collect(index)
                if result is not None:
                    results.append(result)
            if results:
                return results

    def _collect(self, index: int) -> UnitResult | None:
        """The result worker ``index`` sent, or the failure of its unit if it died (then a new worker takes its
        place); None if neither happened yet."""
        process, conn = self._workers[index]
        try:
            if conn.poll():
                result = UnitResult.from_dict(conn.recv())
                self._busy.pop(index)
                return result
        except (EOFError, OSError):
            pass
        process.join(timeout=1)
        if process.is_alive():
            return None
        job = self._busy.pop(index)
        result = crashed_result(job, f"worker process {index} ended with exit code {process.exitcode} before the "
                                     "unit finished (killed, or out of memory?)")
        try:
            write_result(job.run_dir, result)
        except OSError:
            pass  # reported below anyway
        conn.close()
        self._spawn(index)
        return result

    def close(self) -> None:
        for index, worker in enumerate(self._workers):
            if worker is None:
                continue
            process, conn = worker
            if index in self._busy:  # stopped half-way (an error, Ctrl-C): its unit has no result, it runs again
                process.terminate()
            else:
                try:
                    conn.send(None)
                except OSError:
                    pass
            process.join(timeout=JOIN_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()
        self._workers = [None] * len(self.devices)
        self._busy.clear()
