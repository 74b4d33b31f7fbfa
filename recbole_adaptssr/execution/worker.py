"""Running one unit, in whatever process an executor chose: the command's own, a worker process, a Ray task.

:func:`run_job` makes the unit's folder, opens its log (:func:`~recbole_adaptssr.execution.logs.unit_log`), calls
its runner with a :class:`UnitContext`, and writes its result atomically: ``done`` with the payload, ``failed`` with
the error and traceback (the exception does not leave :func:`run_job`, so the executor goes on with other units,
unless the job says ``reraise``), or ``interrupted`` on Ctrl-C (then the ``KeyboardInterrupt`` goes on up).

Nothing here imports torch or RecBole: a worker process sets ``CUDA_VISIBLE_DEVICES`` before the runner's module
imports them.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from logging import getLogger

from recbole_adaptssr.execution.logs import unit_log, unit_log_name
from recbole_adaptssr.execution.registry import load_function
from recbole_adaptssr.execution.result import DONE, FAILED, INTERRUPTED, UnitResult, unit_folder, write_result
from recbole_adaptssr.execution.unit import Unit, plain_json


@dataclass
class Job:
    """What an executor hands a process to run one unit (picklable)."""

    unit: Unit
    run_dir: str
    runner: str  # "module:qualified name" (registry.function_path)
    inputs: dict  # role -> payload of the unit it needs
    log_level: int
    isolated: bool  # this process runs units only (a worker process, a Ray task)
    gpu_id: str | None = None  # the GPUs given to the unit ("" = none, the CPU); None = the command's own
    cpus: float | None = None  # CPUs given to the unit (torch threads); None = the process's own
    where: dict = field(default_factory=dict)  # executor and worker, for the result
    options: dict = field(default_factory=dict)  # the command's settings for every unit's Config (not its identity)
    writes: bool = True  # this process writes the unit's folder, log and result (under torch.distributed: rank 0)
    reraise: bool = False  # a failure propagates once recorded (a caller that reports failures itself: a Ray trial)


@dataclass
class UnitContext:
    """What a runner receives (``runner(context) -> dict``).

    ``inputs`` maps each role of ``unit.needs`` to the payload of that unit. ``gpu_id`` is what the unit's RecBole
    ``Config`` must take as ``gpu_id`` (the GPUs this process was given: RecBole's Config would otherwise set
    ``CUDA_VISIBLE_DEVICES`` to the user's ``gpu_id``); None means the command's own devices (serial executor).
    ``parallel``: other units may run beside this one (no progress bars: they would garble the console);
    ``options``: settings the command gives every unit's Config that do not change what it computes (how it
    reports, ``show_progress``; a permission such as ``allow_data_change``): not part of the unit's id."""

    unit: Unit
    run_dir: str
    folder: str
    inputs: dict
    log_file: str
    gpu_id: str | None = None
    parallel: bool = False
    options: dict = field(default_factory=dict)

    @property
    def settings(self) -> dict:
        return self.unit.settings

    def input_folder(self, role: str) -> str:
        """The folder of the unit needed as ``role`` (a payload's paths are best written relative to it, so a run
        folder can move)."""
        return unit_folder(self.run_dir, self.unit.needs[role])

    def overrides(self) -> dict:
        """Settings a runner applies above the unit's (``Config.derive``): the command's ``options``, where the
        unit writes, no progress bars in a worker, and a worker's devices."""
        out = {**self.options, "checkpoint_dir": self.folder}
        if self.parallel:
            out["show_progress"] = False
        if self.gpu_id is not None:
            out["gpu_id"] = self.gpu_id
        return out

    def relative(self, path: str) -> str:
        """``path`` relative to the run folder (how a payload names its files, so a run folder can move)."""
        return os.path.relpath(path, self.run_dir)

    def path(self, relative: str) -> str:
        """The file a payload names (relative to the run folder), where the run folder is now."""
        return os.path.join(self.run_dir, relative)


def _limit_threads(cpus: float | None) -> None:
    """Torch threads = the unit's CPUs (rounded up), when torch is already imported; worker processes get
    ``OMP_NUM_THREADS`` before they start, which torch reads when it is imported."""
    if cpus is None:
        return
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(max(1, math.ceil(cpus)))


def crashed_result(job: Job, error: str) -> UnitResult:
    """The ``failed`` result of a job whose process ended before it wrote one (killed, out of memory, a crash)."""
    log = os.path.join(unit_folder(job.run_dir, job.unit.id), unit_log_name(job.run_dir, job.unit.id) + ".log")
    return UnitResult(unit=job.unit.as_dict(), status=FAILED, error=error, log=log, where=dict(job.where),
                      started=time.strftime("%Y-%m-%dT%H:%M:%S"))


@contextmanager
def bare_command_line():
    """``sys.argv`` without the command's arguments while a runner runs: RecBole's ``Config`` reads ``--key=value``
    from it, and a unit's settings must come from the unit alone (a Ray task has other arguments)."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def run_job(job: Job) -> UnitResult:
    """Run ``job``'s unit here and write its result (see the module docstring); returns the result."""
    unit = job.unit
    folder = unit_folder(job.run_dir, unit.id)
    if job.writes:
        os.makedirs(folder, exist_ok=True)
    log_file = os.path.join(folder, unit_log_name(job.run_dir, unit.id) + ".log")
    context = UnitContext(unit=unit, run_dir=job.run_dir, folder=folder, inputs=dict(job.inputs), log_file=log_file,
                          gpu_id=job.gpu_id, parallel=job.isolated, options=dict(job.options))
    where = {**job.where, "host": socket.gethostname(), "pid": os.getpid()}
    if job.gpu_id is not None:
        where["gpu_id"] = job.gpu_id
    result = UnitResult(unit=unit.as_dict(), status=FAILED, log=log_file, where=where,
                        started=time.strftime("%Y-%m-%dT%H:%M:%S"))
    began, failure = time.perf_counter(), None
    with unit_log(log_file if job.writes else None, job.log_level, job.isolated, unit.name):
        logger = getLogger()
        logger.debug(f"unit {unit.name} ({unit.id}), kind {unit.kind}: settings {unit.settings}, needs {unit.needs}")
        try:
            if job.isolated:
                _limit_threads(job.cpus)
            with bare_command_line():
                payload = load_function(job.runner)(context)
            if not isinstance(payload, dict):
                raise TypeError(f"the runner of kind {unit.kind} ({job.runner}) returned a "
                                f"{type(payload).__name__}; a runner returns a dict of plain JSON values")
            result.payload = plain_json(payload, f"the payload of unit {unit.name}", finite=False)
            result.status = DONE
        except KeyboardInterrupt:
            result.status = INTERRUPTED
            result.seconds = round(time.perf_counter() - began, 3)
            logger.warning(f"unit {unit.name} interrupted")
            if job.writes:
                write_result(job.run_dir, result)
            raise
        except (Exception, SystemExit) as error:  # noqa: BLE001 - reported as the unit's failure, the others go on
            result.error = f"{type(error).__name__}: {error}"
            result.traceback = traceback.format_exc()
            logger.error(f"unit {unit.name} failed:\n{result.traceback}")
            failure = error
        result.seconds = round(time.perf_counter() - began, 3)
        logger.debug(f"unit {unit.name}: {result.status} in {result.seconds:.1f} s")
    if job.writes:
        write_result(job.run_dir, result)
    if failure is not None and job.reraise:
        raise failure
    return result
