"""Shared machinery of the converters: errors, bad-line accounting, staged output, the report files.

Every converter writes one data set folder ``OUTPUT/NAME/`` of RecBole atomic files.  It is built in a
temporary sibling folder (``OUTPUT/.NAME.tmp-XXXX``) and renamed into place only once complete, so a failed
conversion leaves ``OUTPUT`` exactly as it was.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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
UNKNOWN_LABEL = "unknown_label"
NO_TARGETS = "no_targets"
WRONG_FIELD_COUNT = "wrong_field_count"
BAD_TIMESTAMP = "bad_timestamp"
UNDECODABLE = "undecodable_line"

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


@contextmanager
def staged_dataset_dir(output_dir, name: str) -> Iterator[Path]:
    """Yield a temporary folder for ``OUTPUT/NAME``; move it into place only if the block completes.

    On success an existing ``OUTPUT/NAME`` is replaced (renamed aside, the new one renamed in, the old one
    removed).  On any exception the temporary folder is removed, and so is ``OUTPUT`` if this call created it,
    so the output side is exactly as before.
    """
    check_name(name)
    out = Path(output_dir)
    created = []
    p = out
    while not p.exists():
        created.append(p)
        p = p.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConversionError(out, None, f"cannot create output folder: {e.strerror or e}") from e
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=out))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; the data set folder gets the usual mode
    try:
        yield tmp
        final = out / name
        old = None
        if final.exists() or final.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=out))
            os.rename(final, old / name)
        os.rename(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for d in created:  # innermost first
            try:
                d.rmdir()
            except OSError:
                break
        raise


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
