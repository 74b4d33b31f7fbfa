"""How a command's work runs: a plan of units, one executor interface, run folders (docs/execution.md).

* :class:`Unit` (``unit.py``): one piece of work (kind, plain settings, needs); its id is a hash of them, so an
  identical unit is one unit. :class:`Plan` (``plan.py``): the units of a command, each once, in order;
  ``plan.results(run_dir)`` gives the finished units' results (partial tables).
* ``registry.py``: a unit kind's runner, ``register_unit_kind(kind, runner)``; ``worker.py``: running one unit
  (its folder, log, result file) wherever an executor put it.
* :class:`ExecutorSettings` (``settings.py``: ``executor``, ``executor_workers``, ``cpus_per_unit``,
  ``gpus_per_unit``, ``ray_address``) and :func:`execute` (``execute.py``): ``serial``, ``processes`` or ``ray``
  (``serial.py``, ``processes.py``, ``ray_tasks.py``), one loop (``executor.py``): finished units are read back,
  failures are reported and their dependents skipped, progress is ``unit k of N`` with an ETA (``progress.py``).
* ``run_folder.py``: a command's run folder (new or resumed, locked, ``run.json``); ``logs.py``: the run's and each
  unit's log file (each unit a TensorBoard run of its own).

Importing this package imports neither torch nor RecBole.
"""

from recbole_adaptssr.execution.execute import execute
from recbole_adaptssr.execution.executor import Outcome, Ranks
from recbole_adaptssr.execution.plan import Plan
from recbole_adaptssr.execution.registry import register_unit_kind
from recbole_adaptssr.execution.result import UnitResult
from recbole_adaptssr.execution.settings import ExecutorSettings
from recbole_adaptssr.execution.unit import Unit
from recbole_adaptssr.execution.worker import UnitContext

__all__ = ["execute", "ExecutorSettings", "Outcome", "Plan", "Ranks", "register_unit_kind", "Unit", "UnitContext",
           "UnitResult"]
