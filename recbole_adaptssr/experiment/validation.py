"""Every setting of a pipeline checked before pre-training starts, with a message naming the key, the value and
what is allowed: :func:`check_dataset` (the data set is on disk: nothing is ever downloaded), :func:`check_settings`
(settings every run uses), :func:`check_pretraining` (the stages), :func:`check_finetuning` (tasks, split, repeats,
start points, verified checkpoints and the data they were pre-trained on) and :func:`selected_tasks`. The data
files themselves are checked by :func:`recbole_adaptssr.data.validation.validate_data`."""

from __future__ import annotations

import os
from numbers import Integral, Real

from recbole_adaptssr.names import check_plain_name, check_unique
from recbole_adaptssr.pretext.base import StageSettings, builtin_pretext_tasks, get_pretext_task
from recbole_adaptssr.reproducibility import check_threads
from recbole_adaptssr.stopping import check_run_settings

EMBEDDED_DATASET = "ml-100k"  # recbole_adaptssr.data.embedded converts RecBole's bundled copy
REPORT_SPLITS = ("test", "valid")
# settings of the user model (our models only): integer sizes >= 1 and dropout probabilities in [0, 1)
MODEL_SIZES = ("hidden_size", "n_layers", "n_heads", "inner_size", "head_hidden_size")
DROPOUTS = ("hidden_dropout_prob", "attn_dropout_prob", "head_dropout_prob")


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _int_at_least(config, key, minimum, why=""):
    value = config[key]
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}{why}, got {value!r}")


def _check_value(key, value, kind, why=""):
    """``kind``: ``int>=N``, ``number>0``, ``number>=0`` or ``prob`` ([0, 1))."""
    if kind.startswith("int>="):
        minimum = int(kind[5:])
        if not _is_int(value) or value < minimum:
            raise ValueError(f"{key} must be an integer >= {minimum}{why}, got {value!r}")
    elif kind == "number>0":
        if not _is_number(value) or not value > 0:
            raise ValueError(f"{key} must be a number > 0{why}, got {value!r}")
    elif kind == "number>=0":
        if not _is_number(value) or not value >= 0:
            raise ValueError(f"{key} must be a number >= 0{why}, got {value!r}")
    elif kind == "prob":
        if not _is_number(value) or not 0 <= value < 1:
            raise ValueError(f"{key} must be a probability in [0, 1){why}, got {value!r}")
    else:  # pragma: no cover - programming error
        raise AssertionError(kind)


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
        raise FileNotFoundError(
            f"data set {name!r} not found: looked for {', '.join(files)} ({where}). Nothing is downloaded: convert "
            f"the raw data with python -m dataset_converters (README, 'Data layout') or set --data_path to the folder "
            f"that holds {name}/; the embedded data set is --dataset={EMBEDDED_DATASET}"
        )


#: on/off settings of recbole_adaptssr.acceleration (properties/model/AdaptSSR.yaml), each also <stage>_<key>
ACCELERATION_SWITCHES = ("device_batches", "cuda_graphs", "fused_optimizer", "pretrain_tf32")


def check_settings(config) -> None:
    """Settings every run of the pipeline uses (pre-training and fine-tuning alike)."""
    seed = config["seed"]
    if not _is_int(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    _int_at_least(config, "MAX_ITEM_LIST_LENGTH", 1, " (the most recent behaviours kept per user)")
    _int_at_least(config, "train_batch_size", 1)
    _int_at_least(config, "eval_batch_size", 1)
    _int_at_least(config, "epochs", 0)
    _int_at_least(config, "stopping_step", 1, " (epochs without improvement before stopping)")
    _check_value("learning_rate", config["learning_rate"], "number>0")
    if config["weight_decay"] is not None:
        _check_value("weight_decay", config["weight_decay"], "number>=0")
    split = config["report_split"]
    if split is not None and split not in REPORT_SPLITS:
        raise ValueError(f"report_split must be one of {list(REPORT_SPLITS)}, got {split!r}")
    check_data_settings(config)
    check_run_settings(config)  # stopping_steps, max_steps, max_seconds of every run kind; the pre-training budget
    check_threads(config)
    switches = ["sequence_cache", "full_sort_fast_batches"]
    if getattr(config.model_class, "uses_pretext_tasks", False):  # pre-training speed switches, and per stage
        stages = [str(stage) for stage in config["pretrain_stages"] or []]
        switches += [prefix + key for key in ACCELERATION_SWITCHES for prefix in ["", *(f"{s}_" for s in stages)]]
    for key in switches:
        if config[key] is not None and not isinstance(config[key], bool):
            raise ValueError(f"{key} must be True or False, got {config[key]!r}")
    if getattr(config.model_class, "uses_pretext_tasks", False):  # our user model's own settings
        for key in MODEL_SIZES:
            if config[key] is not None:
                _int_at_least(config, key, 1)
        for key in DROPOUTS:
            if config[key] is not None:
                _check_value(key, config[key], "prob")
        from recbole_adaptssr.encoder.base import check_user_model

        check_user_model(config)  # user_model names a backbone (close-match hint), its own settings, the pooling
        if config["user_model"] in (None, "transformer") and config["hidden_size"] % config["n_heads"]:
            raise ValueError(f"hidden_size must be a multiple of n_heads (each attention head gets hidden_size / "
                             f"n_heads dimensions), got hidden_size={config['hidden_size']} and "
                             f"n_heads={config['n_heads']}")


def check_data_settings(config) -> None:
    """``duplicate_rows``, ``allow_data_change`` and ``min_vocabulary_overlap`` (recbole_adaptssr.data)."""
    from recbole_adaptssr.data.validation import duplicate_policy

    duplicate_policy(config)
    if config["allow_data_change"] is not None and not isinstance(config["allow_data_change"], bool):
        raise ValueError(f"allow_data_change must be True or False, got {config['allow_data_change']!r}")
    overlap = config["min_vocabulary_overlap"]
    if overlap is not None and (not _is_number(overlap) or not 0 <= overlap <= 1):
        raise ValueError(f"min_vocabulary_overlap must be a number in [0, 1] (a share of the behaviours), "
                         f"got {overlap!r}")


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
        _check_value(settings.key("stopping_step"), settings["stopping_step"], "int>=1",
                     " (epochs without improvement before stopping)")
        if settings.get("weight_decay") is not None:
            _check_value(settings.key("weight_decay"), settings["weight_decay"], "number>=0")
        if settings.get("min_epochs") is not None:
            _check_value(settings.key("min_epochs"), settings["min_epochs"], "int>=0")
        for key in ("hidden_dropout_prob", "attn_dropout_prob"):
            if settings.get(key) is not None:
                _check_value(settings.key(key), settings[key], "prob")
        needed = int(getattr(task_class, "min_batch_size", 1))
        if needed > 1 and (not _is_int(config["train_batch_size"]) or config["train_batch_size"] < needed):
            raise ValueError(f"train_batch_size must be an integer >= {needed}: pre-training stage {stage!r} "
                             f"compares the sequences of a batch (batches of fewer contribute nothing), got "
                             f"{config['train_batch_size']!r}")
        task_class.check_settings(settings)
    ratio = config["pretrain_valid_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, Real) or not 0 < ratio < 1:
        raise ValueError(f"pretrain_valid_ratio must be a number in (0, 1), got {ratio!r}")


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
    for key, kind in FINETUNE_KEYS.items():  # finetune_<key> replaces <key> in downstream runs
        if config[f"finetune_{key}"] is not None:
            _check_value(f"finetune_{key}", config[f"finetune_{key}"], kind)
    stages = [str(s) for s in config["pretrain_stages"] or []]
    check_unique([_start_identity(str(s)) for s in start_points], "finetune_from")
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
        from recbole_adaptssr.checkpoint import load_checkpoint
        from recbole_adaptssr.encoder.base import check_checkpoint

        state = load_checkpoint(name)  # empty, truncated or altered: an error naming the file, before anything trains
        if uses_pretext:  # pre-trained with another user model or pooling: an error naming both
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
        raise ValueError(f"finetune_from entry {path!r} was pre-trained on other data ({'; '.join(change)}); "
                         f"{figure}. Set allow_data_change=True to fine-tune it on this data anyway")
    minimum = config["min_vocabulary_overlap"] or 0.0
    if shares[0] < minimum or shares[0] == 0:
        raise ValueError(f"finetune_from entry {path!r}: {figure}, below min_vocabulary_overlap={minimum} (every "
                         "behaviour outside it becomes the mask token): it was pre-trained on another data set")
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
        raise ValueError(f"{config['model']} cannot run on our tasks: {reason}. RecBole's general, traditional and "
                         "sequential recommenders can (--model=BPR --downstream_task=rec); --recbole_baselines="
                         "[SASRec,BPR,...] also trains them on the behaviour log (docs/recbole-baselines.md)")


FINETUNE_KEYS = {"learning_rate": "number>0", "stopping_step": "int>=1", "train_batch_size": "int>=1",
                 "eval_batch_size": "int>=1", "weight_decay": "number>=0"}


def selected_tasks(config, task_data) -> list:
    """``downstream_task`` (one), else ``downstream_tasks`` (``None``: every task of the manifest; ``[]``: none)."""
    if config["downstream_task"]:
        names = [config["downstream_task"]]
    elif config["downstream_tasks"] is None:
        names = list(task_data.manifest) if task_data is not None else []
        if task_data is not None and not names:
            path = os.path.join(task_data.folder, f"{task_data.name}.tasks.json")
            raise ValueError(f"{path} lists no task (downstream_tasks is unset, i.e. every task of the manifest): "
                             "convert the data set again, or set downstream_tasks=[] to pre-train only")
    else:
        names = check_unique([str(t) for t in config["downstream_tasks"]], "downstream_tasks")
    for name in names:
        check_plain_name(name, "downstream task")
        task_data.kind(name)  # unknown names fail here, naming the manifest's tasks
    return names
