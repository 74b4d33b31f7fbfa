"""RecBole's own recommenders as baselines on our recommendation tasks, with the information AdaptSSR gets
(docs/recbole-baselines.md).

``run_recbole_baselines(config)`` runs every model of ``recbole_baselines`` (or ``--model`` with
``baseline_pretrain`` set) in every variant of ``baseline_pretrain`` on the data set's recommendation tasks over
``repeat`` seeds, and writes the results table of the AdaptSSR pipeline (``results.md/.json/.csv``, one row per
``<model> (<variant>)``). What every run shares with AdaptSSR's runs of the same seed: the task split (the task
data set of AdaptSSR, :class:`~recbole_adaptssr.data.task_dataset.AdaptSSRTaskDataset`), the candidates (the
task's target items only), the full-sort masks (the user's own task-training targets only: the validation and test
loaders are built from the task data set alone, exactly as for AdaptSSR), the metric and the behaviour log.

Variants (``baseline_pretrain``):

* ``behaviours``: sequential recommenders (SASRec, GRU4Rec, BERT4Rec, ...) are first trained with their own
  objective (next-item prediction; BERT4Rec's masked items) on the behaviour sequences of ``NAME.inter`` by
  RecBole's ``SequentialDataset`` and ``Trainer`` (leave-one-out validation on each user's last behaviour), then
  fine-tuned on the task's training split (behaviour sequence -> target) from those weights. General and
  traditional recommenders (Pop, BPR, LightGCN, ItemKNN, EASE, ...) train once on the behaviour log of every user
  plus the task's training (user, target) pairs.
* ``none``: the task's training split only (what the pipeline's ``--model=SASRec --downstream_task=rec`` does,
  here with the baselines' own epochs).

Settings: RecBole's defaults and each model's RecBole YAML, then yours; ``baseline_<key>`` replaces ``<key>`` in
the task runs and ``baseline_pretrain_<key>`` in the behaviour pre-training (``properties/recbole_baselines.yaml``:
RecBole's 300 epochs with patience 10 for both; every run stops by :mod:`recbole_adaptssr.stopping` and records how).

The runner is a plan of units (:func:`compile_baselines`): a sequential model's behaviour pre-training per task
(``baseline_pretrain``, shared by its seeds) and a run per task, model, variant and seed (``baseline``), executed
and resumable as every command's (:mod:`~recbole_adaptssr.experiment.lifecycle`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from logging import getLogger

import yaml
from recbole.data import data_preparation
from recbole.data.utils import get_dataloader
from recbole.sampler import Sampler
from recbole.trainer import Trainer
from recbole.utils import ModelType, init_seed, set_color

from recbole_adaptssr.checkpoint import verify_checkpoint
from recbole_adaptssr.compat import plain
from recbole_adaptssr.data.baseline_dataset import (BaselineTaskDataset, BehaviourSequenceDataset,
                                                   behaviour_interactions, item_domains, log_vocabulary,
                                                   task_pair_keys, with_behaviours)
from recbole_adaptssr.data.fingerprint import vocabulary_fingerprint
from recbole_adaptssr.data.task_dataset import TaskData
from recbole_adaptssr.data.validation import DataError, validate_data
from recbole_adaptssr.experiment.finetuning import prefixed_overrides, task_overrides, without_sampled_negatives
from recbole_adaptssr.experiment.train_test import fit, run_stop_record, train_and_test, warn_if_capped
from recbole_adaptssr.execution import Plan, Unit, register_unit_kind
from recbole_adaptssr.experiment.lifecycle import run_data, run_plan
from recbole_adaptssr.experiment.recbole_support import unsupported_reason
from recbole_adaptssr.experiment.results import RunResult, markdown_table, summarize, write_results
from recbole_adaptssr.experiment.settings import RunSettings
from recbole_adaptssr.experiment.units import check_run, run_result, task_data_of, unit_config
from recbole_adaptssr.experiment.validation import check_finetuning
from recbole_adaptssr.reproducibility import pin_threads
from recbole_adaptssr.setting_errors import SettingError, as_setting_errors
from recbole_adaptssr.stopping import DAGGER, StopRecord
from recbole_adaptssr.trainer import TaskTrainer
from recbole_adaptssr.utils import get_model, get_trainer

VARIANTS = ("behaviours", "none")
BASELINE_PRETRAIN, BASELINE = "baseline_pretrain", "baseline"  # unit kinds
RUN_PREFIX, PRETRAIN_PREFIX = "baseline_", "baseline_pretrain_"
# settings every row of the table records besides the model's own YAML keys
RECORDED_KEYS = ("epochs", "stopping_step", "learning_rate", "train_batch_size", "weight_decay",
                 "MAX_ITEM_LIST_LENGTH", "train_neg_sample_args", "valid_metric")


# ----------------------------------------------------------------------------------------------------- settings
def wants_baselines(config) -> bool:
    """This run is the baselines' runner: ``recbole_baselines`` is set, or a RecBole model runs on downstream
    tasks with ``baseline_pretrain`` given."""
    if config["recbole_baselines"]:
        return True
    user = getattr(config, "user_config_dict", {}) or {}
    return ("baseline_pretrain" in user and not getattr(config.model_class, "uses_pretext_tasks", False)
            and bool(config["downstream_task"] or config["downstream_tasks"]))


def baseline_models(config) -> list:
    return [str(m) for m in (config["recbole_baselines"] or [config["model"]])]


def baseline_variants(config) -> list:
    variants = [str(v) for v in (config["baseline_pretrain"] or [])]
    if not variants:
        raise SettingError(f"baseline_pretrain must list at least one of {list(VARIANTS)}, got "
                           f"{config['baseline_pretrain']!r}")
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise SettingError(f"baseline_pretrain: unknown variant(s) {bad}; choose from {list(VARIANTS)} "
                           "(behaviours: the behaviour log as well, none: the task's training split only)")
    return list(dict.fromkeys(variants))


def check_models(models: list) -> dict:
    """``{name: model class}``; each a RecBole recommender that can rank a task's targets
    (:mod:`~recbole_adaptssr.experiment.recbole_support`), else an error naming it."""
    classes = {}
    for name in models:
        model_class = get_model(name)  # unknown names: an error with close matches
        if getattr(model_class, "uses_pretext_tasks", False) or model_class.__module__.startswith("recbole_adaptssr."):
            raise SettingError(f"recbole_baselines lists {name}, which is ours: run it with --model={name}, then "
                               "merge the results files (scripts/merge_results.py)")
        reason = unsupported_reason(name, model_class)
        if reason:
            raise SettingError(f"recbole_baselines: {name} is not supported on our tasks: {reason}")
        classes[name] = model_class
    return classes


def baseline_tasks(config, task_data: TaskData) -> list:
    """The recommendation tasks of the data set (``downstream_task(s)`` when set: each must be one)."""
    named = config["downstream_task"] or config["downstream_tasks"]
    if named:
        names = [str(named)] if isinstance(named, str) else [str(t) for t in named]
        for name in names:
            kind = task_data.kind(name)  # an unknown task: the error names the manifest's tasks
            if kind.name != "recommendation":
                raise SettingError(f"RecBole's recommenders can run the recommendation tasks, not {name!r} "
                                   f"({kind.name}); set downstream_task(s) to recommendation tasks")
        return names
    names = [t for t in task_data.manifest if task_data.kind(t).name == "recommendation"]
    if not names:
        raise SettingError(f"{task_data.name}.tasks.json has no recommendation task: nothing for RecBole's "
                           "recommenders (recbole_baselines)")
    return names


def task_run_config(config, model: str, task: str, kind, seed: int, run_dir: str, task_data: TaskData,
                    variant: str | None = None):
    """The Config of one baseline run on ``task``: the task's evaluation and split exactly as AdaptSSR's runs
    (``<kind>_*``, ``task_split``), the seed, the shared vocabulary, then ``baseline_<key>`` settings; its
    ``baseline_variant`` tells :func:`recbole_adaptssr.quick_start.load_data_and_model` which data the checkpoint was trained on."""
    # baseline_pretrain_<key> belongs to the behaviour pre-training, not to baseline_<pretrain_key>
    overrides = task_overrides(config, task, kind, seed, task_data, run_dir, RUN_PREFIX,
                               exclude=(PRETRAIN_PREFIX[len(RUN_PREFIX):],), behaviour_vocabulary="targets",
                               baseline_variant=variant)
    cfg = config.derive(model=model, **overrides)
    if without_sampled_negatives(cfg):
        # a task record is a (sequence, target) sample: RecBole's CE objective takes no sampled negatives
        cfg = config.derive(model=model, **overrides, train_neg_sample_args=None)
    return cfg


def pretrain_run_config(config, model: str, seed: int, run_dir: str):
    """The Config of a sequential recommender's next-item training on the behaviour log: RecBole's sequential
    protocol (time order, each user's last behaviour held out for validation), then ``baseline_pretrain_<key>``."""
    overrides = {
        "downstream_task": None, "seed": int(seed), "checkpoint_dir": run_dir, "baseline_variant": "behaviours",
        "ITEM_ID_FIELD": "item_id", "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"split": {"LS": "valid_only"}, "order": "TO", "group_by": "user", "mode": "full"},
        **prefixed_overrides(config, PRETRAIN_PREFIX),
    }
    return config.derive(model=model, **overrides)


def recorded_settings(cfg, trainer=None) -> dict:
    """The hyper-parameters a run used: its model's RecBole YAML keys and the training keys."""
    import recbole

    path = os.path.join(os.path.dirname(recbole.__file__), "properties", "model", f"{cfg['model']}.yaml")
    keys = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            keys = list((yaml.safe_load(f) or {}).keys())
    values = {key: cfg[key] for key in [*keys, *RECORDED_KEYS] if key in cfg.final_config_dict}
    if trainer is not None:
        values["epochs"] = int(trainer.epochs)  # RecBole's TraditionalTrainer trains one epoch
    values["train_neg_sample_args"] = (values.get("train_neg_sample_args") or {}).get("distribution", "none") \
        if isinstance(values.get("train_neg_sample_args"), dict) else values.get("train_neg_sample_args")
    return plain(values)


def _trainer_class(cfg, model_class):
    """RecBole's trainer of the model (by its own type), with TaskTrainer's candidate restriction, checkpoints and
    stopping rule; a trainer with a training loop of its own (``fit``) keeps it."""
    base = get_trainer(model_class.type, cfg["model"])
    if base is Trainer or base is TaskTrainer:
        return TaskTrainer
    if issubclass(base, TaskTrainer):
        return base
    own_fit = {"fit": base.fit} if base.fit is not Trainer.fit else {}
    return type(f"Task{base.__name__}", (TaskTrainer, base), own_fit)


# ----------------------------------------------------------------------------------------------------- runs
class BehaviourPretraining:
    """A sequential recommender's next-item training on the behaviour log, once per (model, task) and reused by
    every seed (as AdaptSSR's pre-training runs once and every seed fine-tunes from it)."""

    def __init__(self, checkpoint: str, state_dict: dict, summary: dict):
        self.checkpoint, self.state_dict, self.summary = checkpoint, state_dict, summary


def vocabulary_dataset(config, model: str, task: str, kind, task_data: TaskData, run_dir: str) -> BaselineTaskDataset:
    """The task data set of ``config``'s seed, read (not split): the baseline vocabulary of the task."""
    cfg = task_run_config(config, model, task, kind, int(config["seed"]), run_dir, task_data)
    return BaselineTaskDataset(cfg, None, task_data)


def pretrain_on_behaviours(config, model: str, vocab: BaselineTaskDataset, folder: str) -> BehaviourPretraining:
    """Train ``model`` with its own RecBole objective on ``NAME.inter`` in ``vocab``'s item ids (rows equal to a
    task pair left out); keep the best validation epoch."""
    logger = getLogger()
    seed = int(config["seed"])
    cfg = pretrain_run_config(config, model, seed, folder)
    pin_threads(cfg)
    pairs = task_pair_keys(vocab.task_data.folder, vocab.task_data.name, vocab.task) if vocab.domains == "shared" else None
    init_seed(seed, cfg["reproducibility"])
    dataset = BehaviourSequenceDataset(cfg, vocab.item_tokens(), vocab.item_vocabulary, pairs)
    if dataset.left_out_rows:
        logger.warning(f"{dataset.left_out_rows} row(s) of {vocab.dataset_name}.inter equal a (user, target) pair of "
                       f"task {vocab.task!r}: left out of {model}'s pre-training")
    if vocab.domains == "separate":
        logger.warning(f"{model}: behaviours and targets are separate item domains (baseline_item_domains: separate): "
                       "pre-training trains the sequence encoder and the behaviour items' embeddings; the target "
                       "items' embeddings are first trained in fine-tuning")
    logger.info(set_color(f"== {model} [behaviours] next-item pre-training on {vocab.dataset_name}.inter", "yellow")
                + f"\n{dataset}")
    train_data, valid_data, _ = data_preparation(cfg, dataset)
    start = time.time()
    trainer, best_valid = fit(cfg, train_data, valid_data, seed=seed,
                              trainer_class=_trainer_class(cfg, cfg.model_class),
                              checkpoint=os.path.join(folder, f"{model}-behaviours-pretrain.pth"))
    state = verify_checkpoint(trainer.saved_model_file, map_location="cpu")["state_dict"]
    stop = run_stop_record(trainer)
    summary = {"best_epoch": int(trainer.best_epoch), "valid": {k: float(v) for k, v in (best_valid or {}).items()},
               "seconds": round(time.time() - start, 1), "left_out_rows": dataset.left_out_rows,
               "sequences": len(train_data._dataset), "settings": recorded_settings(cfg, trainer),
               "stopping": stop.as_dict()}
    warn_if_capped(f"{model} [behaviours] pre-training", stop, cfg, PRETRAIN_PREFIX.rstrip("_"))
    logger.info(set_color(f"{model} [behaviours] pre-training", "yellow")
                + f": best epoch {summary['best_epoch']}, valid {summary['valid']} ({summary['seconds']} s)")
    return BehaviourPretraining(trainer.saved_model_file, state, summary)


def train_baseline(config, model: str, task: str, variant: str, seed: int, *, task_data: TaskData, run_dir: str,
                   pretrained: BehaviourPretraining | None = None,
                   expected_vocabulary: dict | None = None) -> RunResult:
    """One run of ``model`` on ``task`` with ``seed`` in ``variant`` (see the module docstring): fit on its
    training data, keep the best validation epoch, test it. Validation and test loaders are AdaptSSR's.
    ``expected_vocabulary``: the fingerprint (:func:`~recbole_adaptssr.data.fingerprint.vocabulary_fingerprint`)
    of the item vocabulary ``pretrained`` was trained with."""
    logger = getLogger()
    kind = task_data.kind(task)
    cfg = task_run_config(config, model, task, kind, seed, run_dir, task_data, variant)
    pin_threads(cfg)
    model_class = cfg.model_class
    label = f"{model} ({variant})"
    if variant not in VARIANTS:
        raise ValueError(f"baseline_pretrain: unknown variant {variant!r}; choose from {list(VARIANTS)}")
    if variant == "behaviours" and model_class.type == ModelType.SEQUENTIAL and pretrained is None:
        raise ValueError(f"{label}: a sequential model's behaviours variant fine-tunes from its behaviour "
                         "pre-training (pretrain_on_behaviours); none was given")
    init_seed(seed, cfg["reproducibility"])
    dataset = BaselineTaskDataset(cfg, None, task_data)
    logger.info(set_color(f"== {label} on {task} ({kind.name}), seed {seed}", "yellow") + f"\n{dataset}")
    train_data, valid_data, test_data = data_preparation(cfg, dataset)  # AdaptSSR's split, loaders and masks
    if expected_vocabulary is not None and vocabulary_fingerprint(dataset.item_tokens()) != expected_vocabulary:
        raise RuntimeError(f"{label}: the item vocabulary of seed {seed} differs from the pre-training's")
    left_out = 0
    if variant == "behaviours" and model_class.type != ModelType.SEQUENTIAL:
        behaviours, left_out = behaviour_interactions(dataset)
        train_split = with_behaviours(train_data._dataset, behaviours)
        train_data = _train_loader(cfg, train_split)
        if left_out:
            logger.warning(f"{left_out} row(s) of {dataset.dataset_name}.inter equal a (user, target) pair of task "
                           f"{task!r}: left out of {model}'s training")

    def settings(trainer) -> dict:
        recorded = {"variant": variant, "training_rows": len(train_data._dataset), "left_out_rows": left_out,
                    "item_domains": dataset.domains, "hyper_parameters": recorded_settings(cfg, trainer)}
        if pretrained is not None:
            recorded["pretraining"] = {**pretrained.summary, "checkpoint": pretrained.checkpoint}
        return recorded

    return train_and_test(
        cfg, (train_data, valid_data, test_data), task=task, kind=kind, label=label, seed=seed,
        checkpoint=os.path.join(run_dir, f"{model}-{variant}-{task}-seed{seed}.pth"),
        trainer_class=_trainer_class(cfg, model_class), role=RUN_PREFIX.rstrip("_"), settings=settings,
        weights=None if pretrained is None else (lambda net: net.load_state_dict(pretrained.state_dict)))


def _train_loader(cfg, train_split):
    """RecBole's training loader of ``train_split`` with its own negative sampler (the training phase only: the
    evaluation's samplers, hence its history masks, are left as data_preparation built them)."""
    args = cfg["train_neg_sample_args"] or {}
    sampler = None
    if args.get("distribution", "none") != "none":
        sampler = Sampler(["train"], [train_split], args["distribution"], args.get("alpha", 1.0)).set_phase("train")
    return get_dataloader(cfg, "train")(cfg, train_split, sampler, shuffle=cfg["shuffle"])


# ----------------------------------------------------------------------------------------------------- units
def baseline_pretrain_unit(model: str, dataset: str, settings: dict, task: str, seed: int) -> Unit:
    """The behaviour pre-training of RecBole's sequential ``model`` in the item ids of ``task`` (one per task and
    model, shared by every seed's run)."""
    return Unit(BASELINE_PRETRAIN, {"model": model, "dataset": dataset, "settings": settings, "task": task,
                                    "seed": int(seed)}, title=f"{model} [behaviours] pre-training for {task}")


def run_baseline_pretrain_unit(context) -> dict:
    """:func:`pretrain_on_behaviours` into the unit's folder.
    Payload: its checkpoint (relative to the run folder), summary and the fingerprint of its item vocabulary."""
    unit = context.settings
    config = unit_config(context, seed=unit["seed"])
    task_data = task_data_of(config)
    vocab = vocabulary_dataset(config, unit["model"], unit["task"], task_data.kind(unit["task"]), task_data,
                                  context.folder)
    log_vocabulary(vocab)
    pretrained = pretrain_on_behaviours(config, unit["model"], vocab, context.folder)
    return {"checkpoint": context.relative(pretrained.checkpoint), "summary": pretrained.summary,
            "vocabulary": vocabulary_fingerprint(vocab.item_tokens())}


def baseline_unit(model: str, dataset: str, settings: dict, task: str, variant: str, seed: int,
                  pretrained: str | None = None) -> Unit:
    """A run of RecBole's ``model`` on ``task`` in ``variant`` with ``seed``, from its behaviour pre-training
    (``pretrained``: that unit's id) if any."""
    return Unit(BASELINE, {"model": model, "dataset": dataset, "settings": settings, "task": task,
                           "variant": variant, "seed": int(seed)}, {"pretrained": pretrained} if pretrained else {},
                title=f"{model} ({variant}): {task}, seed {seed}")


def run_baseline_unit(context) -> dict:
    """:func:`train_baseline` into the unit's folder. Payload:
    :class:`RunResult` fields, files relative to the run folder."""
    unit = context.settings
    config = unit_config(context)
    pretrained, vocabulary = None, None
    if "pretrained" in context.inputs:
        given = context.inputs["pretrained"]
        path = context.path(given["checkpoint"])
        pretrained = BehaviourPretraining(path, verify_checkpoint(path, map_location="cpu")["state_dict"],
                                             given["summary"])
        vocabulary = given["vocabulary"]
    result = train_baseline(config, unit["model"], unit["task"], unit["variant"], unit["seed"],
                               task_data=task_data_of(config), run_dir=context.folder, pretrained=pretrained,
                               expected_vocabulary=vocabulary)
    if "pretraining" in result.settings:
        result.settings["pretraining"]["checkpoint"] = context.relative(result.settings["pretraining"]["checkpoint"])
    return {**result.as_dict(), "checkpoint": context.relative(result.checkpoint),
            "run_dir": context.relative(context.folder)}


register_unit_kind(BASELINE_PRETRAIN, run_baseline_pretrain_unit, check=check_run)
register_unit_kind(BASELINE, run_baseline_unit, check=check_run)


# ----------------------------------------------------------------------------------------------------- the runner
@dataclass(frozen=True)
class BaselineSettings:
    """What the baselines' runner reads of its Config, once, checked."""

    run: RunSettings
    tasks: tuple  # the data set's recommendation tasks
    models: tuple  # RecBole models, each able to run on the tasks
    sequential: frozenset  # those of ``models`` pre-trained on the behaviour log in the ``behaviours`` variant
    variants: tuple

    @classmethod
    def from_config(cls, config, task_data: TaskData) -> "BaselineSettings":
        tasks = baseline_tasks(config, task_data)
        classes = check_models(baseline_models(config))
        variants = baseline_variants(config)
        with as_setting_errors():
            item_domains(config)
        check_finetuning(config, task_data, tasks, [])  # the kinds' settings, the task files, task_split, repeat
        return cls(run=RunSettings.from_config(config), tasks=tuple(tasks), models=tuple(classes),
                   sequential=frozenset(m for m, c in classes.items() if c.type == ModelType.SEQUENTIAL),
                   variants=tuple(variants))


def compile_baselines(settings: BaselineSettings) -> tuple:
    """``(plan, rows, groups)``: per task, model and variant, a sequential model's behaviour pre-training (its
    ``behaviours`` variant) and a run per seed; ``rows`` maps a run's unit to its ``(row label, task, seed)``,
    ``groups`` a row label to its units (its wall time is theirs)."""
    run = settings.run
    plan, rows, groups = Plan(), {}, {}
    for task in settings.tasks:
        for model in settings.models:
            for variant in settings.variants:
                label = f"{model} ({variant})"
                pretrained = None
                if variant == "behaviours" and model in settings.sequential:
                    pretrained = plan.add(baseline_pretrain_unit(model, run.dataset, run.units, task, run.seed))
                    groups.setdefault(label, []).append(pretrained)
                for seed in run.seeds:
                    unit = plan.add(baseline_unit(model, run.dataset, run.units, task, variant, seed, pretrained))
                    rows.setdefault(unit, []).append((label, task, seed))
                    groups.setdefault(label, []).append(unit)
    return plan, rows, groups


def run_recbole_baselines(config) -> dict:
    """Validate, then run every (task, model, variant, seed) and write the results table into a run folder of its
    own (``<checkpoint_dir>/RecBoleBaselines-<dataset>-...``). Returns what was done."""
    from recbole_adaptssr.experiment.validation import check_dataset, check_settings

    check_dataset(config)
    check_settings(config)
    task_data = TaskData(config["data_path"], config["dataset"])
    settings = BaselineSettings.from_config(config, task_data)
    checks = validate_data(config, task_data, list(settings.tasks))  # before the run folder
    plan, rows, groups = compile_baselines(settings)

    def notes():
        getLogger().info(f"models {list(settings.models)}, variants {list(settings.variants)}, tasks "
                         f"{list(settings.tasks)}, seeds {list(settings.run.seeds)}")

    def report(run_dir, outcome, writer) -> dict:
        return baseline_tables(settings, plan, rows, groups, run_dir, outcome)

    return run_plan(config, settings.run, plan, report, command="recbole_baselines",
                    prefix=f"RecBoleBaselines-{settings.run.dataset}", data=run_data(config, list(settings.tasks)),
                    checks=checks, notes=notes)


def baseline_tables(settings: BaselineSettings, plan, rows: dict, groups: dict, run_dir: str, outcome) -> dict:
    """The results table of the finished runs (partial when some failed), with what each row trained on; logged,
    then written as ``results.md/.json/.csv``."""
    logger = getLogger()
    runs = [run_result(payload, run_dir, label) for unit, payload in outcome.payloads(plan, BASELINE)
            for label, _, _ in rows[unit.id]]
    for result in runs:
        if "pretraining" in result.settings:
            result.settings["pretraining"]["checkpoint"] = os.path.join(run_dir,
                                                                        result.settings["pretraining"]["checkpoint"])
    timings = {label: round(sum(outcome.results[u].seconds for u in units if u in outcome.results), 1)
               for label, units in groups.items()}
    if not runs:
        logger.error("no baseline run finished: no results table")
        return {"runs": [], "results": [], "table": "", "files": None, "timings": timings}
    table_rows = summarize(runs, settings.run.report_split)
    table = markdown_table(table_rows)
    notes = settings_notes(runs, timings)
    logger.info(set_color("results", "yellow") + f" ({run_dir}):\n{table}\n{notes}")
    files = write_results(table_rows, runs, run_dir, notes=notes)
    logger.info(f"results written: {files['md']}, {files['json']}, {files['csv']}")
    return {"runs": runs, "results": table_rows, "table": table, "files": files, "timings": timings}


def settings_notes(runs: list, timings: dict | None = None) -> str:
    """Below the table: per row, what it trained on and the hyper-parameters it used (the first seed's)."""
    lines, seen = ["", "Settings per row (RecBole's defaults and model YAMLs unless set):", ""], set()
    for r in runs:
        if r.start_point in seen or not r.settings.get("hyper_parameters"):
            continue
        seen.add(r.start_point)
        s = r.settings
        what = ("task training split only" if s["variant"] == "none" else
                "pre-trained on the behaviour log, then the task's training split" if "pretraining" in s else
                "behaviour log + task training pairs")
        hyper = ", ".join(f"{k}={v}" for k, v in s["hyper_parameters"].items())
        line = f"* **{r.start_point}**: {what} ({s['training_rows']} training rows); {hyper}"
        if "pretraining" in s:
            p = s["pretraining"]
            stop = StopRecord.from_dict(p.get("stopping"))
            mark = DAGGER if stop.capped_while_improving() else ""
            line += (f"; pre-training{mark}: {p['sequences']} sequences, best epoch {p['best_epoch']} (stopped by "
                     f"{stop.stopped_by or '?'} after {stop.epochs_run} epochs), "
                     + ", ".join(f"{k}={v}" for k, v in p["settings"].items()))
        if timings and r.start_point in timings:
            line += f"; wall time {timings[r.start_point]} s (all seeds)"
        lines.append(line)
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------- merging
def merged_label(result: RunResult) -> str:
    """A row label that names its model: ``SASRec (behaviours)`` stays, AdaptSSR's ``ssr`` becomes ``AdaptSSR (ssr)``."""
    return result.start_point if result.start_point.startswith(result.model) else f"{result.model} ({result.start_point})"


#: what :func:`merge_results` reads, said in each of its errors
MERGED = ("the results.json of AdaptSSR pipeline runs and of RecBole baselines' runs (or the run folders holding "
          "them)")


def read_results(path: str) -> list:
    """The :class:`RunResult` list of a ``results.json`` (a pipeline's or the baselines' runner's) or its folder;
    a path that is neither is a :class:`~recbole_adaptssr.data.validation.DataError` saying what it is."""
    if os.path.isdir(path):
        folder, path = path, os.path.join(path, "results.json")
        if not os.path.isfile(path) and os.path.isfile(os.path.join(folder, "comparison.json")):
            raise DataError(folder, None, "a comparison run folder (comparison.json, written by --pretrain_methods; "
                                          f"its table is comparison.md), not a results.json; merging reads {MERGED}")
    if not os.path.isfile(path):
        raise DataError(path, None, f"no such file; merging reads {MERGED}")
    try:
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(path, None, f"not JSON ({error}); merging reads {MERGED}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("runs"), list):
        raise DataError(path, None, "not a results.json of recbole-adaptssr (no \"runs\" list)")
    try:
        return [RunResult(**run) for run in payload["runs"]]
    except TypeError as error:
        raise DataError(path, None, f"a run does not have RunResult's fields ({error})") from None


def merge_results(paths: list, split: str = "test") -> tuple:
    """Runs of several ``results.json`` in one table: every row labelled with its model (:func:`merged_label`);
    returns ``(rows, runs)`` for :func:`~recbole_adaptssr.experiment.results.write_results`. A (row, task, seed)
    present in two files is an error (the same run counted twice)."""
    runs, seen = [], {}
    for path in paths:
        for result in read_results(path):
            result.start_point = merged_label(result)
            key = (result.start_point, result.task, result.seed)
            if key in seen:
                raise DataError(path, None, f"{result.start_point} on {result.task}, seed {result.seed} is also in "
                                            f"{seen[key]}")
            seen[key] = path
            runs.append(result)
    return summarize(runs, split), runs
