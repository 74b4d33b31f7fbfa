"""``pretrain(config) -> {stage: StageResult}``: the pretext tasks of ``pretrain_stages``, in order, on one model."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from logging import getLogger

from recbole.data.dataloader import TrainDataLoader
from recbole.utils import init_seed

from recbole_adaptssr.data.utils import create_dataset
from recbole_adaptssr.utils import get_model, get_trainer


@dataclass
class StageResult:
    """One pre-training stage: its kept checkpoint, best epoch and validation statistics."""

    stage: str
    checkpoint: str
    best_epoch: int
    valid_metric: str
    valid: dict
    initial: dict
    history: list = field(default_factory=list)


def pretrain(config, run_dir: str | None = None, epoch_callback=None) -> dict:
    """Pre-train ``config["model"]`` with every stage of ``pretrain_stages`` in order (one model, one split of
    the user sequences); write each stage's best epoch to ``<run_dir>/pretrain/<stage>.pth`` (default run_dir:
    ``checkpoint_dir``) and return ``{stage: StageResult}``. ``epoch_callback(stage, epoch, valid_result)`` is
    called after every epoch's validation."""
    stages = [str(s) for s in config["pretrain_stages"] or []]
    if not stages:
        return {}
    logger = getLogger()
    if config["train_stage"] != stages[0]:
        config = config.derive(train_stage=stages[0])
    folder = os.path.join(run_dir or config["checkpoint_dir"], "pretrain")
    os.makedirs(folder, exist_ok=True)
    data = create_dataset(config)
    logger.info(data)
    train_set, valid_set = data.build()
    logger.info(f"pre-training split: {len(train_set)} train / {len(valid_set)} valid sequences")
    train_data = TrainDataLoader(config, train_set, None, shuffle=config["shuffle"])
    valid_data = TrainDataLoader(config, valid_set, None, shuffle=False)
    init_seed(config["seed"], config["reproducibility"])
    net = get_model(config["model"])(config, train_set).to(config["device"])
    logger.info(net)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    results = {}
    for stage in stages:
        summary = trainer.train_stage(stage, train_data, valid_data, data.item_vocabulary(),
                                      os.path.join(folder, f"{stage}.pth"), show_progress=config["show_progress"],
                                      epoch_callback=epoch_callback)
        results[stage] = StageResult(stage=stage, checkpoint=summary["checkpoint"], best_epoch=summary["best_epoch"],
                                     valid_metric=summary["valid_metric"], valid=summary["best_valid_result"],
                                     initial=summary["initial_valid_result"], history=summary["history"])
    return results
