"""Settings are never silently ignored and a command line never runs code (issue 22, items 3 and 6): an unknown key
(command line, YAML, config_dict, methods file) is an error with a did-you-mean naming where it was set; a value of
the wrong shape and contradicting keys are errors; command-line values are literals by the key's declared type;
names that become paths are plain; duplicate list entries are refused; two start points of one file name get
distinct row labels. Every refusal leaves no run folder."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from recbole_adaptssr.config import Config
from recbole_adaptssr.data.task_dataset import TaskData
from recbole_adaptssr.experiment.validation import selected_tasks
from recbole_adaptssr.names import distinct_labels
from recbole_adaptssr.quick_start import run
from recbole_adaptssr.setting_keys import SettingError
from task_data import base_config, one_torch_thread, unit_files, write_task_dataset


@pytest.fixture
def data(tmp_path):
    return write_task_dataset(tmp_path / "data", "tt", tasks=("cls", "bin"), n_users=16)


def yaml_file(text):
    def write(tmp_path):
        (tmp_path / "user.yaml").write_text(text)
        return [str(tmp_path / "user.yaml")]
    return write


def methods_file(text):
    def write(tmp_path):
        (tmp_path / "methods.yaml").write_text(text)
        return {"pretrain_methods_file": str(tmp_path / "methods.yaml")}
    return write


# (id, settings, command line, files, exception, message regex)
CASES = [
    ("typo-on-the-command-line", {}, ["--ssr_lamda_mode=fixed"], None, SettingError,
     r"unknown setting\(s\): 'ssr_lamda_mode' \(the command line; did you mean ssr_lambda_mode\?\)"),
    ("typo-in-a-yaml-file", {}, [], yaml_file("mlm_epoch: 3\n"), SettingError,
     r"'mlm_epoch' \(.*user\.yaml; did you mean mlm_epochs\b"),
    ("typo-in-config-dict", {"finetune_epoch": 2}, [], None, SettingError,
     r"'finetune_epoch' \(config_dict; did you mean finetune_epochs\?\)"),
    ("mapping-where-a-list-is-expected", {}, [], yaml_file("downstream_tasks: {cls: 1}\n"), SettingError,
     r"downstream_tasks must be a list \(e\.g\. \[a, b\]\), got a mapping \{'cls': 1\} \(.*user\.yaml\)"),
    ("list-where-a-number-is-expected", {"learning_rate": [0.1]}, [], None, SettingError,
     r"learning_rate must be a number, got a list \[0\.1\] \(config_dict\)"),
    ("conflicting-task-keys", {"downstream_task": "cls", "downstream_tasks": ["bin"]}, [], None, SettingError,
     r"downstream_task and downstream_tasks are both set \(downstream_task='cls', downstream_tasks=\['bin'\]\)"),
    ("dataset-with-dots", {"dataset": "../victim"}, [], None, ValueError,
     r"data set '\.\./victim' \(dataset\) is not a plain name: a name cannot hold a path separator"),
    ("task-with-dots", {"downstream_tasks": ["../cls"]}, [], None, ValueError,
     r"downstream task '\.\./cls' is not a plain name"),
    ("method-with-dots", {"pretrain_methods": ["../m"]}, [], methods_file("methods:\n  ../m: {stages: [mlm]}\n"),
     ValueError, r"method name '\.\./m' may only use letters, digits"),
    ("typo-in-a-methods-file", {"pretrain_methods": ["mine"]}, [],
     methods_file("methods:\n  mine: {stages: [mlm], settings: {mlm_mask_ration: 0.2}}\n"), ValueError,
     r"'mlm_mask_ration' \(method 'mine' of .*methods\.yaml; did you mean mlm_mask_ratio\b"),
    ("finetune-from-twice", {"finetune_from": ["ssr", "ssr"]}, [], None, ValueError,
     r"finetune_from lists \['ssr'\] more than once"),
    ("downstream-tasks-twice", {}, ["--downstream_tasks=[cls,cls]"], None, ValueError,
     r"downstream_tasks lists \['cls'\] more than once: \['cls', 'cls'\]"),
    ("pretrain-methods-twice", {"pretrain_methods": ["mlm", "mlm"]}, [], None, ValueError,
     r"pretrain_methods lists \['mlm'\] more than once"),
    ("comparison-and-baselines", {"pretrain_methods": ["mlm"], "recbole_baselines": ["Pop"]}, [], None, SettingError,
     r"pretrain_methods and recbole_baselines are both set"),
]


@pytest.mark.parametrize("settings,argv,files,error,message", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_a_setting_that_would_be_ignored_is_refused_before_anything_runs(data, tmp_path, monkeypatch, settings, argv,
                                                                         files, error, message):
    monkeypatch.setattr(sys, "argv", ["run", *argv])
    settings = dict(settings)
    dataset = settings.pop("dataset", "tt")
    extra = files(tmp_path) if files is not None else None
    config_files = extra if isinstance(extra, list) else None
    settings.update(extra if isinstance(extra, dict) else {})
    with pytest.raises(error, match=message):
        run("AdaptSSR", dataset, config_file_list=config_files,
            config_dict=base_config(data, tmp_path, mlm_epochs=1, ssr_epochs=1, **settings))
    assert not (tmp_path / "saved").exists()  # no run folder: nothing trained or written
    assert not (tmp_path / "victim").exists() and not (tmp_path / ".adaptssr-cache").exists()


def test_an_eval_attempt_on_the_command_line_is_an_error_and_leaves_no_trace(data, tmp_path, monkeypatch):
    trace = tmp_path / "evaluated"
    monkeypatch.setattr(sys, "argv", ["run", f"--seed=__import__('os').system('touch {trace}') or 7"])
    with pytest.raises(ValueError, match=r"seed must be an integer, got \"__import__\('os'\)\.system"):
        run("AdaptSSR", "tt", config_dict=base_config(data, tmp_path))  # the command line wins over the dict
    assert not trace.exists() and not (tmp_path / "saved").exists()


def test_command_line_values_mean_the_obvious_thing(data, tmp_path, monkeypatch):
    """A list of bare words is a list of words (``bin`` is not Python's builtin), a number given for a path is
    that folder, a number for a number is a number, and a list of paths stays a list of paths."""
    folder = tmp_path / "2024"
    shutil.copytree(data.folder, folder / "tt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["run", "--downstream_tasks=[bin]", "--data_path=2024", "--repeat=2",
                                      "--finetune_from=[a/ssr.pth,b/ssr.pth]", "--ssr_cuda_graphs=False",
                                      "--task_split=0.6,0.2,0.2"])
    config = Config(model="AdaptSSR", dataset="tt", config_dict={"state": "ERROR"})
    assert config["downstream_tasks"] == ["bin"] and config["data_path"] == "2024/tt" and config["repeat"] == 2
    assert config["finetune_from"] == ["a/ssr.pth", "b/ssr.pth"] and config["ssr_cuda_graphs"] is False
    assert config["task_split"] == [0.6, 0.2, 0.2]
    assert selected_tasks(config, TaskData(config["data_path"], "tt")) == ["bin"]


def test_every_legitimate_kind_of_key_is_accepted(data, tmp_path, monkeypatch):
    """RecBole's keys, ours, <stage>_, <kind>_, <backbone>_, finetune_, baseline_ and baseline_pretrain_ forms,
    a stage's trainer key without a general default, and the entry points' own flags."""
    monkeypatch.setattr(sys, "argv", ["run", "--nproc=1", "--world_size=-1", "--ip=localhost", "--port=29500",
                                      "--offset=0", "--config_files=", "--ssr_min_epochs=1"])
    settings = {"mlm_learning_rate": 0.002, "finetune_learning_rate": 0.001, "binary_valid_metric": "AUC",
                "recommendation_topk": [5, 10], "baseline_epochs": 3, "baseline_pretrain_epochs": 2,
                "sasrec_n_layers": 1, "gru4rec_hidden_size": 32, "clip_grad_norm": {"max_norm": 5},
                "neg_sampling": None, "ssr_augmentations": ["mask"],
                "duplicate_rows": "drop", "allow_data_change": False, "min_vocabulary_overlap": 0.3}
    config = Config(model="AdaptSSR", dataset="tt", config_dict={"data_path": str(data.root), **settings})
    assert {k: config[k] for k in settings} == settings and config["ssr_min_epochs"] == 1


def test_two_start_points_of_one_file_name_get_distinct_row_labels(data, tmp_path):
    assert distinct_labels(["x/a/ssr.pth", "x/b/ssr.pth", "c/mlm.pth"]) == ["a-ssr.pth", "b-ssr.pth", "mlm.pth"]
    assert distinct_labels(["a/ssr", "b/ssr"], taken=["ssr"]) == ["a-ssr", "b-ssr"]
    settings = base_config(data, tmp_path, pretrain_stages=["mlm"], mlm_epochs=1, downstream_tasks=[],
                           pretrain_valid_ratio=0.25)
    with one_torch_thread():
        checkpoint = run("AdaptSSR", "tt", config_dict=settings)["pretrain"]["mlm"].checkpoint
        for folder in ("a", "b"):
            (tmp_path / folder).mkdir()
            shutil.copy(checkpoint, tmp_path / folder / "mlm.pth")
        out = run("AdaptSSR", "tt", config_dict={**settings, "pretrain_stages": [], "downstream_tasks": ["cls"],
                                                 "finetune_epochs": 1, "finetune_from": [
                                                     str(tmp_path / "a" / "mlm.pth"), str(tmp_path / "b" / "mlm.pth")]})
    assert [r["start_point"] for r in out["results"]] == ["a-mlm.pth", "b-mlm.pth"]
    assert "| a-mlm.pth |" in out["table"] and "| b-mlm.pth |" in out["table"]
    assert sorted(p.name for p in unit_files(out["run_dir"], "finetune")) == [
        "AdaptSSR-mlm.pth-cls-seed2023.pth", "AdaptSSR-mlm.pth-cls-seed2023.pth"]  # two units: one file each
