"""The console commands, declared in setup.cfg's ``[options.entry_points]``, and the scripts that run the same code:

* ``recbole-adaptssr`` = ``python run_recbole_adaptssr.py`` (:func:`main`, RecBole's ``run_recbole.py``);
* ``recbole-adaptssr-hyper`` = ``python run_hyper_adaptssr.py`` (:func:`hyper`, RecBole's ``run_hyper.py``);
* ``recbole-adaptssr-convert`` = ``python -m dataset_converters`` (:func:`convert`).

Each returns the command's exit status. RecBole is not a declared requirement of the package (its ``ray<=2.6.3``
pin cannot install next to ``ray[tune]>=2.40``: it is installed with ``--no-deps``, see README, Install): without
it, the two commands that need it stop with the install command instead of a bare ``ModuleNotFoundError``.

A bad input of the two run commands (:func:`input_errors`: a setting, a data file, a checkpoint, a search space) is
one line ``<prog>: error: <message>`` on stderr (and in the run's log file when one is open) with exit status 2,
argparse's status for a usage error, as the converters' (``EXIT_BAD_INPUT``); ``--state=DEBUG`` on the command line
(RecBole's ``state`` setting) shows its traceback instead. Every other exception keeps its traceback: it is a bug.
"""

from __future__ import annotations

import argparse
import logging
import sys
from unittest import mock

EXIT_BAD_INPUT = 2  # argparse's status for a usage error, and the converters'

MAIN_DESCRIPTION = """\
Run a model as RecBole's run_recbole.py does:

    recbole-adaptssr --model=AdaptSSR --dataset=ml-100k --config_files="a.yaml b.yaml" --key=value

--model=AdaptSSR (the default) runs the whole pipeline: pre-training stages, fine-tuning on every task of the
data set, --repeat seeds each, results table; --pretrain_methods=[none,mlm,adaptssr] compares pre-training
methods. Any other model name is RecBole's (--downstream_task=rec runs it on our recommendation task). Every
other setting is --key=value.

Several processes (data-parallel, NCCL on GPUs, gloo on CPUs): torchrun --nproc_per_node=N
run_recbole_adaptssr.py ... (torchrun's rendezvous settings for several machines), or RecBole's convention
--nproc=N (with --world_size, --ip, --port, --group_offset for several machines). model and dataset may also come
from a config file (e.g. a best.yaml written by recbole-adaptssr-hyper); without either, they are AdaptSSR and
the embedded ml-100k.

Exit status: 0 done; 1 some units failed (the tables hold the others; --resume=true runs them); 2 a bad input (a
setting, data file, checkpoint), printed as "error: <message>" before anything trains; --state=DEBUG prints its
traceback instead.
"""

DEFAULTS = {"model": "AdaptSSR", "dataset": "ml-100k"}


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The main command's own options; every other ``--key=value`` is a setting, read by RecBole's Config."""
    parser = argparse.ArgumentParser(prog=prog, description=MAIN_DESCRIPTION, allow_abbrev=False,  # RecBole's Config
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # reads --key=value as written
    parser.add_argument("--model", "-m", type=str, default=None, help="model name, ours or RecBole's (AdaptSSR)")
    parser.add_argument("--dataset", "-d", type=str, default=None, help="data set name (ml-100k: the embedded one)")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated YAML files")
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine (RecBole's convention; "
                        "or launch with torchrun --nproc_per_node=N)")
    parser.add_argument("--world_size", type=int, default=-1, help="processes on all machines (default: nproc)")
    parser.add_argument("--ip", type=str, default="localhost", help="address of the machine of rank 0")
    parser.add_argument("--port", type=str, default="29500", help="free port on the machine of rank 0")
    parser.add_argument("--group_offset", type=int, default=None,
                        help="global rank of this machine's first process (RecBole's name)")
    parser.add_argument("--offset", type=int, default=None, help=argparse.SUPPRESS)  # the earlier name
    return parser


def from_config_files(files, key):
    """``key`` as the last of ``files`` that sets it (None if none does)."""
    import yaml

    value = None
    for path in files or []:
        try:
            with open(path, encoding="utf-8") as f:
                loaded = yaml.safe_load(f)
        except (OSError, yaml.YAMLError):
            continue  # our Config reports the file and its problem
        if isinstance(loaded, dict) and loaded.get(key) is not None:
            value = loaded[key]
    return value


def group_offset(args, parser) -> int:
    """``--group_offset`` (RecBole's name), or ``--offset`` with a deprecation warning."""
    if args.offset is None:
        return args.group_offset or 0
    if args.group_offset is not None and args.group_offset != args.offset:
        parser.error(f"--offset={args.offset} and --group_offset={args.group_offset} disagree: give --group_offset")
    print(f"{parser.prog}: warning: --offset is deprecated, use --group_offset (RecBole's name)", file=sys.stderr)
    return args.offset


def recbole_missing(prog: str) -> int | None:
    """Exit status 1 with the install command printed when RecBole cannot be imported, else None."""
    from recbole_adaptssr.compat import check_recbole

    try:
        check_recbole()
    except ImportError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    return None


def input_errors() -> tuple:
    """The exception types of a bad input: a setting (:class:`~recbole_adaptssr.setting_errors.SettingError`), a data
    file (:class:`~recbole_adaptssr.data.validation.DataError`), a checkpoint
    (:class:`~recbole_adaptssr.checkpoint.CheckpointError`), a search space
    (:class:`~recbole_adaptssr.tuning.space.SpaceError`). Imported when a command runs, not with this module."""
    from recbole_adaptssr.checkpoint import CheckpointError
    from recbole_adaptssr.data.validation import DataError
    from recbole_adaptssr.setting_errors import SettingError
    from recbole_adaptssr.tuning.space import SpaceError

    return SettingError, DataError, CheckpointError, SpaceError


def debug_requested(argv) -> bool:
    """``--state=DEBUG`` (RecBole's ``state`` setting, any case) is on the command line ``argv``
    (``None``: ``sys.argv[1:]``); the last ``--state`` counts, as in RecBole's Config."""
    states = [arg.split("=", 1)[1] for arg in (sys.argv[1:] if argv is None else argv) if arg.startswith("--state=")]
    return bool(states) and states[-1].strip().strip("'\"").lower() == "debug"


def log_to_files(message: str) -> None:
    """``message`` as an ERROR record in the root logger's log files (a run's log, once one is open), not on the
    console (the command prints it there once)."""
    root = logging.getLogger()
    record = root.makeRecord(root.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def reporting_input_errors(prog: str, argv, command) -> int:
    """``command()``'s exit status; a bad input (:func:`input_errors`) is printed as ``<prog>: error: <message>``
    (and logged to the run's log files) with :data:`EXIT_BAD_INPUT`, unless ``--state=DEBUG`` is in ``argv``: then,
    as every other exception, it propagates with its traceback."""
    try:
        return command()
    except input_errors() as error:
        if debug_requested(argv):
            raise
        log_to_files(f"{type(error).__name__}: {error}")
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def main(argv=None) -> int:
    """``recbole-adaptssr`` / ``run_recbole_adaptssr.py``: ``argv`` (default ``sys.argv[1:]``) as the command line.
    Exit status: 0 done, 1 some units failed (or no RecBole), 2 a bad input (:func:`reporting_input_errors`)."""
    parser = build_parser()
    args, _ = parser.parse_known_args(argv)
    offset = group_offset(args, parser)
    missing = recbole_missing(parser.prog)
    if missing:
        return missing
    return reporting_input_errors(parser.prog, argv, lambda: run_main(parser, args, offset, argv))


def run_main(parser, args, offset: int, argv) -> int:
    """The main command's run, once its own options are read (see :func:`main`)."""
    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    model, dataset = (getattr(args, key) or from_config_files(config_file_list, key) or DEFAULTS[key]
                      for key in ("model", "dataset"))

    import recbole_adaptssr
    from recbole_adaptssr import distributed
    from recbole_adaptssr.quick_start import run

    recbole_adaptssr.setup()  # the RecBole compatibility shims, applied once, explicitly
    # RecBole's Config reads the --key=value settings from sys.argv
    with mock.patch.object(sys, "argv", sys.argv if argv is None else [parser.prog, *argv]):
        if (args.nproc > 1 or args.world_size > 1) and not distributed.launched_distributed():
            distributed.spawn(run, args.nproc, str(model), str(dataset), config_file_list,
                              world_size=args.world_size if args.world_size > 0 else args.nproc, ip=args.ip,
                              port=args.port, offset=offset)
        else:
            result = run(model=str(model), dataset=str(dataset), config_file_list=config_file_list)
            if not result.get("ok", True):  # some units failed: the tables hold what finished
                failed = "; ".join(f"{f['unit']}: {f['error']}" for f in result.get("failures", []))
                print(f"{parser.prog}: error: {len(result.get('failures', []))} unit(s) failed ({failed}); the "
                      f"tables in {result.get('run_dir')} hold the units that finished; resume the run "
                      "(--resume=true) to run the others", file=sys.stderr)
                return 1
    return 0


def hyper(argv=None) -> int:
    """``recbole-adaptssr-hyper`` / ``run_hyper_adaptssr.py`` (:mod:`recbole_adaptssr.tuning.cli`). Exit status: 0
    done, 1 no RecBole, 2 a bad input (:func:`reporting_input_errors`; argparse's own usage errors too), 3
    interrupted, 4 every trial failed."""
    prog = argparse.ArgumentParser().prog
    missing = recbole_missing(prog)
    if missing:
        return missing
    from recbole_adaptssr.tuning.cli import console_main

    return reporting_input_errors(prog, argv, lambda: console_main(argv))


def convert(argv=None) -> int:
    """``recbole-adaptssr-convert`` / ``python -m dataset_converters`` (needs no RecBole)."""
    from dataset_converters.__main__ import main as convert_main

    return convert_main(argv, prog=argparse.ArgumentParser().prog)


def console(command) -> None:
    """Run ``command`` as a script does: its status is the process's exit status."""
    sys.exit(command())
