"""The experiment: validate every setting, pre-train once, fine-tune a grid of (start point x task x seed) runs
that share the data set's manifest and behaviour log, and aggregate them into a results table."""

from __future__ import annotations

import os
import sys
from logging import getLogger

from recbole.utils import set_color

from recbole_adaptssr.compat import plain
from recbole_adaptssr.data.task_dataset import TaskData
from recbole_adaptssr.experiment.finetuning import finetune, resolve_start_point
from recbole_adaptssr.experiment.pretraining import pretrain
from recbole_adaptssr.experiment.results import markdown_table, summarize, write_results
from recbole_adaptssr.experiment.run_dir import new_run_dir
from recbole_adaptssr.experiment.run_logger import init_run_logger
from recbole_adaptssr.experiment.validation import check_finetuning, check_pretraining, selected_tasks
from recbole_adaptssr.pretext.base import StageSettings


def load_task_data(config, required: bool):
    """The data set's :class:`TaskData`, or None (with a warning) when it has no manifest and none is required."""
    try:
        return TaskData(config["data_path"], config["dataset"])
    except FileNotFoundError:
        if required:
            raise
        getLogger().warning(f"{config['dataset']} has no tasks.json: pre-training only (see README, Data layout)")
        return None


def run_grid(config, task_data: TaskData, tasks: list, start_points: dict, run_dir: str) -> list:
    """Fine-tune every (start point, task, seed): seeds ``seed, seed+1, ...`` (``repeat`` of them); each start
    point's checkpoint is loaded once. ``start_points`` maps a label to ``None`` or a checkpoint path."""
    logger = getLogger()
    states = {label: resolve_start_point(point) for label, point in start_points.items()}
    folder = os.path.join(run_dir, "finetune")
    os.makedirs(folder, exist_ok=True)
    seeds = [int(config["seed"]) + r for r in range(int(config["repeat"]))]
    results, reported = [], set()
    for label, state in states.items():
        for task in tasks:
            for seed in seeds:
                result = finetune(config, task, state, seed, task_data=task_data, run_dir=folder, label=label)
                for key, (user, run) in result.settings.get("overridden", {}).items():
                    if key not in reported and key != "seed":
                        reported.add(key)
                        logger.warning(f"your setting {key}={user!r} does not apply to downstream runs, which use "
                                       f"{key}={run!r} (see README, 'Which settings apply where')")
                results.append(result)
    return results


def run_pipeline(config) -> dict:
    """Validate, pre-train (models with pretext tasks), fine-tune every selected task from every start point over
    ``repeat`` seeds, and write the results table into the run's own folder. Returns what was done."""
    uses_pretext = getattr(config.model_class, "uses_pretext_tasks", False)
    wants_tasks = bool(config["downstream_task"]) or bool(config["downstream_tasks"]) or not uses_pretext
    task_data = load_task_data(config, required=wants_tasks)
    tasks = selected_tasks(config, task_data) if task_data is not None else []
    stages = [str(s) for s in config["pretrain_stages"] or []] if uses_pretext else []
    start_labels = [str(v) for v in config["finetune_from"] or []] if uses_pretext else ["none"]
    if stages:
        check_pretraining(config)
    check_finetuning(config, task_data, tasks, start_labels)

    user_settings = plain(getattr(config, "user_config_dict", {}))
    run_dir = new_run_dir(config["checkpoint_dir"], config["model"], config["dataset"], user_settings)
    log_file = init_run_logger(config, run_dir)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)
    logger.info(f"run folder: {run_dir}")

    pretrained = pretrain(config.derive(checkpoint_dir=run_dir), run_dir) if stages else {}
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
        return out
    checkpoints = {stage: result.checkpoint for stage, result in pretrained.items()}
    start_points = {label: (None if label.lower() == "none" else checkpoints.get(label, label)) for label in start_labels}
    start_points = {(os.path.basename(k) if k not in checkpoints and k.lower() != "none" else k): v
                    for k, v in start_points.items()}
    runs = run_grid(config, task_data, tasks, start_points, run_dir)
    rows = summarize(runs, config["report_split"] or "test")
    table = markdown_table(rows)
    logger.info(set_color("results", "yellow") + f" ({run_dir}):\n{table}")
    files = write_results(rows, runs, run_dir)
    logger.info(f"results written: {files['md']}, {files['json']}, {files['csv']}")
    return {**out, "runs": runs, "results": rows, "table": table, "files": files}
