"""The experiment: validate every setting, pre-train once, fine-tune a grid of (start point x task x seed) runs
that share the data set's manifest and behaviour log, and aggregate them into a results table."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from contextlib import contextmanager, nullcontext
from logging import getLogger

from filelock import FileLock, Timeout
from recbole.utils import set_color

from recbole_adaptssr import distributed
from recbole_adaptssr.checkpoint import verify_checkpoint
from recbole_adaptssr.compat import plain
from recbole_adaptssr.data import fingerprint
from recbole_adaptssr.data.task_dataset import TaskData
from recbole_adaptssr.data.validation import validate_data
from recbole_adaptssr.experiment.finetuning import finetune, resolve_start_point
from recbole_adaptssr.experiment.pretraining import pretrain
from recbole_adaptssr.experiment.results import RunResult, atomic_write_json, markdown_table, summarize, write_results
from recbole_adaptssr.experiment.run_dir import new_run_dir
from recbole_adaptssr.experiment.run_logger import init_run_logger
from recbole_adaptssr.experiment.validation import (check_dataset, check_finetuning, check_pretraining,
                                                    check_settings, selected_tasks)
from recbole_adaptssr.names import distinct_labels
from recbole_adaptssr.pretext.base import StageSettings
from recbole_adaptssr.settings_report import settings_report


def load_task_data(config, required: bool):
    """The data set's :class:`TaskData`, or None (with a warning) when it has no manifest and none is required."""
    try:
        return TaskData(config["data_path"], config["dataset"])
    except FileNotFoundError:
        if required:
            raise
        getLogger().warning(f"{config['dataset']} has no tasks.json: pre-training only (see README, Data layout)")
        return None


def run_grid(config, task_data: TaskData, tasks: list, start_points: dict, run_dir: str, resume: bool = False) -> list:
    """Fine-tune every (start point, task, seed): seeds ``seed, seed+1, ...`` (``repeat`` of them); each start
    point's checkpoint is loaded (and verified) once. ``start_points`` maps a label to ``None``, a checkpoint path
    or a checkpoint already loaded.

    Each finished run's :class:`RunResult` is written (atomically, after it was logged) as JSON beside its
    checkpoint: ``<run_dir>/finetune/<model>-<label>-<task>-seed<seed>.json``. With ``resume``, a run whose JSON
    and (verified) checkpoint are there is read back instead of repeated; an unfinished run starts again from
    its beginning (each run seeds itself, so it gives what it would have given)."""
    logger = getLogger()
    states = {label: resolve_start_point(point) for label, point in start_points.items()}
    folder = os.path.join(run_dir, "finetune")
    os.makedirs(folder, exist_ok=True)
    seeds = [int(config["seed"]) + r for r in range(int(config["repeat"]))]
    results, reported = [], set()
    for label, state in states.items():
        for task in tasks:
            for seed in seeds:
                checkpoint = os.path.join(folder, f"{config['model']}-{label}-{task}-seed{seed}.pth")
                record = os.path.splitext(checkpoint)[0] + ".json"
                result = read_run_result(record, checkpoint, folder) if resume else None
                if result is not None:
                    logger.info(f"{task} [{label}] seed {seed}: finished before the interruption ({record})")
                else:
                    result = finetune(config, task, state, seed, task_data=task_data, run_dir=folder, label=label)
                    if distributed.is_main_process():
                        save_run_result(result, record)
                for key, (user, run) in result.settings.get("overridden", {}).items():
                    if key not in reported and key != "seed":
                        reported.add(key)
                        logger.warning(f"your setting {key}={user!r} does not apply to downstream runs, which use "
                                       f"{key}={run!r} (see README, 'Which settings apply where')")
                results.append(result)
    return results


def save_run_result(result: RunResult, path: str) -> None:
    """One finished fine-tune run as JSON (atomic)."""
    atomic_write_json(path, result.as_dict())


def read_run_result(path: str, checkpoint: str, folder: str):
    """The :class:`RunResult` of a finished run (its JSON, and its checkpoint verified), or None (with a warning
    when something is there but unusable: that run is repeated)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            result = RunResult(**json.load(f))
        verify_checkpoint(checkpoint, require_checksum=True)
    except (OSError, ValueError, TypeError) as error:
        getLogger().warning(f"{path}: cannot be read back ({error}); the run is repeated")
        return None
    result.checkpoint, result.run_dir = checkpoint, folder  # where they are now (the run folder may have moved)
    return result


# ----------------------------------------------------------------------------------------------------- run folders
RUN_RECORD = "run.json"
LOCK_FILE = ".lock"
# settings that may differ between an interrupted run and its resumption (where it writes, how it reports, and the
# permission to resume on changed data)
RESUME_FREE = ("resume", "checkpoint_dir", "show_progress", "state", "allow_data_change")


def run_settings(config) -> dict:
    """The user's settings of this run (what a resumption must repeat), as plain values."""
    return {k: v for k, v in plain(getattr(config, "user_config_dict", {}) or {}).items() if k != "resume"}


def _comparable(settings: dict) -> dict:
    normal = json.loads(json.dumps(settings, sort_keys=True, default=str))
    return {k: v for k, v in normal.items() if k not in RESUME_FREE}


def read_run_record(folder: str) -> dict | None:
    path = os.path.join(folder, RUN_RECORD)
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_run_record(folder: str, record: dict) -> None:
    atomic_write_json(os.path.join(folder, RUN_RECORD), record)


def _resume_value(config):
    """``resume`` -> None (a new run), ``"latest"`` or a folder name/path."""
    value = config["resume"]
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("", "false", "no")):
        return None
    if value is True or (isinstance(value, str) and value.strip().lower() in ("true", "yes", "latest")):
        return "latest"
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"resume must be a run folder, true/latest (the newest unfinished run of these settings) or "
                     f"false, got {value!r}")


def _differences(then: dict, now: dict) -> list:
    a, b = _comparable(then), _comparable(now)
    return [f"{k}: then {a.get(k, '<unset>')!r}, now {b.get(k, '<unset>')!r}"
            for k in sorted(set(a) | set(b)) if a.get(k, "<unset>") != b.get(k, "<unset>")]


def data_changes(config, record: dict, data: dict | None) -> list:
    """What changed in the data since the run of ``record`` (its ``"data"`` fingerprint) was started; nothing when
    ``allow_data_change`` (then each change is logged as a warning)."""
    changes = fingerprint.differences(record.get("data"), data) if data is not None else []
    if changes and config["allow_data_change"]:
        getLogger().warning("the data changed since the run started (allow_data_change: True): " + "; ".join(changes))
        return []
    return changes


def resolve_resume(config, settings: dict, data: dict | None = None) -> str | None:
    """The run folder to continue (see :func:`run_pipeline`), or None for a new run. Errors name the setting; a run
    whose data (``data``: the fingerprint of this run's files) changed is refused with what changed, unless
    ``allow_data_change``."""
    value = _resume_value(config)
    if value is None:
        return None
    root = str(config["checkpoint_dir"])
    identity = {"model": str(config["model"]), "dataset": str(config["dataset"])}
    if value == "latest":
        candidates = []
        for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
            folder = os.path.join(root, name)
            record = read_run_record(folder)
            if (record and record.get("status") != "complete" and all(record.get(k) == v for k, v in identity.items())
                    and not _differences(record.get("settings", {}), settings) and not _locked(folder)):
                changes = data_changes(config, record, data)
                if changes:
                    getLogger().warning(f"resume={config['resume']!r}: not continuing {folder}, its data changed: "
                                        + "; ".join(changes))
                    continue
                candidates.append((str(record.get("started", "")), folder))
        if not candidates:
            getLogger().warning(f"resume={config['resume']!r}: no unfinished run of these settings and data under "
                                f"{root}; starting a new run")
            return None
        return max(candidates)[1]
    tried = [value] if os.path.isabs(value) else [value, os.path.join(root, value)]
    folder = next((path for path in tried if os.path.isdir(path)), None)
    if folder is None:
        raise ValueError(f"resume={value!r}: no such run folder (looked at {', '.join(tried)})")
    record = read_run_record(folder)
    if record is None:
        raise ValueError(f"resume={value!r}: {folder} is not a run folder of a pipeline (no readable {RUN_RECORD})")
    differences = [f"{k}: then {record.get(k)!r}, now {v!r}" for k, v in identity.items() if record.get(k) != v]
    differences += _differences(record.get("settings", {}), settings)
    if differences:
        raise ValueError(f"resume={value!r}: the settings differ from those of the run in {folder} ("
                         + "; ".join(differences) + "); resume with the same settings, or start a new run")
    changes = data_changes(config, record, data)
    if changes:
        raise ValueError(f"resume={value!r}: the data changed since the run in {folder} started ("
                         + "; ".join(changes) + "); resume with its data, start a new run, or set "
                         "allow_data_change=True to continue on the new data")
    return os.path.abspath(folder)


def _locked(folder: str) -> bool:
    lock = FileLock(os.path.join(folder, LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:
        return False
    lock.release()
    return False


@contextmanager
def run_folder_lock(folder: str):
    """Hold an exclusive lock on ``folder`` for this process (released when it ends, even by SIGKILL): two
    processes never write one run folder (a resumption while the run is still going is refused)."""
    path = os.path.join(folder, LOCK_FILE)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        with open(path, encoding="utf-8") as handle:
            holder = handle.read().strip() or "?"
        raise RuntimeError(f"run folder {folder} is in use by another process (pid {holder}): wait for it to "
                           "end, or stop it, before resuming") from None
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(str(os.getpid()))
        yield
    finally:
        lock.release()


_STALE_TEMP = re.compile(r"^\..+\.tmp-\d+-[0-9a-f]{8}$")


def remove_stale_temporaries(folder: str) -> list:
    """Temporary files of interrupted atomic writes (``.<name>.tmp-<pid>-<hex>``) under ``folder``; call only while
    holding the folder's lock (then no other process is writing them)."""
    removed = []
    for base, _, files in os.walk(folder):
        for name in files:
            if _STALE_TEMP.match(name):
                os.remove(os.path.join(base, name))
                removed.append(os.path.join(base, name))
    return removed


def run_pipeline(config) -> dict:
    """Validate, pre-train (models with pretext tasks), fine-tune every selected task from every start point over
    ``repeat`` seeds, and write the results table into the run's own folder. Returns what was done.

    ``resume``: a run folder (a path, or its name under ``checkpoint_dir``) continues that interrupted run, which
    must have the same settings (``resume``, ``checkpoint_dir``, ``show_progress`` and ``state`` may differ):
    pre-training continues after its last completed epoch, finished fine-tune runs are read back, not repeated.
    ``resume=true`` (or ``latest``) continues the newest unfinished run of the same model, data set and settings
    under ``checkpoint_dir``, or starts a new run if there is none."""
    uses_pretext = getattr(config.model_class, "uses_pretext_tasks", False)
    check_dataset(config)
    check_settings(config)
    wants_tasks = bool(config["downstream_task"]) or bool(config["downstream_tasks"]) or not uses_pretext
    task_data = load_task_data(config, required=wants_tasks)
    tasks = selected_tasks(config, task_data) if task_data is not None else []
    stages = [str(s) for s in config["pretrain_stages"] or []] if uses_pretext else []
    start_labels = [str(v) for v in config["finetune_from"] or []] if uses_pretext else ["none"]
    if stages:
        check_pretraining(config)
    check_finetuning(config, task_data, tasks, start_labels)
    checks = validate_data(config, task_data, tasks)  # every data file, before a run folder is made
    data = run_data(config, tasks)

    settings = run_settings(config)
    run_dir = resuming = None
    if distributed.is_main_process():  # under torch.distributed rank 0 chooses the folder and holds its lock
        resume_dir = resolve_resume(config, settings, data)
        resuming = resume_dir is not None
        run_dir = resume_dir if resuming else new_run_dir(config["checkpoint_dir"], config["model"],
                                                          config["dataset"], settings)
    run_dir, resuming = distributed.broadcast_object((run_dir, resuming))
    with run_folder_lock(run_dir) if distributed.is_main_process() else nullcontext():
        return _run(config, run_dir, resuming, settings, task_data, tasks, stages, start_labels, data, checks)


def run_data(config, tasks) -> dict:
    """The fingerprint of the files this run reads (:mod:`recbole_adaptssr.data.fingerprint`)."""
    return fingerprint.data_fingerprint(str(config["data_path"]), str(config["dataset"]), tasks,
                                        config["sequence_cache_dir"])


DATA_RECORD = "data.json"


def write_data_record(run_dir: str, data: dict, checks: dict | None = None) -> None:
    """``<run>/data.json``: the fingerprint of the data a run read and what its check found (the commands other
    than the pipeline, whose ``run.json`` holds them)."""
    atomic_write_json(os.path.join(run_dir, DATA_RECORD), {"data": data, "data_checks": checks})


def start_point_labels(start_labels: list, checkpoints: dict) -> dict:
    """``{row label: None | checkpoint path}``: ``none``, a stage (its checkpoint) or a checkpoint file, labelled
    by its file name, or by as much of its path as tells two files of one name apart (``a-ssr.pth``)."""
    paths = [label for label in start_labels if label.lower() != "none" and label not in checkpoints]
    names = dict(zip(paths, distinct_labels(paths, taken=[*checkpoints, "none"])))
    return {names.get(label, label): None if label.lower() == "none" else checkpoints.get(label, label)
            for label in start_labels}


def _run(config, run_dir, resuming, settings, task_data, tasks, stages, start_labels, data, checks) -> dict:
    record = read_run_record(run_dir) if resuming else None
    if record is None:
        record = {"model": str(config["model"]), "dataset": str(config["dataset"]), "settings": settings,
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "resumed": []}
    record.update(status="running", pid=os.getpid(), argv=list(sys.argv), world_size=distributed.world_size(),
                  data=data, data_checks=checks)
    main = distributed.is_main_process()  # the one writer of the run folder's records under torch.distributed
    removed = []
    if resuming:
        record["resumed"] = [*record.get("resumed", []), time.strftime("%Y-%m-%dT%H:%M:%S")]
        if main:
            removed = remove_stale_temporaries(run_dir)
    if main:
        write_run_record(run_dir, record)
    distributed.barrier()
    user_settings = plain(getattr(config, "user_config_dict", {}))
    log_file = init_run_logger(config, run_dir)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(settings_report(config, task_data, tasks))
    logger.info(f"run folder: {run_dir}" + (" (resumed)" if resuming else ""))
    if resuming and removed:
        logger.info(f"removed {len(removed)} temporary file(s) of interrupted writes: {removed}")

    pretrained = pretrain(config.derive(checkpoint_dir=run_dir), run_dir, resume=resuming) if stages else {}
    if stages and "train_stage" in user_settings:
        logger.warning(f"your setting train_stage={user_settings['train_stage']!r} is replaced by the pipeline: "
                       f"it pre-trains the stages {stages}, then fine-tunes (train_stage=finetune)")
    for stage in stages:
        for general, specific in StageSettings(config, stage).shadowed(user_settings).items():
            if specific not in user_settings:
                logger.warning(f"your setting {general}={user_settings[general]!r} does not apply to stage {stage}, "
                               f"which has {specific}={config[specific]!r}; set --{specific} to change it")
    out = {"run_dir": run_dir, "log": log_file, "pretrain": pretrained, "runs": [], "results": [], "table": ""}
    if not tasks:
        logger.info("no downstream task selected: pre-training only")
        if main:
            write_run_record(run_dir, {**record, "status": "complete"})
        return out
    changes = data_changes(config, {"data": data}, run_data(config, tasks))
    if changes:  # replaced while pre-training ran: fine-tuning would read other data than pre-training did
        raise ValueError("the data changed while the run was pre-training (" + "; ".join(changes) + "); resume "
                         f"it ({run_dir}) with its data, or set allow_data_change=True to fine-tune on the new data")
    checkpoints = {stage: result.checkpoint for stage, result in pretrained.items()}
    states = {label: resolve_start_point(point)  # each verified and read once
              for label, point in start_point_labels(start_labels, checkpoints).items()}
    record["data"] = {**data, "vocabulary": {label: (state.get("data") or {}).get("vocabulary")
                                             for label, state in states.items() if state is not None}}
    runs = run_grid(config, task_data, tasks, states, run_dir, resume=resuming)
    rows = summarize(runs, config["report_split"] or "test")
    table = markdown_table(rows)
    logger.info(set_color("results", "yellow") + f" ({run_dir}):\n{table}")  # logged before any write that can fail
    files = None
    if main:
        files = write_results(rows, runs, run_dir, pretrain=pretrained)
        logger.info(f"results written: {files['md']}, {files['json']}, {files['csv']}")
        write_run_record(run_dir, {**record, "status": "complete"})
    files = distributed.broadcast_object(files)
    return {**out, "runs": runs, "results": rows, "table": table, "files": files}
