"""Names that become parts of paths (a data set, a task, a pre-training method, a study, a start point's label)
are plain names: checked before anything is read or created, so a name can never reach outside its folder or
replace a file the command writes."""

from __future__ import annotations

import os

from recbole_adaptssr.setting_errors import SettingError

#: what a name may not be: the current and parent folder
_DOTS = (".", "..")


def plain_name_problem(name) -> str | None:
    """Why ``name`` is not a plain name (None when it is): empty, not text, a path separator, ``.``/``..``, a
    leading dot (a hidden or relative name) or a control character."""
    if not isinstance(name, str):
        return f"a name is text, got {type(name).__name__} {name!r}"
    if not name.strip():
        return "a name cannot be empty"
    separators = [s for s in {"/", "\\", os.sep, os.altsep} if s and s in name]
    if separators:
        return f"a name cannot hold a path separator ({' '.join(sorted(separators))})"
    if name in _DOTS or name.startswith("."):
        return "a name cannot be '.' or '..' or start with a dot"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "a name cannot hold a control character"
    return None


def check_plain_name(name, what: str, where: str = "") -> str:
    """``name`` if it is a plain name, else a :class:`~recbole_adaptssr.setting_errors.SettingError` (a
    ``ValueError``) naming ``what`` (and ``where`` it was found)."""
    problem = plain_name_problem(name)
    if problem:
        place = f" ({where})" if where else ""
        raise SettingError(f"{what} {name!r}{place} is not a plain name: {problem}; it becomes part of a file or "
                           "folder name")
    return name


def check_unique(values, what: str) -> list:
    """``values`` as a list; a value listed twice is a :class:`~recbole_adaptssr.setting_errors.SettingError` naming
    ``what`` (a duplicate would run twice
    and count twice, e.g. one seed reported as two)."""
    values = list(values)
    twice = [v for i, v in enumerate(values) if v in values[:i]]
    if twice:
        raise SettingError(f"{what} lists {sorted(set(map(str, twice)))} more than once: {values}; list each once")
    return values


def distinct_labels(paths, taken=()) -> list:
    """A label per file path, usable in file names: its file name, or, where two paths (or a path and one of
    ``taken``) share it, as many of its last folder names as tell them apart, joined by ``-``
    (``a/ssr.pth``, ``b/ssr.pth`` -> ``a-ssr.pth``, ``b-ssr.pth``)."""
    parts = [os.path.normpath(os.path.abspath(str(p))).split(os.sep) for p in paths]
    depth = [1] * len(parts)
    while True:
        labels = ["-".join(p[-d:]).lstrip("-") for p, d in zip(parts, depth)]
        clashing = [i for i, label in enumerate(labels) if labels.count(label) > 1 or label in taken]
        deeper = [i for i in clashing if depth[i] < len(parts[i])]
        if not deeper:
            break
        for i in deeper:
            depth[i] += 1
    seen = {}
    for i, label in enumerate(labels):  # the same path twice, or a stage's name: numbered
        if labels.count(label) > 1 or label in taken:
            seen[label] = seen.get(label, 0) + 1
            labels[i] = f"{label}-{seen[label]}"
    return labels
