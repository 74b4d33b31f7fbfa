"""The executor interface: run a :class:`~recbole_adaptssr.execution.plan.Plan` in a run folder.

:meth:`Executor.run` is the same for every implementation (serial, processes, Ray):

1. the plan is checked (every need in the plan, no cycle, every kind registered) and written as ``plan.json``;
2. a unit whose ``done`` result is in the run folder is read back, not run (what makes every command resumable;
   its kind's ``check`` may refuse it, and then it runs again);
3. a unit starts when every unit it needs is done, in plan order, as many at once as the executor holds;
4. a unit that fails is reported with its error and log file, the others go on; a unit that needs a failed unit
   (directly or through others) is skipped, not run;
5. progress is logged as ``unit k of N`` with an ETA (:mod:`~recbole_adaptssr.execution.progress`).

It returns an :class:`Outcome`; ``outcome.ok`` is False when a unit failed or was skipped (a command then exits
non-zero). Ctrl-C stops the executor, leaves every finished unit's result in place and propagates.
Implementations provide :attr:`Executor.capacity`, :meth:`Executor.submit` and :meth:`Executor.wait`.

Under ``torch.distributed`` every process of the run executes the plan (the serial executor: their collectives
meet in every unit); :class:`Ranks` says which one writes the run folder and shares what it read back.
"""

from __future__ import annotations

import logging
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from logging import getLogger
from typing import Callable

from recbole_adaptssr.execution.progress import Progress, duration
from recbole_adaptssr.execution.registry import load_function, unit_kind
from recbole_adaptssr.execution.result import UnitResult, read_result, unit_folder
from recbole_adaptssr.execution.worker import Job


@dataclass
class Outcome:
    """What an executor did with a plan."""

    results: dict = field(default_factory=dict)  # unit id -> UnitResult (done, read back, failed), in plan order
    ran: list = field(default_factory=list)  # ids of the units run in this session
    read_back: list = field(default_factory=list)  # ids of the units whose earlier result was reused
    failed: list = field(default_factory=list)  # ids of the units that failed
    skipped: dict = field(default_factory=dict)  # unit id -> id of the failed unit it needs
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped

    def payloads(self, plan, kind: str | None = None) -> list:
        """``[(unit, payload)]`` of the units (of ``kind``) done, in plan order: what a table is built from (every
        process of a ``torch.distributed`` run has them, whoever wrote the files)."""
        return [(plan[unit_id], result.payload) for unit_id, result in self.results.items()
                if result.done and (kind is None or result.unit["kind"] == kind)]

    @property
    def status(self) -> str:
        """``done`` (every unit done) or ``failed``."""
        return "done" if self.ok else "failed"


@dataclass(frozen=True)
class Ranks:
    """The processes of one ``torch.distributed`` run executing a plan together: ``writer`` (rank 0) writes the run
    folder (plan, units' folders, logs and results); ``agree(value)`` returns rank 0's value on every rank (what
    rank 0 read back)."""

    writer: bool
    agree: Callable


class Executor(ABC):
    """Runs the units of a plan (see the module docstring)."""

    name = ""
    isolated = True  # units run in processes of their own (a worker process, a Ray task)

    def __init__(self, settings, ranks: Ranks | None = None, options: dict | None = None):
        self.settings = settings
        self.ranks = ranks
        self.writer = ranks is None or ranks.writer
        self.options = dict(options or {})  # the command's settings for every unit (UnitContext.options)

    @property
    @abstractmethod
    def capacity(self) -> int | None:
        """How many units may run at once (None: as many as are ready)."""

    def start(self) -> None:
        """Acquire the executor's resources (worker processes, a Ray connection)."""

    def close(self) -> None:
        """Release them (also after an error or Ctrl-C)."""

    @abstractmethod
    def submit(self, job: Job) -> str:
        """Start ``job``; return where it runs, for the log (``worker 1, GPU 0``)."""

    @abstractmethod
    def wait(self) -> list:
        """Block until at least one submitted job has finished; return their :class:`UnitResult`."""

    def job(self, unit, run_dir: str, runner: str, inputs: dict, level: int) -> Job:
        """The :class:`Job` of ``unit`` (an implementation adds its devices in :meth:`submit`)."""
        return Job(unit=unit, run_dir=run_dir, runner=runner, inputs=inputs, log_level=level,
                   isolated=self.isolated, cpus=self.settings.cpus_per_unit if self.isolated else None,
                   where={"executor": self.name}, options=self.options, writes=self.writer)

    # ------------------------------------------------------------------------------------------------- the loop
    def run(self, plan, run_dir: str) -> Outcome:
        """Run ``plan`` in ``run_dir`` (see the module docstring)."""
        logger = getLogger()
        units = plan.ordered()
        kinds = {unit.kind: unit_kind(unit.kind) for unit in units}  # an unknown kind fails before anything runs
        began = time.perf_counter()
        outcome = Outcome()
        earlier = {}
        if self.writer:
            os.makedirs(run_dir, exist_ok=True)
            plan.write(run_dir)
            for unit in units:
                result = reusable_result(run_dir, unit, kinds[unit.kind].check)
                if result is not None:
                    earlier[unit.id] = result.as_dict()
        if self.ranks is not None:
            earlier = self.ranks.agree(earlier)
        for unit_id, result in earlier.items():
            outcome.results[unit_id] = UnitResult.from_dict(result)
            outcome.read_back.append(unit_id)
        logger.info(f"{len(units)} units in the plan; {self.settings.describe()}")
        pending = [unit for unit in units if unit.id not in outcome.results]
        running: dict = {}
        level = logging.getLogger().getEffectiveLevel()
        progress = None
        try:
            self.start()
            progress = Progress(len(units), kinds=[unit.kind for unit in pending])
            progress.read_back(len(outcome.read_back))
            while pending or running:
                pending = self._start_ready(pending, running, outcome, run_dir, kinds, level, progress)
                if not running:
                    if pending:  # a checked plan never gets here: say so rather than drop units from the outcome
                        raise RuntimeError(f"no unit can start, and {[u.name for u in pending]} still wait")
                    break
                for result in self.wait():
                    kind = running.pop(result.id).kind
                    outcome.results[result.id] = result
                    outcome.ran.append(result.id)
                    if result.done:
                        progress.done(result.name, result.seconds, len(running), kind)
                    else:
                        outcome.failed.append(result.id)
                        progress.failed(result.name, result.error or result.status, result.log, len(running), kind,
                                        result.seconds or None)  # a worker that died reports no time
        except KeyboardInterrupt:
            finished = progress.finished if progress is not None else len(outcome.read_back)
            logger.warning(f"interrupted with {finished} of {len(units)} units finished: their results are kept in "
                           f"{run_dir}; resume the run to do the others")
            raise
        finally:
            self.close()
        outcome.seconds = time.perf_counter() - began
        order = {unit.id: i for i, unit in enumerate(units)}
        outcome.results = dict(sorted(outcome.results.items(), key=lambda item: order[item[0]]))
        log_summary(outcome, len(units))
        return outcome

    def _start_ready(self, pending, running, outcome, run_dir, kinds, level, progress) -> list:
        """Skip the units that need a failed one, submit the ready ones (plan order, up to the capacity); return
        the units still waiting."""
        waiting = []
        for unit in pending:
            needs = list(unit.needs.values())
            blocked = next((n for n in needs if n in outcome.skipped or n in outcome.failed), None)
            if blocked is not None:
                cause = outcome.skipped.get(blocked, blocked)  # the failed unit, directly or through others
                outcome.skipped[unit.id] = cause
                progress.skipped(unit.name, outcome.results[cause].name, unit.kind)
                continue
            ready = all(n in outcome.results and outcome.results[n].done for n in needs)
            if ready and (self.capacity is None or len(running) < self.capacity):
                inputs = {role: outcome.results[n].payload for role, n in unit.needs.items()}
                job = self.job(unit, run_dir, kinds[unit.kind].runner, inputs, level)
                running[unit.id] = unit
                progress.started(unit.name, self.submit(job))
            else:
                waiting.append(unit)
        return waiting


def reusable_result(run_dir: str, unit, check: str | None):
    """The ``done`` result of ``unit`` in ``run_dir`` if it may be reused, else None (with a warning when a result
    is there but unusable: the unit runs again)."""
    try:
        result = read_result(run_dir, unit.id)
    except ValueError as error:
        getLogger().warning(f"{error}; unit {unit.name} runs again")
        return None
    if result is None or not result.done:
        return None
    if check is not None:
        try:
            load_function(check)(result, unit_folder(run_dir, unit.id))
        except Exception as error:  # noqa: BLE001 - whatever the check finds wrong, the unit runs again
            getLogger().warning(f"the earlier result of unit {unit.name} cannot be reused ({type(error).__name__}: "
                                f"{error}); it runs again")
            return None
    return result


def log_summary(outcome: Outcome, total: int) -> None:
    logger = getLogger()
    done = sum(1 for r in outcome.results.values() if r.done)
    line = (f"{done} of {total} units done ({len(outcome.read_back)} read back), {len(outcome.failed)} failed, "
            f"{len(outcome.skipped)} skipped, in {duration(outcome.seconds)}")
    if outcome.ok:
        logger.info(line)
        return
    failures = "".join(f"\n  {outcome.results[i].name}: {outcome.results[i].error or outcome.results[i].status} "
                       f"(log: {outcome.results[i].log})" for i in outcome.failed)
    logger.error(line + failures)
