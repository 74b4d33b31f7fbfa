"""A hyper-parameter study: Ray Tune trials over :func:`~recbole_adaptssr.experiment.finetune` (and
:func:`~recbole_adaptssr.experiment.pretrain`), selected on validation only.

What a trial runs (``search``):

* ``finetune``: fine-tuning settings over ONE fixed start point: a checkpoint (``--finetune_from=PATH``, or a stage
  of ``pretrain_stages`` pre-trained ONCE on the driver before the search, as pre-training stage units in the
  study's folder, and read by every trial), or ``none`` (from scratch). RecBole's own models
  (``--model=SASRec``) always run this way on a recommendation task, with the same split and metric as ours.
* ``pretrain``: pre-training settings: every trial pre-trains (its ``pretrain_stages``, or a named
  ``pretrain_method`` of ``properties/methods.yaml``) and fine-tunes from the stage the method starts from.

The objective is the tuned task's validation metric (``<kind>_valid_metric``, e.g. NDCG@10 on ``rec``), reported
after EVERY fine-tune epoch with the best so far (which ASHA compares, so it can stop bad trials after
``grace_period`` epochs). Pre-training epochs are
not reported as iterations: a ``pretrain`` trial's time axis is its fine-tune epochs, and the epochs each
pre-training stage ran are columns of the table. A trial's score is its best validation epoch (what
``finetune`` keeps). Test metrics are never reported by a trial: the best trial's settings are written as
``best.yaml`` and rerun ONCE at the end through the main entry point's pipeline
(:func:`recbole_adaptssr.quick_start.run`, as ``run_recbole_adaptssr.py --config_files=best.yaml``), which both
checks that the YAML reproduces the trial's validation metric and gives the one test result.

Each trial is a unit of the execution layer (kind ``trial``, :mod:`~recbole_adaptssr.tuning.trial`): Ray Tune
schedules it, and it runs in ``<output_dir>/units/trial-<id>/`` with its own log and TensorBoard run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field

from recbole_adaptssr.analysis.sweep import study_sweep
from recbole_adaptssr.names import check_plain_name
from recbole_adaptssr.setting_errors import SettingError
from recbole_adaptssr.tuning import ray_compat
from recbole_adaptssr.tuning.space import SpaceError, grid_size, merge_space, parse_line, read_space, space_text, \
    to_param_space, upper_bound
from recbole_adaptssr.tuning.trial import AUGMENTATION_RATIOS, BEST, PSEUDO_KEYS, TRIAL, StudySpec, resolve_method, \
    setting_list, trial_settings, trial_unit

SEARCH_MODES = ("auto", "finetune", "pretrain")
SCHEDULERS = ("asha", "fifo")
# settings read only by pre-training (searching them in a fine-tune search would change nothing)
PRETRAIN_ONLY = ("pretrain_stages", "pretrain_valid_ratio", "augmentations", "epochs", *AUGMENTATION_RATIOS,
                 *PSEUDO_KEYS)
# settings of the user model's shape: a checkpoint fixes them
ARCHITECTURE = ("hidden_size", "n_layers", "n_heads", "inner_size", "hidden_act", "layer_norm_eps",
                "initializer_range", "MAX_ITEM_LIST_LENGTH")
# settings a study decides itself (with the option to use instead)
RESERVED = {
    "train_stage": "a trial pre-trains its stages, then fine-tunes",
    "downstream_task": "the tuned task is --tune_task",
    "downstream_tasks": "the tuned task is --tune_task",
    "checkpoint_dir": "each trial writes into its own folder",
    "repeat": "a trial is one seed: search seed instead (e.g. 'seed grid [2023, 2024, 2025]')",
    "gpu_id": "use --gpus_per_trial (Ray assigns each trial its GPU)",
    "resume": "use --resume (Ray's Tuner.restore)",
    "pretrain_methods": "search pretrain_method instead (e.g. 'pretrain_method grid [adaptssr, cl4srec]')",
    "pretrain_methods_file": "set it as a fixed setting (--pretrain_methods_file=FILE), not a searched one",
    "finetune_from": "use --finetune_from (one start point per study)",
}


# ------------------------------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def command_line(args=()):
    """``sys.argv`` = [program] + ``args`` while RecBole's Config reads its ``--key=value`` settings from it: the
    tuner's own options (and a Ray worker's arguments) must never become settings."""
    saved = sys.argv
    sys.argv = [saved[0] if saved else "run_hyper_adaptssr.py", *args]
    try:
        yield
    finally:
        sys.argv = saved


@contextlib.contextmanager
def cuda_visible_devices_kept():
    """RecBole's Config sets ``CUDA_VISIBLE_DEVICES=gpu_id`` ("0" by default) in the process: on the driver that
    would hide every other GPU from Ray and from later trials; restore what it was."""
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved


@contextlib.contextmanager
def torch_threads(n):
    import torch

    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _builtin_stages() -> list:
    from recbole_adaptssr.pretext.base import builtin_pretext_tasks

    return builtin_pretext_tasks()


def is_pretraining_key(name: str, stages=()) -> bool:
    """Whether ``name`` is read by pre-training only: see :data:`PRETRAIN_ONLY`, and ``<stage>_<key>``."""
    if name in PRETRAIN_ONLY:
        return True
    return any(name.startswith(f"{stage}_") for stage in {*_builtin_stages(), *stages})


# ------------------------------------------------------------------------------------------------- a trial
def tune_trial(params, spec=None):
    """Ray Tune's function trainable: the trial as a unit of kind ``trial`` (:func:`~recbole_adaptssr.tuning.
    trial.run_trial_unit`) in the study's output folder, ``<output_dir>/units/trial-<id>/``: its log, TensorBoard
    run and result there; its checkpoints removed afterwards unless ``keep_trial_dirs``. A failed trial raises
    (Ray Tune records it)."""
    import glob
    import logging

    import ray

    from recbole_adaptssr.execution.registry import unit_kind
    from recbole_adaptssr.execution.result import unit_folder
    from recbole_adaptssr.execution.worker import Job, run_job

    spec = StudySpec.from_dict(spec)
    unit = trial_unit(spec, params, ray_compat.trial_id())
    gpu_id = ",".join(str(g) for g in ray.get_gpu_ids()) if spec.gpus_per_trial > 0 else ""
    job = Job(unit=unit, run_dir=spec.output_dir, runner=unit_kind(TRIAL).runner, inputs={},
              log_level=logging.getLogger().getEffectiveLevel(), isolated=True, gpu_id=gpu_id,
              cpus=spec.torch_threads, where={"executor": "ray tune"}, reraise=True)
    try:
        run_job(job)
    finally:
        if not spec.keep_trial_dirs:
            for path in glob.glob(os.path.join(unit_folder(spec.output_dir, unit.id), "**", "*.pth"), recursive=True):
                os.remove(path)


def trial_dirname(trial) -> str:
    """Short trial folder names (Ray's default spells out every searched value)."""
    return f"trial_{trial.trial_id}"


# ------------------------------------------------------------------------------------------------- the study
@dataclass
class StudyOptions:
    """The study's own options (``run_hyper_adaptssr.py --help``); settings of the runs are not here."""

    params_file: str | None = None
    space_lines: list = field(default_factory=list)
    model: str = "AdaptSSR"
    dataset: str = "ml-100k"
    config_files: list = field(default_factory=list)
    search: str = "auto"
    finetune_from: str | None = None
    tune_task: str | None = None
    num_samples: int = 1
    scheduler: str = "asha"
    search_alg: str = "random"
    grace_period: int = 1
    reduction_factor: float = 2
    max_concurrent_trials: int | None = None
    search_seed: int | None = None
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    storage_path: str | None = None
    name: str | None = None
    output_dir: str | None = None
    resume: bool = False
    retry_failed: bool = False
    final_test: bool = True
    keep_trial_dirs: bool = False
    reuse_actors: bool = True
    verbose: int = 1
    output_file: str | None = None  # RecBole's --output_file: every trial's parameters and results as text


#: StudyOptions fields whose command-line option has another name
OPTION_NAMES = {"space_lines": "space"}


@dataclass
class StudyOutcome:
    """What a study did: the rows of its trials table, the best trial, the final rerun, the files written."""

    name: str
    experiment_path: str
    output_dir: str
    spec: StudySpec
    rows: list
    interrupted: bool = False
    all_failed: bool = False
    best: dict | None = None
    rerun: dict | None = None
    files: dict = field(default_factory=dict)
    seconds: float = 0.0
    summary: str = ""


def _absolute(path):
    if path is None or "://" in str(path):
        return path
    return os.path.abspath(os.path.expanduser(str(path)))


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}" if "://" in base else os.path.join(base, name)


def load_space(options: StudyOptions) -> list:
    dims = read_space(options.params_file) if options.params_file else []
    extra = [parse_line(line, "--space", i) for i, line in enumerate(options.space_lines or [], start=1)]
    extra = [d for d in extra if d is not None]
    if not dims and not extra:
        raise SpaceError("no search space: give --params_file=FILE (and/or --space 'KEY KIND VALUES')")
    return merge_space(dims, extra) if dims else merge_space(extra[:1], extra[1:])


def user_settings(config) -> dict:
    """The user's settings (files < dict < command line) with paths made absolute: trials run in other folders."""
    from recbole_adaptssr.compat import plain

    settings = plain(dict(getattr(config, "user_config_dict", {}) or {}))
    for key in ("model", "dataset", "gpu_id", "resume", "pretrain_methods"):
        settings.pop(key, None)
    settings["data_path"] = _absolute(settings.get("data_path") or "dataset/")
    if settings.get("checkpoint_dir"):
        settings["checkpoint_dir"] = _absolute(settings["checkpoint_dir"])
    if settings.get("pretrain_methods_file"):
        files = setting_list(settings["pretrain_methods_file"])
        settings["pretrain_methods_file"] = [_absolute(f) for f in files]
    if settings.get("finetune_from"):
        settings["finetune_from"] = [_absolute(v) if os.path.isfile(str(v)) else v
                                     for v in setting_list(settings["finetune_from"])]
    return settings


def check_space_settings(dims: list, stages, loaded=()) -> None:
    """Every searched key is a setting (or a pseudo-setting of :data:`PSEUDO_KEYS`), and every value of a choice or
    grid has the shape its key declares; errors name the file and line (:mod:`recbole_adaptssr.setting_keys`)."""
    from recbole_adaptssr import setting_keys

    for d in dims:
        if d.name in PSEUDO_KEYS:
            continue
        if setting_keys.unknown_keys([d.name], stages, loaded):
            close = setting_keys.suggestions(d.name, stages, loaded)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise SpaceError(f"{d.where}: {d.name} is not a setting{hint}")
        problems = [p for v in d.values() or [] for p in setting_keys.shape_errors({d.name: v}, d.where, stages)]
        if problems:
            raise SpaceError(problems[0])


def check_space_keys(dims: list, mode: str, uses_pretext: bool, start_point, stages, methods_files=()) -> None:
    """Searched keys that the study decides itself, or that this kind of search cannot change."""
    for d in dims:
        if d.name in RESERVED:
            raise SpaceError(f"{d.where}: {d.name} cannot be searched: {RESERVED[d.name]}")
        if d.name in ("metrics", "topk", "valid_metric", "eval_args"):
            raise SpaceError(f"{d.where}: {d.name} cannot be searched: each task kind has its own "
                             "(<kind>_metrics, <kind>_valid_metric, ...) and the objective must stay fixed")
        if mode == "finetune" and is_pretraining_key(d.name, stages):
            what = ("the model has no pre-training" if not uses_pretext
                    else "a fine-tune search keeps one pre-trained start point: use --search=pretrain")
            hint = " (fine-tuning epochs are finetune_epochs)" if d.name == "epochs" else ""
            raise SpaceError(f"{d.where}: {d.name} is a pre-training setting{hint}; {what}")
        if mode == "finetune" and uses_pretext and start_point is not None and d.name in ARCHITECTURE:
            raise SpaceError(f"{d.where}: {d.name} changes the user model, which the checkpoint {start_point} fixes: "
                             "use --search=pretrain, or --finetune_from=none to fine-tune from scratch")
        if mode == "pretrain" and d.name == "pretrain_method":
            for value in d.values() or []:
                try:
                    resolve_method(value, methods_files)  # unknown methods fail here, before Ray starts
                except ValueError as error:
                    raise SpaceError(f"{d.where}: {error}") from None
        if d.name == "pretrain_method" and any(x.name == "pretrain_stages" for x in dims):
            raise SpaceError(f"{d.where}: search pretrain_method or pretrain_stages, not both")


def choose_mode(requested: str, dims: list, uses_pretext: bool, start_requested, stages) -> str:
    if requested not in SEARCH_MODES:
        raise SettingError(f"--search must be one of {list(SEARCH_MODES)}, got {requested!r}")
    if not uses_pretext:
        if requested == "pretrain":
            raise SettingError("--search=pretrain: this model has no pre-training (a RecBole model is searched on its "
                               "task: --search=finetune)")
        return "finetune"
    if requested != "auto":
        return requested
    if start_requested is not None:  # one given start point: fine-tune over it
        return "finetune"
    pre = [d.name for d in dims if is_pretraining_key(d.name, stages) or d.name in ARCHITECTURE]
    return "pretrain" if pre else "finetune"


def prepare(options: StudyOptions, settings_args=(), config_dict=None, log=print) -> tuple:
    """Build the driver's Config, resolve the data set, task, metric and search mode, check the space; return
    ``(spec, dims, output_dir, resolve_start)``, where ``resolve_start()`` fixes the start point of a fine-tune
    search (pre-training it once if it is a stage). Nothing here starts Ray or trains."""
    from recbole_adaptssr import setup
    from recbole_adaptssr.config import Config
    from recbole_adaptssr.data.embedded import prepare_embedded_default
    from recbole_adaptssr.data.task_dataset import TaskData
    from recbole_adaptssr.experiment.validation import selected_tasks

    setup()
    dims = load_space(options)
    files = [_absolute(f) for f in options.config_files or []]
    with command_line(settings_args), cuda_visible_devices_kept():
        config = study_config(options, files, config_dict)
        name, root = prepare_embedded_default(config.dataset, config.user_config_dict.get("data_path"))
        if name != config.dataset:
            config = Config(model=options.model, dataset=name, config_file_list=files or None,
                            config_dict={**(config_dict or {}), "data_path": _absolute(root)})
        if config["pretrain_methods"]:
            raise SettingError("pretrain_methods (the comparison) cannot be a fixed setting of a study: search "
                               "pretrain_method instead, e.g. 'pretrain_method grid [adaptssr, cl4srec]'")
        uses_pretext = bool(getattr(config.model_class, "uses_pretext_tasks", False))
        stages = [str(s) for s in config["pretrain_stages"] or []] if uses_pretext else []
        task_data = TaskData(config["data_path"], config["dataset"])
        tasks = selected_tasks(config, task_data)
        if not uses_pretext and not options.tune_task:  # a RecBole recommender: the first recommendation task
            tasks = [t for t in tasks if task_data.kind(t).name == "recommendation"] or tasks
        task = options.tune_task or (tasks[0] if tasks else None)
        if task is None:
            raise SettingError(f"{config['dataset']} has no downstream task to tune on (see --tune_task)")
        kind = task_data.kind(task)  # an unknown task fails here, naming the manifest's tasks
        if not uses_pretext and kind.name != "recommendation":
            raise SettingError(f"{options.model} is a RecBole recommender: it can be tuned on a recommendation task, "
                               f"not {task!r} ({kind.name})")
        metric = str(kind.evaluation_settings(config)["valid_metric"]).lower()
        metric_mode = "max" if config["valid_metric_bigger"] else "min"
        start_requested = options.finetune_from
        mode = choose_mode(options.search, dims, uses_pretext, start_requested, stages)
        if mode == "pretrain" and start_requested is not None:
            raise SettingError("--finetune_from fixes one start point (a fine-tune search); a pre-training search "
                               "fine-tunes each trial from the stage its method starts from")
        settings = user_settings(config)
        settings.setdefault("seed", int(config["seed"]))  # explicit in best.yaml, whatever the default
        methods_files = [str(f) for f in setting_list(settings.get("pretrain_methods_file")) or []]
        spec = StudySpec(model=options.model, dataset=options.dataset, data_name=str(config["dataset"]),
                         settings=settings, mode=mode, task=task, metric=metric, metric_mode=metric_mode,
                         uses_pretext=uses_pretext, stages=stages,
                         torch_threads=max(1, int(math.ceil(options.cpus_per_trial))),
                         gpus_per_trial=float(options.gpus_per_trial), keep_trial_dirs=options.keep_trial_dirs,
                         space=[f"{d.name} {d.describe()}" for d in dims], methods_files=methods_files)
        epochs_key = "finetune_epochs"
        spec.max_epochs = int(max(config[epochs_key] or 1, upper_bound(dims, epochs_key) or 0))
        output_dir = _absolute(options.output_dir
                               or os.path.join(default_root(spec), "hyper", study_name(options, spec)))
        spec.output_dir = output_dir
        start = None
        if mode == "finetune" and uses_pretext:
            start = start_requested
            if start is None:
                configured = [str(v) for v in setting_list(config["finetune_from"]) or []]
                if len(configured) != 1:
                    raise SettingError(f"finetune_from is {configured}: a fine-tune search needs ONE start point, "
                                       "give --finetune_from=STAGE|PATH|none")
                start = configured[0]
            start = str(start)
            if start.lower() != "none" and start not in stages and not os.path.isfile(_absolute(start)):
                raise SettingError(f"--finetune_from={start!r} is neither none, a stage of pretrain_stages "
                                   f"{stages}, nor a checkpoint file")
        fixed = None if start is None or start.lower() == "none" else start
        check_space_settings(dims, stages, config.internal_config_dict)
        check_space_keys(dims, mode, uses_pretext, fixed, stages, spec.methods_files)
        from recbole_adaptssr.data.validation import validate_data
        from recbole_adaptssr.experiment.lifecycle import run_data

        validate_data(config, task_data, [task])  # the data files, before Ray starts
        spec.data = run_data(config, [task])

    def resolve_start():
        """Resolve the start point of a fine-tune search (pre-training it once if it is a stage): call it when the
        study is sure to run."""
        if start is not None:
            with command_line(settings_args), cuda_visible_devices_kept():
                spec.start_point, spec.start_label = resolve_study_start(config, start, stages, output_dir, log)

    return spec, dims, output_dir, resolve_start


def study_config(options: StudyOptions, files: list, config_dict=None):
    """The driver's Config; an unknown setting close to one of the study's own options says so
    (``--num_sample=4``: did you mean the option --num_samples?)."""
    from recbole_adaptssr import setting_keys
    from recbole_adaptssr.config import Config

    try:
        return Config(model=options.model, dataset=options.dataset, config_file_list=files or None,
                      config_dict=dict(config_dict or {}))
    except setting_keys.SettingError as error:
        if not error.unknown:
            raise
        options_names = [OPTION_NAMES.get(f.name, f.name) for f in dataclasses.fields(StudyOptions)]
        hints = {k: c for k in error.unknown for c in difflib.get_close_matches(k, options_names, n=1, cutoff=0.75)}
        if not hints:
            raise
        raise setting_keys.SettingError(str(error) + "; " + ", ".join(
            f"{k}: did you mean the option --{c} of run_hyper_adaptssr.py?" for k, c in hints.items())) from None


#: what a resumed study must repeat: the spec's (the space, the settings, the task and objective, the data) and
#: the options that decide which trials exist and how they are scheduled
RESUME_SPEC = ("model", "dataset", "data_name", "settings", "mode", "task", "metric", "metric_mode", "uses_pretext",
               "stages", "space", "methods_files", "data")
RESUME_OPTIONS = ("search", "finetune_from", "tune_task", "num_samples", "scheduler", "grace_period",
                  "reduction_factor", "search_seed", "search_alg")
RESUME_FREE = ("show_progress", "state", "allow_data_change")


def study_changes(record: dict | None, spec: StudySpec, options: StudyOptions) -> list:
    """What differs between the study recorded in ``study.json`` and this command (``key: then X, now Y``; the data
    as :func:`recbole_adaptssr.data.fingerprint.differences` says); empty when nothing does."""
    from dataclasses import asdict

    from recbole_adaptssr.data.fingerprint import differences

    if not record:
        return []
    then_spec, then_options = record.get("spec") or {}, record.get("options") or {}
    now_spec, now_options = json_plain(spec.as_dict()), json_plain(asdict(options))
    for values in (then_spec, now_spec):  # how a run reports, and the permission below, may differ
        values["settings"] = {k: v for k, v in (values.get("settings") or {}).items() if k not in RESUME_FREE}
    changes = differences(then_spec.get("data"), now_spec.get("data")) if then_spec.get("data") else []
    if changes and spec.settings.get("allow_data_change"):
        changes = []
    changes += [f"{key}: then {then_spec.get(key)!r}, now {now_spec.get(key)!r}" for key in RESUME_SPEC
                if key != "data" and json_plain(then_spec.get(key)) != now_spec.get(key)]
    changes += [f"--{key}: then {then_options.get(key)!r}, now {now_options.get(key)!r}" for key in RESUME_OPTIONS
                if json_plain(then_options.get(key)) != now_options.get(key)]
    return changes


def json_plain(value):
    """``value`` as it reads back from JSON (so a recorded spec compares equal to the same spec now)."""
    return json.loads(json.dumps(value, default=str))


def resolve_study_start(config, start: str, stages: list, output_dir: str, log) -> tuple:
    """``none`` -> (None, "none"); a checkpoint path -> (that path, its name); a stage of ``pretrain_stages`` ->
    pre-trained ONCE now: the pre-training stage units up to it, a plan executed (serially) in ``output_dir``,
    whose finished units a resumed study reads back."""
    from recbole_adaptssr.execution import ExecutorSettings, Plan, execute
    from recbole_adaptssr.execution.logs import init_run_logger
    from recbole_adaptssr.experiment.settings import RunSettings
    from recbole_adaptssr.experiment.units import pretrain_chain, stage_results
    from recbole_adaptssr.experiment.validation import check_pretraining

    if start.lower() == "none":
        return None, "none"
    if start in stages:
        check_pretraining(config)
        run = RunSettings.from_config(config)
        plan = Plan()
        chain = pretrain_chain(plan, run.model, run.dataset, run.units, stages[:stages.index(start) + 1], run.seed)
        os.makedirs(output_dir, exist_ok=True)
        init_run_logger(output_dir, run.state)
        log(f"pre-training once before the search ({stages[:stages.index(start) + 1]}), into {output_dir}/units")
        outcome = execute(plan, output_dir, ExecutorSettings.from_settings(), options=run.options)
        if not outcome.ok:
            failure = outcome.results[outcome.failed[0]] if outcome.failed else None
            raise RuntimeError("the pre-training before the search failed"
                               + (f": {failure.error} (its log: {failure.log})" if failure else ""))
        path = stage_results(outcome.results[chain[start]].payload, output_dir)[start].checkpoint
        return path, os.path.basename(path)
    path = _absolute(start)
    if not os.path.isfile(path):
        raise SettingError(f"--finetune_from={start!r} is neither none, a stage of pretrain_stages {stages}, "
                           "nor a checkpoint file")
    return path, os.path.basename(path)


def default_root(spec: StudySpec) -> str:
    """Where a study writes by default: the ``checkpoint_dir`` setting (``saved``, ignored by git)."""
    return str(spec.settings.get("checkpoint_dir") or "saved")


def study_name(options: StudyOptions, spec: StudySpec) -> str:
    if options.name:
        return options.name
    stem = os.path.splitext(os.path.basename(options.params_file))[0] if options.params_file else "space"
    return f"{options.model}-{spec.data_name}-{stem}"


STUDY_RECORD = "study.json"


def read_study_record(output_dir: str) -> dict | None:
    try:
        with open(os.path.join(output_dir, STUDY_RECORD), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def start_ray(options: StudyOptions, log=print) -> bool:
    """Connect to Ray: the running one (e.g. a test's), ``--address`` (``auto`` or ``ray://host:10001``), or a new
    local instance with this machine's CPUs/GPUs (``--num_cpus``/``--num_gpus`` to limit). Returns whether this
    call started it."""
    import ray

    if ray.is_initialized():
        return False
    if options.address:
        ray.init(address=options.address)
        log(f"connected to the Ray cluster at {options.address}: {ray.cluster_resources()}")
    else:
        ray.init(num_cpus=options.num_cpus, num_gpus=options.num_gpus, include_dashboard=False)
        log(f"started a local Ray: {ray.cluster_resources()}")
    return True


def make_trainable(spec: StudySpec, options: StudyOptions):
    from ray import tune

    trainable = tune.with_parameters(tune_trial, spec=spec.as_dict())
    resources = {"cpu": float(options.cpus_per_trial), "gpu": float(options.gpus_per_trial)}
    return tune.with_resources(trainable, resources)


def make_scheduler(options: StudyOptions, spec: StudySpec):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if options.scheduler not in SCHEDULERS:
        raise SettingError(f"--scheduler must be one of {list(SCHEDULERS)}, got {options.scheduler!r}")
    if options.scheduler == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(time_attr="training_iteration", max_t=max(1, spec.max_epochs),
                         grace_period=max(1, int(options.grace_period)), reduction_factor=options.reduction_factor)


def run_study(options: StudyOptions, settings_args=(), config_dict=None, callbacks=None, log=print) -> StudyOutcome:
    """Prepare, run (or ``resume``) the study with Ray Tune, write the trials table, pick the best trial on
    validation, write ``best.yaml`` and rerun it once for its test metrics (see the module docstring)."""
    from ray import tune

    from recbole_adaptssr.tuning import results as out, searchers

    started = time.time()
    spec, dims, output_dir, resolve_start = prepare(options, settings_args, config_dict, log)
    name = check_plain_name(study_name(options, spec), "study name", where="--name")
    storage = _absolute(options.storage_path or os.path.join(default_root(spec), "ray_results"))
    path = _join(storage, name)
    if options.resume:
        changes = study_changes(read_study_record(output_dir), spec, options)
        if changes:
            raise SettingError(f"--resume: study {name} ({output_dir}) was started with other settings, space or data ("
                               + "; ".join(changes) + "); resume it with the same command, or start a new study "
                               "with another --name")
    exists = tune.Tuner.can_restore(path)
    if options.resume and not exists:
        raise SettingError(f"--resume: no study to restore at {path} (check --storage_path and --name)")
    if exists and not options.resume:
        raise SettingError(f"a study already exists at {path}: add --resume to continue it, or choose another --name")
    searchers.check_search(options.search_alg, dims)  # before Ray starts, and before the study's folder is made
    os.makedirs(output_dir, exist_ok=True)
    log(f"study {name}: {spec.mode} search of {spec.model} on {spec.data_name}/{spec.task}, objective "
        f"{spec.metric} ({spec.metric_mode}, validation, every epoch), {options.search_alg} search, "
        f"{options.scheduler} scheduler\n"
        f"space:\n{space_text(dims)}")
    start_ray(options, log)
    resolve_start()
    out.write_study_record(output_dir, spec, options, name, path)
    trainable = make_trainable(spec, options)
    if options.resume:
        log(f"resuming {path}: finished trials are kept, unfinished ones start again"
            + (", failed ones run again" if options.retry_failed else ""))
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=bool(options.retry_failed))
    else:
        seed = options.search_seed if options.search_seed is not None else int(spec.settings.get("seed", 2020))
        search, param_space = searchers.make_search(options.search_alg, dims, seed, options.max_concurrent_trials,
                                                    BEST, spec.metric_mode)
        tune_config = tune.TuneConfig(
            metric=BEST, mode=spec.metric_mode, search_alg=search, scheduler=make_scheduler(options, spec),
            num_samples=int(options.num_samples), reuse_actors=bool(options.reuse_actors),
            trial_dirname_creator=trial_dirname)
        run_config = ray_compat.run_config_class()(
            name=name, storage_path=storage, verbose=options.verbose, callbacks=list(callbacks or []),
            failure_config=ray_compat.failure_config_class()(max_failures=0, fail_fast=False))
        tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config,
                           run_config=run_config)
    grid = tuner.fit()
    rows = out.trial_rows(grid, spec, dims)
    expected = int(options.num_samples) * searchers.trials_per_sample(options.search_alg, dims)
    finished = [r for r in rows if r["status"] in out.FINISHED]
    interrupted = len(finished) < max(expected, len(rows))
    all_failed = bool(rows) and all(r["status"] == "failed" for r in rows)
    outcome = StudyOutcome(name=name, experiment_path=path, output_dir=output_dir, spec=spec, rows=rows,
                           interrupted=interrupted, all_failed=all_failed)
    outcome.files.update(out.write_trials(rows, spec, dims, output_dir))
    outcome.files.update(study_sweep(outcome.files["trials_csv"], dims, spec.settings))  # Fig. 3 (plots)
    if interrupted:
        log(f"study interrupted: {len(finished)} of {max(expected, len(rows))} trials finished; continue it with "
            "the same command plus --resume")
    else:
        outcome.best = out.best_row(rows, spec)
        if outcome.best is None:
            log("no trial finished with a validation result: nothing to select")
        else:
            settings = best_settings(spec, outcome.best, options)
            outcome.files["best_yaml"] = out.write_best_yaml(output_dir, settings, spec, outcome.best, name)
            if options.final_test:
                outcome.rerun = rerun_best(spec, outcome.files["best_yaml"], output_dir, log)
    outcome.seconds = time.time() - started
    outcome.summary = out.summary_markdown(outcome, dims, options)
    outcome.files.update(out.write_summary(outcome))
    if options.output_file:  # RecBole's run_hyper.py --output_file
        outcome.files["output_file"] = out.write_recbole_result(options.output_file, outcome)
    log(outcome.summary)
    return outcome


def best_settings(spec: StudySpec, row: dict, options: StudyOptions) -> dict:
    """What ``best.yaml`` holds: the trial's settings; a trial the scheduler stopped early keeps its epoch count
    (``finetune_epochs``) so the rerun trains what it trained; CPU trials pin the rerun to the CPU."""
    settings, _ = trial_settings(spec, row["params"])
    if row["status"] == "stopped_early":
        settings["finetune_epochs"] = int(row["epochs"])
    if spec.gpus_per_trial <= 0:
        settings["gpu_id"] = ""
    return settings


def rerun_best(spec: StudySpec, best_yaml: str, output_dir: str, log=print) -> dict:
    """Run ``best.yaml`` ONCE through the main entry point's pipeline (as ``run_recbole_adaptssr.py
    --config_files=best.yaml``): its validation metric must equal the trial's; its test metrics are the study's
    only test evaluation."""
    from recbole_adaptssr.quick_start import run

    folder = os.path.join(output_dir, "best_rerun")
    log(f"rerunning the best configuration once ({best_yaml}) for its test metrics")
    started = time.time()
    with command_line(), cuda_visible_devices_kept(), torch_threads(spec.torch_threads):
        result = run(model=spec.model, dataset=spec.dataset, config_file_list=[best_yaml],
                     config_dict={"checkpoint_dir": folder})
    runs = result.get("runs") or []
    if len(runs) != 1:
        raise RuntimeError(f"the rerun of {best_yaml} made {len(runs)} fine-tune runs, expected 1")
    run_result = runs[0]
    return {"valid": dict(run_result.valid), "test": dict(run_result.test), "best_epoch": run_result.best_epoch,
            "run_dir": result.get("run_dir"), "seconds": time.time() - started}
