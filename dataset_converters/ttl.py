"""TTL (Tencent Transfer Learning release, as used by PeterRec and AdaptSSR) -> RecBole atomic files.

Input files (all in ``--input``; names can be overridden):

* ``original_desen_pretrain.csv``: one user per line, comma-separated integer behaviour ids, ``0`` = padding
  (the release left-pads every line with zeros to a fixed length).
* ``original_desen_age.csv``, ``original_desen_lifestatus.csv``: ``b1,...,bn,,label`` (label: a non-negative
  integer class id).
* ``original_desen_finetune_click_nouserID.csv``, ``original_desen_finetune_like_nouserID.csv``:
  ``b1,...,bn,,t1,t2,...`` (targets: integer ids of the target domain, one positive sample per target).

The release has no user ids.  A user is the line number of its pretrain line (token ``"1"`` for line 1, ...);
a task line is matched to the user whose pretrain sequence equals its behaviour part, compared after dropping
padding zeros, through a 16-byte BLAKE2b digest of the sequence (memory stays bounded at 1.47M users).
Users with identical sequences cannot be told apart by anything; the k-th task line carrying such a sequence is
given to the k-th pretrain user with it, and one more is a duplicate user.

Sequences are written in file order, which is chronological (oldest first): the padding zeros precede the
behaviours (left padding), the convention of NextItNet/PeterRec whose models predict the next behaviour at the
right end of the line; the ``timestamp`` field is the position 0..n-1.
"""

from __future__ import annotations

import hashlib
import logging
import time
from array import array
from collections import Counter
from pathlib import Path

import numpy as np

from .common import (
    BAD_ID,
    DUPLICATE_USER,
    EMPTY_SEQUENCE,
    MAX_ID_DIGITS,
    MISSING_SEPARATOR,
    NO_TARGETS,
    NON_INTEGER_ID,
    UNKNOWN_LABEL,
    UNKNOWN_USER,
    ConversionError,
    FileReport,
    Progress,
    TaskSummary,
    finish_dataset,
    id_too_long,
    open_input,
    require_data,
    require_file,
    require_output,
    require_samples,
    sequence_stats,
    staged_dataset_dir,
)

log = logging.getLogger("dataset_converters.ttl")

PRETRAIN_FILE = "original_desen_pretrain.csv"
TASK_FILES = {
    "age": "original_desen_age.csv",
    "lifestatus": "original_desen_lifestatus.csv",
    "click": "original_desen_finetune_click_nouserID.csv",
    "like": "original_desen_finetune_like_nouserID.csv",
}
TASK_KINDS = {"age": "multiclass", "lifestatus": "multiclass", "click": "recommendation", "like": "recommendation"}
TASKS = tuple(TASK_FILES)

_BUF = 1 << 20
_ID_LIMIT = 10 ** MAX_ID_DIGITS
_PROGRESS_EVERY = 1 << 15
_DIGITS_AS_D = bytes.maketrans(b"0123456789", b"d" * 10)
_LONG_TOKEN = b"d" * (MAX_ID_DIGITS + 1)


class _Bad(Exception):
    def __init__(self, kind: str, problem: str):
        super().__init__(problem)
        self.kind, self.problem = kind, problem


def _show(b: bytes, limit: int = 40) -> str:
    s = b.decode("utf-8", errors="replace")
    return repr(s if len(s) <= limit else s[:limit] + "...")


def parse_ids(part: bytes, what: str = "behaviour") -> tuple[list[int], int]:
    """Comma-separated non-negative integers -> (the non-zero ones in order, number of zeros dropped).

    Raises ``_Bad`` for an empty field, an empty or non-integer token, an id of more than MAX_ID_DIGITS digits,
    or a sequence of zeros only.
    """
    if not part.replace(b",", b"").isdigit() or part[:1] == b"," or part[-1:] == b"," or b",," in part:
        _explain(part, what)  # bytes.isdigit is ASCII-only: fails on '', ' ', '-', '+', '_', non-ASCII
    body = part.lstrip(b"0,")  # leading padding (the common case) without building tokens for it
    try:
        ints = list(map(int, body.split(b","))) if body else []
        checked = not ints or max(ints) < _ID_LIMIT
    except ValueError:  # more digits than int() converts
        checked = False
    if not checked:
        ints = _long_ids(part, what)
    if 0 in ints:
        ints = [x for x in ints if x]
    if not ints:
        if what == "behaviour":
            raise _Bad(EMPTY_SEQUENCE, "empty behaviour sequence (padding zeros only)")
        raise _Bad(NO_TARGETS, "no target items after ',,' (zeros only)")
    return ints, part.count(b",") + 1 - len(ints)


def parse_canonical(part: bytes, what: str = "behaviour") -> tuple[bytes, int, int]:
    """:func:`parse_ids` with the ids as their canonical text: ``(b"id1,id2,...", number of ids, zeros dropped)``,
    each id in decimal without leading zeros. The same checks and errors as :func:`parse_ids`; the common line
    (leading padding, then ids without leading zeros) is handled without converting a single id to an int."""
    if not part.replace(b",", b"").isdigit() or part[:1] == b"," or part[-1:] == b"," or b",," in part:
        _explain(part, what)
    body = part.lstrip(b"0,")
    if body and b",0" not in body and (len(body) <= MAX_ID_DIGITS or _LONG_TOKEN not in body.translate(_DIGITS_AS_D)):
        n = body.count(b",") + 1  # every token is a non-zero id already in canonical form
        return body, n, part.count(b",") + 1 - n
    ints, zeros = parse_ids(part, what)
    return ",".join(map(str, ints)).encode(), len(ints), zeros


def _explain(part: bytes, what: str):
    if not part.strip():
        if what == "behaviour":
            raise _Bad(EMPTY_SEQUENCE, "empty behaviour sequence")
        raise _Bad(NO_TARGETS, "no target items after ',,'")
    for i, tok in enumerate(part.split(b","), 1):
        if not tok:
            raise _Bad(NON_INTEGER_ID, f"empty {what} id at position {i} (stray comma)")
        if not tok.isdigit():
            raise _Bad(NON_INTEGER_ID, f"non-integer {what} id {_show(tok)} at position {i}")
    raise AssertionError(part)  # pragma: no cover


def _long_ids(part: bytes, what: str) -> list[int]:
    """The ids of a line holding a very long token: a bad id if it has too many significant digits."""
    toks = part.split(b",")
    for i, tok in enumerate(toks, 1):
        why = id_too_long(tok, f"{what} id")
        if why:
            raise _Bad(BAD_ID, f"{why} at position {i}")
    return [int(tok.lstrip(b"0") or b"0") for tok in toks]


def sequence_key(canonical: bytes) -> bytes:
    """16-byte digest identifying a (padding-free) behaviour sequence, from its canonical text
    (:func:`parse_canonical`): two lines get the same key exactly when their ids are the same."""
    return hashlib.blake2b(canonical, digest_size=16).digest()


class _UserIndex:
    """Sequence digest -> user (pretrain line number), with duplicate sequences kept in order."""

    def __init__(self):
        self.first: dict[bytes, int] = {}
        self.dups: dict[bytes, list[int]] = {}
        self.max_user = 0

    def add(self, key: bytes, user: int) -> bool:
        """Register; False when the sequence was already there (a duplicate sequence)."""
        prev = self.first.setdefault(key, user)
        self.max_user = user
        if prev == user:
            return True
        self.dups.setdefault(key, [prev]).append(user)
        return False


class _Claims:
    """Which users a task file has already given (bit per user), and at which line."""

    def __init__(self, index: _UserIndex):
        self.index = index
        n = index.max_user + 1
        self.line = array("I", bytes(4 * n))  # 0 = not yet

    def claim(self, key: bytes, lineno: int) -> int:
        idx = self.index
        user = idx.first.get(key)
        if user is None:
            raise _Bad(UNKNOWN_USER, "unknown user: behaviour sequence not found in the pretrain file")
        dups = idx.dups.get(key)
        if dups is None:
            if self.line[user]:
                raise _Bad(DUPLICATE_USER, f"duplicate user: the user of pretrain line {user} was already given "
                                           f"at line {self.line[user]}")
        else:
            for u in dups:
                if not self.line[u]:
                    user = u
                    break
            else:
                raise _Bad(DUPLICATE_USER, f"duplicate user: all {len(dups)} pretrain users with this behaviour "
                                           f"sequence (lines {', '.join(map(str, dups[:5]))}"
                                           f"{', ...' if len(dups) > 5 else ''}) were already given, the first "
                                           f"at line {self.line[dups[0]]}")
        self.line[user] = lineno
        return user


class _DistinctIds:
    """Counts the distinct ids among canonical id lists (:func:`parse_canonical`), in batches with numpy: ids of
    at most 9 digits mark a boolean table (up to 2**27 entries), the rare others go to Python sets."""

    _BATCH = 1 << 23  # bytes of ids per batch
    _TABLE_LIMIT = 1 << 27

    def __init__(self):
        self._pending: list[bytes] = []
        self._size = 0
        self._seen = np.zeros(1 << 16, dtype=bool)
        self._large: set[int] = set()  # 9-digit ids beyond the table
        self._long: set[bytes] = set()  # ids of more than 9 digits (canonical text: one text per id)

    def add(self, canonical: bytes) -> None:
        self._pending.append(canonical)
        self._size += len(canonical) + 1
        if self._size >= self._BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        buf = np.frombuffer(b",".join(self._pending), dtype=np.uint8)
        self._pending, self._size = [], 0
        commas = np.flatnonzero(buf == 44)
        starts = np.concatenate(([0], commas + 1))
        lengths = np.concatenate((commas, [len(buf)])) - starts
        short = lengths <= 9
        if not short.all():
            for i in np.flatnonzero(~short):
                self._long.add(buf[starts[i]:starts[i] + lengths[i]].tobytes())
            starts, lengths = starts[short], lengths[short]
        if not len(starts):
            return
        digits = buf.astype(np.int64) - 48
        values = digits[starts]
        for k in range(1, int(lengths.max())):  # Horner, position k of the ids that have one
            more = np.flatnonzero(lengths > k)
            values[more] = values[more] * 10 + digits[starts[more] + k]
        beyond = values >= self._TABLE_LIMIT
        if beyond.any():
            self._large.update(values[beyond].tolist())
            values = values[~beyond]
        top = int(values.max()) if len(values) else 0
        if top >= len(self._seen):
            grown = np.zeros(max(2 * len(self._seen), top + 1), dtype=bool)
            grown[:len(self._seen)] = self._seen
            self._seen = grown
        self._seen[values] = True

    def count(self) -> int:
        self._flush()
        return int(np.count_nonzero(self._seen)) + len(self._large) + len(self._long)


def _resolve(input_dir: Path, name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() else input_dir / p


def convert_ttl(input_dir, output_dir, name: str = "ttl", tasks=TASKS, files: dict | None = None,
                skip_bad_lines: bool = False, progress: bool = False, *, overwrite: bool = False) -> dict:
    """Convert the TTL release in ``input_dir`` to ``output_dir/name``; return the statistics dict.

    ``tasks``: the subset of ``age, lifestatus, click, like`` to convert (each needs its file).  ``files``
    overrides file names: keys ``pretrain`` and task names, values relative to ``input_dir`` or absolute.
    ``overwrite``: replace an existing data set folder written by the converters (never one with other files).
    Raises ConversionError on bad input (unless ``skip_bad_lines``) with nothing written.
    """
    input_dir = Path(input_dir)
    tasks = list(tasks)
    for t in tasks:
        if t not in TASK_FILES:
            raise ConversionError(t, None, f"unknown TTL task (choose from {', '.join(TASKS)})")
    names = {"pretrain": PRETRAIN_FILE, **TASK_FILES, **(files or {})}
    pretrain_path = require_file(_resolve(input_dir, names["pretrain"]))
    task_paths = {t: require_file(_resolve(input_dir, names[t])) for t in tasks}
    for p in (pretrain_path, *task_paths.values()):
        require_data(p)

    with staged_dataset_dir(output_dir, name, [input_dir, pretrain_path, *task_paths.values()], overwrite) as tmp:
        pre = FileReport(pretrain_path, skip_bad_lines)
        index, seq_stats = _convert_pretrain(pretrain_path, tmp / f"{name}.inter", pre, progress)
        require_output(pre, seq_stats["num_sequences"], "behaviour sequences", "there is nothing to pre-train on "
                       "and no user for the task lines")
        reports = [pre]
        summaries = []
        for t in tasks:
            fr = FileReport(task_paths[t], skip_bad_lines)
            summaries.append(_convert_task(t, task_paths[t], tmp / f"{name}.{t}", index, fr, progress))
            require_samples(fr, summaries[-1])
            reports.append(fr)
        notes = [
            "TTL has no timestamps: the timestamp field is the position 0..n-1 in the (chronological) sequence.",
            "user_id is the line number of the user's line in the pretrain file.",
            f"{pre.extra['padding_zeros_dropped']:,} padding zeros dropped from the pretrain file.",
        ]
        if pre.extra["duplicate_sequences"]:
            notes.append(f"{pre.extra['duplicate_sequences']:,} pretrain lines repeat an earlier line's behaviour "
                         "sequence; task lines with such a sequence go to those users in line order.")
        stats = finish_dataset(tmp, name, "ttl", seq_stats, summaries, reports,
                               {"tasks": tasks, "skip_bad_lines": skip_bad_lines,
                                "files": {k: str(v) for k, v in [("pretrain", pretrain_path), *task_paths.items()]}},
                               notes)
    return stats


def _convert_pretrain(path: Path, out_path: Path, fr: FileReport, progress: bool):
    t0 = time.time()
    log.info("reading %s", path)
    index = _UserIndex()
    distinct = _DistinctIds()
    n_seq = n_beh = zeros = dup = 0
    min_len, max_len = 1 << 62, 0
    templates = {}  # n -> the n rows of a line: b"{P}%b\t0\n{P}%b\t1\n...", {P} standing for "user\t"
    bar = Progress(path, progress)
    with open_input(path) as f, open(out_path, "wb", buffering=_BUF) as out:
        out.write(b"user_id:token\titem_id:token\ttimestamp:float\n")
        lineno = 0
        for raw in f:
            lineno += 1
            line = raw.rstrip(b"\r\n")
            try:
                if b",," in line:
                    raise _Bad(NON_INTEGER_ID,
                               "unexpected ',,' in the pretrain file (empty behaviour id; is this a task file?)")
                canonical, n, z = parse_canonical(line)
            except _Bad as e:
                fr.read += 1
                fr.bad_line(lineno, e.kind, e.problem)
                continue
            fr.read += 1
            fr.written += 1
            zeros += z
            if not index.add(sequence_key(canonical), lineno):
                dup += 1
            template = templates.get(n)
            if template is None:
                template = templates[n] = b"".join(b"{P}%%b\t%d\n" % i for i in range(n))
            out.write(template.replace(b"{P}", b"%d\t" % lineno) % tuple(canonical.split(b",")))
            distinct.add(canonical)
            n_seq += 1
            n_beh += n
            if n < min_len:
                min_len = n
            if n > max_len:
                max_len = n
            if not lineno % _PROGRESS_EVERY:
                bar.update_to(f.tell())
    bar.close()
    n_distinct = distinct.count()
    index.max_user = lineno
    fr.extra.update({"behaviours_written": n_beh, "padding_zeros_dropped": zeros, "duplicate_sequences": dup})
    log.info("%s: %d lines, %d sequences, %d behaviours (%d distinct) in %.1fs", path.name, fr.read, n_seq, n_beh,
             n_distinct, time.time() - t0)
    return index, sequence_stats(n_seq, n_beh, n_distinct, min_len, max_len)


def _convert_task(task: str, path: Path, out_path: Path, index: _UserIndex, fr: FileReport, progress: bool):
    t0 = time.time()
    log.info("reading %s (task %s)", path, task)
    kind = TASK_KINDS[task]
    summary = TaskSummary(task, kind, out_path.name)
    claims = _Claims(index)
    labels: Counter = Counter()
    targets: set[int] = set()
    rows = dup_targets = 0
    bar = Progress(path, progress)
    with open_input(path) as f, open(out_path, "wb", buffering=_BUF) as out:
        if kind == "recommendation":
            out.write(b"user_id:token\ttarget_id:token\n")
        else:
            out.write(b"user_id:token\tlabel:token\n")
        lineno = 0
        for raw in f:
            lineno += 1
            fr.read += 1
            line = raw.rstrip(b"\r\n")
            try:
                left, sep, right = line.partition(b",,")
                if not sep:
                    if not line.strip():
                        raise _Bad(EMPTY_SEQUENCE, "empty line (no behaviour sequence)")
                    raise _Bad(MISSING_SEPARATOR, "missing ',,' separator between behaviours and "
                                                  + ("label" if kind != "recommendation" else "targets"))
                canonical, _, _ = parse_canonical(left)
                if kind == "recommendation":
                    tgts = parse_canonical(right, "target")[0].split(b",")
                else:
                    if not right.isdigit():
                        raise _Bad(UNKNOWN_LABEL, f"unknown label value {_show(right)} (expected one non-negative "
                                                  "integer class id)")
                    why = id_too_long(right, "label value")
                    if why:
                        raise _Bad(UNKNOWN_LABEL, why)
                    label = int(right.lstrip(b"0") or b"0")
                user = claims.claim(sequence_key(canonical), lineno)
            except _Bad as e:
                fr.bad_line(lineno, e.kind, e.problem)
                continue
            fr.written += 1
            if kind == "recommendation":
                uniq = list(dict.fromkeys(tgts))
                dup_targets += len(tgts) - len(uniq)
                prefix = b"%d\t" % user
                out.write(b"".join([prefix + t + b"\n" for t in uniq]))
                targets.update(uniq)
                rows += len(uniq)
            else:
                out.write(b"%d\t%d\n" % (user, label))
                labels[label] += 1
                rows += 1
            if not lineno % _PROGRESS_EVERY:
                bar.update_to(f.tell())
    bar.close()
    summary.num_samples = rows
    summary.num_users = fr.written
    summary.labels = labels
    summary.targets = targets
    fr.extra["rows_written"] = rows
    if kind == "recommendation":
        fr.extra["duplicate_targets_dropped"] = dup_targets
    log.info("%s: %d lines, %d users, %d samples in %.1fs", path.name, fr.read, fr.written, rows, time.time() - t0)
    return summary
