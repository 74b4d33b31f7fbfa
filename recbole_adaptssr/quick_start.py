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

    from recbole_adaptssr.compat import plain
    from recbole_adaptssr.data.utils import create_dataset
    from recbole_adaptssr.experiment.pipeline import run_data, write_data_record
    from recbole_adaptssr.experiment.run_dir import new_run_dir
    from recbole_adaptssr.experiment.run_logger import init_run_logger
    from recbole_adaptssr.utils import get_model, get_trainer

    from recbole_adaptssr.experiment.validation import check_dataset, check_settings

    check_dataset(config)  # RecBole would download a known name whose folder is missing
    check_settings(config)
    run_dir = new_run_dir(config["checkpoint_dir"], config["model"], config["dataset"], plain(config.user_config_dict))
    write_data_record(run_dir, run_data(config, []))
    config = config.derive(checkpoint_dir=run_dir)
    init_seed(config["seed"], config["reproducibility"])
    init_run_logger(config, run_dir)
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
    return {
        "run_dir": run_dir,
        "checkpoint": trainer.saved_model_file if saved else None,
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
    }
