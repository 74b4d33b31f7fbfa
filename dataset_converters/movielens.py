"""MovieLens -> RecBole atomic files in the AdaptSSR task layout (so the pipeline runs on public data).

Accepted inputs (``--format auto`` picks by file names):

* ``ml-100k`` raw release: ``u.data`` (``user<TAB>item<TAB>rating<TAB>timestamp``) and ``u.user``
  (``id|age|gender|occupation|zip``, raw ages, occupation names).
* ``ml-1m`` raw release: ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``) and ``users.dat``
  (``UserID::Gender::Age::Occupation::Zip-code``, age already bucketed as 1/18/25/35/45/50/56, occupation
  codes 0-20).
* ``atomic``: RecBole atomic files ``NAME.inter`` (fields ``user_id``, ``item_id``, ``timestamp``; others such as
  ``rating`` ignored) and ``NAME.user`` (``user_id``, ``age``, ``gender``, ``occupation``), e.g. the ml-100k
  bundled in the recbole package (``recbole/dataset_example/ml-100k``).  Ages are taken as ml-1m bucket codes
  when every value is one, as raw ages otherwise.

Behaviours: every rated movie (the rating is ignored), in time order (ties keep file order).  Tasks:
``gender`` (binary, M/F), ``age`` (multiclass, ml-1m buckets, label = the ml-1m code: 1 "under 18",
18 "18-24", 25 "25-34", 35 "35-44", 45 "45-49", 50 "50-55", 56 "56+"), ``occupation`` (multiclass, the
release's labels: names for ml-100k, codes 0-20 for ml-1m) and ``rec`` (recommendation: each user's most recent
``rec_holdout`` interactions become ``target_id`` rows and are removed from ``NAME.inter``; a user keeps at least
``min_history`` behaviours, so users with fewer than ``rec_holdout + min_history`` ratings get no rec targets
and keep their full sequence).  Users are ordered by numeric id; users without ratings are left out.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .common import (
    BAD_ID,
    BAD_TIMESTAMP,
    DUPLICATE_USER,
    NO_DATA,
    NON_INTEGER_ID,
    UNKNOWN_LABEL,
    UNKNOWN_USER,
    WRONG_FIELD_COUNT,
    ConversionError,
    FileReport,
    TaskSummary,
    finish_dataset,
    id_too_long,
    open_input,
    parse_float,
    require_data,
    require_file,
    require_output,
    sequence_stats,
    staged_dataset_dir,
)
from .eventlog import EventLog

log = logging.getLogger("dataset_converters.movielens")

FORMATS = ("auto", "ml-100k", "ml-1m", "atomic")
AGE_CODES = ("1", "18", "25", "35", "45", "50", "56")
AGE_BUCKETS = {"1": "under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55",
               "56": "56+"}
OCCUPATIONS_100K = frozenset(
    "administrator artist doctor educator engineer entertainment executive healthcare homemaker lawyer librarian "
    "marketing none other programmer retired salesman scientist student technician writer".split())
OCCUPATION_CODES_1M = frozenset(str(i) for i in range(21))
GENDERS = ("M", "F")
TASKS = ("gender", "age", "occupation", "rec")
TASK_KINDS = {"gender": "binary", "age": "multiclass", "occupation": "multiclass", "rec": "recommendation"}
_BUF = 1 << 20


class _Bad(Exception):
    def __init__(self, kind: str, problem: str):
        super().__init__(problem)
        self.kind, self.problem = kind, problem


def age_bucket(age: int) -> str:
    """Raw age -> ml-1m bucket code."""
    for code, lo in (("56", 56), ("50", 50), ("45", 45), ("35", 35), ("25", 25), ("18", 18)):
        if age >= lo:
            return code
    return "1"


def detect_format(input_dir: Path) -> tuple[str, dict]:
    """(format, {"ratings": path, "users": path}) from the file names in ``input_dir``."""
    d = Path(input_dir)
    if not d.is_dir():
        raise ConversionError(d, None, "missing input folder")
    if (d / "u.data").exists() or (d / "u.user").exists():
        return "ml-100k", _layout(d, "ml-100k")
    if (d / "ratings.dat").exists() or (d / "users.dat").exists():
        return "ml-1m", _layout(d, "ml-1m")
    if list(d.glob("*.inter")):
        return "atomic", _layout(d, "atomic")
    raise ConversionError(d, None, "no MovieLens input found (expected u.data + u.user, ratings.dat + users.dat, "
                                   "or NAME.inter + NAME.user)")


def _layout(d: Path, fmt: str) -> dict:
    if fmt == "ml-100k":
        return {"ratings": d / "u.data", "users": d / "u.user"}
    if fmt == "ml-1m":
        return {"ratings": d / "ratings.dat", "users": d / "users.dat"}
    inters = sorted(d.glob("*.inter"))
    if len(inters) != 1:
        raise ConversionError(d, None, f"atomic format needs exactly one NAME.inter file, found {len(inters)}")
    return {"ratings": inters[0], "users": inters[0].with_suffix(".user")}


def convert_movielens(input_dir, output_dir, name="ml-100k", rec_holdout=10, min_history=5, skip_bad_lines=False,
                      *, input_format: str = "auto", progress: bool = False, overwrite: bool = False) -> dict:
    """Convert a MovieLens release (format auto-detected) to ``output_dir/name``; return the statistics dict.

    ``overwrite``: replace an existing data set folder written by the converters (never one with other files).
    Raises ConversionError on bad input (unless ``skip_bad_lines``), leaving ``output_dir`` untouched.
    """
    input_dir = Path(input_dir)
    if input_format not in FORMATS:
        raise ConversionError(input_format, None, f"unknown MovieLens format (choose from {', '.join(FORMATS)})")
    if rec_holdout < 0 or min_history < 1:
        raise ConversionError("options", None, "rec_holdout must be >= 0 and min_history >= 1")
    if input_format == "auto":
        fmt, paths = detect_format(input_dir)
    else:
        fmt, paths = input_format, _layout(input_dir, input_format)
    ratings_path = require_file(paths["ratings"])
    users_path = require_file(paths["users"])
    for p in (users_path, ratings_path):
        require_data(p, header_lines=int(fmt == "atomic"))
    log.info("MovieLens format %s: %s, %s", fmt, ratings_path.name, users_path.name)
    if name == "ml-100k":
        log.warning("data set name 'ml-100k': RecBole's Config always reads its own bundled ml-100k for this name "
                    "(data_path is ignored); use another name (e.g. ml100k) to load the converted files")

    with staged_dataset_dir(output_dir, name, [input_dir, ratings_path, users_path], overwrite) as tmp:
        ufr = FileReport(users_path, skip_bad_lines)
        users = _read_users(users_path, fmt, ufr)
        require_output(ufr, len(users), "users", "every rating would be for an unknown user")
        rfr = FileReport(ratings_path, skip_bad_lines)
        ev = _read_ratings(ratings_path, fmt, users, rfr, users_path.name)
        require_output(rfr, len(ev), "ratings", "there is no behaviour sequence")
        stats = _write(tmp, name, fmt, ev, users, ufr, rfr, rec_holdout, min_history, skip_bad_lines)
    return stats


def _split(line: str, fmt: str) -> list[str]:
    return line.split("::") if fmt == "ml-1m" else line.split("\t")


def _lines(path: Path, fmt: str, fr: FileReport, header: bool):
    """Yield (line number, text) of the data lines; ml-* files are Latin-1, atomic files UTF-8."""
    enc = "utf-8" if fmt == "atomic" else "latin-1"
    with open_input(path, "rb") as f:
        lineno = 0
        for raw in f:
            lineno += 1
            try:
                text = raw.decode(enc).rstrip("\r\n")
            except UnicodeDecodeError as e:
                if header and lineno == 1:
                    raise ConversionError(path, 1, "header is not valid UTF-8") from e
                fr.read += 1
                fr.bad_line(lineno, "undecodable_line", f"not valid UTF-8 ({e.reason})")
                continue
            if header and lineno == 1:
                yield 1, text
                continue
            if not text.strip() and fmt != "atomic":
                # the raw releases have no blank lines; treat one as a bad line
                fr.read += 1
                fr.bad_line(lineno, WRONG_FIELD_COUNT, "empty line")
                continue
            fr.read += 1
            yield lineno, text


def _atomic_columns(path: Path, header: str, need: tuple[str, ...]) -> tuple[dict, int]:
    fields = [h.split(":", 1)[0] for h in header.split("\t")]
    missing = [n for n in need if n not in fields]
    if missing:
        raise ConversionError(path, 1, f"missing field(s) {', '.join(missing)} in header {header!r}")
    return {n: fields.index(n) for n in need}, len(fields)


def _int_token(v: str, what: str) -> str:
    if not v.isdigit() or not v.isascii():
        raise _Bad(NON_INTEGER_ID, f"non-integer {what} id {v!r}")
    why = id_too_long(v, f"{what} id")
    if why:
        raise _Bad(BAD_ID, why)
    return v.lstrip("0") or "0"  # str(int(v)) without int()'s digit limit


def _read_users(path: Path, fmt: str, fr: FileReport) -> dict:
    """user token -> [gender, age label, occupation, line]."""
    users: dict[str, list] = {}
    raw_ages: dict[str, int] = {}
    cols = None
    width = 5
    for lineno, text in _lines(path, fmt, fr, header=(fmt == "atomic")):
        if fmt == "atomic" and lineno == 1:
            cols, width = _atomic_columns(path, text, ("user_id", "age", "gender", "occupation"))
            continue
        f = text.split("|") if fmt == "ml-100k" else _split(text, fmt)
        try:
            if len(f) != width:
                raise _Bad(WRONG_FIELD_COUNT, f"expected {width} fields, got {len(f)}")
            if fmt == "ml-100k":
                uid, age, gender, occ = f[0], f[1], f[2], f[3]
            elif fmt == "ml-1m":
                uid, gender, age, occ = f[0], f[1], f[2], f[3]
            else:
                uid, age, gender, occ = (f[cols[k]] for k in ("user_id", "age", "gender", "occupation"))
            uid = _int_token(uid, "user")
            if gender not in GENDERS:
                raise _Bad(UNKNOWN_LABEL, f"unknown gender value {gender!r} (expected M or F)")
            if fmt == "ml-1m":
                if age not in AGE_CODES:
                    raise _Bad(UNKNOWN_LABEL, f"unknown age value {age!r} (expected an ml-1m code: "
                                              f"{', '.join(AGE_CODES)})")
                if occ not in OCCUPATION_CODES_1M:
                    raise _Bad(UNKNOWN_LABEL, f"unknown occupation value {occ!r} (expected a code 0-20)")
            else:
                if not age.isdigit() or not age.isascii():
                    raise _Bad(UNKNOWN_LABEL, f"unknown age value {age!r} (expected a non-negative integer)")
                why = id_too_long(age, "age value")
                if why:
                    raise _Bad(UNKNOWN_LABEL, why)
                if occ not in OCCUPATIONS_100K and (fmt == "ml-100k" or occ not in OCCUPATION_CODES_1M):
                    raise _Bad(UNKNOWN_LABEL, f"unknown occupation value {occ!r} (expected one of the ml-100k "
                                              "occupation names" + (" or a code 0-20)" if fmt == "atomic" else ")"))
            if uid in users:
                raise _Bad(DUPLICATE_USER, f"duplicate user {uid}: already given at line {users[uid][3]}")
        except _Bad as e:
            fr.bad_line(lineno, e.kind, e.problem)
            continue
        users[uid] = [gender, age, occ, lineno]
        if fmt != "ml-1m":
            raw_ages[uid] = int(age.lstrip("0") or "0")
    if fmt == "ml-100k" or (fmt == "atomic" and not all(str(a) in AGE_CODES for a in raw_ages.values())):
        for uid, a in raw_ages.items():
            users[uid][1] = age_bucket(a)
        fr.extra["age"] = "raw ages bucketed into ml-1m codes"
    else:
        fr.extra["age"] = "ml-1m bucket codes"
        for uid, a in raw_ages.items():
            users[uid][1] = str(a)
    return users


def _read_ratings(path: Path, fmt: str, users: dict, fr: FileReport, users_name: str) -> EventLog:
    t0 = time.time()
    ev = EventLog()
    cols, width = None, 4
    for lineno, text in _lines(path, fmt, fr, header=(fmt == "atomic")):
        if fmt == "atomic" and lineno == 1:
            cols, width = _atomic_columns(path, text, ("user_id", "item_id", "timestamp"))
            continue
        f = _split(text, fmt)
        try:
            if len(f) != width:
                raise _Bad(WRONG_FIELD_COUNT, f"expected {width} fields, got {len(f)}")
            if cols is None:
                uid, iid, ts = f[0], f[1], f[3]
            else:
                uid, iid, ts = f[cols["user_id"]], f[cols["item_id"]], f[cols["timestamp"]]
            uid = _int_token(uid, "user")
            iid = _int_token(iid, "item")
            t = parse_float(ts)
            if t is None:
                raise _Bad(BAD_TIMESTAMP, f"timestamp {ts!r} is not a finite number")
            if uid not in users:
                raise _Bad(UNKNOWN_USER, f"unknown user {uid}: not in {users_name}")
        except _Bad as e:
            fr.bad_line(lineno, e.kind, e.problem)
            continue
        ev.add(uid, iid, t)
    log.info("%s: %d lines, %d ratings in %.1fs", path.name, fr.read, len(ev), time.time() - t0)
    return ev


def _write(tmp: Path, name: str, fmt: str, ev: EventLog, users: dict, ufr: FileReport, rfr: FileReport,
           holdout: int, min_history: int, skip_bad_lines: bool) -> dict:
    integral = ev.timestamps_integral()
    items = ev.items
    distinct = bytearray(len(items))
    with_rec = holdout > 0
    summaries = {t: TaskSummary(t, TASK_KINDS[t], f"{name}.{t}") for t in TASKS if t != "rec" or with_rec}
    outs = {t: open(tmp / f"{name}.{t}", "w", encoding="utf-8", buffering=_BUF) for t in summaries}
    n_seq = n_beh = n_rec = 0
    min_len, longest = 1 << 62, 0
    rec_users = 0
    try:
        with open(tmp / f"{name}.inter", "w", encoding="utf-8", buffering=_BUF) as inter:
            inter.write("user_id:token\titem_id:token\ttimestamp:float\n")
            for t, out in outs.items():
                out.write("user_id:token\ttarget_id:token\n" if t == "rec" else "user_id:token\tlabel:token\n")
            seen_users = set()
            for user, it, ts in ev.groups(user_order=lambda toks: sorted(range(len(toks)), key=lambda i: int(toks[i]))):
                seen_users.add(user)
                codes = it.tolist()
                tss = ts.astype("int64").tolist() if integral else [repr(x) for x in ts.tolist()]
                n = len(codes)
                cut = n - holdout if (with_rec and n >= holdout + min_history) else n
                inter.write("".join([f"{user}\t{items[c]}\t{x}\n" for c, x in zip(codes[:cut], tss[:cut])]))
                for c in codes[:cut]:
                    distinct[c] = 1
                if cut < n:
                    targets = codes[cut:]
                    outs["rec"].write("".join([f"{user}\t{items[c]}\n" for c in targets]))
                    summaries["rec"].targets.update(items[c] for c in targets)
                    summaries["rec"].num_samples += len(targets)
                    n_rec += len(targets)
                    rec_users += 1
                gender, age, occ, _ = users[user]
                for t, label in (("gender", gender), ("age", age), ("occupation", occ)):
                    outs[t].write(f"{user}\t{label}\n")
                    summaries[t].labels[label] += 1
                    summaries[t].num_samples += 1
                    summaries[t].num_users += 1
                n_seq += 1
                n_beh += cut
                min_len = min(min_len, cut)
                longest = max(longest, cut)
    finally:
        for out in outs.values():
            out.close()
    if with_rec:
        if not rec_users:
            raise ConversionError(rfr.path, None, f"no samples for task rec: no user has at least {holdout} + "
                                  f"{min_history} ratings (--rec-holdout + --min-history); a task with 0 samples "
                                  "is useless: lower them, or pass --rec-holdout 0 to convert without the rec task",
                                  NO_DATA)
        summaries["rec"].num_users = rec_users
    rfr.written += len(ev)
    rfr.extra.update({"rows_to_inter": n_beh, "rows_to_rec": n_rec})
    no_ratings = len(users) - len(seen_users)
    ufr.written += len(seen_users)
    if no_ratings:
        ufr.drop("no_ratings", no_ratings)
    seq = sequence_stats(n_seq, n_beh, sum(distinct), min_len, longest)
    notes = ["Behaviours are all rated movies (rating ignored) in time order; timestamps are the real ones.",
             "Age labels are ml-1m bucket codes: " + ", ".join(f"{k} = {v}" for k, v in AGE_BUCKETS.items()) + "."]
    if with_rec:
        notes.append(f"rec: the most recent {holdout} interactions of each user with >= {holdout + min_history} "
                     f"ratings are the targets and are not in {name}.inter ({rec_users:,} users, {n_rec:,} targets).")
    return finish_dataset(tmp, name, f"movielens ({fmt})", seq, list(summaries.values()), [ufr, rfr],
                          {"format": fmt, "rec_holdout": holdout, "min_history": min_history,
                           "skip_bad_lines": skip_bad_lines}, notes)
