"""Shared machinery of the converters: errors, bad-line accounting, staged output, the report files.

Every converter writes one data set folder ``OUTPUT/NAME/`` of RecBole atomic files.  It is built in a
temporary sibling folder (``OUTPUT/.NAME.tmp-XXXX``) and renamed into place only once complete, so a failed
conversion leaves ``OUTPUT`` exactly as it was; the marker ``NAME.converted.json`` lists the files the converter
wrote, so nothing else is ever replaced or deleted (see "staged output" below).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil

log = logging.getLogger("dataset_converters")

#: Exit code of the CLI for any conversion error (bad input, missing file, ...), as for argparse errors.
EXIT_BAD_INPUT = 2

# Kinds of bad lines.  They are the keys of ``skipped_by_reason`` in the statistics.
NON_INTEGER_ID = "non_integer_id"
BAD_ID = "bad_id"
MISSING_SEPARATOR = "missing_separator"
EMPTY_SEQUENCE = "empty_sequence"
UNKNOWN_USER = "unknown_user"
DUPLICATE_USER = "duplicate_user"
DUPLICATE_SAMPLE = "duplicate_sample"
DUPLICATE_ROW = "duplicate_row"
UNKNOWN_LABEL = "unknown_label"
NO_TARGETS = "no_targets"
WRONG_FIELD_COUNT = "wrong_field_count"
BAD_TIMESTAMP = "bad_timestamp"
UNDECODABLE = "undecodable_line"
# Kinds of the errors about a whole file or the output folder (never skipped by --skip-bad-lines).
NO_DATA = "no_data"
INPUT_OUTPUT_OVERLAP = "input_output_overlap"
FOREIGN_FILES = "foreign_files"
OUTPUT_EXISTS = "output_exists"

#: Integer ids (and integer labels) have at most this many significant digits; longer ones are bad lines
#: (kind ``bad_id``).  Below Python's int() limit (4,300 digits, at least 640 when lowered), whatever it is set to.
MAX_ID_DIGITS = 100

# Values that pandas (hence RecBole's loader) reads as missing even with dtype=str: never valid tokens.
PANDAS_NA_STRINGS = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
     "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
)


class ConversionError(Exception):
    """Bad or unreadable input.  ``str()`` names the file, the line (1-based, when there is one) and the problem."""

    def __init__(self, file, line: int | None, problem: str, kind: str | None = None):
        self.file = str(file)
        self.line = line
        self.problem = problem
        self.kind = kind
        where = f"{self.file}, line {line}" if line is not None else self.file
        super().__init__(f"{where}: {problem}")


_BAD_TOKEN_CHARS = re.compile(r"[\s\"']")


def check_token(tok: str) -> str | None:
    """Why ``tok`` cannot be a RecBole token (``None`` when it can)."""
    if tok in PANDAS_NA_STRINGS:
        return "empty or missing-value token" if not tok else f"token {tok!r} would be read as missing by RecBole"
    if _BAD_TOKEN_CHARS.search(tok):
        return f"token {tok!r} contains whitespace or a quote"
    return None


def id_too_long(digits: str | bytes, what: str) -> str | None:
    """Why the decimal ``digits`` cannot be an integer id (too many significant digits), None when they can."""
    n = len(digits.lstrip(b"0" if isinstance(digits, bytes) else "0"))
    return f"{what} of {n:,} digits is too long (at most {MAX_ID_DIGITS})" if n > MAX_ID_DIGITS else None


class FileReport:
    """Line accounting of one input file: ``read == written + skipped`` (data lines, header excluded).

    ``bad`` counts the bad lines skipped under ``--skip-bad-lines`` by kind; ``dropped`` counts lines left out
    on purpose (e.g. installs beyond ``--max-len``).  Without ``skip_bad_lines`` the first bad line raises.
    """

    #: How many skipped bad lines are logged individually per file before going quiet.
    LOG_FIRST = 5

    def __init__(self, path, skip_bad_lines: bool):
        self.path = Path(path)
        self.skip_bad_lines = skip_bad_lines
        self.read = 0
        self.written = 0
        self.bad: Counter = Counter()
        self.dropped: Counter = Counter()
        self.extra: dict = {}

    def bad_line(self, line: int | None, kind: str, problem: str) -> None:
        if not self.skip_bad_lines:
            raise ConversionError(self.path, line, problem, kind)
        self.bad[kind] += 1
        n = sum(self.bad.values())
        if n <= self.LOG_FIRST:
            log.warning("skipping bad line: %s", ConversionError(self.path, line, problem, kind))
        elif n == self.LOG_FIRST + 1:
            log.warning("%s: more bad lines skipped; counts in the statistics report", self.path)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n

    @property
    def skipped(self) -> int:
        return sum(self.bad.values()) + sum(self.dropped.values())

    def check(self) -> None:
        assert self.read == self.written + self.skipped, (self.path, self.read, self.written, self.skipped)

    def as_dict(self) -> dict:
        self.check()
        d = {
            "path": str(self.path),
            "read": self.read,
            "written": self.written,
            "skipped": self.skipped,
            "bad_lines": sum(self.bad.values()),
            "skipped_by_reason": dict(sorted((self.bad + self.dropped).items())),
            "bad_lines_by_kind": dict(sorted(self.bad.items())),
        }
        d.update(self.extra)
        return d


def require_file(path) -> Path:
    """``path`` as a Path if it is a readable regular file, else a ConversionError (never skippable)."""
    p = Path(path)
    if not p.exists():
        raise ConversionError(p, None, "missing input file")
    if not p.is_file():
        raise ConversionError(p, None, "not a regular file")
    if not os.access(p, os.R_OK):
        raise ConversionError(p, None, "unreadable input file (permission denied)")
    return p


@contextmanager
def open_input(path, mode="rb"):
    """Open an input file, turning OS errors into a ConversionError."""
    try:
        f = open(path, mode, buffering=1 << 20) if "b" in mode else open(path, mode, encoding="utf-8", newline="")
    except OSError as e:
        raise ConversionError(path, None, f"cannot open input file: {e.strerror or e}") from e
    try:
        yield f
    except OSError as e:
        raise ConversionError(path, None, f"I/O error while converting this file: {e}") from e
    finally:
        f.close()


def check_name(name: str) -> str:
    if not name or name in (".", "..") or any(c in name for c in "/\\\t\n") or name.startswith("."):
        raise ConversionError(name, None, "invalid data set name (a plain folder name is required)")
    return name


# ------------------------------------------------------------------ staged output: nothing lost, nothing half-written
#
# ``OUTPUT/NAME`` is built in ``OUTPUT/.NAME.tmp-XXXX`` and renamed into place when complete.  Each such folder,
# and the finished data set folder, holds the marker ``NAME.converted.json``: who wrote it (host, pid and the
# process's start time), its state and, once complete, the name and size of every file the converter wrote.
# The marker is what lets a later run tell the converter's own files from the user's:
#
# * an existing ``OUTPUT/NAME`` is replaced only when ``overwrite`` is given and every entry in it is a file its
#   marker lists, with the listed size (an empty folder is no loss and is replaced without ``overwrite``);
# * a ``.NAME.tmp-*`` folder is removed only when its marker names that folder and a process of this host
#   that is no longer running (a conversion killed with SIGKILL, or a power cut).
# SIGTERM and SIGHUP (when their handler is the default) abort a conversion like Ctrl-C: the temporary folder
# is removed, then the process dies of the signal as it would have without the handler.

MARKER_SUFFIX = ".converted.json"
WRITTEN_BY = "dataset_converters"


def marker_name(name: str) -> str:
    return f"{name}{MARKER_SUFFIX}"


def temp_prefix(name: str) -> str:
    return f".{name}.tmp-"


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (seconds since the epoch, to 10 ms), None where unknown."""
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except (psutil.Error, ValueError, OverflowError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    """Whether the process that wrote a marker still runs (False when its pid now belongs to another process)."""
    try:
        running = psutil.pid_exists(pid)
    except (ValueError, OverflowError):  # a pid out of range: do not guess
        return True
    if not running:
        return False
    now = _process_start(pid)
    return start is None or now is None or now == start


def _write_marker(folder: Path, name: str, state: str, **extra) -> None:
    m = {"written_by": WRITTEN_BY, "marker_version": 1, "dataset": name, "state": state,
         "temp_folder": folder.name, "host": socket.gethostname(), "pid": os.getpid(),
         "process_start": _process_start(os.getpid()), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    part = folder / f"{marker_name(name)}.part"
    write_json(part, m)
    os.replace(part, folder / marker_name(name))  # never a half-written marker


def write_dataset_marker(folder, name: str) -> dict:
    """Mark ``folder`` as a complete data set ``name`` written by the converters: list its files and sizes."""
    folder = Path(folder)
    files = {e.name: e.stat(follow_symlinks=False).st_size for e in sorted(os.scandir(folder), key=lambda e: e.name)
             if e.name != marker_name(name) and e.is_file(follow_symlinks=False)}
    _write_marker(folder, name, "complete", files=files)
    return files


def read_marker(folder, name: str) -> dict | None:
    """The converters' marker of data set ``name`` in ``folder``, or None (missing, unreadable, not ours)."""
    p = Path(folder) / marker_name(name)
    if p.is_symlink() or not p.is_file():
        return None
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict) or m.get("written_by") != WRITTEN_BY or m.get("dataset") != name:
        return None
    return m


def foreign_entries(folder: Path, name: str) -> tuple[list[str], dict | None]:
    """(entries of ``folder`` that its marker does not list as written by the converter, the marker)."""
    marker = read_marker(folder, name)
    files = marker.get("files") if marker is not None and marker.get("state") == "complete" else None
    files = files if isinstance(files, dict) else {}
    foreign = []
    for e in sorted(os.scandir(folder), key=lambda e: e.name):
        if marker is not None and e.name == marker_name(name):
            continue
        size = files.get(e.name)
        if size is None:
            foreign.append(e.name + ("/" if e.is_dir(follow_symlinks=False) else ""))
        elif not e.is_file(follow_symlinks=False):
            foreign.append(f"{e.name} (not a regular file)")
        elif e.stat(follow_symlinks=False).st_size != size:
            foreign.append(f"{e.name} (changed since it was written: {e.stat(follow_symlinks=False).st_size:,} "
                           f"bytes, not {size:,})")
    return foreign, marker


def _listing(items: list[str], most: int = 10) -> str:
    return ", ".join(items[:most]) + (f", ... ({len(items):,} in all)" if len(items) > most else "")


def check_replaceable(final: Path, name: str, overwrite: bool, shown: Path | None = None) -> bool:
    """Whether ``final`` exists and may be replaced; a ConversionError when replacing it could lose a user's file
    or (without ``overwrite``) an earlier conversion.  ``shown``: the path to name in the message."""
    shown = shown or final
    if not os.path.lexists(final):
        return False
    if final.is_symlink() or not final.is_dir():
        raise ConversionError(shown, None, "exists and is not a data set folder written by dataset_converters "
                                           "(a file or a link); nothing was changed: move it away or choose "
                                           "another --output or --name", FOREIGN_FILES)
    foreign, marker = foreign_entries(final, name)
    if foreign:
        raise ConversionError(shown, None, "the existing data set folder holds files that dataset_converters did "
                                           f"not write: {_listing(foreign)}; nothing was changed or deleted: move "
                                           "these files elsewhere, or choose another --output or --name",
                                           FOREIGN_FILES)
    if marker is not None and not overwrite:
        raise ConversionError(shown, None, f"already holds a data set converted earlier ({marker_name(name)}); "
                                           "nothing was changed: pass --overwrite (Python: overwrite=True) to "
                                           "replace it, or choose another --output or --name", OUTPUT_EXISTS)
    return True


def _within(path: str, folder: str) -> bool:
    return path != folder and os.path.commonpath([path, folder]) == folder


def check_overlap(inputs, final: Path) -> None:
    """A ConversionError when an input folder or file is ``final``, lies inside it or contains it."""
    f = os.path.realpath(final)
    for p in inputs:
        r = os.path.realpath(p)
        how = ("is" if r == f else "lies inside" if _within(r, f) else "contains" if _within(f, r) else None)
        if how:
            raise ConversionError(p, None, f"the input {how} the output data set folder {final} that the "
                                           "conversion writes and would replace; nothing was changed: choose an "
                                           "--output (or --name) whose data set folder is apart from the input",
                                           INPUT_OUTPUT_OVERLAP)


def clean_stale_temps(out: Path, name: str) -> list[Path]:
    """Remove the ``.NAME.tmp-*`` folders of conversions that were killed; return them.

    Only a folder whose marker names that very folder and a process of this host that no longer runs is removed,
    so a user's folder of a similar name and a running conversion's folder are left alone.  A folder holding the
    previous data set of a run killed while replacing it is first renamed back to ``OUTPUT/NAME``.
    """
    removed = []
    final = out / name
    try:
        entries = sorted(os.scandir(out), key=lambda e: e.name)
    except OSError:
        return removed
    for e in entries:
        if not e.name.startswith(temp_prefix(name)) or not e.is_dir(follow_symlinks=False):
            continue
        p = Path(e.path)
        m = read_marker(p, name)
        pid = m.get("pid") if m is not None else None
        if (m is None or m.get("temp_folder") != e.name or m.get("host") != socket.gethostname()
                or type(pid) is not int or pid < 1 or _alive(pid, m.get("process_start"))):
            continue
        if m.get("state") == "replacing" and (p / name).is_dir() and not os.path.lexists(final):
            try:
                os.rename(p / name, final)
            except OSError as err:  # keep the folder: it holds the previous data set
                log.warning("could not restore %s from %s: %s", final, p, err)
                continue
            log.warning("restored %s: a conversion (pid %d) was killed while replacing it", final, pid)
        _remove_trash(p, name)
        if not p.exists():
            log.warning("removed %s, left behind by a conversion that was killed (pid %d)", p, pid)
            removed.append(p)
    return removed


class _Terminated(BaseException):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextmanager
def _abort_on_termination() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise (so the clean-up runs); then the process dies of the signal."""
    installed = {}

    def handler(signum, frame):
        for s in installed:  # a second signal must not interrupt the clean-up
            signal.signal(s, signal.SIG_IGN)
        raise _Terminated(signum)

    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if s is not None and signal.getsignal(s) == signal.SIG_DFL:  # leave a caller's own handling alone
                installed[s] = signal.signal(s, handler)
    try:
        yield
    except _Terminated as e:
        for s, old in installed.items():
            signal.signal(s, old)
        installed.clear()
        log.warning("%s: conversion aborted, temporary files removed", signal.Signals(e.signum).name)
        os.kill(os.getpid(), e.signum)  # the default action: terminate, as without the handler
        raise
    finally:
        for s, old in installed.items():
            signal.signal(s, old)


def _new_temp(out: Path, name: str, state: str) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(name), dir=out))
    _write_marker(tmp, name, state)
    return tmp


def _commit(tmp: Path, out: Path, name: str, overwrite: bool) -> None:
    """Mark ``tmp`` complete and rename it to ``OUTPUT/NAME``, replacing a replaceable existing folder."""
    final = out / name
    write_dataset_marker(tmp, name)
    if not os.path.lexists(final):
        os.rename(tmp, final)
        return
    trash = _new_temp(out, name, "replacing")
    os.rename(final, trash / name)
    try:
        # checked again (files may have been added during the conversion) where nobody adds to it any more
        check_replaceable(trash / name, name, overwrite, shown=final)
        os.rename(tmp, final)
    except BaseException:
        if not os.path.lexists(final):
            os.rename(trash / name, final)
        _remove_trash(trash, name)
        raise
    _remove_trash(trash, name)


def _remove_trash(trash: Path, name: str) -> None:
    """Remove a folder made by ``_commit``; one still holding a data set folder with foreign files is kept."""
    old = trash / name
    if os.path.lexists(old) and (old.is_symlink() or not old.is_dir() or foreign_entries(old, name)[0]):
        log.warning("kept %s: it holds files that dataset_converters did not write", old)
        return
    shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def staged_dataset_dir(output_dir, name: str, inputs=(), overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder for ``OUTPUT/NAME``; move it into place only if the block completes.

    Refused up front (ConversionError, nothing touched) when one of ``inputs`` (folders and files) overlaps
    ``OUTPUT/NAME``, or when an existing ``OUTPUT/NAME`` may not be replaced (see ``check_replaceable``; checked
    again at the swap).  Stale temporary folders of killed conversions are removed first.  On any exception,
    SIGTERM or SIGHUP the temporary folder is removed, and so is ``OUTPUT`` if this call created it, so the
    output side is as before.
    """
    check_name(name)
    out = Path(output_dir)
    check_overlap(inputs, out / name)
    clean_stale_temps(out, name)  # first: it may restore OUTPUT/NAME
    check_replaceable(out / name, name, overwrite)
    created = []
    p = out
    while not os.path.lexists(p):
        created.append(p)
        p = p.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConversionError(out, None, f"cannot create output folder: {e.strerror or e}") from e
    with _abort_on_termination():
        tmp = None
        try:
            tmp = _new_temp(out, name, "building")
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; the data set folder gets the usual mode
            yield tmp
            _commit(tmp, out, name, overwrite)
        except BaseException:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            for d in created:  # innermost first
                try:
                    d.rmdir()
                except OSError:
                    break
            raise


def require_data(path: Path, header_lines: int = 0) -> None:
    """A ConversionError (kind ``no_data``) when ``path`` has no line after its ``header_lines`` header lines."""
    with open_input(path, "rb") as f:
        n = 0
        while n <= header_lines and f.readline():
            n += 1
    if n <= header_lines:
        raise ConversionError(path, None, "empty file: no data lines" if n == 0 else
                              "no data lines (only the header line)", NO_DATA)


def require_output(fr: "FileReport", count: int, what: str, hint: str) -> None:
    """A ConversionError (kind ``no_data``) naming ``fr.path`` when it gave no ``what`` (``count == 0``)."""
    if count:
        return
    why = (f"all {fr.read:,} data lines were skipped as bad lines (--skip-bad-lines)" if fr.bad
           else f"none of its {fr.read:,} data lines gave one")
    raise ConversionError(fr.path, None, f"no {what}: {why}; {hint}", NO_DATA)


def require_samples(fr: "FileReport", summary: "TaskSummary") -> None:
    """A ConversionError naming the task file when the task got no samples."""
    require_output(fr, summary.num_samples, f"samples for task {summary.name}",
                   "a task with 0 samples is useless: mend the file, or leave the task out with --tasks")


def write_json(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


TASK_METRIC = {"multiclass": "Acc", "binary": "AUC", "cvr": "AUC", "recommendation": "NDCG@10"}


class TaskSummary:
    """Counts of one downstream task file, feeding both the manifest and the statistics."""

    def __init__(self, name: str, kind: str, file: str):
        self.name, self.kind, self.file = name, kind, file
        self.num_samples = 0
        self.num_users = 0
        self.labels: Counter = Counter()
        self.targets: set = set()
        self.extra: dict = {}

    @property
    def classification(self) -> bool:
        return self.kind in ("multiclass", "binary")

    def manifest_entry(self) -> dict:
        d = {"kind": self.kind, "metric": TASK_METRIC[self.kind], "file": self.file,
             "num_samples": self.num_samples}
        if self.classification:
            d["num_labels"] = len(self.labels)
        else:
            d["num_targets"] = len(self.targets)
        return d

    def stats_entry(self) -> dict:
        d = self.manifest_entry()
        d["num_users"] = self.num_users
        if self.classification or self.kind == "cvr":
            d["label_counts"] = {str(k): v for k, v in sorted(self.labels.items(), key=lambda kv: _label_key(kv[0]))}
        d.update(self.extra)
        return d


def _label_key(x):
    s = str(x)
    try:
        return (0, float(s), s)
    except ValueError:
        return (1, 0.0, s)


def finish_dataset(tmp: Path, name: str, source: str, seq: dict, tasks: list[TaskSummary],
                   files: list[FileReport], options: dict, notes: list[str] | None = None) -> dict:
    """Write ``NAME.tasks.json``, ``NAME.stats.json`` and ``NAME.stats.md`` into ``tmp``; return the stats."""
    for fr in files:
        fr.check()
    write_json(tmp / f"{name}.tasks.json", {"tasks": {t.name: t.manifest_entry() for t in tasks}})
    stats = {
        "dataset": name,
        "source": source,
        "sequences": seq,
        "tasks": {t.name: t.stats_entry() for t in tasks},
        "files": {fr.path.name: fr.as_dict() for fr in files},
        "options": options,
    }
    if notes:
        stats["notes"] = notes
    write_json(tmp / f"{name}.stats.json", stats)
    (tmp / f"{name}.stats.md").write_text(stats_markdown(stats), encoding="utf-8")
    return stats


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:,.2f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def stats_markdown(stats: dict) -> str:
    """The statistics in the form of the paper's Table 1, then the per-file line accounting."""
    s = stats["sequences"]
    tasks = stats["tasks"]
    lines = [f"# {stats['dataset']} ({stats['source']})", ""]
    lines += ["| Dataset | " + stats["dataset"] + " |", "|---|---|",
              f"| # Behaviour sequences | {_fmt(s['num_sequences'])} |",
              f"| # Different behaviours | {_fmt(s['num_distinct_behaviours'])} |",
              f"| Avg. sequence length | {_fmt(s['avg_sequence_length'])} |",
              f"| # Behaviours (total) | {_fmt(s['num_behaviours'])} |", ""]
    if tasks:
        names = list(tasks)
        lines += ["| Downstream task | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|",
                  "| Kind | " + " | ".join(tasks[n]["kind"] for n in names) + " |",
                  "| Metric | " + " | ".join(tasks[n]["metric"] for n in names) + " |",
                  "| # Samples | " + " | ".join(_fmt(tasks[n]["num_samples"]) for n in names) + " |",
                  "| # Labels/Items | " + " | ".join(
                      _fmt(tasks[n].get("num_labels", tasks[n].get("num_targets"))) for n in names) + " |",
                  "| # Users | " + " | ".join(_fmt(tasks[n]["num_users"]) for n in names) + " |", ""]
    lines += ["| Input file | read | written | skipped | skipped by reason |", "|---|---|---|---|---|"]
    for fname, fr in stats["files"].items():
        reasons = ", ".join(f"{k}: {_fmt(v)}" for k, v in fr["skipped_by_reason"].items()) or "-"
        lines.append(f"| {fname} | {_fmt(fr['read'])} | {_fmt(fr['written'])} | {_fmt(fr['skipped'])} | {reasons} |")
    lines.append("")
    lines.append("Line counts are data lines (header lines excluded); read = written + skipped.")
    for n in stats.get("notes", []):
        lines.append(f"- {n}")
    lines.append("")
    return "\n".join(lines)


def sequence_stats(num_sequences: int, num_behaviours: int, num_distinct: int, min_len: int, max_len: int) -> dict:
    return {
        "num_sequences": num_sequences,
        "num_distinct_behaviours": num_distinct,
        "num_behaviours": num_behaviours,
        "avg_sequence_length": round(num_behaviours / num_sequences, 4) if num_sequences else 0.0,
        "min_sequence_length": min_len if num_sequences else 0,
        "max_sequence_length": max_len,
    }


def parse_float(s: str) -> float | None:
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


class Progress:
    """A byte-based tqdm bar over one input file (no-op when disabled)."""

    def __init__(self, path: Path, enabled: bool):
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name,
                                mininterval=1.0, leave=False)
            except Exception:  # tqdm missing or a stat problem: no bar
                self.bar = None
        self.pos = 0

    def update_to(self, pos: int) -> None:
        if self.bar is not None:
            self.bar.update(pos - self.pos)
            self.pos = pos

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
