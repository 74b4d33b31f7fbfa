"""Command line: ``python -m dataset_converters {ttl,app,movielens} --input DIR --output DIR [options]``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from . import app, movielens, ttl
from .common import EXIT_BAD_INPUT, ConversionError, stats_markdown

OUTPUT_HELP = """\
Output: OUTPUT/NAME/ with RecBole atomic files (tab-separated, typed header):
  NAME.inter        user_id:token item_id:token timestamp:float  (behaviour log, grouped by user,
                    chronological within a user; pre-training corpus and input of every task)
  NAME.<task>       classification: user_id:token label:token; recommendation: user_id:token target_id:token;
                    cvr: user_id:token target_id:token label:float
  NAME.tasks.json   task manifest (kind, metric, file, num_samples, num_labels | num_targets)
  NAME.stats.json, NAME.stats.md   statistics (the paper's Table 1) and per-file read/written/skipped lines
  NAME.converted.json   marker: the files the converter wrote (names, sizes) and who wrote them
The folder is built in OUTPUT/.NAME.tmp-* and moved into place only when complete.  On bad input: a message
naming file, line and problem, exit code 2, OUTPUT untouched; --skip-bad-lines skips bad lines instead and
reports how many of each kind.  An empty file, or a task left with 0 samples, is an error.
Safety: nothing the converter did not write is ever replaced or deleted.  Exit code 2, nothing changed, when
the input overlaps OUTPUT/NAME (equal, inside or containing it), or when OUTPUT/NAME exists and holds files
its marker does not list (they are named), or holds an earlier conversion and --overwrite is not given.
Temporary folders of killed conversions are removed by the next run; SIGTERM removes its own.
"""


def _common(p: argparse.ArgumentParser, default_name: str | None) -> None:
    p.add_argument("--input", required=True, type=Path, metavar="DIR", help="folder holding the input files")
    p.add_argument("--output", required=True, type=Path, metavar="DIR",
                   help="parent folder of the data set folder (RecBole's data_path); created if missing")
    p.add_argument("--name", default=default_name, metavar="NAME",
                   help="data set name: folder and file prefix" + (f" (default {default_name})" if default_name
                                                                    else " (default: from the input format)"))
    p.add_argument("--skip-bad-lines", action="store_true",
                   help="skip bad lines (counted per kind in the statistics and on stderr) instead of failing")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUTPUT/NAME written by an earlier conversion (refused if it holds "
                        "any file that conversion did not write)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr, no report")


def _tasks(value: str, allowed: tuple) -> list[str]:
    tasks = [t.strip() for t in value.split(",") if t.strip()]
    bad = [t for t in tasks if t not in allowed]
    if bad or not tasks:
        raise argparse.ArgumentTypeError(f"tasks must be a comma-separated subset of {','.join(allowed)}")
    return tasks


def build_parser(prog: str = "python -m dataset_converters") -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog=prog, formatter_class=fmt,
                                 description="Convert the AdaptSSR data sets (TTL, App, MovieLens) to RecBole "
                                             f"atomic files.  See `{prog} SOURCE --help`.",
                                 epilog=OUTPUT_HELP)
    sub = ap.add_subparsers(dest="source", required=True, metavar="{ttl,app,movielens}")

    p = sub.add_parser("ttl", help="Tencent Transfer Learning release (tasks age, lifestatus, click, like)",
                       description=ttl.__doc__, formatter_class=fmt, epilog=OUTPUT_HELP)
    _common(p, "ttl")
    p.add_argument("--tasks", type=lambda v: _tasks(v, ttl.TASKS), default=list(ttl.TASKS),
                   help="comma-separated tasks to convert (default %(default)s); each needs its file")
    p.add_argument("--pretrain-file", default=ttl.PRETRAIN_FILE, metavar="FILE",
                   help="pre-training sequences, relative to --input (default %(default)s)")
    for t, f in ttl.TASK_FILES.items():
        p.add_argument(f"--{t}-file", default=f, metavar="FILE", help=f"task {t} file (default %(default)s)")

    p = sub.add_parser("app", help="App installs layout (tasks gender, cvr)", description=app.__doc__,
                       formatter_class=fmt, epilog=OUTPUT_HELP)
    _common(p, "app")
    p.add_argument("--tasks", type=lambda v: _tasks(v, app.TASKS), default=list(app.TASKS),
                   help="comma-separated tasks to convert (default %(default)s)")
    p.add_argument("--max-len", type=int, default=app.DEFAULT_MAX_LEN,
                   help="keep each user's most recent N installs (default %(default)s)")
    p.add_argument("--gender-values", default=",".join(app.DEFAULT_GENDER_VALUES), metavar="V1,V2",
                   help="the accepted gender labels (default %(default)s)")
    p.add_argument("--installs-file", default=app.INSTALLS_FILE, metavar="FILE",
                   help="user,app,timestamp (default %(default)s)")
    p.add_argument("--gender-file", default=app.TASK_FILES["gender"], metavar="FILE",
                   help="user,label (default %(default)s)")
    p.add_argument("--cvr-file", default=app.TASK_FILES["cvr"], metavar="FILE",
                   help="user,target_app,label (default %(default)s)")
    p.add_argument("--duplicate-rows", choices=app.DUPLICATE_POLICIES, default="report",
                   help="install lines repeating an earlier one exactly: report (keep, count; default), drop, error")

    p = sub.add_parser("movielens", help="MovieLens ml-100k / ml-1m / RecBole atomic (tasks gender, age, "
                                         "occupation, rec)", description=movielens.__doc__, formatter_class=fmt,
                       epilog=OUTPUT_HELP)
    _common(p, None)
    p.add_argument("--format", choices=movielens.FORMATS, default="auto",
                   help="input format (default auto: by file names)")
    p.add_argument("--rec-holdout", type=int, default=10, metavar="N",
                   help="most recent interactions per user that become rec targets, 0 = no rec task "
                        "(default %(default)s)")
    p.add_argument("--min-history", type=int, default=5, metavar="N",
                   help="behaviours a user keeps at least; users with fewer than holdout + N ratings get no rec "
                        "targets (default %(default)s)")
    return ap


def main(argv=None, prog: str = "python -m dataset_converters") -> int:
    args = build_parser(prog).parse_args(argv)
    level = logging.WARNING if args.quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("dataset_converters")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    progress = not (args.no_progress or args.quiet) and sys.stderr.isatty()
    t0 = time.time()
    try:
        if args.source == "ttl":
            files = {"pretrain": args.pretrain_file, **{t: getattr(args, f"{t}_file") for t in ttl.TASKS}}
            stats = ttl.convert_ttl(args.input, args.output, args.name, tasks=args.tasks, files=files,
                                    skip_bad_lines=args.skip_bad_lines, progress=progress, overwrite=args.overwrite)
        elif args.source == "app":
            gv = [v.strip() for v in args.gender_values.split(",") if v.strip()]
            files = {"installs": args.installs_file, "gender": args.gender_file, "cvr": args.cvr_file}
            stats = app.convert_app(args.input, args.output, args.name, tasks=args.tasks, max_len=args.max_len,
                                    gender_values=gv, files=files, skip_bad_lines=args.skip_bad_lines,
                                    progress=progress, overwrite=args.overwrite, duplicate_rows=args.duplicate_rows)
        else:
            name = args.name
            fmt = args.format
            if name is None:
                fmt_found, paths = (movielens.detect_format(args.input) if fmt == "auto"
                                    else (fmt, movielens._layout(args.input, fmt)))
                name = paths["ratings"].stem if fmt_found == "atomic" else fmt_found
            stats = movielens.convert_movielens(args.input, args.output, name, rec_holdout=args.rec_holdout,
                                                min_history=args.min_history, skip_bad_lines=args.skip_bad_lines,
                                                input_format=fmt, progress=progress, overwrite=args.overwrite)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        print(f"error: conversion aborted, nothing written to {args.output}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # e.g. the output disk is full: not bad input, but nothing is left behind either
        print(f"error: {e}", file=sys.stderr)
        print(f"error: conversion aborted, nothing written to {args.output}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted, nothing written", file=sys.stderr)
        return 130
    skipped = {f: d["bad_lines_by_kind"] for f, d in stats["files"].items() if d["bad_lines"]}
    for f, reasons in skipped.items():
        print(f"skipped bad lines in {f}: " + ", ".join(f"{k}: {v}" for k, v in reasons.items()), file=sys.stderr)
    out = Path(args.output) / stats["dataset"]
    logger.info("wrote %s in %.1fs", out, time.time() - t0)
    if not args.quiet:
        print(stats_markdown(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
