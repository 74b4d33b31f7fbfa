"""Quick-start pipelines: RecBole's sequence (config -> seed -> logger -> dataset -> split -> model ->
trainer) with recbole-adaptssr's lookups, and the AdaptSSR pre-training pipeline."""

from __future__ import annotations

import sys
from logging import getLogger

from recbole.data import data_preparation
from recbole.data.dataloader import TrainDataLoader
from recbole.utils import init_logger, init_seed, set_color

from recbole_adaptssr.config import Config
from recbole_adaptssr.data.utils import create_dataset
from recbole_adaptssr.utils import get_model, get_trainer


def run(model="AdaptSSR", dataset="ml-100k", config_file_list=None, config_dict=None, saved=True) -> dict:
    """Run ``model`` on ``dataset``: AdaptSSR's pipeline for our model, RecBole's for any other."""
    if model == "AdaptSSR":
        return run_adaptssr(dataset, config_file_list, config_dict)
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


def run_adaptssr(dataset="ml-100k", config_file_list=None, config_dict=None) -> dict:
    """AdaptSSR pre-training: MLM warm-up then self-supervised ranking (``pretrain_stages``)."""
    config, logger = _setup("AdaptSSR", dataset, config_file_list, config_dict)
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
    pretrain = trainer.pretrain(
        train_data, valid_data, data.item_vocabulary(), show_progress=config["show_progress"]
    )
    return {"pretrain": pretrain}
