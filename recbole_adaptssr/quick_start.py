"""Quick-start pipelines: RecBole's sequence (config -> seed -> logger -> dataset -> split -> model -> trainer)
with recbole-adaptssr's lookups, the AdaptSSR pipeline (MLM warm-up -> ranking pre-training -> fine-tuning on
every downstream task, repeated over seeds), and RecBole's models on the same downstream tasks."""

from __future__ import annotations

import os
import sys
from logging import getLogger

import recbole
from recbole.data import data_preparation
from recbole.data.dataloader import TrainDataLoader
from recbole.trainer import Trainer
from recbole.utils import init_logger, init_seed, set_color

from recbole_adaptssr.checkpoint import load_checkpoint
from recbole_adaptssr.config import Config
from recbole_adaptssr.data.task_dataset import read_task_manifest
from recbole_adaptssr.data.utils import create_dataset
from recbole_adaptssr.trainer import TaskTrainer
from recbole_adaptssr.results import markdown_table, summarize, write_results
from recbole_adaptssr.utils import get_model, get_trainer

EMBEDDED_DATASET = "ml-100k"
EMBEDDED_TASKS_NAME = "ml-100k-tasks"

# evaluation of each task kind (paper Table 1 / section 4.1); split and metrics through RecBole's evaluator
TASK_SETTINGS = {
    "multiclass": {"metrics": ["Acc"], "valid_metric": "Acc", "mode": "labeled"},
    "binary": {"metrics": ["AUC"], "valid_metric": "AUC", "mode": "labeled"},
    "cvr": {"metrics": ["AUC"], "valid_metric": "AUC", "mode": "labeled"},
    "recommendation": {"metrics": ["NDCG"], "topk": [10], "valid_metric": "NDCG@10", "mode": "full"},
}


def run(model="AdaptSSR", dataset=EMBEDDED_DATASET, config_file_list=None, config_dict=None, saved=True) -> dict:
    """Run ``model`` on ``dataset``: the AdaptSSR pipeline for our model; for any other model RecBole's own
    pipeline, or our downstream tasks when ``downstream_task(s)`` is set."""
    if model == "AdaptSSR":
        return run_adaptssr(dataset, config_file_list, config_dict)
    probe = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    if probe["downstream_task"] or probe["downstream_tasks"]:
        return run_model_on_tasks(model, dataset, config_file_list, config_dict)
    return run_recbole_model(model, dataset, config_file_list, config_dict, saved)


def _setup(model, dataset, config_file_list, config_dict):
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)
    return config, logger


def run_recbole_model(model, dataset, config_file_list=None, config_dict=None, saved=True) -> dict:
    """Train and test any RecBole model exactly as RecBole's ``run_recbole`` does (our shims applied)."""
    config, logger = _setup(model, dataset, config_file_list, config_dict)
    data = create_dataset(config)
    logger.info(data)
    train_data, valid_data, test_data = data_preparation(config, data)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(net)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    return {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
    }


# ---------------------------------------------------------------------------------------------- embedded default
def prepare_embedded_default(dataset, config_dict):
    """``ml-100k`` (bundled in RecBole's wheel) -> our task layout under ``data_path`` (once), so the pipeline
    pre-trains on the behaviour sequences and fine-tunes on gender, age, occupation and a held-out rec task."""
    if dataset != EMBEDDED_DATASET:
        return dataset, config_dict
    from dataset_converters.movielens import convert_movielens

    config_dict = dict(config_dict or {})
    root = config_dict.get("data_path") or _cmd_value("data_path") or "dataset"
    folder = os.path.join(root, EMBEDDED_TASKS_NAME)
    if not os.path.isfile(os.path.join(folder, f"{EMBEDDED_TASKS_NAME}.tasks.json")):
        source = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", EMBEDDED_DATASET)
        getLogger().info(f"converting RecBole's bundled {EMBEDDED_DATASET} into {folder}")
        convert_movielens(source, root, name=EMBEDDED_TASKS_NAME)
    config_dict["data_path"] = root
    return EMBEDDED_TASKS_NAME, config_dict


def _cmd_value(key):
    for arg in sys.argv[1:]:
        if arg.startswith(f"--{key}="):
            return arg.split("=", 1)[1]
    return None


# ---------------------------------------------------------------------------------------------- AdaptSSR pipeline
def run_adaptssr(dataset=EMBEDDED_DATASET, config_file_list=None, config_dict=None) -> dict:
    """MLM warm-up -> AdaptSSR pre-training (``pretrain_stages``) -> fine-tuning on every downstream task of the
    data set from each start point of ``finetune_from``, ``repeat`` seeds each; returns all results."""
    dataset, config_dict = prepare_embedded_default(dataset, config_dict)
    config, logger = _setup("AdaptSSR", dataset, config_file_list, config_dict)
    missing = [v for v in config["finetune_from"] if v in ("mlm", "ssr") and v not in config["pretrain_stages"]]
    if missing:  # fail before spending the pre-training time
        raise ValueError(f"finetune_from names stage(s) {missing}, but pretrain_stages is {config['pretrain_stages']}")
    pretrain = pretrain_user_model(config, logger) if config["pretrain_stages"] else {}
    tasks = _downstream_tasks(config, logger)
    if not tasks:
        return {"pretrain": pretrain, "results": [], "runs": []}
    checkpoints = {stage: summary["checkpoint"] for stage, summary in pretrain.items()}
    records = []
    for variant in config["finetune_from"]:
        state = _start_point(str(variant), checkpoints)
        label = str(variant) if state is None or str(variant) in checkpoints else os.path.basename(str(variant))
        for task, kind in tasks.items():
            records += finetune_repeated("AdaptSSR", dataset, task, kind, config, config_file_list, config_dict,
                                         state, label, logger)
    return _report("AdaptSSR", dataset, config, records, logger, pretrain=pretrain)


def pretrain_user_model(config, logger) -> dict:
    data = create_dataset(config)
    logger.info(data)
    train_set, valid_set = data.build()
    logger.info(f"pre-training split: {len(train_set)} train / {len(valid_set)} valid sequences")
    train_data = TrainDataLoader(config, train_set, None, shuffle=config["shuffle"])
    valid_data = TrainDataLoader(config, valid_set, None, shuffle=False)
    init_seed(config["seed"], config["reproducibility"])
    net = get_model("AdaptSSR")(config, train_set).to(config["device"])
    logger.info(net)
    trainer = get_trainer(config["MODEL_TYPE"], "AdaptSSR")(config, net)
    return trainer.pretrain(train_data, valid_data, data.item_vocabulary(), show_progress=config["show_progress"])


def _start_point(variant: str, checkpoints: dict):
    """``none`` -> None (end-to-end training); a stage name -> that stage's checkpoint (run_adaptssr checked it
    ran); else a checkpoint path."""
    if variant.lower() == "none":
        return None
    return load_checkpoint(checkpoints.get(variant, variant))


# ---------------------------------------------------------------------------------------------- downstream tasks
def run_model_on_tasks(model, dataset, config_file_list=None, config_dict=None) -> dict:
    """A RecBole model (e.g. SASRec) on our downstream tasks: same split, same metric as AdaptSSR."""
    dataset, config_dict = prepare_embedded_default(dataset, config_dict)
    config, logger = _setup(model, dataset, config_file_list, config_dict)
    tasks = _downstream_tasks(config, logger)
    records = []
    for task, kind in tasks.items():
        if kind != "recommendation":
            raise ValueError(
                f"{model} is a RecBole recommender: it can run the recommendation tasks, not {task!r} ({kind})"
            )
        records += finetune_repeated(model, dataset, task, kind, config, config_file_list, config_dict,
                                     None, model, logger)
    return _report(model, dataset, config, records, logger)


def _downstream_tasks(config, logger) -> dict:
    """Tasks to run: ``downstream_task`` or ``downstream_tasks`` (default all), with their kinds."""
    try:
        manifest = read_task_manifest(config["data_path"], config["dataset"])
    except FileNotFoundError:
        if config["downstream_task"] or config["downstream_tasks"]:
            raise
        logger.warning(f"{config['dataset']} has no tasks.json: pre-training only (see README, Data layout)")
        return {}
    names = [config["downstream_task"]] if config["downstream_task"] else (config["downstream_tasks"] or list(manifest))
    unknown = [t for t in names if t not in manifest]
    if unknown:
        raise ValueError(f"unknown downstream task(s) {unknown}; {config['dataset']} has {sorted(manifest)}")
    return {t: manifest[t]["kind"] for t in names}


def finetune_repeated(model, dataset, task, kind, config, config_file_list, config_dict, state, variant, logger):
    """``repeat`` runs (seeds seed, seed+1, ...) of one task from one start point; per-seed test records."""
    records = []
    for r in range(int(config["repeat"])):
        seed = int(config["seed"]) + r
        test_result = finetune_task(model, dataset, task, kind, seed, config, config_file_list, config_dict,
                                    state, variant, logger)
        for metric, value in test_result.items():
            records.append({"variant": variant, "task": task, "kind": kind, "metric": metric,
                            "value": float(value), "seed": seed})
    return records


def task_config_dict(task, kind, seed, config, config_dict, num_targets=0) -> dict:
    """Settings of one downstream run: the task's metric, a seeded random 6:2:2 split, no negative sampling."""
    settings = TASK_SETTINGS[kind]
    task_dict = dict(config_dict or {})
    task_dict.update({
        "downstream_task": task,
        "train_stage": "finetune",
        "seed": seed,
        "epochs": config["finetune_epochs"],
        "ITEM_ID_FIELD": "target_id",
        "LABEL_FIELD": "label",
        "load_col": None,
        "train_neg_sample_args": None,
        "metrics": settings["metrics"],
        "valid_metric": settings["valid_metric"],
        "eval_args": {"split": {"RS": list(config["task_split"])}, "order": "RO", "group_by": None,
                      "mode": settings["mode"]},
    })
    if "topk" in settings:
        task_dict["topk"] = settings["topk"]
    if kind == "recommendation":
        # RecBole's per-user full-sort loader counts eval_batch_size in (user x item) scores: keep
        # eval_batch_size users per batch (the loader would otherwise score one user at a time)
        task_dict["eval_batch_size"] = int(config["eval_batch_size"]) * (int(num_targets) + 1)
    return task_dict


def finetune_task(model, dataset, task, kind, seed, config, config_file_list, config_dict, state, variant, logger):
    """Train ``model`` on one task (from ``state`` if given, else from scratch) and return its test result,
    taken at the best validation epoch (RecBole's evaluate with load_best_model=True)."""
    num_targets = read_task_manifest(config["data_path"], dataset)[task].get("num_targets", 0)
    cfg = Config(model=model, dataset=dataset, config_file_list=config_file_list,
                 config_dict=task_config_dict(task, kind, seed, config, config_dict, num_targets))
    init_seed(seed, cfg["reproducibility"])
    vocabulary = state["item_vocabulary"] if state is not None else None
    data = create_dataset(cfg, vocabulary)
    logger.info(set_color(f"== {model} [{variant}] on {task} ({kind}), seed {seed}", "yellow") + f"\n{data}")
    train_data, valid_data, test_data = data_preparation(cfg, data)
    init_seed(seed, cfg["reproducibility"])
    net = get_model(model)(cfg, train_data._dataset).to(cfg["device"])
    if state is not None:
        net.load_pretrained(state["state_dict"])
    trainer_class = get_trainer(cfg["MODEL_TYPE"], model)
    if trainer_class is Trainer:  # RecBole's default trainer: rank only the task's target items
        trainer_class = TaskTrainer
    trainer = trainer_class(cfg, net)
    trainer.saved_model_file = os.path.join(
        cfg["checkpoint_dir"], f"{model}-{dataset}-{task}-{os.path.basename(str(variant))}-seed{seed}.pth"
    )
    trainer.fit(train_data, valid_data, saved=True, show_progress=cfg["show_progress"])
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=cfg["show_progress"])
    test_result = {metric: float(value) for metric, value in test_result.items()}
    logger.info(set_color(f"{task} [{variant}] seed {seed} test", "yellow") + f": {test_result}")
    return test_result


def _report(model, dataset, config, records, logger, **extra) -> dict:
    rows = summarize(records)
    table = markdown_table(rows)
    paths = write_results(rows, records, config["results_dir"], f"{model}-{dataset}")
    logger.info(set_color("results", "yellow") + f" ({paths['md']}):\n{table}")
    return {**extra, "results": rows, "runs": records, "table": table, "files": paths}
