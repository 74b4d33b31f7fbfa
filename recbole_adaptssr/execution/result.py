"""A unit's result: ``<run folder>/units/<unit id>/result.json``, written atomically.

Its ``status`` is ``done`` (``payload`` is what the unit's runner returned), ``failed`` (``error`` and ``traceback``
say why; ``log`` is the unit's log file) or ``interrupted`` (Ctrl-C while it ran). Only a ``done`` result is read
back instead of running the unit again. The file also holds the unit itself (kind, settings, needs, title), so a
result can be understood, and a table assembled, from the files alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from recbole_adaptssr.files import atomic_write

UNITS_FOLDER = "units"
RESULT_FILE = "result.json"
DONE, FAILED, INTERRUPTED = "done", "failed", "interrupted"
STATUSES = (DONE, FAILED, INTERRUPTED)


def unit_folder(run_dir: str, unit_id: str) -> str:
    """``<run_dir>/units/<unit id>``: where a unit writes everything (checkpoints, its log, its result)."""
    return os.path.join(run_dir, UNITS_FOLDER, unit_id)


def result_path(run_dir: str, unit_id: str) -> str:
    return os.path.join(unit_folder(run_dir, unit_id), RESULT_FILE)


@dataclass
class UnitResult:
    """What became of one unit (see the module docstring)."""

    unit: dict  # Unit.as_dict(): id, kind, title, settings, needs
    status: str
    payload: dict | None = None
    error: str = ""
    traceback: str = ""
    log: str = ""
    started: str = ""
    seconds: float = 0.0
    where: dict = field(default_factory=dict)  # how it ran: executor, worker, host, pid, gpu_id

    @property
    def id(self) -> str:
        return self.unit["id"]

    @property
    def name(self) -> str:
        return self.unit.get("title") or self.unit["id"]

    @property
    def done(self) -> bool:
        return self.status == DONE

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict) -> "UnitResult":
        result = cls(**value)
        if result.status not in STATUSES:
            raise ValueError(f"status {result.status!r} is not one of {list(STATUSES)}")
        if not isinstance(result.unit, dict) or "id" not in result.unit:
            raise ValueError("it names no unit")
        return result


def write_result(run_dir: str, result: UnitResult) -> str:
    """Write ``result`` atomically into its unit's folder; returns the path. A payload that is not plain JSON is
    a ``TypeError`` (nothing is written)."""
    text = json.dumps(result.as_dict(), indent=2, ensure_ascii=False) + "\n"
    return atomic_write(result_path(run_dir, result.id), lambda f: f.write(text), binary=False)


def read_result(run_dir: str, unit_id: str) -> UnitResult | None:
    """The result written for ``unit_id``, or None when there is none. A file that cannot be read, or that belongs
    to another unit, is a ``ValueError`` naming it."""
    path = result_path(run_dir, unit_id)
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable unit result ({error})") from None
    try:
        result = UnitResult.from_dict(value)
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"{path}: not a unit result ({error})") from None
    if result.id != unit_id:
        raise ValueError(f"{path}: holds the result of unit {result.id!r}, not {unit_id!r}")
    return result
