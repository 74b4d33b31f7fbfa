"""``execute(plan, run_dir, settings)``: run a plan with the executor its settings name."""

from __future__ import annotations

from recbole_adaptssr.execution.settings import EXECUTORS


def make_executor(settings, ranks=None, options=None):
    """The :class:`~recbole_adaptssr.execution.executor.Executor` of ``settings.executor``; ``ranks``
    (:class:`~recbole_adaptssr.execution.executor.Ranks`): the processes of a ``torch.distributed`` run, which
    execute serially; ``options``: settings of every unit's Config that are not part of its identity
    (:class:`~recbole_adaptssr.execution.worker.UnitContext`)."""
    if settings.executor == "serial":
        from recbole_adaptssr.execution.serial import SerialExecutor

        return SerialExecutor(settings, ranks, options)
    if ranks is not None:
        raise ValueError(f"executor: {settings.executor} cannot run under torch.distributed (torchrun, --nproc): "
                         "every process runs every unit together there; use executor: serial")
    if settings.executor == "processes":
        from recbole_adaptssr.execution.processes import ProcessExecutor

        return ProcessExecutor(settings, options=options)
    if settings.executor == "ray":
        from recbole_adaptssr.execution.ray_tasks import RayExecutor

        return RayExecutor(settings, options=options)
    raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {settings.executor!r}")


def execute(plan, run_dir: str, settings, ranks=None, options=None):
    """Run ``plan`` in ``run_dir`` (:meth:`Executor.run`) and return its
    :class:`~recbole_adaptssr.execution.executor.Outcome`."""
    return make_executor(settings, ranks, options).run(plan, run_dir)
