"""App data set (private, OPPO app installs in the paper) -> RecBole atomic files.

The App data is not public; this converter reads a plain layout of the project's choosing.  Three UTF-8,
comma-separated files with a header line (no quoting; ids are opaque tokens: no commas, tabs, spaces or
quotes, and not a missing-value word such as ``NA``/``null``):

* ``installs.csv``: ``user,app,timestamp``: one app installation per line, any order; timestamp a number
  (e.g. Unix seconds).  Each user's installs are sorted by time (ties keep file order) and only the most recent
  ``--max-len`` (default 256) are kept (the rest are counted as ``beyond_max_len``).
* ``gender.csv``: ``user,label``: one line per labelled user; label in ``--gender-values`` (default ``0,1``).
* ``cvr.csv``: ``user,target_app,label``: one sample per line; label ``0`` or ``1`` (installed the target
  app or not).  ``target_app`` is a token of the target-app domain (field ``target_id``).

Users are ordered by first appearance in ``installs.csv``.  Every user of gender.csv and cvr.csv must have
installs; a user labelled twice in gender.csv, or a (user, target_app) pair given twice in cvr.csv, is bad.
An install line that repeats an earlier one exactly (same user, app and timestamp) follows ``--duplicate-rows``:
``report`` (default: kept, counted as ``duplicate_rows`` in the statistics), ``drop`` (the first is kept, the
others counted as skipped ``duplicate_row``) or ``error`` (the conversion fails naming both lines).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

from .common import (
    BAD_ID,
    BAD_TIMESTAMP,
    DUPLICATE_ROW,
    DUPLICATE_SAMPLE,
    DUPLICATE_USER,
    UNDECODABLE,
    UNKNOWN_LABEL,
    UNKNOWN_USER,
    WRONG_FIELD_COUNT,
    ConversionError,
    FileReport,
    Progress,
    TaskSummary,
    check_token,
    finish_dataset,
    open_input,
    parse_float,
    require_data,
    require_file,
    require_output,
    require_samples,
    sequence_stats,
    staged_dataset_dir,
)
from .eventlog import EventLog

log = logging.getLogger("dataset_converters.app")

INSTALLS_FILE = "installs.csv"
TASK_FILES = {"gender": "gender.csv", "cvr": "cvr.csv"}
TASKS = tuple(TASK_FILES)
HEADERS = {"installs": ("user", "app", "timestamp"), "gender": ("user", "label"),
           "cvr": ("user", "target_app", "label")}
DEFAULT_MAX_LEN = 256
DEFAULT_GENDER_VALUES = ("0", "1")
DUPLICATE_POLICIES = ("report", "drop", "error")
_BUF = 1 << 20


class _Bad(Exception):
    def __init__(self, kind: str, problem: str):
        super().__init__(problem)
        self.kind, self.problem = kind, problem


def iter_csv(path: Path, header: tuple[str, ...], fr: FileReport, progress: bool = False):
    """Yield ``(line number, fields)`` for the data lines of a headed plain CSV; checks header and field count.

    Each yielded line counts as read; the caller marks it written or bad.  Undecodable or wrongly sized lines
    are handled here (counted read and bad).
    """
    bar = Progress(path, progress)
    with open_input(path, "rb") as f:
        first = f.readline()
        if not first:
            raise ConversionError(path, 1, f"empty file: expected the header line {','.join(header)!r}")
        got = tuple(x.strip().lower() for x in first.decode("utf-8", errors="replace").strip().split(","))
        if got != header:
            raise ConversionError(path, 1, f"bad header {first.decode('utf-8', 'replace').strip()!r}: "
                                           f"expected {','.join(header)!r}")
        lineno = 1
        n = len(header)
        for raw in f:
            lineno += 1
            fr.read += 1
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                fr.bad_line(lineno, UNDECODABLE, f"not valid UTF-8 ({e.reason} at byte {e.start})")
                continue
            fields = text.split(",")
            if len(fields) != n:
                fr.bad_line(lineno, WRONG_FIELD_COUNT,
                            f"expected {n} comma-separated fields ({','.join(header)}), got {len(fields)}")
                continue
            yield lineno, [x.strip() for x in fields]
            if not lineno % 65536:
                bar.update_to(f.tell())
    bar.close()


def _token(value: str, what: str) -> str:
    why = check_token(value)
    if why:
        raise _Bad(BAD_ID, f"bad {what} id: {why}")
    return value


def convert_app(input_dir, output_dir, name: str = "app", tasks=TASKS, max_len: int = DEFAULT_MAX_LEN,
                gender_values=DEFAULT_GENDER_VALUES, files: dict | None = None, skip_bad_lines: bool = False,
                progress: bool = False, *, overwrite: bool = False, duplicate_rows: str = "report") -> dict:
    """Convert the App layout in ``input_dir`` to ``output_dir/name``; return the statistics dict.

    ``overwrite``: replace an existing data set folder written by the converters (never one with other files);
    ``duplicate_rows``: report | drop | error, for install lines that repeat an earlier one exactly.
    """
    if duplicate_rows not in DUPLICATE_POLICIES:
        raise ConversionError("--duplicate-rows", None, f"must be one of {', '.join(DUPLICATE_POLICIES)}")
    input_dir = Path(input_dir)
    tasks = list(tasks)
    for t in tasks:
        if t not in TASK_FILES:
            raise ConversionError(t, None, f"unknown App task (choose from {', '.join(TASKS)})")
    if max_len < 1:
        raise ConversionError("--max-len", None, "must be >= 1")
    gender_values = tuple(gender_values)
    names = {"installs": INSTALLS_FILE, **TASK_FILES, **(files or {})}

    def resolve(n):
        p = Path(n)
        return require_file(p if p.is_absolute() else input_dir / p)

    inst_path = resolve(names["installs"])
    task_paths = {t: resolve(names[t]) for t in tasks}
    for p in (inst_path, *task_paths.values()):
        require_data(p, header_lines=1)

    with staged_dataset_dir(output_dir, name, [input_dir, inst_path, *task_paths.values()], overwrite) as tmp:
        inst = FileReport(inst_path, skip_bad_lines)
        t0 = time.time()
        log.info("reading %s", inst_path)
        ev = EventLog()
        for lineno, (user, app, ts) in iter_csv(inst_path, HEADERS["installs"], inst, progress):
            try:
                if user not in ev.user_code:  # tokens repeat: check each once
                    _token(user, "user")
                if app not in ev.item_code:
                    _token(app, "app")
                t = parse_float(ts)
                if t is None:
                    raise _Bad(BAD_TIMESTAMP, f"timestamp {ts!r} is not a finite number")
            except _Bad as e:
                inst.bad_line(lineno, e.kind, e.problem)
                continue
            ev.add(user, app, t, lineno)
        log.info("%s: %d lines, %d users, %d apps in %.1fs", inst_path.name, inst.read, len(ev.users),
                 len(ev.items), time.time() - t0)

        repeated = _duplicate_installs(ev, inst, duplicate_rows)
        skip = repeated if duplicate_rows == "drop" else None
        seq = _write_inter(ev, tmp / f"{name}.inter", max_len, inst, skip=skip)
        require_output(inst, seq["num_sequences"], "installs", "there is no behaviour sequence and no user for the "
                       "task lines")
        known = ev.user_code
        reports = [inst]
        summaries = []
        for t in tasks:
            fr = FileReport(task_paths[t], skip_bad_lines)
            out = tmp / f"{name}.{t}"
            if t == "gender":
                summaries.append(_convert_gender(task_paths[t], out, known, gender_values, fr, progress))
            else:
                summaries.append(_convert_cvr(task_paths[t], out, known, fr, progress))
            require_samples(fr, summaries[-1])
            reports.append(fr)
        notes = [f"Sequences sorted by timestamp (ties keep file order), most recent {max_len} kept per user.",
                 "Users are ordered by first appearance in the installs file.",
                 f"Install lines repeating an earlier one exactly: {inst.extra['duplicate_rows']:,} "
                 f"({'dropped' if duplicate_rows == 'drop' else 'kept'}; --duplicate-rows {duplicate_rows})."]
        stats = finish_dataset(tmp, name, "app", seq, summaries, reports,
                               {"tasks": tasks, "max_len": max_len, "gender_values": list(gender_values),
                                "skip_bad_lines": skip_bad_lines, "duplicate_rows": duplicate_rows}, notes)
    return stats


def _duplicate_installs(ev: EventLog, fr: FileReport, policy: str):
    """The mask of install events that repeat an earlier one exactly; counted in the statistics, dropped (counted
    as skipped) or an error, as ``policy`` says."""
    repeated, pair = ev.duplicates()
    count = int(repeated.sum())
    fr.extra["duplicate_rows"] = count
    if count and policy == "error":
        raise ConversionError(fr.path, pair[1], f"repeats line {pair[0]} exactly (same user, app and timestamp); "
                                                f"{count:,} such line(s): remove them, or pass --duplicate-rows "
                                                "report (keep) or drop", DUPLICATE_ROW)
    if count and policy == "drop":
        fr.drop(DUPLICATE_ROW, count)
    if count:
        log.warning("%s: %d install line(s) repeat an earlier one exactly (e.g. lines %d and %d): %s", fr.path,
                    count, pair[0], pair[1], "dropped" if policy == "drop" else "kept (--duplicate-rows report)")
    return repeated


def _write_inter(ev: EventLog, path: Path, max_len: int, fr: FileReport, skip=None) -> dict:
    integral = ev.timestamps_integral()
    items = ev.items
    distinct = bytearray(len(items))
    n_seq = n_beh = 0
    min_len, longest = 1 << 62, 0
    with open(path, "w", encoding="utf-8", buffering=_BUF) as out:
        out.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user, it, ts in ev.groups(skip=skip):
            if len(it) > max_len:
                fr.drop("beyond_max_len", len(it) - max_len)
                it, ts = it[-max_len:], ts[-max_len:]
            codes = it.tolist()
            tss = ts.astype("int64").tolist() if integral else [repr(x) for x in ts.tolist()]
            prefix = f"{user}\t"
            out.write("".join([f"{prefix}{items[c]}\t{x}\n" for c, x in zip(codes, tss)]))
            for c in codes:
                distinct[c] = 1
            n = len(codes)
            n_seq += 1
            n_beh += n
            min_len = min(min_len, n)
            longest = max(longest, n)
    fr.written += n_beh
    return sequence_stats(n_seq, n_beh, sum(distinct), min_len, longest)


def _convert_gender(path: Path, out_path: Path, known: dict, values: tuple, fr: FileReport, progress: bool):
    summary = TaskSummary("gender", "binary", out_path.name)
    seen: dict[str, int] = {}
    allowed = set(values)
    with open(out_path, "w", encoding="utf-8", buffering=_BUF) as out:
        out.write("user_id:token\tlabel:token\n")
        for lineno, (user, label) in iter_csv(path, HEADERS["gender"], fr, progress):
            try:
                _token(user, "user")
                if label not in allowed:
                    raise _Bad(UNKNOWN_LABEL, f"unknown label value {label!r} (expected one of "
                                              f"{', '.join(values)}; see --gender-values)")
                if user not in known:
                    raise _Bad(UNKNOWN_USER, f"unknown user {user!r}: no installs")
                if user in seen:
                    raise _Bad(DUPLICATE_USER, f"duplicate user {user!r}: already labelled at line {seen[user]}")
            except _Bad as e:
                fr.bad_line(lineno, e.kind, e.problem)
                continue
            seen[user] = lineno
            out.write(f"{user}\t{label}\n")
            summary.labels[label] += 1
            fr.written += 1
    summary.num_samples = summary.num_users = fr.written
    return summary


def _convert_cvr(path: Path, out_path: Path, known: dict, fr: FileReport, progress: bool):
    summary = TaskSummary("cvr", "cvr", out_path.name)
    seen: dict[tuple[int, str], int] = {}
    users: set[int] = set()
    labels: Counter = Counter()
    with open(out_path, "w", encoding="utf-8", buffering=_BUF) as out:
        out.write("user_id:token\ttarget_id:token\tlabel:float\n")
        for lineno, (user, target, label) in iter_csv(path, HEADERS["cvr"], fr, progress):
            try:
                _token(user, "user")
                _token(target, "target_app")
                if label not in ("0", "1"):
                    raise _Bad(UNKNOWN_LABEL, f"unknown label value {label!r} (expected 0 or 1)")
                code = known.get(user)
                if code is None:
                    raise _Bad(UNKNOWN_USER, f"unknown user {user!r}: no installs")
                prev = seen.get((code, target))
                if prev is not None:
                    raise _Bad(DUPLICATE_SAMPLE, f"duplicate sample: user {user!r} and target app {target!r} "
                                                 f"already given at line {prev}")
            except _Bad as e:
                fr.bad_line(lineno, e.kind, e.problem)
                continue
            seen[(code, target)] = lineno
            users.add(code)
            out.write(f"{user}\t{target}\t{label}\n")
            labels[label] += 1
            summary.targets.add(target)
            fr.written += 1
    summary.num_samples = fr.written
    summary.num_users = len(users)
    summary.labels = labels
    return summary
