"""A command's run, the same for every command: its folder (new, or the one ``resume`` names; locked; ``run.json``
with the settings, the data's fingerprint and what the data check found), its log, its plan executed
(:func:`recbole_adaptssr.execution.execute`), its tables built from the units' results (a partial table when
some failed or are missing) and how it ended (``complete``, or ``failed``: the entry point then exits non-zero).
:func:`load_task_data` and :func:`run_data` are what every command reads of its data before the run folder.

Under ``torch.distributed`` (the pipeline's ``--nproc`` / ``torchrun``) rank 0 chooses and holds the folder and
writes everything in it; every rank executes every unit (their collectives meet in each) and builds the tables.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from logging import getLogger

from recbole_adaptssr import distributed
from recbole_adaptssr.checkpoint import signing_key_in_environment
from recbole_adaptssr.data import fingerprint
from recbole_adaptssr.data.task_dataset import TaskData
from recbole_adaptssr.execution import Ranks, execute
from recbole_adaptssr.execution.logs import init_run_logger
from recbole_adaptssr.execution.run_folder import COMPLETE, FAILED, choose_run_folder, open_run_folder


def load_task_data(config, required: bool):
    """The data set's :class:`TaskData`, or None (with a warning) when it has no manifest and none is required."""
    try:
        return TaskData(config["data_path"], config["dataset"])
    except FileNotFoundError:
        if required:
            raise
        getLogger().warning(f"{config['dataset']} has no tasks.json: pre-training only (see README, Data layout)")
        return None


def run_data(config, tasks) -> dict:
    """The fingerprint of the files this run reads (:mod:`recbole_adaptssr.data.fingerprint`)."""
    return fingerprint.data_fingerprint(str(config["data_path"]), str(config["dataset"]), tasks,
                                        config["sequence_cache_dir"])


def run_plan(config, run, plan, report, *, command: str, prefix: str, data: dict, checks: dict | None,
             notes=None, listing=None) -> dict:
    """Run ``plan`` as the command ``command`` (see the module docstring) and return ``report``'s dict with
    ``run_dir``, ``log``, ``ok`` (every unit done), ``failures`` (``[{"unit", "error", "log"}]``) and ``outcome``.

    ``run``: the command's :class:`~recbole_adaptssr.experiment.settings.RunSettings`; ``prefix``: the start of a
    new run folder's name; ``data``/``checks``: the data's fingerprint and the data check's report.
    ``listing()``: the settings the run uses, logged at the start (default: the whole Config, as RecBole logs it);
    ``notes()`` logs what the command says before its units run (settings that do not apply, ...);
    ``report(run_dir, outcome, writer)`` builds, logs and (``writer``: this process writes the folder) writes the
    tables from the finished units."""
    identity = {"command": command, "model": run.model, "dataset": run.dataset}
    main, ranks = distributed.is_main_process(), None
    if distributed.is_distributed():
        ranks = Ranks(writer=main, agree=distributed.broadcast_object)
    folder = choose_run_folder(run.root, prefix, identity, run.recorded, run.resume, data=data,
                               allow_data_change=run.allow_data_change) if main else None
    folder = distributed.broadcast_object(folder)
    held = open_run_folder(run.root, prefix, identity, run.recorded, data=data, folder=folder) if main \
        else nullcontext()
    with held as record:
        if record is not None:
            record.update(data_checks=checks, world_size=distributed.world_size())
        resumed = distributed.broadcast_object(record.resumed if record is not None else None)
        distributed.barrier()
        # under torch.distributed, ranks other than 0 (which log errors only) write a file of their own
        log_file = init_run_logger(folder, run.state, "" if main else f".rank{distributed.rank()}")
        logger = getLogger()
        logger.info(sys.argv)
        logger.info(listing() if listing is not None else config)
        logger.info(f"run folder: {folder}" + (" (resumed)" if resumed else ""))
        if record is not None and record.removed:
            logger.info(f"removed {len(record.removed)} temporary file(s) of interrupted writes: {record.removed}")
        if notes is not None:
            notes()
        with signing_key_in_environment():
            outcome = execute(plan, folder, run.executor, ranks, run.options)
        out = report(folder, outcome, main)
        if record is not None:
            record.finish(COMPLETE if outcome.ok else FAILED)
    failures = [{"unit": outcome.results[i].name, "error": outcome.results[i].error, "log": outcome.results[i].log}
                for i in outcome.failed]
    return {**out, "run_dir": folder, "log": log_file, "ok": outcome.ok, "failures": failures, "outcome": outcome}


def warn_overridden(runs: list, own: dict | None = None) -> None:
    """Once per key, the user's settings that fine-tune runs replaced (``RunResult.settings["overridden"]``); a
    method's own setting (``own``, ``{label: settings}``) is not reported."""
    reported = set()
    for result in runs:
        for key, (user, value) in result.settings.get("overridden", {}).items():
            if key in reported or key == "seed" or key in (own or {}).get(result.start_point, {}):
                continue
            reported.add(key)
            getLogger().warning(f"your setting {key}={user!r} does not apply to downstream runs, which use "
                                f"{key}={value!r} (see README, 'Which settings apply where')")
