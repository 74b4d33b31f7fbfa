"""Every setting of a command checked before anything runs, with a message naming the key, the value and what is
allowed: :func:`check_dataset` (the data set is on disk: nothing is ever downloaded), :func:`check_settings`
(settings every run uses), :func:`check_pretraining` (the stages), :func:`check_finetuning` (tasks, split, repeats,
start points, verified checkpoints and the data they were pre-trained on) and :func:`selected_tasks`. What one
setting's value must be is the table of :mod:`recbole_adaptssr.setting_checks`; what relates settings or reads files
is here. Every refusal is a :class:`~recbole_adaptssr.setting_errors.SettingError` (a missing data set or task file:
its subclass :class:`~recbole_adaptssr.setting_errors.MissingFileError`, also a ``FileNotFoundError``; a checkpoint
that cannot be trusted: :class:`~recbole_adaptssr.checkpoint.CheckpointError`); a plug-in's ``check_settings``
raises ``ValueError``, reported as a ``SettingError`` (:func:`~recbole_adaptssr.setting_errors.as_setting_errors`).
The data files themselves are checked by :func:`recbole_adaptssr.data.validation.validate_data`."""

from __future__ import annotations

import os
from numbers import Real

from recbole_adaptssr import setting_checks
from recbole_adaptssr.setting_errors import MissingFileError, SettingError, as_setting_errors
from recbole_adaptssr.names import check_plain_name, check_unique
from recbole_adaptssr.pretext.base import StageSettings, builtin_pretext_tasks, get_pretext_task
from recbole_adaptssr.stopping import check_run_settings

EMBEDDED_DATASET = "ml-100k"  # recbole_adaptssr.data.embedded converts RecBole's bundled copy


def check_dataset(config) -> None:
    """The data set is on disk: ``<data_path>/<dataset>/<dataset>.inter`` (or its ``benchmark_filename`` parts).

    RecBole's ``Dataset._load_data`` downloads a known name (ml-1m, ...) when its folder is missing; we never do:
    a missing data set is this error, saying where it looked, before anything runs."""
    folder, name = str(config["data_path"]), str(config["dataset"])
    parts = config["benchmark_filename"] or []
    files = [os.path.join(folder, f"{name}.{part}.inter") for part in parts] or [os.path.join(folder, f"{name}.inter")]
    missing = [path for path in files if not os.path.isfile(path)]
    if missing:
        where = "the folder does not exist" if not os.path.isdir(folder) else f"missing: {', '.join(missing)}"
        raise MissingFileError(
            f"data set {name!r} not found: looked for {', '.join(files)} ({where}). Nothing is downloaded: convert "
            f"the raw data with python -m dataset_converters (README, 'Data layout') or set --data_path to the folder "
            f"that holds {name}/; the embedded data set is --dataset={EMBEDDED_DATASET}"
        )


def check_settings(config) -> None:
    """Settings every run of a command uses (pre-training and fine-tuning alike): the typed table of
    :mod:`recbole_adaptssr.setting_checks` (``RUN``, the stopping settings of every run kind, and for our models the
    user model's and the pre-training speed switches, also per stage), then what relates settings."""
    get = lambda key: config[key]  # noqa: E731 - the table reads a Config as a mapping
    setting_checks.check(get, setting_checks.RUN)
    check_run_settings(config)  # stopping_steps, max_steps, max_seconds of every run kind
    if not getattr(config.model_class, "uses_pretext_tasks", False):
        return
    stages = [str(stage) for stage in config["pretrain_stages"] or []]
    for prefix in ["", *(f"{stage}_" for stage in stages)]:  # pre-training speed switches, and per stage
        setting_checks.check(lambda key: config[prefix + key], setting_checks.ACCELERATION, lambda key: prefix + key)
    setting_checks.check(get, setting_checks.USER_MODEL)  # our user model's own settings
    from recbole_adaptssr.encoder.base import check_user_model

    with as_setting_errors():
        check_user_model(config)  # user_model names a backbone (close-match hint), its own settings, the pooling
    if config["user_model"] in (None, "transformer") and config["hidden_size"] % config["n_heads"]:
        raise SettingError(f"hidden_size must be a multiple of n_heads (each attention head gets hidden_size / "
                           f"n_heads dimensions), got hidden_size={config['hidden_size']} and "
                           f"n_heads={config['n_heads']}")


def check_pretraining(config) -> None:
    """``pretrain_stages`` names known pretext tasks whose settings are valid."""
    modules = config["pretext_modules"] or []
    for stage in config["pretrain_stages"] or []:
        task_class = get_pretext_task(str(stage), modules)
        settings = StageSettings(config, str(stage))
        setting_checks.check(settings.get, setting_checks.STAGE, settings.key)
        needed = int(getattr(task_class, "min_batch_size", 1))
        if needed > 1 and config["train_batch_size"] < needed:
            raise SettingError(f"train_batch_size must be an integer >= {needed}: pre-training stage {stage!r} "
                               f"compares the sequences of a batch (batches of fewer contribute nothing), got "
                               f"{config['train_batch_size']!r}")
        with as_setting_errors():
            task_class.check_settings(settings)
    setting_checks.check(lambda key: config[key], ("pretrain_valid_ratio",))


def check_finetuning(config, task_data, tasks: list, start_points: list) -> None:
    """Tasks, their kinds' settings, the split, the repeats and the start points."""
    if not tasks:
        return
    uses_pretext = getattr(config.model_class, "uses_pretext_tasks", False)
    if not uses_pretext:
        check_recbole_model(config)
    for task in tasks:
        kind = task_data.kind(task)
        if not uses_pretext and kind.name != "recommendation":
            raise SettingError(f"{config['model']} is a RecBole recommender: it can run the recommendation tasks, "
                               f"not {task!r} ({kind.name}); set downstream_task(s) to recommendation tasks")
        with as_setting_errors():
            kind.check_settings(config)
        path = os.path.join(task_data.folder, f"{task_data.name}.{task}")
        if not os.path.isfile(path):
            raise MissingFileError(f"task file not found: {path} (listed in {task_data.name}.tasks.json)")
    split = config["task_split"]
    if (not isinstance(split, list) or len(split) != 3 or any(isinstance(v, bool) or not isinstance(v, Real) or v <= 0
                                                              for v in split) or abs(sum(split) - 1.0) > 1e-6):
        raise SettingError(f"task_split must be three positive numbers summing to 1 (train, valid, test), got "
                           f"{split!r}")
    setting_checks.check(lambda key: config[key], setting_checks.FINETUNE)  # finetune_<key> replaces <key> there
    stages = [str(s) for s in config["pretrain_stages"] or []]
    check_unique([_start_identity(str(s)) for s in start_points], "finetune_from")
    for start in start_points:
        name = str(start)
        if name.lower() == "none" or name in stages:
            continue
        if name in builtin_pretext_tasks():
            raise SettingError(f"finetune_from names stage {name!r}, but pretrain_stages is {stages}")
        if not os.path.isfile(name):
            raise SettingError(
                f"finetune_from entry {name!r} is neither none, a stage of pretrain_stages {stages}, nor a checkpoint file"
            )
        from recbole_adaptssr.checkpoint import load_checkpoint
        from recbole_adaptssr.encoder.base import check_checkpoint

        state = load_checkpoint(name)  # empty, truncated or altered: an error naming the file, before anything trains
        if uses_pretext:  # pre-trained with another user model or pooling: an error naming both
            with as_setting_errors():
                check_checkpoint(config, state, f"finetune_from entry {name!r}")
        check_checkpoint_data(config, state, name, task_data)


def _start_identity(entry: str) -> str:
    """What a ``finetune_from`` entry starts from: ``none``, a stage, or a checkpoint file (by its real path)."""
    if entry.lower() == "none":
        return "none"
    return os.path.realpath(entry) if os.path.isfile(entry) else entry


def check_checkpoint_data(config, state: dict, path: str, task_data) -> None:
    """A checkpoint fine-tunes on the data it was pre-trained on: another behaviour log is refused with what
    changed unless ``allow_data_change``; then (or when the checkpoint records no data) its vocabulary must cover
    ``min_vocabulary_overlap`` of the log's behaviours (every other behaviour becomes the mask token)."""
    from recbole_adaptssr.data import fingerprint

    recorded = (state.get("data") or {}).get("behaviour_log")
    log = fingerprint.behaviour_log_path(config)
    now = fingerprint.fingerprint(log, config["sequence_cache_dir"])
    if recorded is not None and recorded.get("blake2b") == now["blake2b"]:
        return
    counts = _item_counts(config, task_data)
    shares = fingerprint.vocabulary_overlap(state.get("item_vocabulary") or {}, counts)
    figure = (f"its vocabulary covers {shares[0]:.1%} of this log's behaviours ({shares[1]:.1%} of its "
              f"{len(counts):,} items)")
    if recorded is not None and not config["allow_data_change"]:
        change = fingerprint.differences({"behaviour_log": recorded}, {"behaviour_log": now})
        raise SettingError(f"finetune_from entry {path!r} was pre-trained on other data ({'; '.join(change)}); "
                           f"{figure}. Set allow_data_change=True to fine-tune it on this data anyway")
    minimum = config["min_vocabulary_overlap"] or 0.0  # ~: no minimum
    if shares[0] < minimum or shares[0] == 0:
        raise SettingError(f"finetune_from entry {path!r}: {figure}, below min_vocabulary_overlap={minimum} "
                           "(every behaviour outside it becomes the mask token): it was pre-trained on another data "
                           "set")
    from logging import getLogger

    getLogger().warning(f"finetune_from entry {path!r} was pre-trained on other data "
                        f"({'recorded' if recorded else 'not recorded in the checkpoint'}); {figure}")


def _item_counts(config, task_data) -> dict:
    """``{item token: behaviours}`` of the data set's behaviour log: from its sequence cache where there is one,
    else from the log as the task loader reads it."""
    import numpy as np

    cached = task_data.sequence_log(config["sequence_cache_dir"]) if config["sequence_cache"] else None
    if cached is not None:
        counts = np.bincount(np.asarray(cached.log), minlength=len(cached.items) + 1)[1:]
        return dict(zip(cached.items, counts.tolist()))
    return task_data.behaviours["item"].value_counts(sort=False).to_dict()


def check_recbole_model(config) -> None:
    """A RecBole model given downstream tasks can run on them (:mod:`~recbole_adaptssr.experiment.recbole_support`)."""
    from recbole_adaptssr.experiment.recbole_support import unsupported_reason

    reason = unsupported_reason(str(config["model"]), config.model_class)
    if reason:
        raise SettingError(f"model={config['model']} cannot run on our tasks: {reason}. RecBole's general, "
                           "traditional and sequential recommenders can (--model=BPR --downstream_task=rec); "
                           "--recbole_baselines=[SASRec,BPR,...] also trains them on the behaviour log "
                           "(docs/recbole-baselines.md)")


def selected_tasks(config, task_data) -> list:
    """``downstream_task`` (one), else ``downstream_tasks`` (``None``: every task of the manifest; ``[]``: none)."""
    if config["downstream_task"]:
        names = [config["downstream_task"]]
    elif config["downstream_tasks"] is None:
        names = list(task_data.manifest) if task_data is not None else []
        if task_data is not None and not names:
            path = os.path.join(task_data.folder, f"{task_data.name}.tasks.json")
            raise SettingError(f"{path} lists no task (downstream_tasks is unset, i.e. every task of the manifest): "
                               "convert the data set again, or set downstream_tasks=[] to pre-train only")
    else:
        names = check_unique([str(t) for t in config["downstream_tasks"]], "downstream_tasks")
    for name in names:
        check_plain_name(name, "downstream task")
        task_data.kind(name)  # unknown names fail here, naming the manifest's tasks
    return names
