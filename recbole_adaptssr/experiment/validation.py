"""Every setting of a pipeline checked before pre-training starts, with a message naming the key and the value."""

from __future__ import annotations

import os
from numbers import Real

from recbole_adaptssr.pretext.base import StageSettings, builtin_pretext_tasks, get_pretext_task


def _int_at_least(config, key, minimum):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")


def check_pretraining(config) -> None:
    """``pretrain_stages`` names known pretext tasks whose settings are valid."""
    modules = config["pretext_modules"] or []
    for stage in config["pretrain_stages"] or []:
        task_class = get_pretext_task(str(stage), modules)
        settings = StageSettings(config, str(stage))
        epochs = settings["epochs"]
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"{settings.key('epochs')} must be an integer >= 0, got {epochs!r}")
        lr = settings["learning_rate"]
        if isinstance(lr, bool) or not isinstance(lr, Real) or not lr > 0:
            raise ValueError(f"{settings.key('learning_rate')} must be a number > 0, got {lr!r}")
        task_class.check_settings(settings)
    ratio = config["pretrain_valid_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, Real) or not 0 < ratio < 1:
        raise ValueError(f"pretrain_valid_ratio must be a number in (0, 1), got {ratio!r}")


def check_finetuning(config, task_data, tasks: list, start_points: list) -> None:
    """Tasks, their kinds' settings, the split, the repeats and the start points."""
    if not tasks:
        return
    uses_pretext = getattr(config.model_class, "uses_pretext_tasks", False)
    for task in tasks:
        kind = task_data.kind(task)
        if not uses_pretext and kind.name != "recommendation":
            raise ValueError(f"{config['model']} is a RecBole recommender: it can run the recommendation tasks, "
                             f"not {task!r} ({kind.name})")
        kind.check_settings(config)
        path = os.path.join(task_data.folder, f"{task_data.name}.{task}")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"task file not found: {path} (listed in {task_data.name}.tasks.json)")
    split = config["task_split"]
    if (not isinstance(split, list) or len(split) != 3 or any(isinstance(v, bool) or not isinstance(v, Real) or v <= 0
                                                              for v in split) or abs(sum(split) - 1.0) > 1e-6):
        raise ValueError(f"task_split must be three positive numbers summing to 1 (train, valid, test), got {split!r}")
    _int_at_least(config, "repeat", 1)
    _int_at_least(config, "finetune_epochs", 1)
    stages = [str(s) for s in config["pretrain_stages"] or []]
    for start in start_points:
        name = str(start)
        if name.lower() == "none" or name in stages:
            continue
        if name in builtin_pretext_tasks():
            raise ValueError(f"finetune_from names stage {name!r}, but pretrain_stages is {stages}")
        if not os.path.isfile(name):
            raise ValueError(
                f"finetune_from entry {name!r} is neither none, a stage of pretrain_stages {stages}, nor a checkpoint file"
            )


def selected_tasks(config, task_data) -> list:
    """``downstream_task`` (one), else ``downstream_tasks`` (``None``: every task of the manifest; ``[]``: none)."""
    if config["downstream_task"]:
        names = [config["downstream_task"]]
    elif config["downstream_tasks"] is None:
        names = list(task_data.manifest) if task_data is not None else []
    else:
        names = [str(t) for t in config["downstream_tasks"]]
    for name in names:
        task_data.kind(name)  # unknown names fail here, naming the manifest's tasks
    return names
