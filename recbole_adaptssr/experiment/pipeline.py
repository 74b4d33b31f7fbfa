"""The pipeline: validate every setting, compile a plan (pre-training stage units, then a fine-tune unit per start
point x task x seed), run it (:mod:`~recbole_adaptssr.experiment.lifecycle`) and aggregate the finished fine-tune
runs into a results table."""

from __future__ import annotations

from logging import getLogger

from recbole.utils import set_color

from recbole_adaptssr import distributed
from recbole_adaptssr.data.validation import validate_data
from recbole_adaptssr.execution import Plan
from recbole_adaptssr.experiment.lifecycle import load_task_data, run_data, run_plan, warn_overridden
from recbole_adaptssr.experiment.results import markdown_table, summarize, write_results
from recbole_adaptssr.experiment.settings import PipelineSettings
from recbole_adaptssr.experiment.units import FINETUNE, PRETRAIN_STAGE, finetune_unit, pretrain_chain, run_result, \
    stage_results
from recbole_adaptssr.experiment.validation import (check_dataset, check_finetuning, check_pretraining,
                                                    check_settings, selected_tasks)
from recbole_adaptssr.names import distinct_labels
from recbole_adaptssr.pretext.base import StageSettings
from recbole_adaptssr.settings_report import settings_report


def start_point_labels(start_labels: list, stages: dict) -> dict:
    """``{row label: start}`` of ``finetune_from``: ``none`` (start None), a stage (``stages[stage]``) or a
    checkpoint file (``("file", path)``), labelled by its file name, or by as much of its path as tells two files
    of one name apart (``a-ssr.pth``)."""
    paths = [label for label in start_labels if label.lower() != "none" and label not in stages]
    names = dict(zip(paths, distinct_labels(paths, taken=[*stages, "none"])))
    return {names.get(label, label): None if label.lower() == "none" else stages.get(label, ("file", label))
            for label in start_labels}


def compile_pipeline(settings: PipelineSettings) -> tuple:
    """``(plan, rows, chain)``: the pre-training stage units of ``stages`` (``chain``: ``{stage: unit id}``), then a
    fine-tune unit per start point x task x seed; ``rows`` maps a fine-tune unit to the ``(label, task, seed)`` rows
    it fills."""
    run = settings.run
    plan = Plan()
    chain = pretrain_chain(plan, run.model, run.dataset, run.units, list(settings.stages), run.seed)
    units = {**run.units, "pretrain_stages": list(settings.stages)} if settings.uses_pretext else run.units
    starts = start_point_labels(list(settings.start_points), {s: ("stage", uid) for s, uid in chain.items()})
    rows = {}
    for label, start in starts.items():
        for task in settings.tasks:
            for seed in run.seeds:
                unit = finetune_unit(run.model, run.dataset, units, task, seed, start, title=f"{task} [{label}], "
                                                                                             f"seed {seed}")
                rows.setdefault(plan.add(unit), []).append((label, task, seed))
    return plan, rows, chain


def run_pipeline(config) -> dict:
    """Validate, pre-train (models with pretext tasks), fine-tune every selected task from every start point over
    ``repeat`` seeds, and write the results table into the run's own folder. Returns what was done.

    ``resume``: a run folder (a path, or its name under ``checkpoint_dir``) continues that interrupted run, which
    must have the same settings (``resume``, ``checkpoint_dir``, ``show_progress``, ``state``, the executor's and
    ``allow_data_change`` may differ): finished units are read back, an interrupted pre-training stage continues
    after its last completed epoch. ``resume=true`` (or ``latest``) continues the newest unfinished run of the
    same model, data set and settings under ``checkpoint_dir``, or starts a new run if there is none."""
    uses_pretext = getattr(config.model_class, "uses_pretext_tasks", False)
    check_dataset(config)
    check_settings(config)
    wants_tasks = bool(config["downstream_task"]) or bool(config["downstream_tasks"]) or not uses_pretext
    task_data = load_task_data(config, required=wants_tasks)
    tasks = selected_tasks(config, task_data) if task_data is not None else []
    settings = PipelineSettings.from_config(config, tasks)
    if settings.stages:
        check_pretraining(config)
    check_finetuning(config, task_data, tasks, list(settings.start_points))
    checks = validate_data(config, task_data, tasks)  # every data file, before a run folder is made
    plan, rows, chain = compile_pipeline(settings)

    def notes():
        user = settings.run.recorded
        if settings.stages and "train_stage" in user:
            getLogger().warning(f"your setting train_stage={user['train_stage']!r} is replaced by the pipeline: it "
                                f"pre-trains the stages {list(settings.stages)}, then fine-tunes "
                                "(train_stage=finetune)")
        for stage in settings.stages:
            for general, specific in StageSettings(config, stage).shadowed(user).items():
                if specific not in user:
                    getLogger().warning(f"your setting {general}={user[general]!r} does not apply to stage {stage}, "
                                        f"which has {specific}={config[specific]!r}; set --{specific} to change it")

    def report(run_dir, outcome, writer) -> dict:
        return pipeline_tables(settings, plan, rows, chain, run_dir, outcome, writer)

    return run_plan(config, settings.run, plan, report, command="pipeline",
                    prefix=f"{settings.run.model}-{settings.run.dataset}", data=run_data(config, tasks),
                    checks=checks, notes=notes, listing=lambda: settings_report(config, task_data, tasks))


def pipeline_tables(settings, plan, rows, chain, run_dir, outcome, writer) -> dict:
    """The results table of the finished fine-tune units (partial when some failed), logged, then written
    (``writer``) as ``results.md/.json/.csv`` with how the pre-training stages stopped."""
    logger = getLogger()
    finished = {unit.id: payload for unit, payload in outcome.payloads(plan, PRETRAIN_STAGE)}
    last = next((uid for uid in reversed(list(chain.values())) if uid in finished), None)  # the chain's end so far
    pretrained = stage_results(finished[last], run_dir) if last else {}
    runs = [run_result(payload, run_dir, label) for unit, payload in outcome.payloads(plan, FINETUNE)
            for label, _, _ in rows[unit.id]]
    warn_overridden(runs)
    out = {"pretrain": pretrained, "runs": runs, "results": [], "table": "", "files": None}
    if not settings.tasks:
        logger.info("no downstream task selected: pre-training only")
        return out
    if not runs:
        logger.error("no fine-tune run finished: no results table")
        return out
    rows_ = summarize(runs, settings.run.report_split)
    table = markdown_table(rows_)
    logger.info(set_color("results", "yellow") + f" ({run_dir}):\n{table}")  # logged before any write that can fail
    files = None
    if writer:
        files = write_results(rows_, runs, run_dir, pretrain=pretrained)
        logger.info(f"results written: {files['md']}, {files['json']}, {files['csv']}")
    files = distributed.broadcast_object(files)
    return {**out, "results": rows_, "table": table, "files": files}
