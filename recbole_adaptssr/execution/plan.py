"""A plan: the units of one command, in order, each once, with their dependencies.

``plan.add(unit)`` returns the unit's id; adding an identical unit again (same kind, settings and needs) returns the
same id and adds nothing, so a command can describe its work naively (every method asks for its MLM warm-up) and
the work is still done once. :meth:`Plan.check` refuses a unit that needs a unit not in the plan, and a cycle.
The order of execution is the order of adding, except that a unit always comes after what it needs.

Tables are assembled from results: :meth:`Plan.results` reads the finished units' results from a run folder, so any
set of finished units (a run still going, or one that failed or was interrupted) gives a partial table.
"""

from __future__ import annotations

import heapq
import json
import os
from logging import getLogger

from recbole_adaptssr.execution.result import read_result
from recbole_adaptssr.execution.unit import Unit
from recbole_adaptssr.files import atomic_write

PLAN_FILE = "plan.json"


class Plan:
    """An ordered set of :class:`Unit` (see the module docstring)."""

    def __init__(self, units=()):
        self._units: dict[str, Unit] = {}
        for unit in units:
            self.add(unit)

    def add(self, unit: Unit) -> str:
        """Add ``unit`` unless an identical one is there; return its id (the one to name in ``needs``)."""
        if not isinstance(unit, Unit):
            raise TypeError(f"a plan holds Unit objects, got {type(unit).__name__}")
        self._units.setdefault(unit.id, unit)
        return unit.id

    def __len__(self) -> int:
        return len(self._units)

    def __contains__(self, unit_id: str) -> bool:
        return unit_id in self._units

    def __getitem__(self, unit_id: str) -> Unit:
        return self._units[unit_id]

    def __iter__(self):
        return iter(self.ordered())

    def check(self) -> None:
        """Every need is a unit of the plan, and no unit needs itself through others (``ValueError`` naming them)."""
        for unit in self._units.values():
            missing = {role: need for role, need in unit.needs.items() if need not in self._units}
            if missing:
                raise ValueError(f"unit {unit.name} ({unit.id}) needs {missing}, which the plan does not have")
        ordered = self._topological()
        if len(ordered) < len(self._units):
            stuck = [u for u in self._units.values() if u.id not in {o.id for o in ordered}]
            raise ValueError("the plan's units need each other in a cycle: "
                             + ", ".join(f"{u.name} ({u.id}) needs {sorted(u.needs.values())}" for u in stuck))

    def ordered(self) -> list:
        """The units in execution order: the order of adding, each after the units it needs."""
        self.check()
        return self._topological()

    def _topological(self) -> list:
        position = {unit_id: i for i, unit_id in enumerate(self._units)}
        waiting = {unit_id: {n for n in unit.needs.values() if n in self._units} for unit_id, unit in self._units.items()}
        dependents: dict[str, list] = {}
        for unit_id, needs in waiting.items():
            for need in needs:
                dependents.setdefault(need, []).append(unit_id)
        ready = [position[u] for u, needs in waiting.items() if not needs]
        heapq.heapify(ready)
        ids = list(self._units)
        out = []
        while ready:
            unit_id = ids[heapq.heappop(ready)]
            out.append(self._units[unit_id])
            for dependent in dependents.get(unit_id, []):
                waiting[dependent].discard(unit_id)
                if not waiting[dependent]:
                    heapq.heappush(ready, position[dependent])
        return out

    # ------------------------------------------------------------------------------------------------- results
    def results(self, run_dir: str, kind: str | None = None) -> dict:
        """``{unit id: UnitResult}`` of the units (of ``kind``, if given) finished (``done``) in ``run_dir``, in plan
        order; units without a finished result are left out (a result file that cannot be read is warned about)."""
        out = {}
        for unit in self.ordered():
            if kind is not None and unit.kind != kind:
                continue
            try:
                result = read_result(run_dir, unit.id)
            except ValueError as error:
                getLogger().warning(f"{error}: left out of the results")
                continue
            if result is not None and result.done:
                out[unit.id] = result
        return out

    def payloads(self, run_dir: str, kind: str | None = None) -> list:
        """``[(unit, payload)]`` of the finished units (of ``kind``), in plan order: what a table is built from."""
        return [(self._units[unit_id], result.payload) for unit_id, result in self.results(run_dir, kind).items()]

    def write(self, run_dir: str) -> str:
        """``<run_dir>/plan.json``: every unit (id, kind, title, settings, needs) in execution order."""
        text = json.dumps({"units": [u.as_dict() for u in self.ordered()]}, indent=2, ensure_ascii=False) + "\n"
        return atomic_write(os.path.join(run_dir, PLAN_FILE), lambda f: f.write(text), binary=False)

    @classmethod
    def read(cls, run_dir: str) -> "Plan":
        """The plan written by :meth:`write` into ``run_dir``."""
        path = os.path.join(run_dir, PLAN_FILE)
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
        return cls(Unit.from_dict(u) for u in value["units"])

