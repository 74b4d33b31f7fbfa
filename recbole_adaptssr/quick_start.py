"""Quick start, as RecBole's: ``run(model, dataset, config_file_list, config_dict)``.

* A model with pretext tasks (AdaptSSR), or any model given ``downstream_task(s)``: the experiment pipeline of
  :mod:`recbole_adaptssr.experiment` (pre-training, then the (start point x task x seed) grid, results table).
  ``--dataset=ml-100k`` is then the embedded default: RecBole's bundled ml-100k in our task layout.
* Any other model: RecBole's own sequence (config -> seed -> logger -> dataset -> split -> model -> trainer.fit ->
  trainer.evaluate) with our lookups and shims, in a run folder of its own.
"""

from __future__ import annotations

import sys
from logging import getLogger

from recbole_adaptssr import setup


def run(model="AdaptSSR", dataset="ml-100k", config_file_list=None, config_dict=None, saved=True) -> dict:
    """Run ``model`` on ``dataset`` (see the module docstring); return what was done."""
    setup()
    from recbole_adaptssr.config import Config
    from recbole_adaptssr.data.embedded import prepare_embedded_default
    from recbole_adaptssr.experiment import run_pipeline

    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    pipeline = getattr(config.model_class, "uses_pretext_tasks", False) or bool(
        config["downstream_task"] or config["downstream_tasks"] or config["recbole_baselines"])
    if not pipeline:
        return run_recbole_model(config, saved)
    name, root = prepare_embedded_default(config.dataset, config.user_config_dict.get("data_path"))
    if name != config.dataset:
        config = Config(model=model, dataset=name, config_file_list=config_file_list,
                        config_dict={**(config_dict or {}), "data_path": root})
    from recbole_adaptssr import distributed
    from recbole_adaptssr.experiment.recbole_baselines import run_recbole_baselines, wants_baselines

    if config["pretrain_methods"] or wants_baselines(config):
        if distributed.is_distributed():  # docs/distributed.md, "Not distributed"
            what = "pretrain_methods (the comparison)" if config["pretrain_methods"] else "recbole_baselines"
            raise ValueError(f"{what} runs in one process; under torch.distributed run each method's pipeline "
                             "on its own (--model=AdaptSSR --pretrain_stages=...), or launch without torchrun/--nproc")
        if config["pretrain_methods"]:  # the paper's comparison of pre-training methods (docs/comparison.md)
            from recbole_adaptssr.experiment.comparison import run_comparison

            return run_comparison(config)
        return run_recbole_baselines(config)  # RecBole's recommenders on our tasks (docs/recbole-baselines.md)
    return run_pipeline(config)


def run_recbole_model(config, saved=True) -> dict:
    """Train and test a RecBole model exactly as RecBole's ``run_recbole`` does, in its own run folder."""
    from recbole.data import data_preparation
    from recbole.utils import init_seed, set_color

    from recbole_adaptssr.data.utils import create_dataset
    from recbole_adaptssr.execution.logs import init_run_logger
    from recbole_adaptssr.execution.run_folder import COMPLETE, open_run_folder, user_settings
    from recbole_adaptssr.experiment.lifecycle import run_data
    from recbole_adaptssr.experiment.validation import check_dataset, check_settings
    from recbole_adaptssr.utils import get_model, get_trainer

    check_dataset(config)  # RecBole would download a known name whose folder is missing
    check_settings(config)
    identity = {"command": "recbole", "model": str(config["model"]), "dataset": str(config["dataset"])}
    with open_run_folder(str(config["checkpoint_dir"]), f"{config['model']}-{config['dataset']}", identity,
                         user_settings(config), data=run_data(config, [])) as run:
        run_dir = run.path
        config = config.derive(checkpoint_dir=run_dir)
        init_seed(config["seed"], config["reproducibility"])
        init_run_logger(run_dir, config["state"])
        logger = getLogger()
        logger.info(sys.argv)
        logger.info(config)
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
        run.finish(COMPLETE)
    return {
        "run_dir": run_dir,
        "checkpoint": trainer.saved_model_file if saved else None,
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
    }


# settings RecBole derives when it reads the others (the model's types, the metrics' kind, the device, the ranks,
# the evaluation's sampling) or rewrites (data_path joins the data set's name): computed again, never given back.
# The device is this machine's choice (device, use_gpu and gpu_id of the run that wrote the checkpoint are dropped).
DERIVED_KEYS = ("model", "dataset", "data_path", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "valid_metric_bigger",
                "device", "use_gpu", "gpu_id", "single_spec", "local_rank", "world_size", "nproc",
                "valid_neg_sample_args", "test_neg_sample_args")


def load_data_and_model(model_file):
    """RecBole's ``recbole.quick_start.load_data_and_model`` for every checkpoint recbole-adaptssr writes: the
    pre-training stage checkpoints (``pretrain/<stage>.pth``, any pretext task and user model), the fine-tune
    checkpoints (AdaptSSR's, and RecBole's models run on our tasks, as baselines or not) and RecBole's models run
    through our entry point with RecBole's protocol. RecBole's own function cannot read ours: it finds models only
    in ``recbole.model`` (not AdaptSSR) and builds data only with RecBole's data sets (not our task files, the
    pre-training vocabulary or the baselines' shared items).

    Returns ``(config, model, dataset, train_data, valid_data, test_data)`` as RecBole's does: the settings of the
    run that wrote the checkpoint, its model with the checkpoint's weights on this machine's device (the GPU if
    there is one), and the same data and split the run had. A pre-training stage has no test split (``test_data``
    is None); its model scores behaviour items (:meth:`~recbole_adaptssr.model.adaptssr.AdaptSSR.full_sort_predict`).
    On a task whose behaviours share the targets' item table (RecBole's models), ids from
    ``dataset.candidate_item_num`` on are behaviour-only items, never ranked by our evaluation."""
    from recbole.utils import init_seed

    from recbole_adaptssr.checkpoint import verify_checkpoint
    from recbole_adaptssr.trainer import RESUME_KIND
    from recbole_adaptssr.utils import get_model

    setup()
    payload = verify_checkpoint(model_file)
    if payload.get("kind") == RESUME_KIND:
        raise ValueError(f"{model_file} is the resume checkpoint of pre-training stage {payload.get('stage')!r}: "
                         "continue its run with --resume=RUN_FOLDER; the stage checkpoint <stage>.pth loads once the "
                         "stage has finished")
    saved = payload.get("config")
    settings = dict(getattr(saved, "final_config_dict", saved) or {})
    if "model" not in settings or "state_dict" not in payload:
        raise ValueError(f"{model_file} is not a model checkpoint of recbole-adaptssr or RecBole (no settings or "
                         "weights)")
    stage = payload.get("stage") if "format_version" in payload else None
    if settings.get("baseline_variant") and not settings.get("downstream_task"):
        raise ValueError(f"{model_file} is a baseline's next-item training on the behaviour log (the start of its "
                         "task runs): load the checkpoint of one of its task runs")
    config = checkpoint_config(settings, stage)
    init_seed(config["seed"], config["reproducibility"])
    dataset, train_data, valid_data, test_data = checkpoint_data(config, payload, stage, model_file)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    model.load_state_dict(payload["state_dict"])
    model.load_other_parameter(payload.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data


def checkpoint_config(settings: dict, stage: str | None = None):
    """The Config of the run whose ``final_config_dict`` is ``settings`` (a stage checkpoint's: that ``stage``), on
    this machine: every setting as the run had it, above anything else (:data:`DERIVED_KEYS` computed again)."""
    import os

    from recbole_adaptssr.config import Config

    values = {key: value for key, value in settings.items() if key not in DERIVED_KEYS}
    sampling = values.get("train_neg_sample_args")
    if isinstance(sampling, dict) and sampling.get("distribution") == "none":
        values["train_neg_sample_args"] = None  # RecBole's spelled-out "no sampling" is not a valid input
    values["data_path"] = os.path.dirname(os.path.normpath(str(settings["data_path"])))
    if stage is not None:
        values.update(train_stage=stage, downstream_task=None)
    return Config(model=settings["model"], dataset=settings["dataset"], overrides=values)


def checkpoint_data(config, payload: dict, stage: str | None, model_file) -> tuple:
    """``(dataset, train_data, valid_data, test_data)`` of the run that wrote ``payload``, built as it built them."""
    from recbole.data import data_preparation
    from recbole.data.dataloader import TrainDataLoader

    from recbole_adaptssr.compat import decode_other_parameter
    from recbole_adaptssr.data.utils import create_dataset
    from recbole_adaptssr.model.adaptssr import split_tokens

    if stage is not None:  # pre-training: the user sequences' split, as pretrain() makes it
        dataset = create_dataset(config)
        if list(payload.get("item_vocabulary") or {}) != dataset.item_vocabulary():
            raise ValueError(f"{model_file}: the items of {config['dataset']} in {config['data_path']} are not those "
                             "the checkpoint was trained on (its item vocabulary differs)")
        train_set, valid_set = dataset.build()
        return (dataset, TrainDataLoader(config, train_set, None, shuffle=config["shuffle"]),
                TrainDataLoader(config, valid_set, None, shuffle=False), None)
    if config["baseline_variant"]:
        return baseline_data(config)
    tokens = decode_other_parameter(payload.get("other_parameter") or {}).get("behaviour_tokens")
    dataset = create_dataset(config, split_tokens(tokens) if tokens else None)
    return (dataset, *data_preparation(config, dataset))


def baseline_data(config) -> tuple:
    """The data of a baseline's task run (:mod:`~recbole_adaptssr.experiment.recbole_baselines`): the task data set in
    the baselines' shared item ids; a general recommender's ``behaviours`` variant trained on the behaviour log too."""
    from recbole.data import data_preparation
    from recbole.utils import ModelType

    from recbole_adaptssr.data.baseline_dataset import BaselineTaskDataset, behaviour_interactions, with_behaviours
    from recbole_adaptssr.experiment.recbole_baselines import _train_loader

    dataset = BaselineTaskDataset(config, None)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    if config["baseline_variant"] == "behaviours" and config.model_class.type != ModelType.SEQUENTIAL:
        train_data = _train_loader(config, with_behaviours(train_data._dataset, behaviour_interactions(dataset)[0]))
    return dataset, train_data, valid_data, test_data
