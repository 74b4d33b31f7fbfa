"""Every run says how it stopped, end to end (issue 21): fine-tune runs in results.json and the table's dagger, the
ranking stage's default stopping on a planted data set, step budgets, the like-for-like options of the comparison,
and the thread count that pins the numbers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from recbole_adaptssr.config import Config
from recbole_adaptssr.experiment.comparison import methods_table, resolve_method, with_warmup
from recbole_adaptssr.experiment.pretraining import UNCAPPED_EPOCHS, stage_rule
from recbole_adaptssr.pretext.base import StageSettings
from recbole_adaptssr.pretext.cl4srec import contrastive_form
from recbole_adaptssr.quick_start import run
from task_data import base_config, write_task_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_task_dataset(tmp_path_factory.mktemp("data"), "tt", tasks=("cls", "rec"), n_users=40, n_targets=16)


def finetune_only(data, tmp_path, **extra):
    return base_config(data, tmp_path, **{"pretrain_stages": [], "finetune_from": ["none"],
                                          "downstream_tasks": ["cls"], "repeat": 2, **extra})


def test_one_epoch_of_fine_tuning_is_marked_and_recorded(data, tmp_path):
    out = run("AdaptSSR", "tt", config_dict=finetune_only(data, tmp_path, finetune_epochs=1))
    saved = json.loads(Path(out["files"]["json"]).read_text(encoding="utf-8"))
    assert [(r["stopped_by"], r["still_improving"], r["epochs_run"], r["best_epoch"]) for r in saved["runs"]] == [
        ("epoch_cap", True, 1, 0)] * 2
    assert all(r["steps_run"] == r["epochs_run"] * 2 for r in saved["runs"])  # 24 training users, batches of 16
    cell = out["table"].splitlines()[2]
    assert cell.startswith("| none | ") and cell.endswith("† |")
    assert "† 1 cell(s) hold a fine-tune run that stopped on a cap" in Path(out["files"]["md"]).read_text("utf-8")
    csv_lines = Path(out["files"]["csv"]).read_text(encoding="utf-8").splitlines()
    assert csv_lines[0].endswith("still_improving_runs,stopped_by,epochs_run,steps_run,best_epochs")
    assert csv_lines[1].endswith(",2,epoch_cap epoch_cap,1 1,2 2,0 0")


def test_enough_epochs_stop_by_patience(data, tmp_path):
    out = run("AdaptSSR", "tt", config_dict=finetune_only(data, tmp_path, finetune_epochs=200,
                                                          finetune_stopping_step=2))
    for r in out["runs"]:
        assert (r.stopped_by, r.still_improving) == ("patience", False)
        assert r.epochs_run == r.best_epoch + 3 < 200 and r.steps_run == 2 * r.epochs_run
    assert "†" not in out["table"]


def test_a_step_cap_ends_fine_tuning_mid_epoch(data, tmp_path):
    out = run("AdaptSSR", "tt", config_dict=finetune_only(data, tmp_path, finetune_epochs=50, finetune_max_steps=5,
                                                          repeat=1))
    (r,) = out["runs"]
    assert (r.stopped_by, r.steps_run, r.epochs_run) == ("step_cap", 5, 3)  # 2 + 2 + 1 steps


def test_stopping_steps_make_small_data_patient(data, tmp_path):
    """Two steps an epoch: 2 epochs of patience would stop 2 epochs after the best, 10 steps need 5."""
    out = run("AdaptSSR", "tt", config_dict=finetune_only(data, tmp_path, finetune_epochs=200, repeat=1,
                                                          finetune_stopping_step=2, finetune_stopping_steps=10))
    (r,) = out["runs"]
    assert r.stopped_by == "patience" and r.epochs_run - 1 - r.best_epoch == 5


# ------------------------------------------------------------------------------------------- the ranking stage
def test_the_default_ranking_stage_stops_by_patience_with_a_moving_lambda(tmp_path):
    """A small planted data set (latent topics) and a short MLM warm-up, then the ranking stage with every stopping
    default (its signal hard_acc_explicit, patience 10 epochs and 100 steps, cap 200 epochs): it learns (its best
    epoch is not the first), ends by patience well before the cap, keeps its best epoch by that signal, and its mean
    lambda moves while it trains."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from generate_synthetic import generate

    generate(tmp_path / "data", "syn", users=400, items=300, targets=50, topics=8, min_len=10, max_len=40,
             tasks="age", seed=3)
    out = run("AdaptSSR", "syn", config_dict={
        "data_path": str(tmp_path / "data"), "checkpoint_dir": str(tmp_path / "saved"), "device": "cpu",
        "show_progress": False, "state": "WARNING", "torch_threads": 1, "MAX_ITEM_LIST_LENGTH": 40,
        "hidden_size": 64, "inner_size": 128, "n_layers": 1, "train_batch_size": 32, "learning_rate": 0.001,
        "seed": 2023, "mlm_epochs": 10, "mlm_learning_rate": 0.005, "downstream_tasks": []})
    ssr = out["pretrain"]["ssr"]
    assert ssr.valid_metric == "hard_acc_explicit" and ssr.stopped_by == "patience" and not ssr.still_improving
    assert 0 < ssr.best_epoch and ssr.epochs_run < 200 and ssr.epochs_run - 1 - ssr.best_epoch >= 10
    scores = [h["hard_acc_explicit"] for h in ssr.history]
    assert ssr.best_epoch == scores.index(max(scores)) and ssr.valid["hard_acc_explicit"] == max(scores)
    assert max(scores) > ssr.initial["hard_acc_explicit"] + 0.1  # the ranking stage learned its constraint
    lambdas = [h["lambda"] for h in ssr.history]
    assert max(lambdas) - min(lambdas) > 0.1, lambdas
    # the diagnostics of every epoch: lambda's quartiles and, per operator pair, both hard constraints
    assert all(h["lambda_q25"] <= h["lambda_q50"] <= h["lambda_q75"] for h in ssr.history)
    pairs = ssr.history[-1]["by_pair"]
    assert set(pairs) <= {"mask/mask", "mask/crop", "mask/reorder", "crop/crop", "crop/reorder", "reorder/reorder"}
    assert sum(p["n"] for p in pairs.values()) == 40  # every validation sequence in one pair


# ------------------------------------------------------------------------------------------- pre-training budget
def test_a_step_budget_is_shared_by_the_stages_and_spent_by_the_last(data, tmp_path):
    config = Config(model="AdaptSSR", dataset="tt", config_dict=base_config(
        data, tmp_path, pretrain_budget_steps=100, mlm_epochs=30, mlm_max_steps=40))
    mlm = stage_rule(config, "mlm", 0, 2)
    assert (mlm.max_steps, mlm.patience, mlm.epochs) == (40, True, 30)  # its own cap is below the budget
    ssr = stage_rule(config, "ssr", 1, 2, used_steps=36)
    assert (ssr.max_steps, ssr.patience, ssr.epochs) == (64, False, UNCAPPED_EPOCHS)
    plain = Config(model="AdaptSSR", dataset="tt", config_dict=base_config(data, tmp_path))
    assert stage_rule(plain, "ssr", 1, 2, used_steps=36).max_steps is None


def test_the_budget_runs_every_method_to_the_same_number_of_steps(data, tmp_path):
    out = run("AdaptSSR", "tt", config_dict=base_config(
        data, tmp_path, pretrain_stages=["mlm", "ssr"], mlm_epochs=2, pretrain_budget_steps=7, downstream_tasks=[],
        pretrain_valid_ratio=0.2))
    mlm, ssr = out["pretrain"]["mlm"], out["pretrain"]["ssr"]
    assert (mlm.stopped_by, mlm.steps_run) == ("epoch_cap", 4)  # 32 training sequences: 2 steps an epoch
    assert (ssr.stopped_by, ssr.steps_run, ssr.epochs_run) == ("step_cap", 3, 2)


# ------------------------------------------------------------------------------------------- like for like
def test_baseline_warmup_puts_mlm_before_every_method_that_has_none():
    table = methods_table()
    cl4srec = with_warmup(resolve_method("cl4srec", table), "mlm")
    assert (cl4srec.stages, cl4srec.finetune_from) == (["mlm", "cl4srec"], "cl4srec")
    for name in ("none", "mlm", "adaptssr", "adaptssr_no_mlm"):  # no stages, already warmed up, refuses
        assert with_warmup(resolve_method(name, table), "mlm").stages == resolve_method(name, table).stages
    assert with_warmup(resolve_method("cl4srec", table), "none").stages == ["cl4srec"]
    with pytest.raises(ValueError, match="baseline_warmup must be one of \\['none', 'mlm'\\], got 'bert'"):
        with_warmup(resolve_method("cl4srec", table), "bert")


def test_the_comparison_warms_a_baseline_up_and_fine_tunes_from_its_own_stage(data, tmp_path):
    out = run("AdaptSSR", "tt", config_dict=base_config(
        data, tmp_path, pretrain_methods=["cl4srec"], baseline_warmup="mlm", mlm_epochs=1, cl4srec_epochs=1,
        finetune_epochs=1, downstream_tasks=["cls"], pretrain_valid_ratio=0.2, similarity_users=0))
    (run_record,) = out["pretrain"]["cl4srec"]
    assert list(run_record["stages"]) == ["mlm", "cl4srec"]
    assert out["runs"][0].start_point == "cl4srec"
    saved = json.loads(Path(out["files"]["json"]).read_text(encoding="utf-8"))
    assert saved["like_for_like"]["warm-up"] == "MLM before every method" and saved["similarity"] == {}


@pytest.mark.parametrize("stage,own", [("cl4srec", ("dot", 1.0)), ("clue", ("cos", 1.0)), ("idicl", ("cos", 0.2))])
def test_one_contrastive_form_replaces_each_tasks_own(data, tmp_path, stage, own):
    config = Config(model="AdaptSSR", dataset="tt", config_dict=base_config(data, tmp_path, pretrain_stages=[stage]))
    assert contrastive_form(StageSettings(config, stage)) == own
    shared = Config(model="AdaptSSR", dataset="tt", config_dict=base_config(
        data, tmp_path, pretrain_stages=[stage, "ssr"], contrastive_similarity="cos", contrastive_temperature=0.5))
    assert contrastive_form(StageSettings(shared, stage)) == ("cos", 0.5)
    ssr = StageSettings(shared, "ssr")
    assert contrastive_form(ssr, "infonce_similarity", "infonce_temperature") == ("cos", 0.5)


# ------------------------------------------------------------------------------------------- threads
def test_pinned_threads_give_the_same_weights_whatever_the_process_had(tmp_path, monkeypatch):
    """torch_threads pins the intra-op threads of every run: the process's own count (1 or 2 here) no longer
    changes a single weight. Without the pin the counts give different weights on this torch (else: skip)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import write_tiny_dataset

    write_tiny_dataset(tmp_path / "d", n_users=160, n_items=120, max_len=40)
    settings = {"data_path": str(tmp_path / "d"), "device": "cpu", "show_progress": False, "state": "ERROR",
                "MAX_ITEM_LIST_LENGTH": 40, "hidden_size": 64, "inner_size": 128, "mlm_epochs": 2, "ssr_epochs": 2,
                "downstream_tasks": [], "seed": 1}

    def weights(process_threads, pinned):
        torch.set_num_threads(process_threads)
        out = run("AdaptSSR", "tiny", config_dict={**settings, "torch_threads": pinned,
                                                   "checkpoint_dir": str(tmp_path / f"s{process_threads}{pinned}")})
        return torch.load(out["pretrain"]["ssr"].checkpoint, weights_only=True)["state_dict"]

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    if same(weights(1, 0), weights(2, 0)):
        pytest.skip("this torch gives the same weights on 1 and 2 threads here: nothing to pin")
    assert same(weights(1, 1), weights(2, 1))
    assert torch.get_num_threads() == 1


def test_a_launchers_thread_count_is_left_as_it_is(monkeypatch):
    """torchrun, --nproc, worker processes and Ray set OMP_NUM_THREADS: the process keeps the count they chose."""
    from recbole_adaptssr.reproducibility import pin_threads

    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    pin_threads({"torch_threads": 2})
    assert torch.get_num_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    pin_threads({"torch_threads": 2})
    assert torch.get_num_threads() == 2


# ------------------------------------------------------------------------------------------- bad settings
@pytest.mark.parametrize("settings,message", [
    ({"ssr_stopping_steps": -1}, r"ssr_stopping_steps must be an integer >= 0, got -1"),
    ({"finetune_max_seconds": 0}, r"finetune_max_seconds must be a number > 0, got 0"),
    ({"pretrain_budget_steps": 1.5}, r"pretrain_budget_steps must be an integer >= 1 .*got 1.5"),
    ({"torch_threads": -1}, r"torch_threads must be an integer >= 0 .*got -1"),
    ({"pretrain_stages": ["cl4srec"], "contrastive_similarity": "l2"},
     r"contrastive_similarity must be one of \['dot', 'cos'\], got 'l2'"),
    ({"pretrain_methods": ["none", "cl4srec"], "baseline_warmup": "bert"},
     r"baseline_warmup must be one of \['none', 'mlm'\], got 'bert'"),
])
def test_bad_stopping_and_comparison_settings_fail_before_anything_runs(data, tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        run("AdaptSSR", "tt", config_dict=base_config(data, tmp_path, **settings))
    assert not (tmp_path / "saved").exists()
