"""recbole_adaptssr/evaluation/full_sort.py: the array-built full-sort batches are RecBole's loader's batches, element
for element, and an evaluation gives the same metrics with them as without."""

from __future__ import annotations

import pytest
import torch
from recbole.data.interaction import Interaction
from recbole.utils import init_seed

from recbole_adaptssr.config import Config
from recbole_adaptssr.data.task_dataset import TaskData as SharedTaskData
from recbole_adaptssr.data.utils import create_dataset
from recbole_adaptssr.downstream import get_task_kind
from recbole_adaptssr.evaluation.full_sort import fast_full_sort
from recbole_adaptssr.experiment import finetune
from recbole_adaptssr.experiment.finetuning import prepare_loaders, run_overrides

from task_data import base_config, one_torch_thread, write_task_dataset


def loaders(data, tmp_path, **extra):
    base = Config(model="AdaptSSR", dataset=data.name, config_dict=base_config(data, tmp_path, **extra))
    shared = SharedTaskData(base["data_path"], data.name)
    cfg = base.derive(**run_overrides(base, "rec", get_task_kind("recommendation"), 2023, shared, str(tmp_path)))
    init_seed(2023, cfg["reproducibility"])
    return prepare_loaders(cfg, create_dataset(cfg, None, shared))


def same(a, b):
    if isinstance(a, Interaction):
        assert list(a.interaction) == list(b.interaction)
        for key in a.interaction:
            same(a[key], b[key])
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    else:
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)


@pytest.mark.parametrize("split_by,users_per_batch", [("row", 3), ("user", 64), ("row", 1000)])
def test_the_batches_are_recboles_element_for_element(tmp_path, split_by, users_per_batch):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("rec",), n_users=40, n_targets=16, rec_per_user=4)
    _, valid, test = loaders(data, tmp_path, recommendation_split_by=split_by, eval_batch_size=users_per_batch)
    for loader in (valid, test):
        fast = fast_full_sort(loader)
        assert fast is not loader and isinstance(fast, type(loader)) and len(fast) == len(loader)
        reference, batches = list(loader), list(fast)
        assert len(batches) == len(reference) > 0
        for a, b in zip(reference, batches):
            same(a, b)
    if split_by == "row":  # the case with something to mask: training targets are history at evaluation
        assert sum(len(batch[1][1]) for batch in reference) > 0


def test_other_loaders_and_the_switch_leave_the_loader_alone(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("rec",), n_users=20, n_targets=16)
    train, valid, _ = loaders(data, tmp_path)
    assert fast_full_sort(train) is train
    assert fast_full_sort(valid, enabled=False) is valid


def test_a_fine_tune_gives_the_same_results_with_and_without(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("rec",), n_users=40, n_targets=16, rec_per_user=4)
    results = []
    with one_torch_thread():
        for fast in (False, True):
            config = Config(model="AdaptSSR", dataset="tt", config_dict=base_config(
                data, tmp_path / str(fast), pretrain_stages=[], finetune_epochs=2, full_sort_fast_batches=fast,
                recommendation_split_by="row", eval_batch_size=5))
            run = finetune(config, "rec", None, 2023)
            results.append((run.valid, run.test, run.best_epoch))
    assert results[0] == results[1]
