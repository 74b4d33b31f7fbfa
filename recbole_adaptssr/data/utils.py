"""``create_dataset`` that looks in recbole-adaptssr first, then falls back to RecBole."""

from __future__ import annotations

import importlib

from recbole.data import create_dataset as recbole_create_dataset


def create_dataset(config, item_vocabulary=None, task_data=None):
    """Build the data set of a run: a downstream task's (``downstream_task`` set; behaviour ids from
    ``item_vocabulary`` when given; manifest and behaviour log from ``task_data`` when given, so a pipeline reads
    them once), else ``<model>Dataset`` from :mod:`recbole_adaptssr.data.dataset` if defined, else RecBole's."""
    if config["downstream_task"]:
        from recbole_adaptssr.data.task_dataset import AdaptSSRTaskDataset

        return AdaptSSRTaskDataset(config, item_vocabulary, task_data)
    module = importlib.import_module("recbole_adaptssr.data.dataset")
    dataset_class = getattr(module, config["model"] + "Dataset", None)
    if dataset_class is None:
        return recbole_create_dataset(config)
    return dataset_class(config)
