"""A unit: one piece of work of a command (a pre-training, a fine-tune run, a baseline run, a tuning trial).

A unit is defined by its ``kind`` (which runner does the work, see :mod:`~recbole_adaptssr.execution.registry`), its
``settings`` (plain JSON values: everything that decides what the work computes) and ``needs`` (the units whose
results it reads, by role: ``{"start": <id of a pre-training unit>}``). Its id is derived from those three alone, as
canonical JSON hashed with SHA-256, so two identical units have the same id, run once and share one folder; the
``title`` is what progress lines call it and does not count.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field

KIND_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
DIGEST_LENGTH = 16  # hex digits of the id's SHA-256 (64 bits: no collision among a plan's units)


def plain_json(value, where: str = "settings", finite: bool = True):
    """``value`` as plain JSON values (tuples become lists); anything else is a ``TypeError`` naming where it is.
    With ``finite``, NaN and infinities are refused too (they have no canonical JSON form)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if finite and not math.isfinite(value):
            raise TypeError(f"{where} is {value!r}: a unit's settings must be finite numbers")
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has the key {key!r}: keys of a unit's settings must be strings")
            out[key] = plain_json(item, f"{where}.{key}", finite)
        return out
    if isinstance(value, (list, tuple)):
        return [plain_json(item, f"{where}[{i}]", finite) for i, item in enumerate(value)]
    raise TypeError(f"{where} is a {type(value).__name__} ({value!r}): it must be plain JSON values "
                    "(str, int, float, bool, None, lists and string-keyed dicts of them); convert it first, e.g. "
                    "with recbole_adaptssr.plain_values.plain")


def canonical_json(value) -> str:
    """One text per value: keys sorted, no spaces, non-ASCII kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class Unit:
    """One piece of work: ``kind``, ``settings`` (plain JSON), ``needs`` (``{role: unit id}``) and a ``title``.

    ``id`` is ``<kind>-<first 16 hex digits of the SHA-256 of {kind, settings, needs} as canonical JSON>``."""

    kind: str
    settings: dict
    needs: dict = field(default_factory=dict)
    title: str = field(default="", compare=False)
    id: str = field(init=False, default="")

    def __post_init__(self):
        if not isinstance(self.kind, str) or not KIND_NAME.match(self.kind):
            raise ValueError(f"unit kind {self.kind!r}: use lower-case letters, digits and '_', starting with a letter")
        if not isinstance(self.settings, dict):
            raise TypeError(f"the settings of a {self.kind} unit must be a dict, got {type(self.settings).__name__}")
        settings = plain_json(self.settings, f"{self.kind} unit settings")
        needs = plain_json(dict(self.needs or {}), f"{self.kind} unit needs")
        bad = {role: need for role, need in needs.items() if not isinstance(need, str) or not need}
        if bad:
            raise TypeError(f"the needs of a {self.kind} unit map a role to a unit id (a string), got {bad}")
        identity = canonical_json({"kind": self.kind, "settings": settings, "needs": needs})
        digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:DIGEST_LENGTH]
        object.__setattr__(self, "settings", settings)
        object.__setattr__(self, "needs", needs)
        object.__setattr__(self, "title", str(self.title or ""))
        object.__setattr__(self, "id", f"{self.kind}-{digest}")

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def name(self) -> str:
        """The title, or the id when there is none (what logs call the unit)."""
        return self.title or self.id

    def as_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "title": self.title, "settings": self.settings, "needs": self.needs}

    @classmethod
    def from_dict(cls, value: dict) -> "Unit":
        """The unit of :meth:`as_dict`; the id is recomputed and must match the one written."""
        unit = cls(kind=value["kind"], settings=value["settings"], needs=value.get("needs") or {},
                   title=value.get("title", ""))
        if value.get("id") not in (None, unit.id):
            raise ValueError(f"unit {value.get('id')!r}: its kind, settings and needs give the id {unit.id!r}")
        return unit
