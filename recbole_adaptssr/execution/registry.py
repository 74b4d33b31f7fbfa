"""Unit kinds: the function that does a kind's work, found by the kind's name.

``register_unit_kind("finetune", run_finetune_unit)`` records the runner as ``"module:qualified name"``: a worker
process or a Ray task imports it from there, so a runner must be a function at the top level of an importable
module (not a lambda, a nested function, or a function of ``__main__``). The executor sends the path with each
unit, so a fresh worker needs no registration of its own.

A runner is called as ``runner(context)`` with a :class:`~recbole_adaptssr.execution.worker.UnitContext` and returns
a dict of plain JSON values (the unit's payload). ``check(result, folder)``, if given, runs in the command's process
before a finished unit's result is reused, with the unit's folder (e.g. to verify the checkpoint it names); raising
there runs the unit again.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from recbole_adaptssr.execution.unit import KIND_NAME
from recbole_adaptssr.plugins import Registry, did_you_mean


@dataclass(frozen=True)
class UnitKind:
    name: str
    runner: str  # "module:qualified name"
    check: str | None = None


#: the unit kinds by name
UNIT_KINDS = Registry("unit kind", unknown=lambda name, kinds: f"unknown unit kind {name!r}; registered: "
                      f"{sorted(kinds)}{did_you_mean(name, list(kinds), n=1)}")


def function_path(function) -> str:
    """``"module:qualified name"`` of a top-level function of an importable module, else a ``ValueError``."""
    module, qualname = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not callable(function) or not module or not qualname:
        raise ValueError(f"{function!r} is not a function")
    if module == "__main__" or "<" in qualname:
        raise ValueError(f"{module}.{qualname}: a unit's function must be defined at the top level of an importable "
                         "module (worker processes and Ray tasks import it by name)")
    path = f"{module}:{qualname}"
    if load_function(path) is not function:
        raise ValueError(f"{path} does not lead back to {function!r}: define it at the top level of {module}")
    return path


def load_function(path: str):
    """The function at ``"module:qualified name"`` (imported if need be)."""
    module, _, qualname = path.partition(":")
    value = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    return value


def register_unit_kind(name: str, runner, check=None, replace: bool = False) -> UnitKind:
    """Register the kind ``name`` (see the module docstring). Registering another runner under a registered name
    is an error unless ``replace``."""
    if not isinstance(name, str) or not KIND_NAME.match(name):
        raise ValueError(f"unit kind {name!r}: use lower-case letters, digits and '_', starting with a letter")
    kind = UnitKind(name, function_path(runner), None if check is None else function_path(check))
    if name in UNIT_KINDS and UNIT_KINDS[name] != kind and not replace:
        raise ValueError(f"unit kind {name!r} is already registered ({UNIT_KINDS[name].runner}); pass replace=True "
                         "to replace it")
    return UNIT_KINDS.add(name, kind, replace=True)


def unit_kind(name: str) -> UnitKind:
    """The registered kind ``name``; an unknown name is a ``ValueError`` listing the known ones."""
    return UNIT_KINDS.lookup(name)

