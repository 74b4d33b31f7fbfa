"""A command's settings, read from its Config once, checked, and handed on as typed objects.

Every command (the pipeline, the comparison, RecBole's baselines) reads what it needs here, in one place, before it
opens a run folder: :class:`RunSettings` (model, data set, the settings its units start from, seeds, report split,
where it writes, resume, executor) and its own object (:class:`PipelineSettings`, the comparison's and the
baselines' in their modules). The compile step turns them into a plan of units; a unit's runner builds the Config
of its run from the unit's settings alone (:mod:`~recbole_adaptssr.experiment.units`).

A unit's settings are the user's settings (files < dict < command line, paths made absolute) without
:data:`NOT_UNIT_KEYS` (where the command writes, how it reports, how units are carried out: resuming with another
executor reads the same units back) and :data:`PLAN_KEYS` (what decides which units there are: each unit fixes its
own seed, task, stages and start point).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from recbole_adaptssr.execution.run_folder import user_settings
from recbole_adaptssr.execution.settings import KEYS as EXECUTOR_KEYS
from recbole_adaptssr.execution.settings import ExecutorSettings

#: settings no unit's work depends on (the launcher's options included)
NOT_UNIT_KEYS = ("resume", "checkpoint_dir", "show_progress", "state", "allow_data_change", *EXECUTOR_KEYS,
                 "model", "dataset", "config_files", "nproc", "world_size", "ip", "port", "group_offset", "offset")
#: settings a command reads to compile its plan: which units there are, not what one computes
PLAN_KEYS = ("seed", "repeat", "report_split", "downstream_task", "downstream_tasks", "pretrain_stages",
             "finetune_from", "pretrain_methods", "pretrain_methods_file", "pretrain_repeat", "compare_method", "significance_wilcoxon",
             "similarity_users", "baseline_warmup", "recbole_baselines", "baseline_pretrain")
#: settings that name files or folders (made absolute: a unit may run in another process or folder)
PATH_KEYS = ("sequence_cache_dir",)


def unit_settings(config) -> dict:
    """The settings every unit of a command starts from (see the module docstring): ``data_path`` the absolute
    folder that holds the data set's folder."""
    values = {k: v for k, v in user_settings(config).items() if k not in NOT_UNIT_KEYS and k not in PLAN_KEYS}
    values["data_path"] = os.path.dirname(os.path.abspath(os.path.normpath(str(config["data_path"]))))
    for key in PATH_KEYS:
        if values.get(key):
            values[key] = os.path.abspath(str(values[key]))
    return values


@dataclass(frozen=True)
class RunSettings:
    """What every command reads of its Config (see the module docstring)."""

    model: str
    dataset: str  # as the runs read it (the embedded ml-100k converted: ml-100k-tasks)
    units: dict  # the settings every unit starts from
    recorded: dict  # the user's settings as run.json records them: what a resumption must repeat
    seeds: tuple  # seed, seed + 1, ... (repeat of them)
    report_split: str
    root: str  # checkpoint_dir: where run folders are made
    resume: object
    state: str
    allow_data_change: bool
    executor: ExecutorSettings
    options: dict  # what every unit's Config gets from the command without it being part of the unit's identity

    @classmethod
    def from_config(cls, config) -> "RunSettings":
        seed, repeat = int(config["seed"]), int(config["repeat"])
        return cls(model=str(config["model"]), dataset=str(config["dataset"]), units=unit_settings(config),
                   recorded=user_settings(config), seeds=tuple(seed + r for r in range(repeat)),
                   report_split=str(config["report_split"]), root=str(config["checkpoint_dir"]),
                   resume=config["resume"], state=str(config["state"]),
                   allow_data_change=bool(config["allow_data_change"]),
                   executor=ExecutorSettings.from_config(config),
                   options={"show_progress": bool(config["show_progress"]),
                            "allow_data_change": bool(config["allow_data_change"])})

    @property
    def seed(self) -> int:
        """The first seed (that of a pre-training shared by every fine-tune seed)."""
        return self.seeds[0]


@dataclass(frozen=True)
class PipelineSettings:
    """The pipeline's plan: pre-train ``stages``, then fine-tune every task from every start point over the seeds."""

    run: RunSettings
    tasks: tuple
    stages: tuple  # pretrain_stages (models with pretext tasks), else ()
    start_points: tuple  # finetune_from as given: none, a stage of ``stages``, or a checkpoint file
    uses_pretext: bool  # a model with pretext tasks (AdaptSSR), else a RecBole model on a task

    @classmethod
    def from_config(cls, config, tasks) -> "PipelineSettings":
        uses_pretext = getattr(config.model_class, "uses_pretext_tasks", False)
        stages = tuple(str(s) for s in config["pretrain_stages"] or []) if uses_pretext else ()
        starts = tuple(str(v) for v in config["finetune_from"] or []) if uses_pretext else ("none",)
        return cls(run=RunSettings.from_config(config), tasks=tuple(tasks), stages=stages, start_points=starts,
                   uses_pretext=uses_pretext)
