"""``finetune(config, task, start_point, seed) -> RunResult``: one downstream run of AdaptSSR (or any model) on a task
of a converted data set: its settings, its data, then :func:`~recbole_adaptssr.experiment.train_test.train_and_test`."""

from __future__ import annotations

import os
from logging import getLogger

from recbole.data import data_preparation
from recbole.trainer import Trainer
from recbole.utils import ModelType, init_seed, set_color

from recbole_adaptssr import distributed
from recbole_adaptssr.checkpoint import load_checkpoint
from recbole_adaptssr.data.task_dataset import TaskData
from recbole_adaptssr.data.utils import create_dataset
from recbole_adaptssr.experiment.results import RunResult
from recbole_adaptssr.experiment.train_test import train_and_test
from recbole_adaptssr.reproducibility import pin_threads
from recbole_adaptssr.trainer import TaskTrainer
from recbole_adaptssr.utils import get_trainer

FINETUNE = "finetune"


def run_overrides(config, task: str, kind, seed: int, task_data: TaskData, run_dir: str) -> dict:
    """The settings a downstream run fixes, applied above the command line (see :meth:`Config.derive`):
    :func:`task_overrides` (task, seed, evaluation, split, where it writes) with the fine-tune stage's settings
    (``finetune_epochs`` -> ``epochs``, ``finetune_<key>`` -> ``<key>``)."""
    negatives = {"train_neg_sample_args": None} if without_sampled_negatives(config) else {}
    return task_overrides(config, task, kind, seed, task_data, run_dir, FINETUNE + "_", train_stage=FINETUNE,
                          **negatives)


def without_sampled_negatives(config) -> bool:
    """Whether runs of ``config``'s model on a task train without RecBole's sampled negatives: our models (labels,
    or a softmax over every target) and RecBole's sequential models with ``loss_type: CE`` (a softmax over the item
    table) unless ``train_neg_sample_args`` is set; RecBole's other recommenders (BPR, NeuMF, LightGCN, a sequential
    model with ``loss_type: BPR``) keep their sampling."""
    model_class = config.model_class
    if model_class.__module__.startswith("recbole_adaptssr."):
        return True
    return (model_class.type == ModelType.SEQUENTIAL and config["loss_type"] == "CE"
            and "train_neg_sample_args" not in (config.user_config_dict or {}))


def task_overrides(config, task: str, kind, seed: int, task_data: TaskData, run_dir: str, prefix: str,
                   exclude: tuple = (), **fixed) -> dict:
    """What every run on ``task`` fixes, whatever model it trains (AdaptSSR's fine-tuning, RecBole's baselines):
    the task, the seed, where it writes, the task kind's evaluation (``<kind>_metrics``, ...), the split
    (``task_split``) and the full-sort batch budget; then ``fixed``, then the role's own settings
    (:func:`prefixed_overrides` of ``prefix``)."""
    evaluation = kind.evaluation_settings(config)
    overrides = {
        "downstream_task": task,
        "seed": int(seed),
        "checkpoint_dir": run_dir,
        "ITEM_ID_FIELD": "target_id",
        "LABEL_FIELD": "label",
        "load_col": None,
        "metrics": evaluation["metrics"],
        "valid_metric": evaluation["valid_metric"],
        "eval_args": {"split": {"RS": list(config["task_split"])}, "order": "RO", "group_by": None,
                      "mode": evaluation["eval_mode"]},
        "task_split_by": evaluation["split_by"],
        **fixed,
    }
    if "topk" in evaluation:
        overrides["topk"] = evaluation["topk"]
    overrides.update(prefixed_overrides(config, prefix, exclude))
    if evaluation["eval_mode"] == "full":
        # RecBole's per-user full-sort loader counts eval_batch_size in (user x item) scores: keep
        # eval_batch_size users per batch (the loader would otherwise score one user at a time)
        num_targets = int(task_data.manifest[task].get("num_targets", 0))
        overrides["eval_batch_size"] = int(config["eval_batch_size"]) * (num_targets + 1)
    return overrides


def prefixed_overrides(config, prefix: str, exclude: tuple = ()) -> dict:
    """``<prefix><key>`` -> ``<key>`` for every set ``<prefix><key>`` whose ``<key>`` is a setting
    (``finetune_epochs`` -> ``epochs``), except keys starting with one of ``exclude``."""
    out = {}
    for key, value in config.final_config_dict.items():
        general = key[len(prefix):]
        if (key.startswith(prefix) and value is not None and general in config.final_config_dict
                and not general.startswith(tuple(exclude))):
            out[general] = value
    return out


def resolve_start_point(start_point):
    """``None``/``"none"`` -> None (end-to-end training); a checkpoint path -> its loaded state; a loaded state
    (dict) is returned as it is."""
    if start_point is None or (isinstance(start_point, str) and start_point.lower() == "none"):
        return None
    if isinstance(start_point, dict):
        return start_point
    return load_checkpoint(str(start_point))


def prepare_loaders(config, data):
    """RecBole's ``data_preparation``; under ``torch.distributed`` the training loader is sharded over the ranks
    (``train_batch_size / N`` samples per rank and step) while the evaluation loaders hold the whole split (their
    batches are divided among the ranks by :meth:`TaskTrainer.evaluate`, which computes exact metrics)."""
    with distributed.single_process_view(config):
        train_data, valid_data, test_data = data_preparation(config, data)
    if distributed.is_distributed():
        train_data = type(train_data)(config, train_data._dataset, train_data._sampler, shuffle=train_data.shuffle)
    return train_data, valid_data, test_data


def finetune(config, task: str, start_point=None, seed: int | None = None, *, task_data: TaskData | None = None,
             run_dir: str | None = None, label: str | None = None, epoch_callback=None) -> RunResult:
    """Train ``config["model"]`` on ``task`` from ``start_point`` (a pre-training checkpoint path or loaded state;
    ``None`` = from scratch) with ``seed`` (default ``config["seed"]``), keep the best validation epoch and test it.

    ``task_data`` (the manifest and behaviour log) is read from the data set when not given; a command passes one
    so its runs share it. The run writes its checkpoint into ``run_dir`` (default ``checkpoint_dir``).
    ``epoch_callback(epoch, valid_score)`` is called after every validation (RecBole's ``callback_fn``), e.g. to
    report to a hyper-parameter search.
    """
    task_data = task_data or TaskData(config["data_path"], config["dataset"])
    kind = task_data.kind(task)
    seed = int(config["seed"] if seed is None else seed)
    state = resolve_start_point(start_point)
    label = label or ("none" if state is None else os.path.basename(str(start_point)))
    run_dir = run_dir or config["checkpoint_dir"]
    cfg = config.derive(**run_overrides(config, task, kind, seed, task_data, run_dir))
    pin_threads(cfg)
    init_seed(seed, cfg["reproducibility"])
    data = create_dataset(cfg, state["item_vocabulary"] if state is not None else None, task_data)
    getLogger().info(set_color(f"== {cfg['model']} [{label}] on {task} ({kind.name}), seed {seed}", "yellow")
                     + f"\n{data}")
    trainer_class = get_trainer(cfg["MODEL_TYPE"], cfg["model"])
    if trainer_class is Trainer:  # RecBole's default trainer: rank only the task's target items
        trainer_class = TaskTrainer
    return train_and_test(
        cfg, prepare_loaders(cfg, data), task=task, kind=kind, label=label, seed=seed,
        checkpoint=os.path.join(run_dir, f"{cfg['model']}-{label}-{task}-seed{seed}.pth"),
        trainer_class=trainer_class, role=FINETUNE, epoch_callback=epoch_callback,
        weights=None if state is None else (lambda net: net.load_pretrained(state["state_dict"])),
        settings=lambda trainer: {"overridden": {k: list(v) for k, v in cfg.overridden_user_settings().items()}})
