"""One validation pass over a data set's files before anything trains: the behaviour log and every selected task
file, against the task manifest. A command calls :func:`validate_data` after its settings are checked and before
it makes a run folder; every error (:class:`DataError`) names the file and, where there is one, the line.

Every file: its content is not compressed (gzip, bzip2, xz, zip, zstandard, 7z are recognised by their first
bytes, whatever the file's name), is UTF-8 without a byte-order mark, has no NUL byte and no double quote (RecBole's
loader reads one as CSV quoting, which changes the token), its header names the fields the pipeline reads with
their types, and every line has the header's number of tab-separated fields (empty lines are skipped, as every
loader does).

The behaviour log (``user_id:token item_id:token timestamp:float``):

* no empty user or item id, and none that pandas reads as missing (``NA``, ``null``, ``nan``, ...): RecBole's
  loader drops such a row from pre-training while the task loader would keep it;
* every timestamp a finite number (RecBole fills a missing one with the mean, silently). Timestamps that are all
  integers are compared exactly as integers; the loaders order by float64, which is exact below 2^53, and a log
  where float64 would put two of a user's behaviours in another order than their exact values is refused (store
  such timestamps in a coarser unit);
* exact duplicate rows (same user, item and timestamp): ``duplicate_rows: report`` (default) counts them (the
  count is logged and recorded in ``run.json``) and keeps them, ``drop`` keeps the first of each in pre-training
  and fine-tuning, ``error`` refuses the log naming both lines.

Each selected task file, by its kind (``properties/downstream``): its user, target and label fields; no empty or
missing-value user, target or label (an empty label must not become a class ``'nan'``); class labels: exactly
``num_classes`` values for a binary task, at least two for a multiclass one, and the manifest's ``num_labels``
when it gives one (the line that brings one label too many is named); CVR labels 0 or 1; a user labelled twice
with different labels (a (user, target) pair, for CVR) is refused; exact duplicate rows follow ``duplicate_rows``;
every user of the task has behaviours in the log (the first missing one is named); the manifest's
``num_samples``, ``num_targets`` and ``num_labels``, where given, match the file; its ``metric`` must be the one
the task kind selects with (``<kind>_valid_metric``), unless that setting is yours (then it wins, with a warning).

The pass reads each file once with pyarrow (docs/reliability.md has the measured cost at TTL scale). Its verdict
on a file is kept per process and, keyed by the file's content digest (and by the log's and the manifest's for a
task file, the settings it depends on and :data:`CHECKS_VERSION`), in the file's digest record
(:func:`recbole_adaptssr.data.fingerprint.remember`): the next command on unchanged files reads none of them.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import asdict, dataclass, field
from logging import getLogger

import numpy as np

from recbole_adaptssr import setting_checks

POLICIES = setting_checks.DUPLICATE_ROWS
CHECKS_VERSION = 1  # part of the key of a remembered verdict: a change to the checks invalidates them
#: first bytes of compressed or archived files
COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"PK\x03\x04": "zip",
              b"(\xb5/\xfd": "zstandard", b"7z\xbc\xaf\x27\x1c": "7z"}
BOM = b"\xef\xbb\xbf"
#: values pandas reads as missing even with ``dtype=str`` (RecBole's loader then drops or fills the row)
MISSING = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                     "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
EXACT_FLOAT = 2 ** 53
#: the fields of a task file (experiment.finetuning.task_overrides sets them for every downstream run)
TASK_FIELDS = {"label": "label", "target": "target_id"}
_NUMBER = r"^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$"
_INTEGER = r"^\s*[+-]?\d+\s*$"
_BLOCK = 1 << 24


class DataError(ValueError):
    """A data file that cannot be used as it is; the message names the file and, where there is one, the line."""

    def __init__(self, path, line: int | None, problem: str):
        self.path, self.line, self.problem = str(path), line, problem
        super().__init__(f"{self.path}, line {line}: {problem}" if line else f"{self.path}: {problem}")

    def __reduce__(self):  # picklable (a worker process or a Ray task sends it back): rebuilt from its fields
        return type(self), (self.path, self.line, self.problem)


@dataclass
class FileReport:
    """What the pass found in one file (duplicates are counted whatever the policy)."""

    file: str
    rows: int
    duplicate_rows: int = 0
    duplicate_example: list = field(default_factory=list)  # [line of the first, line of its duplicate]
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"file": self.file, "rows": self.rows, "duplicate_rows": self.duplicate_rows,
                "duplicate_example": self.duplicate_example, **self.details}


# ------------------------------------------------------------------------------------------------- reading
def check_file_bytes(path: str, flags: dict | None = None) -> None:
    """The content checks every file gets before it is parsed (compression, byte-order mark, NUL, quotes);
    ``flags``: what :func:`recbole_adaptssr.data.sequence_cache.scan_source` found (read again if not given)."""
    if not os.path.isfile(path):
        raise DataError(path, None, "not found")
    with open(path, "rb") as f:
        head = f.read(8)
    for magic, kind in COMPRESSED.items():
        if head.startswith(magic):
            raise DataError(path, None, f"is a {kind}-compressed file (recognised by its content, whatever its "
                                        "name): decompress it first; atomic files are plain tab-separated UTF-8 text")
    if head.startswith(BOM):
        raise DataError(path, 1, "starts with a UTF-8 byte-order mark, which would become part of the first field's "
                                 "name: save the file without it")
    if flags is None:
        from recbole_adaptssr.data.sequence_cache import scan_source

        flags = scan_source(path)[1]
    for flag, byte, what in (("nul", b"\x00", "a NUL byte (a binary file?)"),
                             ("quote", b'"', "a double quote: RecBole's loader reads it as CSV quoting, which changes "
                                             "the token; atomic files are not quoted")):
        if flags.get(flag):
            raise DataError(path, _first_line_with(path, byte), f"holds {what}")


def _first_line_with(path: str, needle: bytes) -> int | None:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if needle in raw:
                return number
    return None


def read_header(path: str) -> list:
    """The header's ``name:type`` entries (checked: UTF-8, each entry well formed, no name twice)."""
    with open(path, "rb") as f:
        raw = f.readline()
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise DataError(path, 1, f"the header is not valid UTF-8 ({error.reason} at byte {error.start})") from None
    entries = text.split("\t")
    names = [e.split(":")[0] for e in entries]
    bad = [e for e in entries if len(e.split(":")) != 2 or not e.split(":")[0]]
    if not text or bad:
        raise DataError(path, 1, f"the header must list tab-separated name:type fields (RecBole's atomic files), "
                                 f"got {text!r}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(path, 1, f"the header names field(s) {twice} more than once")
    return entries


class _NotConverted(Exception):
    """A column could not be read as the type asked for (the caller reads it as text to name the line)."""


def read_columns(path: str, wanted: dict, kinds: dict | None = None) -> tuple:
    """``({name: pyarrow array}, row count)`` of the fields ``wanted`` (``{name: allowed types}``) of an atomic file,
    every line checked for its number of fields and its UTF-8; a missing field or a field of another type is an
    error naming the header. ``kinds``: ``{name: "dictionary" | "chunks" | "float64"}`` for columns read as
    dictionary-encoded text (one int32 per row: how a log of 80M rows fits; ``chunks``: as read, one dictionary
    per block, without the copies a single dictionary costs) or numbers (:class:`_NotConverted` when one is not);
    the others are text."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    kinds = kinds or {}
    arrow = {"dictionary": pa.dictionary(pa.int32(), pa.string()), "chunks": pa.dictionary(pa.int32(), pa.string()),
             "float64": pa.float64()}
    entries = read_header(path)
    types = {e.split(":")[0]: e.split(":")[1] for e in entries}
    missing = [f"{name}:{'|'.join(kinds)}" for name, kinds in wanted.items() if types.get(name) not in kinds]
    if missing:
        raise DataError(path, 1, f"the header needs the field(s) {missing}; it has {entries}")
    try:  # block by block: the parser's buffers stay one block (the whole-file reader's peaked at twice the data)
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(skip_rows=1, column_names=entries, block_size=_BLOCK, use_threads=True),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, double_quote=False, escape_char=False,
                                             newlines_in_values=False, ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(
                include_columns=[f"{name}:{types[name]}" for name in wanted],
                column_types={f"{name}:{types[name]}": arrow.get(kinds.get(name), pa.string()) for name in wanted},
                strings_can_be_null=False, null_values=[], quoted_strings_can_be_null=False))
        table = pa.Table.from_batches(list(reader), schema=reader.schema)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        line, problem = _first_bad_line(path, len(entries))
        if line is None and "float64" in kinds.values():
            raise _NotConverted() from None
        raise DataError(path, line, problem) from None
    columns = {}
    for name in wanted:
        column = table.column(f"{name}:{types[name]}")
        if kinds.get(name) != "chunks":
            column = (column.unify_dictionaries() if kinds.get(name) == "dictionary" else column).combine_chunks()
        columns[name] = column
    return columns, table.num_rows


def _first_bad_line(path: str, n_fields: int) -> tuple:
    """(line, problem) of the first line that is not UTF-8 or has another number of fields than the header."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            body = raw.rstrip(b"\r\n")
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as error:
                return number, (f"not valid UTF-8 ({error.reason}: byte 0x{body[error.start]:02x} at column "
                                f"{error.start + 1}): convert the file to UTF-8")
            fields = len(text.split("\t"))
            if number > 1 and body and fields != n_fields:
                return number, f"expected {n_fields} tab-separated fields (as the header), got {fields}"
    return None, "could not be read as a tab-separated file"


def line_numbers(path: str, rows) -> dict:
    """``{row index: line number}`` for data rows (0-based, empty lines not counted, as the readers skip them)."""
    wanted = sorted({int(r) for r in rows})
    out, row, k = {}, -1, 0
    if not wanted:
        return out
    with open(path, "rb") as f:
        f.readline()
        for number, raw in enumerate(f, start=2):
            if raw.strip(b"\r\n"):
                row += 1
                if row == wanted[k]:
                    out[row] = number
                    k += 1
                    if k == len(wanted):
                        break
    return out


def _first(mask) -> int | None:
    """Index of the first True of a boolean pyarrow or numpy array, or None."""
    array = np.asarray(mask.to_numpy(zero_copy_only=False) if hasattr(mask, "to_numpy") else mask, dtype=bool)
    hits = np.flatnonzero(array)
    return int(hits[0]) if len(hits) else None


def _line(path: str, row: int) -> int | None:
    return line_numbers(path, [row]).get(row)


def _missing(values):
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.or_(pc.is_in(values, value_set=pa.array(sorted(MISSING), pa.string())), pc.utf8_is_space(values))


def _check_ids(path: str, column, name: str, what: str) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    row, offset = None, 0
    for chunk in column.chunks if isinstance(column, pa.ChunkedArray) else [column]:
        if pa.types.is_dictionary(chunk.type):  # the distinct values checked, then the first row of a bad one
            bad = np.flatnonzero(_missing(chunk.dictionary).to_numpy(zero_copy_only=False))
            found = _first(pc.is_in(chunk.indices, value_set=pa.array(bad, chunk.indices.type))) if len(bad) else None
        else:
            found = _first(_missing(chunk))
        if found is not None:
            row = offset + found
            break
        offset += len(chunk)
    if row is not None:
        value = column[row].as_py()
        problem = (f"empty {what} ({name})" if not value.strip() else
                   f"{what} {value!r} ({name}) is read as missing by RecBole's loader (pandas' missing-value words)")
        raise DataError(path, _line(path, row), problem + ": every row needs one; mend or remove the line")


def _codes(column) -> np.ndarray:
    import pyarrow.compute as pc

    return pc.dictionary_encode(column).indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _duplicates(path: str, keys: list, rows: np.ndarray | None = None) -> tuple:
    """(count, [line of the first, line of a duplicate]) of rows equal on every array of ``keys``; ``rows``: the
    file rows the arrays hold (default: all, in order)."""
    import pandas as pd

    frame = pd.DataFrame({str(i): k for i, k in enumerate(keys)})
    repeated = frame.duplicated(keep="first").to_numpy()
    count = int(repeated.sum())
    if not count:
        return 0, []
    second = int(np.flatnonzero(repeated)[0])
    same = np.ones(len(frame), dtype=bool)
    for k in keys:
        same &= k == k[second]
    first = int(np.flatnonzero(same)[0])
    if rows is not None:
        first, second = int(rows[first]), int(rows[second])
    lines = line_numbers(path, [first, second])
    return count, [lines.get(first), lines.get(second)]


def _log_duplicates(path: str, users: np.ndarray, times: np.ndarray, items) -> tuple:
    """:func:`_duplicates` of (user, item, time) for a log of millions of rows: the rows sharing (user, time) are
    found first on numbers (adjacent when the log is grouped by user in time order, as the converters write it;
    else through a sort of a 64-bit hash of the pair, whose collisions only add candidates), and only those rows'
    items (an array, or a pyarrow column) are compared."""
    n = len(users)
    if n < 2:
        return 0, []
    if _grouped(users, times):
        tie = (users[1:] == users[:-1]) & (times[1:] == times[:-1])
        candidates = np.zeros(n, dtype=bool)
        candidates[1:] |= tie
        candidates[:-1] |= tie
    else:
        stamp = (times + 0.0 if times.dtype == np.float64 else times).view(np.uint64)  # -0.0 is 0.0
        key = users.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ stamp * np.uint64(0xC2B2AE3D27D4EB4F)
        key ^= key >> np.uint64(29)
        ordered = np.sort(key)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        candidates = np.isin(key, repeated) if len(repeated) else np.zeros(n, dtype=bool)
    rows = np.flatnonzero(candidates)
    if not len(rows):
        return 0, []
    tokens = items[rows] if isinstance(items, np.ndarray) else np.asarray(items.take(rows).to_pylist(), dtype=object)
    return _duplicates(path, [users[rows], times[rows], tokens], rows)


def _duplicate_outcome(path: str, report: FileReport, policy: str, what: str) -> None:
    if report.duplicate_rows and policy == "error":
        first, second = report.duplicate_example
        raise DataError(path, second, f"repeats line {first} exactly ({what}); {report.duplicate_rows:,} duplicate "
                                      "row(s) in all: remove them, or set duplicate_rows to report (keep) or drop")


# ------------------------------------------------------------------------------------------------- the log
@dataclass
class LogCheck:
    """The behaviour log's report, and its user tokens (for the task files' users: read when first needed)."""

    report: FileReport
    path: str
    user_field: str
    known_users: object = None  # pyarrow array of the distinct user tokens

    def users(self):
        if self.known_users is None:
            self.known_users = read_columns(self.path, {self.user_field: ("token",)})[0][self.user_field].unique()
        return self.known_users


def _verdict_key(kind: str, *parts) -> str:
    return "/".join([kind, f"v{CHECKS_VERSION}", *map(str, parts)])


def check_behaviour_log(path: str, fields: tuple, policy: str, cache_dir: str | None = None) -> LogCheck:
    """The behaviour log's checks (module docstring), or the verdict remembered for its content; ``fields``: the
    user, item and time field names; ``cache_dir``: where the file's digest record is kept
    (``sequence_cache_dir``)."""
    from recbole_adaptssr.data import fingerprint

    key = _verdict_key("behaviour_log", *fields, policy)
    remembered = fingerprint.recall(path, cache_dir, key)
    if remembered is not None:
        return LogCheck(FileReport(**remembered), path, fields[0])
    check = _check_behaviour_log(path, fields, policy, cache_dir)
    fingerprint.remember(path, cache_dir, key, asdict(check.report))
    return check


def _check_behaviour_log(path: str, fields: tuple, policy: str, cache_dir: str | None) -> LogCheck:
    import pyarrow.compute as pc

    from recbole_adaptssr.data.fingerprint import file_record

    user, item, time = fields
    check_file_bytes(path, file_record(path, cache_dir)["flags"])
    wanted = {user: ("token",), item: ("token",), time: ("float",)}
    ids = {user: "dictionary", item: "chunks"}
    try:  # the usual case: one read, the timestamps as float64 (exact for integers below 2^53), no copies
        columns, rows = read_columns(path, wanted, {**ids, time: "float64"})
        times = columns[time].to_numpy(zero_copy_only=False)
        exact = _all(times, lambda t: np.isfinite(t) & (np.abs(t) < EXACT_FLOAT))
    except _NotConverted:
        exact = False
    if not exact:  # a value that is no finite number, or integers beyond 2^53: read as text, each value exactly
        columns, rows = read_columns(path, wanted, ids)
    if not rows:
        raise DataError(path, None, "holds no behaviour (only the header)")
    _check_ids(path, columns[user], user, "user id")
    _check_ids(path, columns[item], item, "item id")
    if exact:
        integral = _all(times, lambda t: t == np.floor(t))
    else:
        times, integral = _timestamps(path, columns[time], time)
    users = columns[user].indices.to_numpy(zero_copy_only=False)
    if integral and times.dtype == np.int64 and max(times.max(), -times.min()) >= EXACT_FLOAT:
        _check_float_order(path, users, times, columns[user])
    count, example = _log_duplicates(path, users, times, columns[item])
    report = FileReport(os.path.basename(path), rows, count, example,
                        {"users": len(columns[user].dictionary), "timestamps": "integer" if integral else "decimal"})
    _duplicate_outcome(path, report, policy, "same user, item and timestamp")
    return LogCheck(report, path, user, columns[user].dictionary)


def _all(values: np.ndarray, test, block: int = 1 << 22) -> bool:
    """``test(values)`` is True everywhere, evaluated block by block (no temporary array the size of a log)."""
    return all(bool(np.all(test(values[i:i + block]))) for i in range(0, len(values), block))


def _grouped(users: np.ndarray, times: np.ndarray, block: int = 1 << 22) -> bool:
    """Whether the rows come user by user, each user's in time order (the converters' layout), block by block."""
    for a in range(0, len(users) - 1, block):
        b = min(a + block, len(users) - 1)
        later, earlier = users[a + 1:b + 1], users[a:b]
        if not np.all((later > earlier) | ((later == earlier) & (times[a + 1:b + 1] >= times[a:b]))):
            return False
    return True


def _timestamps(path: str, column, name: str) -> tuple:
    """(the timestamps as int64 when every one is an integer, else float64; whether they are integers), read
    exactly from their text; a value that is not a finite number is an error naming its line."""
    import pyarrow as pa
    import pyarrow.compute as pc

    stamps = pc.utf8_trim_whitespace(column)
    row = _first(pc.invert(pc.match_substring_regex(stamps, _NUMBER)))
    if row is None:
        row = _first(pc.invert(pc.is_finite(pc.cast(stamps, pa.float64()))))
    if row is not None:
        value = column[row].as_py()
        problem = "empty timestamp" if not value.strip() else f"timestamp {value!r} is not a finite number"
        raise DataError(path, _line(path, row), f"{problem} ({name}): every behaviour needs one (RecBole would fill "
                                                "a missing one with the mean timestamp)")
    if not pc.all(pc.match_substring_regex(stamps, _INTEGER)).as_py():
        return pc.cast(stamps, pa.float64()).to_numpy(zero_copy_only=False), False
    digits = pc.utf8_length(pc.utf8_ltrim(stamps, characters="+-0")).to_numpy(zero_copy_only=False)
    row = _first(digits > 18)
    if row is not None:
        raise DataError(path, _line(path, row), f"timestamp {column[row].as_py()!r} has more than 18 digits: "
                                                "store timestamps in a coarser unit")
    return pc.cast(stamps, pa.int64()).to_numpy(zero_copy_only=False), True


def _check_float_order(path: str, users: np.ndarray, times: np.ndarray, user_column) -> None:
    """Integer timestamps at or beyond 2^53: the loaders' float64 order must be each user's exact order."""
    exact = np.lexsort((times, users))
    loose = np.lexsort((times.astype(np.float64), users))
    differ = np.flatnonzero(exact != loose)
    if len(differ):
        a, b = int(loose[differ[0]]), int(exact[differ[0]])
        lines = line_numbers(path, [a, b])
        raise DataError(path, lines.get(a), f"user {user_column[a].as_py()!r}: timestamps {times[a]} and {times[b]} "
                                            f"(line {lines.get(b)}) are equal as float64, the precision the loaders "
                                            "order behaviours at (exact below 2^53): store timestamps in a coarser "
                                            "unit (e.g. microseconds instead of nanoseconds)")


# ------------------------------------------------------------------------------------------------- task files
def check_task_file(path: str, task: str, kind, entry: dict, log: LogCheck, user_field: str, policy: str,
                    manifest_path: str, cache_dir: str | None = None) -> FileReport:
    """A task file's checks (module docstring), or the verdict remembered for its content, the log's and the
    manifest's; ``entry``: its manifest entry."""
    from recbole_adaptssr.data import fingerprint

    key = _verdict_key("task", task, kind.name, user_field, policy,
                       fingerprint.file_record(log.path, cache_dir)["blake2b"],
                       fingerprint.file_record(manifest_path, cache_dir)["blake2b"])
    remembered = fingerprint.recall(path, cache_dir, key)
    if remembered is not None:
        return FileReport(**remembered)
    report = _check_task_file(path, task, kind, entry, log.users(), user_field, policy, manifest_path, cache_dir)
    fingerprint.remember(path, cache_dir, key, asdict(report))
    return report


def _check_task_file(path, task, kind, entry, users, user_field, policy, manifest_path, cache_dir) -> FileReport:
    import pyarrow.compute as pc

    from recbole_adaptssr.data.fingerprint import file_record

    check_file_bytes(path, file_record(path, cache_dir)["flags"])
    label, target = TASK_FIELDS["label"], TASK_FIELDS["target"]
    wanted = {user_field: ("token",)}
    if kind.has_targets():
        wanted[target] = ("token",)
    if "label" in kind.fields:
        wanted[label] = ("token", "float")
    columns, rows = read_columns(path, wanted)
    if not rows:
        raise DataError(path, None, f"task {task!r} holds no sample (only the header)")
    _check_ids(path, columns[user_field], user_field, "user id")
    if target in columns:
        _check_ids(path, columns[target], target, "target id")
    report = FileReport(os.path.basename(path), rows)
    if label in columns:
        _check_ids(path, columns[label], label, "label")
        _check_labels(path, task, kind, entry, columns[label], manifest_path, report)
    keys = [_codes(columns[name]) for name in columns]
    report.duplicate_rows, report.duplicate_example = _duplicates(path, keys)
    _duplicate_outcome(path, report, policy, "the same sample")
    _check_one_label_per_sample(path, columns, user_field, target, label)
    missing = pc.invert(pc.is_in(columns[user_field], value_set=users))
    row = _first(missing)
    if row is not None:
        count = int(pc.sum(missing).as_py())
        raise DataError(path, _line(path, row), f"user {columns[user_field][row].as_py()!r} of task {task!r} has no "
                                                f"behaviour in the behaviour log ({count:,} row(s) of such users): "
                                                "every task user needs a behaviour sequence")
    _check_counts(path, task, entry, rows, columns.get(target), manifest_path)
    return report


def _check_labels(path, task, kind, entry, column, manifest_path, report: FileReport) -> None:
    import pyarrow.compute as pc

    if kind.class_labels:
        distinct = pc.unique(column).to_pylist()  # in order of first appearance
        limit = kind.num_classes
        declared = entry.get("num_labels")
        for bound, why in ((limit, f"a {kind.name} task has exactly {limit} label values"),
                           (declared, f"{os.path.basename(manifest_path)} gives task {task!r} num_labels {declared}")):
            if bound is not None and len(distinct) > int(bound):
                extra = distinct[int(bound)]
                row = _first(pc.equal(column, extra))
                raise DataError(path, _line(path, row), f"label {extra!r} is value number {int(bound) + 1}: {why} "
                                                        f"(the file has {distinct})")
        if limit is not None and len(distinct) < limit or len(distinct) < 2:
            raise DataError(path, None, f"a {kind.name} task needs {limit or 'at least 2'} label values, the file has "
                                        f"{distinct}")
        if declared is not None and len(distinct) != int(declared):
            raise DataError(path, None, f"{os.path.basename(manifest_path)} gives task {task!r} num_labels "
                                        f"{declared}, the file has {len(distinct)}: {distinct}")
        report.details["labels"] = len(distinct)
    else:  # a 0/1 label (CVR)
        bad = pc.invert(pc.is_in(pc.utf8_trim_whitespace(column), value_set=_binary_values()))
        row = _first(bad)
        if row is not None:
            raise DataError(path, _line(path, row), f"label {column[row].as_py()!r}: a {kind.name} label is 0 or 1")


def _binary_values():
    import pyarrow as pa

    return pa.array(["0", "1", "0.0", "1.0"], pa.string())


def _check_one_label_per_sample(path, columns, user_field, target, label) -> None:
    """A user (a (user, target) pair when there are targets) labelled twice with different labels."""
    if label not in columns:
        return
    import pandas as pd

    sample = [_codes(columns[user_field])] + ([_codes(columns[target])] if target in columns else [])
    frame = pd.DataFrame({str(i): k for i, k in enumerate(sample)})
    frame["label"] = _codes(columns[label])
    pairs = frame.drop_duplicates()
    clash = pairs.duplicated(subset=[str(i) for i in range(len(sample))], keep=False)
    if clash.any():
        rows = pairs.index[clash.to_numpy()][:2]
        lines = line_numbers(path, rows)
        what = "user" if len(sample) == 1 else "(user, target)"
        raise DataError(path, lines.get(int(rows[1])), f"the {what} of line {lines.get(int(rows[0]))} again, with "
                                                       "another label: a sample has one label")


def _check_counts(path, task, entry, rows, targets, manifest_path) -> None:
    import pyarrow.compute as pc

    found = {"num_samples": rows}
    if targets is not None:
        found["num_targets"] = len(pc.unique(targets))
    wrong = [f"{key} {entry[key]} (the file has {value})" for key, value in found.items()
             if entry.get(key) is not None and int(entry[key]) != value]
    if wrong:
        raise DataError(manifest_path, None, f"task {task!r} ({os.path.basename(path)}): {', '.join(wrong)}: the "
                                             "manifest does not describe this file (convert the data set again, or "
                                             "mend the manifest)")


def check_metric(config, task: str, kind, entry: dict, manifest_path: str) -> str | None:
    """The manifest's metric against the one the run selects with; returns a warning, or raises."""
    from recbole_adaptssr.pretext.base import StageSettings

    declared = entry.get("metric")
    if declared is None:
        return None
    key = StageSettings(config, kind.name).key("valid_metric")
    used = str(config[key])
    if str(declared).lower() == used.lower():
        return None
    if key in (getattr(config, "user_config_dict", None) or {}):
        return (f"{os.path.basename(manifest_path)} gives task {task!r} the metric {declared}; your setting "
                f"{key}={used} selects and reports {used} instead")
    raise DataError(manifest_path, None, f"task {task!r} declares the metric {declared!r}, but {kind.name} tasks are "
                                         f"evaluated with {key}={used!r}: set --{key}={declared} (and "
                                         f"{kind.name}_metrics / _topk to compute it), or mend the manifest")


# ------------------------------------------------------------------------------------------------- the pass
_memo: dict = {}
_memo_lock = threading.Lock()


def duplicate_policy(config) -> str:
    """``duplicate_rows`` (one of :data:`POLICIES`, :mod:`recbole_adaptssr.setting_checks`)."""
    setting_checks.check(lambda key: config[key], ("duplicate_rows",))
    return config["duplicate_rows"]


def log_fields(config) -> tuple:
    return (str(config["USER_ID_FIELD"]), str(config["ITEM_ID_FIELD"]), str(config["TIME_FIELD"]))


def _memoised(key, compute):
    with _memo_lock:
        if key in _memo:
            return _memo[key]
    value = compute()
    with _memo_lock:
        _memo[key] = value
    return value


def _stat_key(path: str) -> tuple:
    st = os.stat(path)
    return os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def behaviour_log_check(config) -> LogCheck:
    """The checked behaviour log of ``config``'s data set (computed once per content and settings per process)."""
    from recbole_adaptssr.data.fingerprint import behaviour_log_path

    path = behaviour_log_path(config)
    if not os.path.isfile(path):
        raise DataError(path, None, "behaviour log not found")
    fields, policy = log_fields(config), duplicate_policy(config)
    return _memoised(("log", _stat_key(path), fields, policy),
                     lambda: check_behaviour_log(path, fields, policy, config["sequence_cache_dir"]))


def known_duplicates(config) -> int | None:
    """Duplicate rows of ``config``'s behaviour log as this process found them, or None if it has not checked it
    (a downstream run's Config names the task's target field as its item field: the log is looked up by file)."""
    from recbole_adaptssr.data.fingerprint import behaviour_log_path

    try:
        stat = _stat_key(behaviour_log_path(config))
    except OSError:
        return None
    with _memo_lock:
        found = [value.report.duplicate_rows for key, value in _memo.items() if key[:2] == ("log", stat)]
    return found[0] if found else None


def clear_memo() -> None:
    with _memo_lock:
        _memo.clear()


def validate_data(config, task_data, tasks) -> dict:
    """Check the behaviour log and the files of ``tasks`` (``task_data``: the data set's
    :class:`~recbole_adaptssr.data.task_dataset.TaskData`, or None for a data set without a manifest) before
    anything trains; return ``{"behaviour_log": report, "tasks": {task: report}}`` (plain values) and log a summary.
    Raises :class:`DataError` naming the file and line."""
    logger = getLogger()
    policy = duplicate_policy(config)
    log = behaviour_log_check(config)
    out = {"duplicate_rows": policy, "behaviour_log": log.report.as_dict(), "tasks": {}}
    notes = []
    if log.report.duplicate_rows:
        notes.append(f"{log.report.file}: {log.report.duplicate_rows:,} duplicate row(s) (e.g. lines "
                     f"{log.report.duplicate_example[0]} and {log.report.duplicate_example[1]})")
    for task in tasks or []:
        kind = task_data.kind(task)
        entry = task_data.manifest[task]
        path = os.path.join(task_data.folder, f"{task_data.name}.{task}")
        manifest = os.path.join(task_data.folder, f"{task_data.name}.tasks.json")
        report = _memoised((_stat_key(path), _stat_key(manifest), _stat_key(os.path.join(
            task_data.folder, f"{task_data.name}.inter")), policy, task, str(config["USER_ID_FIELD"])),
            lambda: check_task_file(path, task, kind, entry, log, str(config["USER_ID_FIELD"]), policy,
                                    manifest, config["sequence_cache_dir"]))
        warning = check_metric(config, task, kind, entry, manifest)
        if warning:
            logger.warning(warning)
        out["tasks"][task] = report.as_dict()
        if report.duplicate_rows:
            notes.append(f"{report.file}: {report.duplicate_rows:,} duplicate row(s) (e.g. lines "
                         f"{report.duplicate_example[0]} and {report.duplicate_example[1]})")
    if notes:
        action = {"report": "kept (duplicate_rows: report)", "drop": "dropped (duplicate_rows: drop)"}[policy]
        logger.warning("duplicate rows " + action + ": " + "; ".join(notes))
    logger.info(f"data checked: {log.report.file} ({log.report.rows:,} behaviours, {log.report.details['users']:,} "
                "users)" + "".join(
                    f", {r['file']} ({r['rows']:,} samples)" for r in out["tasks"].values()))
    return out
