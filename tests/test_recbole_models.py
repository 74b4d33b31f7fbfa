"""RecBole's own models through our entry point keep their contract: models that keep tensors, numpy arrays or
sparse matrices in ``other_parameter()`` evaluate with ``load_best_model=True``, and RecBole's
``load_data_and_model`` reads the checkpoint we wrote (weights-only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recbole_adaptssr.quick_start import run

# RecBole's bundled ml-100k, RecBole's own protocol; one epoch, small embeddings
FAST = {"epochs": 1, "embedding_size": 16, "train_batch_size": 4096, "eval_batch_size": 409600, "device": "cpu",
        "use_gpu": False, "show_progress": False, "state": "ERROR", "checkpoint_dir": "saved"}


@pytest.mark.parametrize("model,kept", [("Pop", "item_cnt"), ("LightGCN", "restore_item_e"),
                                        ("EASE", "item_similarity")])
def test_models_with_other_parameters_evaluate_the_best_checkpoint(model, kept):
    out = run(model, "ml-100k", config_dict=FAST)
    assert 0.0 < out["test_result"]["ndcg@10"] <= 1.0
    state = torch.load(out["checkpoint"], weights_only=True)
    assert Path(out["checkpoint"]).parent == Path(out["run_dir"])  # the run's own folder
    assert kept in state["other_parameter"]


def test_load_data_and_model_reads_our_checkpoint():
    from recbole.quick_start import load_data_and_model

    out = run("Pop", "ml-100k", config_dict=FAST)
    config, model, dataset, train_data, valid_data, test_data = load_data_and_model(out["checkpoint"])
    assert config["model"] == "Pop" and type(model).__name__ == "Pop"
    saved = torch.load(out["checkpoint"], weights_only=True)
    assert torch.equal(model.item_cnt, saved["other_parameter"]["item_cnt"])  # a tensor, not its repr
    assert model.item_cnt.sum() > 0 and len(test_data.dataset) > 0
    from recbole_adaptssr.quick_start import load_data_and_model as ours

    config, model, dataset, train_data, valid_data, test_data = ours(out["checkpoint"])  # the same, through ours
    assert type(model).__name__ == "Pop" and torch.equal(model.item_cnt, saved["other_parameter"]["item_cnt"])
    assert len(test_data.dataset) > 0 and config["epochs"] == 1


def test_a_recbole_model_on_a_missing_data_set_fails_without_downloading(tmp_path):
    """RecBole downloads a known name (ml-1m) whose folder is missing; through our entry point it is an error."""
    with pytest.raises(FileNotFoundError, match=r"data set 'ml-1m' not found: .*Nothing is downloaded"):
        run("BPR", "ml-1m", config_dict={**FAST, "data_path": str(tmp_path / "data")})
    assert not (tmp_path / "data").exists() and not (tmp_path / "saved").exists()


@pytest.mark.parametrize("model,sampling", [("BPR", "uniform"), ("NeuMF", "uniform"), ("SASRec", "none")])
def test_a_recbole_model_runs_on_our_rec_task_with_its_own_negative_sampling(task_data, tmp_path, model, sampling):
    """General recommenders train on sampled negatives (BPR's pairs, NeuMF's 0/1 labels); a sequential model with
    loss_type CE on a softmax over the item table, without them."""
    from task_data import base_config

    out = run(model, "tt", config_dict=base_config(task_data, tmp_path, downstream_task="rec", finetune_epochs=1))
    (result,) = out["runs"]
    assert result.model == model and 0.0 < result.test["ndcg@10"] <= 1.0
    state = torch.load(result.checkpoint, weights_only=True)
    assert state["config"]["train_neg_sample_args"]["distribution"] == sampling


@pytest.mark.parametrize("model,reason", [
    ("FM", "it is a context-aware recommender"), ("KGAT", "it is a knowledge-based recommender"),
    ("S3Rec", "it needs its own pre-training stage"), ("SASRecCPR", "its full-sort prediction reads the batch's"),
    ("RaCT", "it trains in stages of its own"),
])
def test_a_recbole_model_that_cannot_run_on_our_tasks_is_refused_up_front(task_data, tmp_path, model, reason):
    from task_data import base_config

    with pytest.raises(ValueError, match=rf"{model} cannot run on our tasks: {reason}.*--recbole_baselines"):
        run(model, "tt", config_dict=base_config(task_data, tmp_path, downstream_task="rec"))
    assert not (tmp_path / "saved").exists()  # refused before a run folder was made
