"""A command's run folder: made fresh, or found again to resume; locked while in use; described by ``run.json``.

* :func:`new_run_folder`: ``<root>/<prefix>-<YYYYmmdd-HHMMSS>-<hash of the settings>-<pid>``, never an existing
  folder, so concurrent commands never share files.
* :func:`hold`: an exclusive lock on ``<folder>/.lock`` (``filelock``, which uses ``flock``: the OS releases it when
  the process ends, even by SIGKILL). A second process is refused, naming the holder's pid (kept in
  ``<folder>/.lock.pid``).
* ``run.json`` (:func:`read_run_record`, :func:`write_run_record`): the command's identity (e.g. command, model,
  data set), the user's settings, when it started and was resumed, its status (``running``, ``complete``,
  ``failed``), pid and command line.
* :func:`resolve_resume`: the ``resume`` setting -> the folder to continue (a path, a name under ``root``, or
  ``true``/``latest``: the newest unfinished run of the same identity, settings and data that no process holds), or
  None for a new run. Settings that only say how a run is carried out (:data:`RESUME_FREE`) may differ; data that
  changed since the run started (its fingerprint, :mod:`recbole_adaptssr.data.fingerprint`) is refused unless
  ``allow_data_change``; each refusal is a :class:`~recbole_adaptssr.setting_errors.SettingError` naming ``resume``.
* :func:`remove_stale_temporaries`: temporary files of atomic writes a killed process left behind.
* :func:`open_run_folder` puts these together for a command.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from logging import getLogger

from filelock import FileLock, Timeout

from recbole_adaptssr.execution.settings import KEYS as EXECUTOR_KEYS
from recbole_adaptssr.files import atomic_write
from recbole_adaptssr.setting_errors import SettingError

RUN_RECORD = "run.json"
LOCK_FILE, HOLDER_FILE = ".lock", ".lock.pid"
COMPLETE, RUNNING, FAILED = "complete", "running", "failed"
# settings that may differ between an interrupted run and its resumption (where it writes, how it reports, how
# its units are carried out, and the permission to continue on changed data)
RESUME_FREE = ("resume", "checkpoint_dir", "show_progress", "state", "allow_data_change", *EXECUTOR_KEYS)
_STALE_TEMP = re.compile(r"^\..+\.tmp-\d+-[0-9a-f]{8}$")
_NAME = re.compile(r"[^A-Za-z0-9_-]")
_UNSET = "<unset>"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


# ------------------------------------------------------------------------------------------------------ new folders
def run_folder_name(prefix: str, settings: dict) -> str:
    """``<prefix>-<YYYYmmdd-HHMMSS>-<hash of the settings>-<pid>``: readable, sortable, unique per process; only
    letters, digits, '_' and '-'."""
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return _NAME.sub("_", f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{digest}-{os.getpid()}")


def new_run_folder(root: str, prefix: str, settings: dict) -> str:
    """Create and return a fresh folder ``<root>/<run folder name>`` (never an existing one)."""
    base = os.path.join(root, run_folder_name(prefix, settings))
    for attempt in range(1000):
        path = base if attempt == 0 else f"{base}-{attempt}"
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a fresh run folder under {root}")


# ------------------------------------------------------------------------------------------------------------ lock
class RunFolderInUse(RuntimeError):
    """Another process holds the run folder."""


def _holder(folder: str) -> str:
    try:
        with open(os.path.join(folder, HOLDER_FILE), encoding="utf-8") as f:
            return f.read().strip() or "?"
    except OSError:
        return "?"


@contextmanager
def hold(folder: str):
    """Hold the exclusive lock of ``folder`` while the block runs (see the module docstring); a folder another
    process holds is a :class:`RunFolderInUse` naming its pid."""
    lock = FileLock(os.path.join(folder, LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunFolderInUse(f"run folder {folder} is in use by another process (pid {_holder(folder)}): wait for "
                             "it to end, or stop it, before resuming") from None
    try:
        pid = str(os.getpid())
        atomic_write(os.path.join(folder, HOLDER_FILE), lambda f: f.write(pid), binary=False)
        yield folder
    finally:
        lock.release()


def in_use(folder: str) -> bool:
    """Whether a process holds ``folder``'s lock now (this one included, through another :func:`hold`)."""
    path = os.path.join(folder, LOCK_FILE)
    if not os.path.isfile(path):
        return False
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:
        return False
    lock.release()
    return False


# ---------------------------------------------------------------------------------------------------------- record
def read_run_record(folder: str) -> dict | None:
    """``<folder>/run.json``, or None when it is missing or unreadable."""
    try:
        with open(os.path.join(folder, RUN_RECORD), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_run_record(folder: str, record: dict) -> None:
    text = json.dumps(record, indent=2, default=str) + "\n"
    atomic_write(os.path.join(folder, RUN_RECORD), lambda f: f.write(text), binary=False)


# ---------------------------------------------------------------------------------------------------------- resume
def resume_target(value) -> str | None:
    """The ``resume`` setting -> None (a new run), ``"latest"`` or a folder (path or name)."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("", "false", "no")):
        return None
    if value is True or (isinstance(value, str) and value.strip().lower() in ("true", "yes", "latest")):
        return "latest"
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise SettingError(f"resume must be a run folder, true/latest (the newest unfinished run of these settings) or "
                       f"false, got {value!r}")


def setting_differences(then: dict, now: dict, free=RESUME_FREE) -> list:
    """``key: then X, now Y`` for every setting (other than ``free`` ones) that differs."""
    def comparable(settings):
        normal = json.loads(json.dumps(settings, sort_keys=True, default=str))
        return {k: v for k, v in normal.items() if k not in free}

    a, b = comparable(then), comparable(now)
    return [f"{k}: then {a.get(k, _UNSET)!r}, now {b.get(k, _UNSET)!r}"
            for k in sorted(set(a) | set(b)) if a.get(k, _UNSET) != b.get(k, _UNSET)]


def data_changes(record: dict, data: dict | None, allow_data_change: bool = False) -> list:
    """What changed in the data since the run of ``record`` (its ``"data"`` fingerprint) started; nothing when
    ``allow_data_change`` (then each change is logged as a warning)."""
    from recbole_adaptssr.data.fingerprint import differences

    changes = differences(record.get("data"), data) if data is not None else []
    if changes and allow_data_change:
        getLogger().warning("the data changed since the run started (allow_data_change: True): " + "; ".join(changes))
        return []
    return changes


def resolve_resume(value, root: str, identity: dict, settings: dict, free=RESUME_FREE, data: dict | None = None,
                   allow_data_change: bool = False) -> str | None:
    """The run folder to continue, or None for a new run (see the module docstring). ``identity`` (e.g.
    ``{"command": "comparison", "model": ..., "dataset": ...}``) must equal the record's, ``settings`` its
    settings but for ``free`` keys, ``data`` (this run's fingerprint, if given) its data unless
    ``allow_data_change``; errors name the setting and what differs."""
    target = resume_target(value)
    if target is None:
        return None
    if target == "latest":
        candidates = []
        for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
            folder = os.path.join(root, name)
            record = read_run_record(folder)
            if (record and record.get("status") != COMPLETE and all(record.get(k) == v for k, v in identity.items())
                    and not setting_differences(record.get("settings", {}), settings, free) and not in_use(folder)):
                changes = data_changes(record, data, allow_data_change)
                if changes:
                    getLogger().warning(f"resume={value!r}: not continuing {folder}, its data changed: "
                                        + "; ".join(changes))
                    continue
                candidates.append((str(record.get("started", "")), folder))
        if not candidates:
            what = "these settings and data" if data is not None else "these settings"
            getLogger().warning(f"resume={value!r}: no unfinished run of {what} under {root}; starting a new run")
            return None
        return os.path.abspath(max(candidates)[1])
    tried = [target] if os.path.isabs(target) else [target, os.path.join(root, target)]
    folder = next((path for path in tried if os.path.isdir(path)), None)
    if folder is None:
        raise SettingError(f"resume={target!r}: no such run folder (looked at {', '.join(tried)})")
    record = read_run_record(folder)
    if record is None:
        what = identity.get("command", "run")
        raise SettingError(f"resume={target!r}: {folder} is not a run folder of a {what} (no readable "
                           f"{RUN_RECORD})")
    differences = [f"{k}: then {record.get(k)!r}, now {v!r}" for k, v in identity.items() if record.get(k) != v]
    differences += setting_differences(record.get("settings", {}), settings, free)
    if differences:
        raise SettingError(f"resume={target!r}: the settings differ from those of the run in {folder} ("
                           + "; ".join(differences) + "); resume with the same settings, or start a new run")
    changes = data_changes(record, data, allow_data_change)
    if changes:
        raise SettingError(f"resume={target!r}: the data changed since the run in {folder} started ("
                           + "; ".join(changes) + "); resume with its data, start a new run, or set "
                           "allow_data_change=True to continue on the new data")
    return os.path.abspath(folder)


def remove_stale_temporaries(folder: str) -> list:
    """Remove the temporary files of interrupted atomic writes (``.<name>.tmp-<pid>-<hex>``) under ``folder`` and
    return their paths; call it only while holding the folder (then no other process is writing them)."""
    removed = []
    for base, _, files in os.walk(folder):
        for name in files:
            if _STALE_TEMP.match(name):
                os.remove(os.path.join(base, name))
                removed.append(os.path.join(base, name))
    return removed


# ---------------------------------------------------------------------------------------------- for a command
@dataclass
class RunFolder:
    """An open run folder: where, whether it was resumed, its record, what stale temporaries were removed."""

    path: str
    resumed: bool
    record: dict
    removed: list = field(default_factory=list)

    def update(self, **fields) -> None:
        """Add ``fields`` to ``run.json`` (atomically)."""
        self.record.update(fields)
        write_run_record(self.path, self.record)

    def finish(self, status: str) -> None:
        """Record how the command ended: ``complete`` (``resume=true`` no longer picks it) or ``failed``."""
        if status not in (COMPLETE, FAILED):
            raise ValueError(f"a run ends {COMPLETE} or {FAILED}, not {status!r}")
        self.update(status=status)


@contextmanager
def open_run_folder(root: str, prefix: str, identity: dict, settings: dict, resume=None, free=RESUME_FREE,
                    data: dict | None = None, allow_data_change: bool = False, folder: str | None = None):
    """The run folder of a command, held while the block runs: the one ``resume`` names (:func:`resolve_resume`;
    its stale temporaries removed), else a new one under ``root``; ``run.json`` says ``running`` with this pid and
    command line (and ``data``, the fingerprint of the data it reads). ``folder``: the one to open, already
    resolved (:func:`choose_run_folder`). Yields a :class:`RunFolder`; call its :meth:`~RunFolder.finish` at the
    end (a run that stops before, by an error or a kill, stays ``running``: ``resume=true`` picks it up)."""
    if folder is None:
        folder = choose_run_folder(root, prefix, identity, settings, resume, free, data, allow_data_change)
    resumed = read_run_record(folder) is not None
    with hold(folder):
        record = read_run_record(folder) if resumed else None
        if record is None:
            record = {**identity, "settings": settings, "started": _now(), "resumed": []}
        removed = []
        if resumed:
            record["resumed"] = [*record.get("resumed", []), _now()]
            removed = remove_stale_temporaries(folder)
        run = RunFolder(path=folder, resumed=resumed, record=record, removed=removed)
        run.update(status=RUNNING, pid=os.getpid(), argv=list(sys.argv), **({} if data is None else {"data": data}))
        yield run


def choose_run_folder(root: str, prefix: str, identity: dict, settings: dict, resume=None, free=RESUME_FREE,
                      data: dict | None = None, allow_data_change: bool = False) -> str:
    """The folder :func:`open_run_folder` opens: the one to resume (:func:`resolve_resume`), else a new one."""
    folder = resolve_resume(resume, root, identity, settings, free, data, allow_data_change)
    return folder if folder is not None else new_run_folder(root, prefix, settings)


def user_settings(config) -> dict:
    """The user's settings of a command (what a resumption must repeat), as plain values, without ``resume``."""
    from recbole_adaptssr.plain_values import plain

    return {k: v for k, v in plain(getattr(config, "user_config_dict", {}) or {}).items() if k != "resume"}
