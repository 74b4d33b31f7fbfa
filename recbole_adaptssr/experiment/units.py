"""The units of the experiment layer (docs/execution.md): what one piece of a command's work is, how it is run,
and how its result is checked before an earlier session's result is reused.

* ``pretrain_stage``: the last stage of a prefix ``[s1 .. sk]`` of a pre-training, seeded; it needs the unit of
  ``[s1 .. sk-1]`` (``previous``) and starts where that one ended. Identical prefixes are one unit: the MLM warm-up
  of ``mlm``, ``adaptssr`` and its ablations is trained once. Settings namespaced to a pretext task the prefix does
  not train (``ssr_*`` for the prefix ``[mlm]``) are left out of its unit.
* ``finetune``: one task, one seed, from a start point: the ``pretrain_stage`` unit of the stage (``start``), a
  checkpoint file (its path and SHA-256 are settings), or none.

(RecBole's models as baselines have units of their own, ``baseline_pretrain`` and ``baseline``, in
:mod:`~recbole_adaptssr.experiment.recbole_baselines`.)

A unit's settings hold ``model``, ``dataset`` and ``settings`` (the Config's, :func:`~recbole_adaptssr.experiment.
settings.unit_settings`) and what the unit fixes (seed, task, ...); a runner builds its Config from them alone
(:func:`unit_config`). Payloads name files relative to the run folder, so a run folder can be moved and resumed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

from recbole_adaptssr.execution import Unit, register_unit_kind

PRETRAIN_STAGE, FINETUNE = "pretrain_stage", "finetune"
_TASK_DATA: dict = {}  # (folder, name, file stamps) -> TaskData, per process


# ---------------------------------------------------------------------------------------------------- shared
def unit_config(context, **fixed):
    """The Config of a unit's run: its ``model``, ``dataset`` and ``settings``, then ``fixed`` and where the
    executor put it (:meth:`UnitContext.overrides`) above them."""
    from recbole_adaptssr.config import Config

    unit = context.settings
    return Config(model=unit["model"], dataset=unit["dataset"], config_dict=dict(unit["settings"]),
                  overrides={**fixed, **context.overrides()})


def _stamp(path: str) -> tuple:
    try:
        info = os.stat(path)
    except OSError:
        return (path, None)
    return (path, info.st_mtime_ns, info.st_size)


def task_data_of(config):
    """The data set's :class:`~recbole_adaptssr.data.task_dataset.TaskData`, read once per process while its
    manifest and behaviour log are unchanged (the runs of a worker, or of the command's process, share it)."""
    from recbole_adaptssr.data.task_dataset import TaskData

    folder, name = str(config["data_path"]), str(config["dataset"])
    key = (folder, name, _stamp(os.path.join(folder, f"{name}.tasks.json")),
           _stamp(os.path.join(folder, f"{name}.inter")))
    if key not in _TASK_DATA:
        _TASK_DATA.clear()  # one data set at a time: an older copy is never read again
        _TASK_DATA[key] = TaskData(folder, name)
    return _TASK_DATA[key]


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's bytes (a checkpoint a fine-tune unit starts from is part of its identity)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checked_file(run_dir: str, relative: str) -> None:
    """The checkpoint a payload names (relative to ``run_dir``) verifies, else a ``CheckpointError`` naming it."""
    from recbole_adaptssr.checkpoint import verify_checkpoint

    verify_checkpoint(os.path.join(run_dir, relative), require_checksum=True)


def run_dir_of(folder: str) -> str:
    """The run folder of a unit's folder (``<run>/units/<id>``)."""
    return os.path.dirname(os.path.dirname(os.path.normpath(folder)))


# ---------------------------------------------------------------------------------------------------- pre-training
def stage_settings(settings: dict, prefix: list, stages: list) -> dict:
    """``settings`` of the prefix ``[s1 .. sk]`` of ``stages``: those namespaced to a pretext task it does not train
    (a later stage's, or another method's: ``ssr_*`` for ``[mlm]``) left out, so that equal prefixes are one unit."""
    from recbole_adaptssr.pretext.base import PRETEXT_TASKS

    others = tuple(f"{task}_" for task in {*PRETEXT_TASKS.known(), *stages} if task not in prefix)
    return {key: value for key, value in settings.items() if not key.startswith(others)}


def pretrain_chain(plan, model: str, dataset: str, settings: dict, stages: list, seed: int, label: str = "") -> dict:
    """Add the ``pretrain_stage`` units of every prefix of ``stages`` (one chain, seeded with ``seed``) to ``plan``
    and return ``{stage: unit id}``. Under a pre-training budget (``pretrain_budget_*``) a stage's budget depends on
    how many stages follow it, so the chain's length is part of each unit."""
    budgeted = any(settings.get(key) is not None for key in ("pretrain_budget_steps", "pretrain_budget_seconds"))
    units, previous = {}, None
    for k in range(1, len(stages) + 1):
        prefix = list(stages[:k])
        fixed = {"model": model, "dataset": dataset, "seed": int(seed),
                 "settings": {**stage_settings(settings, prefix, list(stages)), "pretrain_stages": prefix}}
        if budgeted:
            fixed["chain_length"] = len(stages)
        after = f" after {'+'.join(prefix[:-1])}" if k > 1 else ""
        title = f"{label + ': ' if label else ''}pre-training {prefix[-1]}{after}, seed {seed}"
        previous = plan.add(Unit(PRETRAIN_STAGE, fixed, {"previous": previous} if previous else {}, title=title))
        units[prefix[-1]] = previous
    return units


def run_pretrain_stage_unit(context) -> dict:
    """Train the unit's last stage (:func:`~recbole_adaptssr.experiment.pretraining.pretrain` with the earlier
    stages' end), continuing after the last epoch its folder holds. Payload: ``stages`` (every stage of the chain
    so far, :class:`StageResult` fields, checkpoints relative to the run folder), ``stage`` (this unit's) and
    ``end_state`` (where the next stage starts)."""
    from recbole_adaptssr.experiment.pretraining import EarlierStages, StageResult, pretrain, \
        resume_checkpoint_path

    config = unit_config(context, seed=context.settings["seed"])
    earlier = None
    if "previous" in context.inputs:
        previous = context.inputs["previous"]
        earlier = EarlierStages(
            results={stage: StageResult(**{**values, "checkpoint": context.path(values["checkpoint"])})
                     for stage, values in previous["stages"].items()},
            end_state=context.path(previous["end_state"]))
    results = pretrain(config, context.folder, resume=True, earlier=earlier, keep_end_state=True,
                       stage_count=context.settings.get("chain_length"))
    stage = list(results)[-1]
    stages = {name: {**dataclasses.asdict(result), "checkpoint": context.relative(result.checkpoint)}
              for name, result in results.items()}
    end = resume_checkpoint_path(os.path.join(context.folder, "pretrain"), stage)
    return {"stage": stage, "stages": stages, "end_state": context.relative(end)}


def check_pretrain_stage(result, folder) -> None:
    """A finished stage is reused while its checkpoint and end state verify."""
    payload, run_dir = result.payload, run_dir_of(folder)
    checked_file(run_dir, payload["stages"][payload["stage"]]["checkpoint"])
    checked_file(run_dir, payload["end_state"])


def stage_results(payload: dict, run_dir: str) -> dict:
    """``{stage: StageResult}`` of a ``pretrain_stage`` payload, checkpoints where the run folder is now."""
    from recbole_adaptssr.experiment.pretraining import StageResult

    return {stage: StageResult(**{**values, "checkpoint": os.path.join(run_dir, values["checkpoint"])})
            for stage, values in payload["stages"].items()}


# ---------------------------------------------------------------------------------------------------- fine-tuning
def finetune_unit(model: str, dataset: str, settings: dict, task: str, seed: int, start=None, title: str = "") -> Unit:
    """The ``finetune`` unit of ``task`` and ``seed`` from ``start``: None (from scratch), ``("stage", unit id)``
    or ``("file", path)`` (a checkpoint: its SHA-256 is part of the unit)."""
    fixed = {"model": model, "dataset": dataset, "settings": settings, "task": task, "seed": int(seed)}
    needs = {}
    if start is not None and start[0] == "stage":
        needs["start"] = start[1]
    elif start is not None:
        path = os.path.abspath(start[1])
        fixed.update(start_file=path, start_sha256=file_sha256(path))
    return Unit(FINETUNE, fixed, needs, title=title)


def run_finetune_unit(context) -> dict:
    """One fine-tune run (:func:`~recbole_adaptssr.experiment.finetuning.finetune`) into the unit's folder.
    Payload: :class:`RunResult` fields, its checkpoint and folder relative to the run folder."""
    from recbole_adaptssr.checkpoint import load_checkpoint
    from recbole_adaptssr.experiment.finetuning import finetune

    unit = context.settings
    config = unit_config(context)
    state, label = None, "none"
    if "start" in context.inputs:
        start = context.inputs["start"]
        state, label = load_checkpoint(context.path(start["stages"][start["stage"]]["checkpoint"])), start["stage"]
        check_data_unchanged(config, state)
    elif unit.get("start_file"):
        if file_sha256(unit["start_file"]) != unit["start_sha256"]:
            raise ValueError(f"{unit['start_file']} changed since the run started (its SHA-256 differs): start a new "
                             "run to fine-tune the new file")
        state, label = load_checkpoint(unit["start_file"]), os.path.basename(unit["start_file"])
    result = finetune(config, unit["task"], state, unit["seed"], task_data=task_data_of(config),
                      run_dir=context.folder, label=label)
    return {**result.as_dict(), "checkpoint": context.relative(result.checkpoint),
            "run_dir": context.relative(context.folder)}


def check_data_unchanged(config, state: dict) -> None:
    """The behaviour log a pre-training stage read is the one fine-tuning reads: a log replaced meanwhile is an
    error (a warning with ``allow_data_change``)."""
    from logging import getLogger

    from recbole_adaptssr.data import fingerprint

    recorded = (state.get("data") or {}).get("behaviour_log")
    now = fingerprint.fingerprint(fingerprint.behaviour_log_path(config), config["sequence_cache_dir"])
    changes = fingerprint.differences({"behaviour_log": recorded}, {"behaviour_log": now}) if recorded else []
    if changes and not config["allow_data_change"]:
        raise ValueError("the data changed while the run was pre-training (" + "; ".join(changes) + "); resume it "
                         "with its data, or set allow_data_change=True to fine-tune on the new data")
    if changes:
        getLogger().warning("the data changed since pre-training (allow_data_change: True): " + "; ".join(changes))


def check_run(result, folder) -> None:
    """A finished run (fine-tune, baseline) or baseline pre-training is reused while its checkpoint verifies."""
    checked_file(run_dir_of(folder), result.payload["checkpoint"])


def run_result(payload: dict, run_dir: str, label: str | None = None):
    """The :class:`RunResult` of a ``finetune`` or ``baseline`` payload, its files where the run folder is now, its
    row ``label`` (the table's business, not the unit's)."""
    from recbole_adaptssr.experiment.results import RunResult

    result = RunResult(**payload)
    result.checkpoint = os.path.join(run_dir, result.checkpoint)
    result.run_dir = os.path.normpath(os.path.join(run_dir, result.run_dir))
    if label is not None:
        result.start_point = label
    return result


register_unit_kind(PRETRAIN_STAGE, run_pretrain_stage_unit, check=check_pretrain_stage)
register_unit_kind(FINETUNE, run_finetune_unit, check=check_run)
