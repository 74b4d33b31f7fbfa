"""What one trial of a study is: the study's :class:`StudySpec` (everything a trial needs, JSON-serialisable) and
:func:`trial_settings` (the settings of a trial from the spec and its searched values). Imported by the study
(:mod:`~recbole_adaptssr.tuning.study`) and by its results table (:mod:`~recbole_adaptssr.tuning.results`)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
