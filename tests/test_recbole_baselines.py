"""RecBole's own recommenders as baselines on our recommendation tasks (recbole_adaptssr.experiment.recbole_baselines,
docs/recbole-baselines.md).

* Information flows: on a planted data set where a user's next behaviours are its targets, a sequential model
  pre-trained on the behaviour log beats the same model trained on the task only.
* Same evaluation as AdaptSSR: the evaluator's inputs (users, positives, the finite = ranked (user, item) cells of
  the score matrix, i.e. candidates minus masks) of Pop, BPR and LightGCN equal those of AdaptSSR's run on the same
  split, with a row split (so that there is something to mask) and behaviours that are also target items.
* What the baselines train on: the behaviour log (every user) + the task's training pairs; nothing of a task pair
  in the pre-training; separate item domains never share ids; the merge of results files; settings errors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from recbole.data import data_preparation
from recbole.utils import init_seed

from recbole_adaptssr.config import Config
from recbole_adaptssr.data.baseline_dataset import BaselineTaskDataset, BehaviourSequenceDataset, task_pair_keys
from recbole_adaptssr.data.task_dataset import TaskData as SharedTaskData
from recbole_adaptssr.data.utils import create_dataset
from recbole_adaptssr.downstream import get_task_kind
from recbole_adaptssr.experiment import recbole_baselines as rb
from recbole_adaptssr.experiment.finetuning import run_overrides
from recbole_adaptssr.experiment.results import RunResult, write_results
from recbole_adaptssr.model.adaptssr import AdaptSSR
from recbole_adaptssr.quick_start import run
from recbole_adaptssr.trainer import TaskTrainer
from task_data import base_config, write_atomic, write_task_dataset

REC = get_task_kind("recommendation")


def baseline_config(data, tmp_path, model="AdaptSSR", **extra):
    config_dict = base_config(data, tmp_path, embedding_size=16, baseline_epochs=1, baseline_pretrain_epochs=1,
                              metric_decimal_place=12, **extra)
    return Config(model=model, dataset=data.name, config_dict=config_dict)


# ------------------------------------------------------------------------------------------- information flows
def write_chain_dataset(root, name="chain", n_users=60, n_items=60, min_len=6, max_len=10, seed=0):
    """Items i1..iN on a cycle; a user's behaviours are a run of consecutive items and its single target is the
    item after the run (held out of the log, as the converters hold targets out). Every user's log teaches the
    successor of many items; the task's ~36 training users alone see at most 36 of the 60 successors."""
    rng = np.random.RandomState(seed)
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    inter, rec = [], []
    for u in range(1, n_users + 1):
        start, length = rng.randint(n_items), rng.randint(min_len, max_len + 1)
        items = [f"i{(start + k) % n_items + 1}" for k in range(length + 1)]
        inter += [(f"u{u}", item, 1000 + k) for k, item in enumerate(items[:-1])]
        rec.append((f"u{u}", items[-1]))
    write_atomic(folder / f"{name}.inter", ["user_id:token", "item_id:token", "timestamp:float"], inter)
    write_atomic(folder / f"{name}.rec", ["user_id:token", "target_id:token"], rec)
    manifest = {"rec": {"kind": "recommendation", "metric": "NDCG@10", "file": f"{name}.rec",
                        "num_samples": len(rec), "num_targets": len({t for _, t in rec})}}
    (folder / f"{name}.tasks.json").write_text(json.dumps({"tasks": manifest}), encoding="utf-8")
    return folder


def test_a_sequential_model_pretrained_on_the_behaviour_log_beats_the_task_only_model(tmp_path):
    write_chain_dataset(tmp_path / "data")
    config_dict = {"data_path": str(tmp_path / "data"), "checkpoint_dir": str(tmp_path / "saved"), "device": "cpu",
                   "use_gpu": False, "show_progress": False, "state": "WARNING", "MAX_ITEM_LIST_LENGTH": 10,
                   "embedding_size": 32, "hidden_size": 32, "train_batch_size": 32, "learning_rate": 0.01,
                   "seed": 2023, "repeat": 1, "recbole_baselines": ["GRU4Rec"],
                   "baseline_pretrain": ["behaviours", "none"], "baseline_epochs": 15,
                   "baseline_pretrain_epochs": 15, "dropout_prob": 0.0, "torch_threads": 1}
    out = run("AdaptSSR", "chain", config_dict=config_dict)
    test = {r.start_point: r.test["ndcg@10"] for r in out["runs"]}
    assert set(test) == {"GRU4Rec (behaviours)", "GRU4Rec (none)"}
    assert test["GRU4Rec (behaviours)"] > 0.6  # the successor is learnt from every user's log
    assert test["GRU4Rec (behaviours)"] > test["GRU4Rec (none)"] + 0.3
    pretrained = next(r for r in out["runs"] if r.start_point == "GRU4Rec (behaviours)").settings["pretraining"]
    # RecBole's sequential augmentation: one next-item sample per behaviour but the first and the held-out last
    assert pretrained["sequences"] > 300 and pretrained["left_out_rows"] == 0
    assert Path(pretrained["checkpoint"]).is_file()
    table = Path(out["files"]["md"]).read_text()
    assert "| GRU4Rec (behaviours) |" in table and "pre-trained on the behaviour log" in table


# ------------------------------------------------------------------------------------------- same evaluation
class Recorder:
    """Wraps TaskTrainer._full_sort_batch_eval: per evaluation call, the users, positive (user, item) pairs and the
    ranked (finite-score) (user, item) cells, in tokens."""

    def __init__(self, monkeypatch):
        self.calls = []
        original = TaskTrainer._full_sort_batch_eval
        recorder = self

        def wrapped(trainer, batched_data):
            interaction, scores, positive_u, positive_i = original(trainer, batched_data)
            recorder.calls[-1].append((interaction["user_id"].clone(), scores.detach().clone(),
                                       positive_u.clone(), positive_i.clone()))
            return interaction, scores, positive_u, positive_i

        def evaluate(trainer, eval_data, *args, **kwargs):
            recorder.calls.append([])
            recorder.tokens = (eval_data._dataset.field2id_token["user_id"], eval_data._dataset.field2id_token["target_id"])
            recorder.calls[-1].append(recorder.tokens)
            return original_evaluate(trainer, eval_data, *args, **kwargs)

        original_evaluate = TaskTrainer.evaluate
        monkeypatch.setattr(TaskTrainer, "_full_sort_batch_eval", wrapped)
        monkeypatch.setattr(TaskTrainer, "evaluate", evaluate)

    def inputs(self) -> list:
        """Per evaluation call: (users, positives, ranked cells, masked candidate cells), each a set of tokens."""
        out = []
        for call in self.calls:
            (user_tokens, item_tokens), batches = call[0], call[1:]
            users, positives, ranked = set(), set(), set()
            for uids, scores, pos_u, pos_i in batches:
                users |= {str(user_tokens[u]) for u in uids.tolist()}
                positives |= {(str(user_tokens[uids[r]]), str(item_tokens[i]))
                              for r, i in zip(pos_u.tolist(), pos_i.tolist())}
                rows, cols = torch.nonzero(torch.isfinite(scores), as_tuple=True)
                ranked |= {(str(user_tokens[uids[r]]), str(item_tokens[c])) for r, c in zip(rows.tolist(), cols.tolist())}
            out.append((users, positives, ranked))
        return out


def adaptssr_inputs(data, tmp_path, recorder, split_by):
    """The evaluator's inputs of AdaptSSR's fine-tuning run (valid, then test) on the seed's split."""
    config_dict = base_config(data, tmp_path, recommendation_split_by=split_by, metric_decimal_place=12)
    base = Config(model="AdaptSSR", dataset=data.name, config_dict=config_dict)
    shared = SharedTaskData(base["data_path"], data.name)
    config = base.derive(**run_overrides(base, "rec", REC, 2023, shared, str(tmp_path / "run")))
    init_seed(2023, True)
    dataset = create_dataset(config, None, shared)
    _, valid, test = data_preparation(config, dataset)
    trainer = TaskTrainer(config, AdaptSSR(config, valid._dataset))
    trainer.evaluate(valid, load_best_model=False)
    trainer.evaluate(test, load_best_model=False)
    return recorder.inputs()[-2:]


@pytest.mark.parametrize("split_by", ["row", "user"])
def test_pop_bpr_lightgcn_rank_adaptssrs_candidates_with_adaptssrs_masks(tmp_path, monkeypatch, split_by):
    # behaviours and targets share tokens: t1..t16 are targets AND behaviours, t17..t32 behaviours only
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("rec",), n_users=40, n_items=32, n_targets=16,
                              rec_per_user=3, item_token=lambda i: f"t{i}")
    recorder = Recorder(monkeypatch)
    expected = adaptssr_inputs(data, tmp_path, recorder, split_by)
    config = baseline_config(data, tmp_path, recommendation_split_by=split_by)
    shared = SharedTaskData(config["data_path"], data.name)
    log_rows = len(shared.behaviours)
    for model in ("Pop", "BPR", "LightGCN"):
        recorder.calls.clear()
        result = rb.train_baseline(config, model, "rec", "behaviours", 2023, task_data=shared,
                                   run_dir=str(tmp_path / model))
        got = recorder.inputs()
        assert len(got) == 2  # one validation (one epoch), one test
        for phase, (ours, theirs) in enumerate(zip(got, expected)):
            assert ours[0] == theirs[0], (model, phase)  # users evaluated
            assert ours[1] == theirs[1], (model, phase)  # positives
            assert ours[2] == theirs[2], (model, phase)  # ranked cells: candidates minus masked history
        # the baseline trained on every behaviour row (but those equal to a task pair) plus the task's training pairs
        train_pairs = len(task_rows(data)) - sum(len(e[1]) for e in expected)
        leaked = sum((u, i) in set(data.rec) for u, i, _ in data.inter_rows)
        assert result.settings["left_out_rows"] == leaked > 0
        assert result.settings["training_rows"] == log_rows - leaked + train_pairs
        # one epoch (baseline_epochs: 1): a cap for BPR and LightGCN, Pop's one exact pass is no unfinished run
        assert (result.stopped_by, result.epochs_run, result.still_improving) == ("epoch_cap", 1, model != "Pop")
    users, positives, ranked = expected[1]
    targets = {f"t{j}" for j in range(1, 17)}
    assert {item for _, item in ranked} == targets  # only the task's targets are ranked, never t17..t32
    masked = {(u, t) for u in users for t in targets} - ranked
    earlier = {(u, t) for u, t in task_rows(data) if u in users} - positives  # the user's train + valid targets
    if split_by == "row":
        assert masked and masked == earlier  # a test user's earlier-split targets are masked, nothing else ...
    else:
        assert not masked  # cold users: nothing to mask
    behaviour_targets = {(u, tok) for u in users for tok, _ in data.sequences[u] if tok in targets}
    assert behaviour_targets - masked - positives <= ranked and behaviour_targets & ranked  # ... not behaviours


def task_rows(data):
    return [(u, t) for u, t in data.rec]


# ------------------------------------------------------------------------------------------- what they train on
def test_pretraining_corpus_drops_task_pairs_and_shares_the_task_vocabulary(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("rec",), n_users=24, n_items=32, n_targets=16,
                              rec_per_user=2, item_token=lambda i: f"t{i}")
    leaked = data.rec[:5]  # plant task pairs in the behaviour log
    rows = data.inter_rows + [(u, t, 5000 + k) for k, (u, t) in enumerate(leaked)]
    write_atomic(data.folder / "tt.inter", ["user_id:token", "item_id:token", "timestamp:float"], rows)
    config = baseline_config(data, tmp_path)
    shared = SharedTaskData(config["data_path"], data.name)
    vocab = rb.vocabulary_dataset(config, "SASRec", "rec", REC, shared, str(tmp_path / "run"))
    pairs = task_pair_keys(str(data.folder), "tt", "rec")
    pretrain = BehaviourSequenceDataset(rb.pretrain_run_config(config, "SASRec", 2023, str(tmp_path / "run")),
                                        vocab.item_tokens(), vocab.item_vocabulary, pairs)
    expected = sum((u, i) in set(data.rec) for u, i, _ in rows)  # the planted rows and any coincident ones
    assert pretrain.left_out_rows == expected >= len(leaked)
    tokens = vocab.item_tokens()
    kept = {(str(pretrain.field2id_token["user_id"][u]), str(tokens[i])) for u, i in
            zip(pretrain.inter_feat["user_id"].tolist(), pretrain.inter_feat["item_id"].tolist())}
    assert not kept & set(data.rec) and len(kept) > 100
    # same ids as the task data set: a pre-trained embedding row is the same item in fine-tuning
    assert pretrain.item_num == vocab.item_num and list(pretrain.field2id_token["item_id"]) == list(tokens)
    assert vocab.candidate_item_num == 17 and set(tokens[1:17]) == {f"t{j}" for j in range(1, 17)}
    from recbole_adaptssr.data.baseline_dataset import behaviour_interactions

    interactions, left_out = behaviour_interactions(vocab)
    assert left_out == expected and len(interactions) + left_out == len(data.inter_rows) + len(leaked)


def test_separate_item_domains_never_share_ids(tmp_path):
    # behaviour tokens t1..t32 collide with target tokens t1..t16 by accident (TTL's integer ids)
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("rec",), n_users=24, n_items=32, n_targets=16,
                              item_token=lambda i: f"t{i}")
    config = baseline_config(data, tmp_path, baseline_item_domains="separate")
    shared = SharedTaskData(config["data_path"], data.name)
    vocab = rb.vocabulary_dataset(config, "SASRec", "rec", REC, shared, str(tmp_path / "run"))
    assert vocab.candidate_item_num == 17 and vocab.shared_targets() == 0
    assert min(vocab.item_vocabulary.values()) >= 17  # every behaviour id lies past the candidates
    assert vocab.item_vocabulary["t1"] != vocab.field2token_id["target_id"]["t1"]


def test_settings_errors_name_the_key(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls", "rec"), n_users=24)
    config_dict = base_config(data, tmp_path, recbole_baselines=["Pop"])
    with pytest.raises(ValueError, match=r"baseline_pretrain: unknown variant\(s\) \['both'\]"):
        run("AdaptSSR", "tt", config_dict={**config_dict, "baseline_pretrain": ["both"]})
    with pytest.raises(ValueError, match=r"can run the recommendation tasks, not 'cls' \(multiclass\)"):
        run("AdaptSSR", "tt", config_dict={**config_dict, "downstream_tasks": ["cls"]})
    with pytest.raises(ValueError, match=r"recbole_baselines: S3Rec is not supported"):
        run("AdaptSSR", "tt", config_dict={**config_dict, "recbole_baselines": ["S3Rec"]})
    with pytest.raises(ValueError, match=r"baseline_item_domains must be one of"):
        run("AdaptSSR", "tt", config_dict={**config_dict, "baseline_item_domains": "both"})
    assert not (tmp_path / "saved").exists() or not any((tmp_path / "saved").iterdir())  # before any run folder


def test_merge_puts_adaptssr_and_baselines_in_one_table(tmp_path):
    def result(model, start, seed, value):
        return RunResult(model=model, dataset="d", task="rec", kind="recommendation", start_point=start, seed=seed,
                         valid={"ndcg@10": value}, test={"ndcg@10": value}, best_epoch=1, valid_metric="ndcg@10")

    ours = [result("AdaptSSR", "ssr", s, v) for s, v in ((2020, 0.08), (2021, 0.10))]
    theirs = [result("SASRec", "SASRec (behaviours)", s, v) for s, v in ((2020, 0.05), (2021, 0.07))]
    for folder, runs in (("a", ours), ("b", theirs)):
        write_results([], runs, str(tmp_path / folder))
    rows, runs = rb.merge_results([str(tmp_path / "a"), str(tmp_path / "b" / "results.json")])
    means = {r["start_point"]: (r["n"], round(r["mean"], 6)) for r in rows}
    assert means == {"AdaptSSR (ssr)": (2, 0.09), "SASRec (behaviours)": (2, 0.06)}
    assert math.isclose(next(r["std"] for r in rows if r["start_point"] == "AdaptSSR (ssr)"), 0.0141421, rel_tol=1e-4)
    with pytest.raises(ValueError, match=r"AdaptSSR \(ssr\) on rec, seed 2020 is also in"):
        rb.merge_results([str(tmp_path / "a"), str(tmp_path / "a")])


def test_model_with_baseline_pretrain_selects_the_runner_and_plain_model_keeps_the_pipeline(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls", "rec"), n_users=24)
    config_dict = base_config(data, tmp_path, downstream_tasks=["rec"], n_layers=1, baseline_epochs=1,
                              finetune_epochs=1)
    out = run("SASRec", "tt", config_dict={**config_dict, "baseline_pretrain": ["none"]})
    assert [r.start_point for r in out["runs"]] == ["SASRec (none)"] and "RecBoleBaselines-tt" in out["run_dir"]
    assert out["runs"][0].settings["hyper_parameters"]["epochs"] == 1  # baseline_epochs, not finetune_epochs
    plain_run = run("SASRec", "tt", config_dict=config_dict)  # without baseline_pretrain: the pipeline, as before
    assert [r.start_point for r in plain_run["runs"]] == ["none"] and "SASRec-tt" in plain_run["run_dir"]
