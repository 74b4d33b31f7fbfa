"""``execute(plan, run_dir, settings)``: run a plan with the executor its settings name."""

from __future__ import annotations

from recbole_adaptssr.execution.settings import EXECUTORS


def make_executor(settings):
    """The :class:`~recbole_adaptssr.execution.executor.Executor` of ``settings.executor``."""
    if settings.executor == "serial":
        from recbole_adaptssr.execution.serial import SerialExecutor

        return SerialExecutor(settings)
    if settings.executor == "processes":
        from recbole_adaptssr.execution.processes import ProcessExecutor

        return ProcessExecutor(settings)
    if settings.executor == "ray":
        from recbole_adaptssr.execution.ray_tasks import RayExecutor

        return RayExecutor(settings)
    raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {settings.executor!r}")


def execute(plan, run_dir: str, settings):
    """Run ``plan`` in ``run_dir`` (:meth:`Executor.run`) and return its
    :class:`~recbole_adaptssr.execution.executor.Outcome`."""
    return make_executor(settings).run(plan, run_dir)
