"""``recbole_adaptssr.quick_start.load_data_and_model`` reads every checkpoint a run writes (RecBole's own function finds neither
our model nor our data) and gives back the run's data and a model that predicts on it: a fine-tune checkpoint's
model and test data reproduce the run's test metrics exactly."""

from __future__ import annotations

import pytest
import torch

from recbole_adaptssr.quick_start import load_data_and_model
from recbole_adaptssr.compat import plain
from recbole_adaptssr.quick_start import DERIVED_KEYS, run
from recbole_adaptssr.trainer import TaskTrainer
from task_data import base_config


def loaded_test_metrics(path):
    """The test metrics of the model ``path`` loads, by the evaluation every fine-tune run uses."""
    config, model, dataset, train_data, valid_data, test_data = load_data_and_model(path)
    result = TaskTrainer(config, model).evaluate(test_data, load_best_model=False)
    return {key: float(value) for key, value in result.items()}


def same_settings(config, path, *besides) -> None:
    """``config`` holds every setting of the run that wrote ``path`` (but the ones computed again, and ``besides``)."""
    saved = torch.load(path, weights_only=True)["config"]
    saved = dict(getattr(saved, "final_config_dict", saved))
    rebuilt = plain(config.final_config_dict)
    differing = [key for key in saved
                 if key not in (*DERIVED_KEYS, *besides) and plain(saved[key]) != rebuilt.get(key)]
    assert not differing, {key: (saved[key], rebuilt.get(key)) for key in differing}


@pytest.fixture(scope="module", params=["transformer", "GRU4Rec"])
def pipeline(tmp_path_factory, request):
    """A tiny AdaptSSR pipeline (the paper's user model, and GRU4Rec's): MLM then AdaptSSR, fine-tuned on a multiclass
    and a recommendation task from the ranking stage and from scratch."""
    from task_data import one_torch_thread, write_task_dataset

    root = tmp_path_factory.mktemp("load")
    data = write_task_dataset(root / "data", "tt", tasks=("cls", "rec"), n_users=40, n_targets=16)
    config = base_config(data, root, user_model=request.param, mlm_epochs=1, ssr_epochs=1, finetune_epochs=2,
                         finetune_from=["ssr", "none"])
    with one_torch_thread():  # a module fixture runs before conftest's per-test single thread
        return data, root, run("AdaptSSR", "tt", config_dict=config)


def test_a_fine_tune_checkpoint_reproduces_its_runs_test_metrics(pipeline):
    _, _, out = pipeline
    assert len(out["runs"]) == 4
    for result in out["runs"]:
        assert loaded_test_metrics(result.checkpoint) == result.test, result.checkpoint


def test_a_fine_tune_checkpoint_predicts_on_its_test_data(pipeline):
    _, _, out = pipeline
    result = next(r for r in out["runs"] if r.task == "rec" and r.start_point == "ssr")
    config, model, dataset, _, _, test_data = load_data_and_model(result.checkpoint)
    same_settings(config, result.checkpoint)
    assert config["downstream_task"] == "rec"
    model.eval()
    users = next(iter(test_data))[0]
    with torch.no_grad():
        scores = model.full_sort_predict(users.to(model.device)).view(len(users), -1)
    assert scores.shape[1] == dataset.num_targets() and torch.isfinite(scores).all()
    # the behaviour ids are the pre-training checkpoint's: the same rows of the embedding table as in training
    pretrained = torch.load(out["pretrain"]["ssr"].checkpoint, weights_only=True)["item_vocabulary"]
    assert dataset.item_vocabulary == pretrained


def test_a_pretraining_checkpoint_loads_its_stage_and_split(pipeline):
    _, _, out = pipeline
    for stage, result in out["pretrain"].items():
        config, model, dataset, train_data, valid_data, test_data = load_data_and_model(result.checkpoint)
        same_settings(config, result.checkpoint, "train_stage")  # the stage's settings record the first stage
        assert model.train_stage == stage and config["train_stage"] == stage and test_data is None
        saved = torch.load(result.checkpoint, weights_only=True)["state_dict"]
        assert all(torch.equal(value.cpu(), saved[key]) for key, value in model.state_dict().items())
        model.eval()
        batch = next(iter(valid_data)).to(model.device)
        with torch.no_grad():
            scores = model.full_sort_predict(batch).view(len(batch), -1)
            items = torch.full((len(batch),), 3, device=model.device)
            batch.update(type(batch)({model.ITEM_ID: items}))
            assert torch.allclose(model.predict(batch), scores[:, 3])
        assert scores.shape[1] == dataset.item_num


def test_recbole_models_checkpoints_on_our_tasks_reproduce_their_test_metrics(tmp_path):
    """RecBole's SASRec on the rec task, and the baselines runner's BPR trained on the behaviour log as well."""
    from task_data import write_task_dataset

    data = write_task_dataset(tmp_path / "data", "tt", tasks=("rec",), n_users=40, n_targets=16)
    sasrec = run("SASRec", "tt", config_dict=base_config(data, tmp_path, downstream_task="rec", finetune_epochs=1))
    baselines = run("AdaptSSR", "tt", config_dict=base_config(data, tmp_path, recbole_baselines=["BPR"],
                                                               baseline_pretrain=["behaviours"], baseline_epochs=2))
    for result in [*sasrec["runs"], *baselines["runs"]]:
        assert loaded_test_metrics(result.checkpoint) == result.test, result.checkpoint


def test_a_resume_checkpoint_is_refused_with_what_to_do(pipeline, tmp_path):
    from recbole_adaptssr.checkpoint import save_payload
    from recbole_adaptssr.trainer import RESUME_KIND

    path = save_payload({"format_version": 2, "kind": RESUME_KIND, "stage": "ssr"}, tmp_path / "ssr.last.pth")
    with pytest.raises(ValueError, match=r"resume checkpoint of pre-training stage 'ssr': continue its run with "
                                         r"--resume=RUN_FOLDER"):
        load_data_and_model(path)
