"""``device``, ``use_gpu`` and ``gpu_id`` are honoured as written (RecBole 1.2.1 takes CUDA whenever it is available
and sets ``CUDA_VISIBLE_DEVICES=gpu_id`` for the whole process): the requested device is the one a run trains on."""

from __future__ import annotations

import os

import pytest
import torch

from recbole_adaptssr.config import Config, resolve_device
from recbole_adaptssr.experiment import finetune
from recbole_adaptssr.trainer import TaskTrainer
from task_data import base_config


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine that says it has two CUDA devices (nothing is ever placed on them here)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.mark.parametrize("device,use_gpu,gpu_id,given,environment,expected", [
    ("cpu", True, "0", (), None, "cpu"),  # RecBole would pick cuda here
    (None, True, "0", (), None, "cuda:0"),
    (None, False, "0", ("use_gpu",), None, "cpu"),
    (None, True, "", ("gpu_id",), None, "cpu"),
    ("cuda:1", True, "0", (), None, "cuda:1"),
    ("cuda", True, "1", ("gpu_id",), None, "cuda:1"),  # device: cuda is the GPU of gpu_id
    (None, True, "1", ("gpu_id",), None, "cuda:1"),
    (None, True, "3", ("gpu_id",), "2,3", "cuda:1"),  # gpu_id names a GPU; under CUDA_VISIBLE_DEVICES its index
    (None, True, "0", (), "3", "cuda:0"),  # the default gpu_id: the first GPU this process sees
    (None, True, "1,0", ("gpu_id",), None, "cuda:1"),  # a list (RecBole's several processes): its first GPU
])
def test_the_device_is_the_one_the_settings_name(two_gpus, monkeypatch, device, use_gpu, gpu_id, given, environment,
                                                 expected):
    if environment is not None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", environment)
    resolved = resolve_device(device, use_gpu, gpu_id, use_gpu_given="use_gpu" in given,
                              gpu_id_given="gpu_id" in given)
    assert resolved == torch.device(expected)


@pytest.mark.parametrize("device,use_gpu,gpu_id,given,environment,message", [
    ("cuda:2", True, "0", (), None, r"device='cuda:2', but this machine has 2 CUDA device\(s\)"),
    ("gpu", True, "0", (), None, r"device must be one of \['cpu', 'cuda', 'cuda:N'\], got 'gpu'"),
    ("cuda", False, "0", ("use_gpu",), None, r"device='cuda' and use_gpu=False contradict each other"),
    (None, True, "0", ("gpu_id",), "3", r"gpu_id='0', but this process sees only the GPUs CUDA_VISIBLE_DEVICES='3'"),
    (None, True, "x", ("gpu_id",), None, r"gpu_id must be a GPU number .*got 'x'"),
])
def test_a_device_that_is_not_there_is_an_error(two_gpus, monkeypatch, device, use_gpu, gpu_id, given, environment,
                                                message):
    if environment is not None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", environment)
    with pytest.raises(ValueError, match=message):
        resolve_device(device, use_gpu, gpu_id, use_gpu_given="use_gpu" in given, gpu_id_given="gpu_id" in given)


def test_config_leaves_cuda_visible_devices_alone(two_gpus, task_data, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    config = Config(model="AdaptSSR", dataset="tt", config_dict=base_config(task_data, tmp_path, device="cuda:1",
                                                                             use_gpu=True))
    assert config["device"] == torch.device("cuda", 1) and config["use_gpu"] is True
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1,0"  # RecBole's Config would have set it to gpu_id ("0")


def trained_devices(config_dict, task_data, monkeypatch) -> set:
    """The devices of the parameters and batches of every training step of one tiny fine-tune run."""
    seen = set()
    step = TaskTrainer._train_step

    def recording_step(self, interaction, loss_func, scaler):
        seen.update({p.device for p in self.model.parameters()} | {interaction[self.model.ITEM_SEQ].device})
        return step(self, interaction, loss_func, scaler)

    monkeypatch.setattr(TaskTrainer, "_train_step", recording_step)
    config = Config(model="AdaptSSR", dataset="tt", config_dict=config_dict)
    finetune(config, "cls", None, 2023)
    return seen


def test_device_cpu_trains_on_the_cpu_where_cuda_is_available(two_gpus, task_data, tmp_path, monkeypatch):
    settings = base_config(task_data, tmp_path, device="cpu", finetune_epochs=1)
    del settings["use_gpu"]  # RecBole's default use_gpu: True, which made RecBole pick cuda
    config = Config(model="AdaptSSR", dataset="tt", config_dict=settings)
    assert config["device"] == torch.device("cpu") and config["use_gpu"] is False
    assert trained_devices(settings, task_data, monkeypatch) == {torch.device("cpu")}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_cuda_n_trains_on_that_gpu(task_data, tmp_path, monkeypatch):
    index = torch.cuda.device_count() - 1  # the last GPU: not the one RecBole would take
    settings = base_config(task_data, tmp_path, device=f"cuda:{index}", use_gpu=True, finetune_epochs=1)
    assert trained_devices(settings, task_data, monkeypatch) == {torch.device("cuda", index)}
