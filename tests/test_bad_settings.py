"""Every bad setting fails up front, before anything is pre-trained (no run folder is made), with a message naming
the key, the value and what is allowed, of a type the commands report as one ``error:`` line with exit status 2
(:func:`recbole_adaptssr.commands.input_errors`); a data set that is not on disk is never downloaded.

One table: (case, settings, command line, exception, message, and a reason when a case is a known gap: a strict
xfail, so a fix turns it into a failure until the mark is removed)."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from recbole_adaptssr.checkpoint import CheckpointError
from recbole_adaptssr.commands import input_errors
from recbole_adaptssr.quick_start import run
from task_data import base_config


def manifest(text):
    def write(data, tmp_path):
        (data.folder / "tt.tasks.json").write_text(text)
    return write


def yaml_file(text):
    def write(data, tmp_path):
        (tmp_path / "user.yaml").write_text(text)
        return [str(tmp_path / "user.yaml")]
    return write


def empty_checkpoint(data, tmp_path):
    (tmp_path / "broken.pth").write_bytes(b"")


def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)



# (id, settings, command line, prepare, exception, message regex, needs)
CASES = [
    ("max-length-0", {"MAX_ITEM_LIST_LENGTH": 0}, [], None, ValueError,
     r"MAX_ITEM_LIST_LENGTH must be an integer >= 1 \(the most recent behaviours kept per user\), got 0", None),
    ("learning-rate-abc", {}, ["--learning_rate=abc"], None, ValueError,
     r"learning_rate must be a number > 0, got 'abc'", None),
    ("repeat-0", {"repeat": 0}, [], None, ValueError, r"repeat must be an integer >= 1, got 0", None),
    ("manifest-without-tasks", {}, [], manifest("{}"), ValueError,
     r"data/tt/tt\.tasks\.json lists no task \(downstream_tasks is unset.*set downstream_tasks=\[\] to pre-train only",
     None),
    ("manifest-truncated", {}, [], manifest('{"tasks": {"cls": {"kind": "multi'), ValueError,
     r"data/tt/tt\.tasks\.json: not a task manifest \(Unterminated string", None),
    ("manifest-tasks-a-list", {}, [], manifest('{"tasks": []}'), ValueError, r"tt\.tasks\.json", None),
    ("mlm-epochs-negative", {"mlm_epochs": -1}, [], None, ValueError, r"mlm_epochs must be an integer >= 0, got -1",
     None),
    ("ssr-epochs-fraction", {"ssr_epochs": 1.5}, [], None, ValueError, r"ssr_epochs must be an integer >= 0, got 1.5",
     None),
    ("yaml-syntax-error", {}, [], yaml_file("mlm_epochs: 1\nhidden_size: [16\n"), ValueError, r"user\.yaml",
     None),
    ("yaml-not-a-mapping", {}, [], yaml_file("- a\n- b\n"), ValueError, r"user\.yaml", None),
    ("model-unknown", {"model": "Nope"}, [], None, ValueError,
     r"unknown model 'Nope': neither ours \(\['AdaptSSR'\]\) nor RecBole's; did you mean NPE\?", None),
    ("model-wrong-case", {"model": "SASrec"}, [], None, ValueError, r"did you mean SASRec", None),
    ("dataset-not-on-disk", {"dataset": "ml-1m"}, [], None, FileNotFoundError,
     r"data set 'ml-1m' not found: looked for .*data/ml-1m/ml-1m\.inter \(the folder does not exist\)\. Nothing is "
     r"downloaded: .*the embedded data set is --dataset=ml-100k", None),
    ("train-batch-1", {"train_batch_size": 1}, [], None, ValueError,
     r"train_batch_size must be an integer >= 2: pre-training stage 'ssr' compares the sequences of a batch", None),
    ("train-batch-0", {"train_batch_size": 0}, [], None, ValueError, r"train_batch_size must be an integer >= 1, got 0",
     None),
    ("hidden-not-multiple-of-heads", {"hidden_size": 15}, [], None, ValueError,
     r"hidden_size must be a multiple of n_heads .*got hidden_size=15 and n_heads=2", None),
    ("heads-0", {"n_heads": 0}, [], None, ValueError, r"n_heads must be an integer >= 1, got 0", None),
    ("dropout-above-1", {"hidden_dropout_prob": 1.5}, [], None, ValueError,
     r"hidden_dropout_prob must be a probability in \[0, 1\), got 1\.5", None),
    ("valid-ratio-1.5", {"pretrain_valid_ratio": 1.5}, [], None, ValueError,
     r"pretrain_valid_ratio must be a number in \(0, 1\), got 1\.5", None),
    ("finetune-epochs-0", {"finetune_epochs": 0}, [], None, ValueError,
     r"finetune_epochs must be an integer >= 1, got 0", None),
    ("finetune-learning-rate-0", {"finetune_learning_rate": 0}, [], None, ValueError,
     r"finetune_learning_rate must be a number > 0, got 0", None),
    ("eval-batch-0", {"eval_batch_size": 0}, [], None, ValueError, r"eval_batch_size must be an integer >= 1, got 0",
     None),
    ("device-cuda-without-cuda", {"device": "cuda"}, [], no_cuda, ValueError,
     r"device='cuda', but CUDA is not available on this machine \(torch.cuda.is_available\(\) is False\): set "
     r"device=cpu", None),
    ("device-unknown", {"device": "tpu"}, [], None, ValueError,
     r"device must be one of \['cpu', 'cuda', 'cuda:N'\], got 'tpu'", None),
    ("stopping-step-negative", {"stopping_step": -1}, [], None, ValueError,
     r"stopping_step must be an integer >= 1 \(epochs without improvement before stopping\), got -1", None),
    ("stage-min-epochs-negative", {"mlm_min_epochs": -1}, [], None, ValueError,
     r"mlm_min_epochs must be an integer >= 0, got -1", None),
    ("stage-stopping-step-0", {"mlm_stopping_step": 0}, [], None, ValueError,
     r"mlm_stopping_step must be an integer >= 1 .*got 0", None),
    ("task-split-not-summing-to-1", {"task_split": [0.6, 0.2, 0.3]}, [], None, ValueError,
     r"task_split must be three positive numbers summing to 1 \(train, valid, test\), got \[0\.6, 0\.2, 0\.3\]", None),
    ("seed-abc", {}, ["--seed=abc"], None, ValueError, r"seed must be an integer, got 'abc'", None),
    ("fixed-lambda-2", {"ssr_fixed_lambda": 2}, [], None, ValueError, r"ssr_fixed_lambda must be a number in \[0, 1\], "
     r"got 2", None),
    ("weight-decay-negative", {"weight_decay": -0.1}, [], None, ValueError,
     r"weight_decay must be a number >= 0, got -0\.1", None),
    ("report-split-unknown", {"report_split": "train"}, [], None, ValueError,
     r"report_split must be one of \['test', 'valid'\], got 'train'", None),
    ("start-point-empty-checkpoint", {"finetune_from": ["broken.pth"]}, [], empty_checkpoint, CheckpointError,
     r"checkpoint broken\.pth: the file is empty \(0 bytes\)", None),
    ("resume-nowhere", {"resume": "nowhere"}, [], None, ValueError,
     r"resume='nowhere': no such run folder \(looked at nowhere, .*saved/nowhere\)", None),
    ("ddp-negatives-unknown", {"ddp_negatives": "nearby"}, [], None, ValueError,
     r"ddp_negatives must be one of \['global', 'local'\], got 'nearby'", None),
    ("sequence-cache-not-a-switch", {"sequence_cache": "sometimes"}, [], None, ValueError,
     r"sequence_cache must be True or False, got 'sometimes'", None),
    ("stage-switch-not-a-switch", {"ssr_cuda_graphs": 2}, [], None, ValueError,
     r"ssr_cuda_graphs must be True or False, got 2", None),
]


@pytest.mark.parametrize("settings,argv,prepare,error,message", [
    pytest.param(*case[1:6], id=case[0], marks=[pytest.mark.xfail(strict=True, reason=case[6])] if case[6] else [])
    for case in CASES
])
def test_a_bad_setting_fails_before_anything_runs(task_data, tmp_path, monkeypatch, settings, argv, prepare, error,
                                                  message):
    def no_network(*args, **kwargs):
        raise AssertionError("RecBole tried to download a data set")

    import recbole.data.dataset.dataset as recbole_dataset

    monkeypatch.setattr(recbole_dataset, "download_url", no_network)
    monkeypatch.setattr(recbole_dataset, "decide_download", no_network)
    monkeypatch.setattr(sys, "argv", ["run", *argv])
    monkeypatch.chdir(tmp_path)
    settings = dict(settings)
    model, dataset = settings.pop("model", "AdaptSSR"), settings.pop("dataset", "tt")
    files = None
    if prepare is no_cuda:
        no_cuda(monkeypatch)
    elif prepare is not None:
        files = prepare(task_data, tmp_path)
    config_dict = base_config(task_data, tmp_path, **{"mlm_epochs": 1, "ssr_epochs": 1, **settings})
    with pytest.raises(error, match=message) as raised:
        run(model, dataset, config_file_list=files, config_dict=config_dict)
    assert isinstance(raised.value, input_errors()), type(raised.value)  # the commands print it, exit status 2
    assert not (tmp_path / "saved").exists()  # nothing pre-trained: no run folder


def test_the_table_is_long_enough_and_every_case_is_distinct():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids)) and len([c for c in CASES if c[6] is None]) >= 25


def test_a_good_configuration_still_runs(task_data, tmp_path):
    """The checks do not reject what the defaults and the tests use."""
    out = run("AdaptSSR", "tt", config_dict=base_config(task_data, tmp_path, mlm_epochs=1, ssr_epochs=1,
                                                        finetune_epochs=1, downstream_tasks=["cls"], device="cpu"))
    assert len(out["runs"]) == 1
    assert json.loads((tmp_path / "saved" / out["run_dir"].split("/")[-1] / "run.json").read_text())["status"] == \
        "complete"
