"""What one trial of a study is: the study's :class:`StudySpec` (everything a trial needs, JSON-serialisable),
:func:`trial_settings` (the settings of a trial from the spec and its searched values) and the trial as a unit of
kind ``trial`` (:func:`trial_unit`, run by :func:`run_trial_unit`: pre-training if the search says so, then
fine-tuning, reporting every epoch to Ray Tune). Imported by the study (:mod:`~recbole_adaptssr.tuning.study`)
and by its results table (:mod:`~recbole_adaptssr.tuning.results`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from recbole_adaptssr.execution import Unit, register_unit_kind

TRIAL = "trial"
OBJECTIVE = "objective"  # the validation metric of the epoch just run
BEST = "best_objective"  # the best validation so far: a trial's score (finetune keeps its best epoch), and what
#                          ASHA compares at each rung (a trial whose best is good is not stopped for one bad epoch)

# pseudo-settings of a search space, expanded per trial (see trial_settings)
PSEUDO_KEYS = ("pretrain_method", "augmentation_proportion")
AUGMENTATION_RATIOS = ("mask_ratio", "crop_ratio", "reorder_ratio")


def setting_list(value):
    """A list setting as :class:`~recbole_adaptssr.config.Config` reads it (``[a, b]``, ``a,b`` or a list)."""
    from recbole_adaptssr.config import as_list

    return as_list(value)


def resolve_method(name: str, files=()):
    """The named pre-training method (stages, settings, the stage fine-tuning starts from, label) of
    ``properties/methods.yaml`` and ``pretrain_methods_file`` (the comparison's method table)."""
    from recbole_adaptssr.experiment import comparison

    return comparison.resolve_method(str(name), comparison.methods_table([str(f) for f in files or ()]))


@dataclass
class StudySpec:
    """Everything a trial needs, JSON-serialisable (written as ``study.json`` for ``--resume``)."""

    model: str
    dataset: str  # as given on the command line (``ml-100k`` is the embedded default)
    data_name: str  # the converted data set's name (``ml-100k-tasks``)
    settings: dict  # the user's settings: config files < config dict < command line, paths absolute
    mode: str  # finetune | pretrain
    task: str
    metric: str  # the task kind's valid metric, lower case (``ndcg@10``)
    metric_mode: str  # max | min
    uses_pretext: bool
    start_point: str | None = None  # finetune mode: a checkpoint path, or None (from scratch)
    start_label: str = "none"
    stages: list = field(default_factory=list)  # the configured pretrain_stages
    max_epochs: int = 1  # the most fine-tune epochs a trial can run (ASHA's max_t)
    torch_threads: int = 1
    gpus_per_trial: float = 0.0
    keep_trial_dirs: bool = False
    space: list = field(default_factory=list)  # the space's lines, as parsed
    methods_files: list = field(default_factory=list)
    data: dict = field(default_factory=dict)  # the fingerprint of the data (recbole_adaptssr.data.fingerprint)
    output_dir: str = ""  # the study's folder: its trials' units are there (units/trial-<id>/)

    def as_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict) -> "StudySpec":
        return value if isinstance(value, cls) else cls(**value)


def trial_settings(spec: StudySpec, params: dict) -> tuple:
    """The settings of one trial (also what ``best.yaml`` holds) and ``{method, start_stage}``.

    Precedence: the user's settings < what the study fixes (task, one seed, start point) < a named method's
    settings < the trial's searched values. Pseudo-settings: ``pretrain_method`` (a method of
    ``properties/methods.yaml``: its stages, settings and start stage) and ``augmentation_proportion`` (the
    method's own stage S gets ``S_mask_ratio = S_crop_ratio = S_reorder_ratio`` = that value)."""
    spec = StudySpec.from_dict(spec)
    params = dict(params)
    method_name = params.pop("pretrain_method", None)
    proportion = params.pop("augmentation_proportion", None)
    settings = dict(spec.settings)
    if spec.uses_pretext:
        # downstream_tasks, not downstream_task: with downstream_task set, pre-training would build the task's
        # data set instead of the behaviour sequences (create_dataset keys on it)
        settings.update(downstream_task=None, downstream_tasks=[spec.task], repeat=1)
    else:  # a RecBole model is a task model only with downstream_task (Config: GENERAL model type)
        settings.update(downstream_task=spec.task, repeat=1)
        settings.pop("downstream_tasks", None)
    info = {"method": None, "start_stage": None}
    if spec.mode == "finetune":
        if spec.uses_pretext:
            settings.update(pretrain_stages=[], finetune_from=[spec.start_point or "none"])
        info["method"] = spec.start_label
    else:
        if method_name is not None:
            method = resolve_method(method_name, spec.methods_files)
            settings.update(method.settings)
            stages, start, info["method"] = list(method.stages), method.finetune_from, method.label
        else:
            stages = [str(s) for s in (setting_list(params.get("pretrain_stages", spec.stages)) or [])]
            start = stages[-1] if stages else None
            info["method"] = "+".join(stages) or "none"
        params.pop("pretrain_stages", None)
        settings.update(pretrain_stages=stages, finetune_from=[start or "none"])
        info["start_stage"] = start
        if proportion is not None:
            if start is None:
                raise ValueError("augmentation_proportion: this trial has no pre-training stage to augment for")
            for ratio in AUGMENTATION_RATIOS:
                settings[f"{start}_{ratio}"] = proportion
    settings.update(params)
    return settings, info


# ------------------------------------------------------------------------------------------------- the trial unit
def trial_unit(spec, params: dict, trial_id: str) -> Unit:
    """The unit of one trial: its full settings (:func:`trial_settings`), what the study fixes (task, search,
    start point) and the trial's id (a study may run the same settings more than once: ``num_samples``)."""
    spec = StudySpec.from_dict(spec)
    settings, _ = trial_settings(spec, params)
    study = {"mode": spec.mode, "task": spec.task, "metric_mode": spec.metric_mode, "uses_pretext": spec.uses_pretext,
             "start_point": spec.start_point, "start_label": spec.start_label}
    return Unit(TRIAL, {"model": spec.model, "dataset": spec.data_name, "settings": settings, "study": study,
                        "trial": str(trial_id)}, title=f"trial {trial_id}")


class EpochReporter:
    """RecBole's ``callback_fn(epoch_idx, valid_score)``: report the epoch's validation metric, the best so far
    (ties go to the later epoch, as RecBole's early stopping) and the trial's fixed columns."""

    def __init__(self, bigger: bool, report, extra=None):
        self.bigger, self.report, self.extra = bigger, report, dict(extra or {})
        self.best, self.best_epoch, self.epochs = None, 0, 0

    def __call__(self, epoch_idx, valid_score):
        score = float(valid_score)
        self.epochs = int(epoch_idx) + 1
        if self.best is None or (score >= self.best if self.bigger else score <= self.best):
            self.best, self.best_epoch = score, self.epochs
        self.report({OBJECTIVE: score, BEST: self.best, "epoch": self.epochs, "best_epoch": self.best_epoch,
                     **self.extra})


def validate_trial(config, task_data, task: str, start_labels: list, pretraining: bool) -> None:
    """The pipeline's checks for one trial's Config (a bad value fails the trial, named, before it trains)."""
    from recbole_adaptssr.experiment import validation

    validation.check_dataset(config)
    validation.check_settings(config)
    if pretraining:
        validation.check_pretraining(config)
    validation.check_finetuning(config, task_data, [task], start_labels)


def run_trial_unit(context, report=None) -> dict:
    """One trial (see the module docstring) in its unit's folder; ``report(metrics)`` (default: Ray Tune's) after
    every fine-tune epoch. Payload: the best validation metrics, their epoch and the epochs run (a trial never
    reports test metrics: the study selects on validation only)."""
    from recbole_adaptssr.experiment import finetune, pretrain
    from recbole_adaptssr.experiment.units import task_data_of, unit_config
    from recbole_adaptssr.tuning import ray_compat

    study = context.settings["study"]
    config = unit_config(context)
    task_data = task_data_of(config)
    stages = [str(s) for s in config["pretrain_stages"] or []] if study["uses_pretext"] else []
    start_labels = [str(v) for v in config["finetune_from"] or []] if study["uses_pretext"] else ["none"]
    pretraining = study["mode"] == "pretrain" and bool(stages)
    start, label = study["start_point"], study["start_label"]
    if study["mode"] == "pretrain":
        start, label = None, start_labels[0] if start_labels else "none"
    validate_trial(config, task_data, study["task"], start_labels, pretraining)
    extra = {}
    if pretraining:
        counts = {}

        def on_stage_epoch(stage, epoch, valid_result):
            counts[stage] = counts.get(stage, 0) + 1

        results = pretrain(config, context.folder, epoch_callback=on_stage_epoch)
        start = results[label].checkpoint if label != "none" else None
        extra = {f"pretrain_epochs_{stage}": int(counts.get(stage, 0)) for stage in stages}
    # what ends a trial by itself (finetune_epochs, or RecBole's early stopping after `patience` epochs without
    # improvement): the table tells those from trials a scheduler stopped
    patience = config["finetune_stopping_step"] if config["finetune_stopping_step"] is not None else \
        config["stopping_step"]
    extra.update(max_epochs=int(config["finetune_epochs"]), patience=int(patience))
    reporter = EpochReporter(study["metric_mode"] == "max", report or ray_compat.report, extra)
    result = finetune(config, study["task"], start, int(config["seed"]), task_data=task_data,
                      run_dir=os.path.join(context.folder, "finetune"), label=label, epoch_callback=reporter)
    # result.test is deliberately dropped: a trial reports validation only (the study never selects on test)
    return {"valid": dict(result.valid), "best_epoch": result.best_epoch, "epochs": reporter.epochs}


register_unit_kind(TRIAL, run_trial_unit)
