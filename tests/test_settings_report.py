"""The startup settings dump (recbole_adaptssr.settings_report): the settings a run uses, per pre-training stage and
per task kind, yours marked, and none of RecBole's defaults that no run of the pipeline reads."""

from __future__ import annotations

import re
import sys

import pytest

from recbole_adaptssr.config import Config
from recbole_adaptssr.data.task_dataset import TaskData as Tasks
from recbole_adaptssr.settings_report import settings_report
from task_data import write_task_dataset

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_task_dataset(tmp_path_factory.mktemp("data"), "tt", tasks=("cls", "bin", "rec"), n_users=24)


def sections(text: str) -> dict:
    """``{section title: [its lines]}`` of a report, colours removed."""
    out, title = {}, None
    for line in ANSI.sub("", text).splitlines():
        if line.endswith(":") and " = " not in line:
            title = line[:-1]
            out[title] = []
        elif line and title is not None:
            out[title].append(line)
    return out


def report(data, tmp_path, argv=(), model="AdaptSSR", tasks=("cls", "bin", "rec"), **settings):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["run", *argv])
        config = Config(model=model, dataset="tt", config_dict={"data_path": str(data.root),
                                                                "checkpoint_dir": str(tmp_path), **settings})
    return sections(settings_report(config, Tasks(config["data_path"], "tt"), list(tasks)))


def test_each_stage_shows_the_values_it_uses_and_recboles_unused_defaults_are_not_printed(data, tmp_path):
    text = report(data, tmp_path, argv=["--ssr_epochs=3"])
    assert list(text) == ["Your settings", "Run", "User model (transformer)", "Pre-training stage mlm",
                          "Pre-training stage ssr", "Fine-tuning (every downstream run)",
                          "Task kind multiclass (cls)", "Task kind binary (bin)", "Task kind recommendation (rec)"]
    mlm, ssr = text["Pre-training stage mlm"], text["Pre-training stage ssr"]
    # the MLM warm-up's own learning rate, dropout and mask ratio; the ranking stage's general ones (AdaptSSR.yaml)
    assert "learning_rate = 0.0005  <- mlm_learning_rate" in mlm and "learning_rate = 0.0002" in ssr
    assert "hidden_dropout_prob = 0.5  <- mlm_hidden_dropout_prob" in mlm and "hidden_dropout_prob = 0.1" in ssr
    assert "mask_ratio = 0.3  <- mlm_mask_ratio" in mlm and "mask_ratio = 0.6" in ssr  # the ranking's augmentation
    assert "lambda_mode = adaptive  <- ssr_lambda_mode" in ssr and not [x for x in mlm if x.startswith("lambda")]
    assert "epochs = 3  <- ssr_epochs (yours)" in ssr and "epochs = 200  <- mlm_epochs" in mlm
    assert "ssr_epochs = 3" in text["Your settings"]
    assert "epochs = 200  <- finetune_epochs" in text["Fine-tuning (every downstream run)"]
    # each task kind's evaluation, where it comes from
    assert text["Task kind multiclass (cls)"] == ["metrics = ['Acc']  <- multiclass_metrics",
                                                  "valid_metric = Acc  <- multiclass_valid_metric",
                                                  "eval_mode = labeled  <- multiclass_eval_mode",
                                                  "split_by = row  <- multiclass_split_by"]
    assert "topk = [10]  <- recommendation_topk" in text["Task kind recommendation (rec)"]
    # RecBole's defaults that no run reads: its metrics, topk, valid_metric, eval_args, a bare epochs
    lines = [line for body in text.values() for line in body]
    unused = ("metrics = ['Recall'", "valid_metric = MRR", "eval_args", "topk = [10]")
    assert not [x for x in lines if x.startswith(unused) and "<-" not in x]
    assert not [x for x in lines if x.startswith("epochs = ") and "<-" not in x]


def test_a_recbole_model_on_a_task_shows_its_own_settings(data, tmp_path):
    text = report(data, tmp_path, model="SASRec", tasks=("rec",), downstream_task="rec", finetune_learning_rate=0.01)
    assert list(text) == ["Your settings", "Run", "Model SASRec (RecBole's)", "Fine-tuning (every downstream run)",
                          "Task kind recommendation (rec)"]
    assert "loss_type = CE" in text["Model SASRec (RecBole's)"]
    fine = text["Fine-tuning (every downstream run)"]
    assert "learning_rate = 0.01  <- finetune_learning_rate (yours)" in fine
    assert not [x for x in fine if x.startswith("head_")]  # AdaptSSR's head: not SASRec's
