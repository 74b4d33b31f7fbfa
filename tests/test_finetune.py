"""Fine-tuning and evaluation of the downstream tasks (recbole_adaptssr.quick_start, model heads, RecBole's
loaders and evaluator).

* Metric paths: a model whose ``predict`` / ``full_sort_predict`` returns fixed known scores goes through RecBole's
  real data loaders and ``Trainer.evaluate``; the expected value is computed by brute force / sklearn here.
* End-to-end: one tiny pre-train -> fine-tune pipeline (every task kind, two start points, two seeds) whose
  returned summary, per-seed records, results files and best-epoch checkpoints are checked.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys

import numpy as np
import pytest
import torch
from recbole.data import data_preparation
from recbole.utils import init_seed
from sklearn.metrics import roc_auc_score

from recbole_adaptssr import quick_start as qs
from recbole_adaptssr.data.task_dataset import TaskData as SharedTaskData
from recbole_adaptssr.downstream import get_task_kind
from recbole_adaptssr.experiment import finetuning as ft
from recbole_adaptssr.experiment.finetuning import run_overrides
from recbole_adaptssr.config import Config
from recbole_adaptssr.data.utils import create_dataset
from recbole_adaptssr.model.adaptssr import AdaptSSR
from recbole_adaptssr.utils import get_trainer

from recbole_adaptssr.experiment import summarize
from task_data import base_config, one_torch_thread, write_task_dataset


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


KIND = {"cls": "multiclass", "bin": "binary", "cvr": "cvr", "rec": "recommendation"}
METRIC = {"multiclass": "acc", "binary": "auc", "cvr": "auc", "recommendation": "ndcg@10"}


def run_config(model, data, tmp_path, task, seed, config_dict):
    """The Config of one downstream run, exactly as experiment.finetune derives it."""
    base = Config(model=model, dataset=data.name, config_dict=config_dict)
    shared = SharedTaskData(base["data_path"], data.name)
    return base.derive(**run_overrides(base, task, get_task_kind(KIND[task]), seed, shared, str(tmp_path / "run")))


def prepare(data, tmp_path, task, seed=2023, **extra):
    """RecBole's loaders of one task, an AdaptSSR fine-tune model and its trainer, built as finetune_task does."""
    config_dict = base_config(data, tmp_path, metric_decimal_place=12, **extra)
    config = run_config("AdaptSSR", data, tmp_path, task, seed, config_dict)
    init_seed(seed, True)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = AdaptSSR(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "AdaptSSR")(config, model)
    return dataset, (train, valid, test), model, trainer


def tokens(split, field):
    return [str(t) for t in split.field2id_token[field][split.inter_feat[field].numpy()]]


def pairs(split):
    """{user token: set of target tokens} of one split's (user, target) rows."""
    out = {}
    for u, t in zip(tokens(split, "user_id"), tokens(split, "target_id")):
        out.setdefault(u, set()).add(t)
    return out


def fixed_scores(keys, seed, ties=False):
    rng = np.random.RandomState(seed)
    values = rng.rand(len(keys))
    if ties:
        values = np.round(values, 1)  # many equal scores
    return dict(zip(keys, values.tolist()))


# --------------------------------------------------------------------------------------- NDCG@10, all-ranking
def brute_force_ndcg10(score, positives, history, candidates):
    """Mean over users of NDCG@10: rank every candidate not in the user's history by score (desc), binary gains,
    ideal DCG over min(|positives|, 10)."""
    values = []
    for user, pos in positives.items():
        ranked = sorted((t for t in candidates if t not in history.get(user, set()) - pos),
                        key=lambda t: -score[user, t])[:10]
        dcg = sum(1 / math.log2(r + 2) for r, t in enumerate(ranked) if t in pos)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(pos), 10)))
        values.append(dcg / idcg)
    return float(np.mean(values))


def test_ndcg10_all_ranking_with_history_masking_matches_brute_force(tmp_path):
    """With the row split (recommendation_split_by: row) a user's earlier-split targets are masked; the default
    user split leaves nothing to mask for a test user (tests/test_task_dataset.py)."""
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("rec",), n_users=32, n_targets=24, rec_per_user=4)
    dataset, (train, valid, test), model, trainer = prepare(data, tmp_path, "rec", recommendation_split_by="row")
    targets = [str(t) for t in dataset.field2id_token["target_id"][1:]]
    assert len(targets) == 24 and dataset.item_num == 25  # every target item is a candidate (+ padding)

    train_pos, valid_pos, test_pos = pairs(train.dataset), pairs(valid.dataset), pairs(test.dataset)
    score = fixed_scores([(u, t) for u in data.users for t in targets], seed=5)
    # items the user already has in training (and validation) rank first unless they are masked
    for bonus, split_pos in ((10.0, train_pos), (5.0, valid_pos)):
        for u, items in split_pos.items():
            for t in items:
                score[u, t] += bonus
    id2user = dataset.field2id_token["user_id"]
    target_ids = dataset.field2id_token["target_id"]

    def full_sort_predict(interaction):
        rows = [[0.0] + [score[str(id2user[u]), str(t)] for t in target_ids[1:]]
                for u in interaction["user_id"].tolist()]
        return torch.tensor(rows, dtype=torch.float32).reshape(-1)

    model.full_sort_predict = full_sort_predict
    history_valid = train_pos
    history_test = {u: train_pos.get(u, set()) | valid_pos.get(u, set()) for u in data.users}

    # RecBole's loader masks exactly the user's earlier-split targets
    for loader, history in ((valid, history_valid), (test, history_test)):
        for uid in loader.uid_list.tolist():
            user = str(id2user[uid])
            assert {str(target_ids[i]) for i in loader.uid2history_item[uid].tolist()} == history.get(user, set())

    valid_result = trainer.evaluate(valid, load_best_model=False)
    test_result = trainer.evaluate(test, load_best_model=False)
    expected_valid = brute_force_ndcg10(score, valid_pos, history_valid, targets)
    expected_test = brute_force_ndcg10(score, test_pos, history_test, targets)
    assert valid_result["ndcg@10"] == pytest.approx(expected_valid, abs=1e-9)
    assert test_result["ndcg@10"] == pytest.approx(expected_test, abs=1e-9)
    assert 0.0 < expected_test < 1.0
    # masking matters: without it (or masking only the train split at test time) the value differs
    assert brute_force_ndcg10(score, test_pos, {}, targets) < expected_test - 0.05
    assert brute_force_ndcg10(score, test_pos, history_valid, targets) != pytest.approx(expected_test, abs=1e-3)


# --------------------------------------------------------------------------------------- AUC and Acc
@pytest.mark.parametrize("task", ["bin", "cvr"])
def test_auc_of_both_binary_kinds_matches_sklearn(tmp_path, task):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=(task,), n_users=40)
    dataset, (_, valid, test), model, trainer = prepare(data, tmp_path, task)
    id2user = dataset.field2id_token["user_id"]
    if task == "bin":
        truth = {(u,): int(label == "M") for u, label in data.labels["bin"].items()}  # "M" sorts last: positive

        def key_of(interaction):
            return [(str(id2user[u]),) for u in interaction["user_id"].tolist()]

        def split_keys(split):
            return [(u,) for u in tokens(split, "user_id")]
    else:
        truth = {(u, t): y for u, t, y in data.cvr}
        id2target = dataset.field2id_token["target_id"]

        def key_of(interaction):
            return [(str(id2user[u]), str(id2target[t]))
                    for u, t in zip(interaction["user_id"].tolist(), interaction["target_id"].tolist())]

        def split_keys(split):
            return list(zip(tokens(split, "user_id"), tokens(split, "target_id")))

    # scores that lean towards the truth (so that AUC and 1 - AUC differ), with ties across the classes
    noise = fixed_scores(list(truth), seed=3)
    score = {k: 0.5 if i % 3 == 0 else round(0.3 * y + 0.7 * noise[k], 1) for i, (k, y) in enumerate(truth.items())}
    model.predict = lambda interaction: torch.tensor([score[k] for k in key_of(interaction)])
    for loader in (valid, test):
        keys = split_keys(loader.dataset)
        y, s = [truth[k] for k in keys], [score[k] for k in keys]
        expected = roc_auc_score(y, s)
        assert expected > 0.5 and 0 < sum(y) < len(y)
        assert any(s[i] == s[j] and y[i] != y[j] for i in range(len(s)) for j in range(i)), "no tie across classes"
        assert trainer.evaluate(loader, load_best_model=False)["auc"] == pytest.approx(expected, abs=1e-9)


def test_acc_on_a_multiclass_task_matches_hand_computation(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls",), n_users=40)
    dataset, (_, valid, test), model, trainer = prepare(data, tmp_path, "cls")
    columns = ["1", "2", "7", "10"]  # class index order: numeric sort of the label tokens
    rng = np.random.RandomState(11)
    score = {}
    for i, (user, label) in enumerate(sorted(data.labels["cls"].items())):
        if i % 4 == 0:
            score[user] = [0.25] * 4  # a full tie predicts class index 0 ("1")
        elif i % 4 == 1:
            score[user] = [0.1, 0.1, 0.1, 0.1]
            score[user][columns.index(label)] = 0.7  # right
        else:
            score[user] = rng.dirichlet(np.ones(4)).tolist()
    id2user = dataset.field2id_token["user_id"]
    model.predict = lambda interaction: torch.tensor([score[str(id2user[u])] for u in interaction["user_id"].tolist()])
    for loader in (valid, test):
        users = tokens(loader.dataset, "user_id")
        hits = [columns[int(np.argmax(score[u]))] == data.labels["cls"][u] for u in users]
        expected = sum(hits) / len(hits)
        assert 0.0 < expected < 1.0
        assert trainer.evaluate(loader, load_best_model=False)["acc"] == pytest.approx(expected, abs=1e-9)


# --------------------------------------------------------------------------------------- end-to-end pipeline
class _Recorder:
    """Trainer mix-in: after each validation keep (valid score, model state); at evaluate(load_best_model)
    keep whether the model then holds the state of the best validation epoch (the first of equal scores)."""

    runs = []

    def _valid_epoch(self, valid_data, show_progress=False):
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self.__dict__.setdefault("valid_history", []).append(
            (score, {k: v.detach().clone() for k, v in self.model.state_dict().items()}))
        return score, result

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        result = super().evaluate(eval_data, load_best_model, model_file, show_progress)
        if load_best_model:
            history = self.valid_history
            scores = [s for s, _ in history]
            best = scores.index(max(scores))  # a tie is no improvement (recbole_adaptssr.stopping)
            state = self.model.state_dict()
            checkpoint = torch.load(self.saved_model_file, weights_only=True)
            _Recorder.runs.append({
                "file": self.saved_model_file, "task": self.config["downstream_task"], "seed": self.config["seed"],
                "scores": scores, "best": best, "checkpoint_epoch": checkpoint["epoch"],
                "holds_best": all(torch.equal(state[k], history[best][1][k]) for k in state),
                "holds_last": all(torch.equal(state[k], history[-1][1][k]) for k in state),
                "result": dict(result),
            })
        return result


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """One tiny AdaptSSR pipeline: MLM + SSR for 1 epoch each, then every task kind from ssr and from none,
    2 seeds, 2 fine-tune epochs."""
    tmp = tmp_path_factory.mktemp("pipeline")
    data = write_task_dataset(tmp / "data", "tt", n_users=40, n_targets=16)
    config_dict = base_config(data, tmp, mlm_epochs=1, ssr_epochs=1, finetune_epochs=2, repeat=2,
                              finetune_from=["ssr", "none"], downstream_tasks=["cls", "bin", "cvr", "rec"],
                              pretrain_valid_ratio=0.2)
    original = ft.get_trainer
    _Recorder.runs = []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        mp.setattr(sys, "argv", ["pytest"])
        mp.setattr(ft, "get_trainer", lambda model_type, name: type(
            "Recording", (_Recorder, original(model_type, name)), {}))
        out = qs.run("AdaptSSR", "tt", config_dict=config_dict)
    return out, list(_Recorder.runs), data, config_dict


def test_pipeline_runs_every_task_kind_with_finite_metrics_in_range(pipeline):
    out, _, _, _ = pipeline
    assert set(out["pretrain"]) == {"mlm", "ssr"}
    runs = out["runs"]
    assert len(runs) == 2 * 4 * 2  # start points x tasks x seeds, one metric each
    for r in runs:
        assert r.kind == KIND[r.task] and r.valid_metric == METRIC[r.kind]
        for split in (r.valid, r.test):  # the best validation metrics and the test metrics at that epoch
            assert list(split) == [METRIC[r.kind]]
            assert math.isfinite(split[METRIC[r.kind]]) and 0.0 <= split[METRIC[r.kind]] <= 1.0, r
        assert 0 <= r.best_epoch < 2 and r.checkpoint.startswith(r.run_dir)
    rows = out["results"]
    assert {(r["start_point"], r["task"], r["metric"]) for r in rows} == {
        (v, t, METRIC[KIND[t]]) for v in ("ssr", "none") for t in KIND}
    # the markdown table: one row per start point, one column per task (metric)
    lines = out["table"].splitlines()
    assert lines[0] == "| start point | cls (acc) | bin (auc) | cvr (auc) | rec (ndcg@10) |"
    assert [line.split(" |")[0] for line in lines[2:4]] == ["| ssr", "| none"]
    assert "over 2 seed(s)" in out["table"]


def test_repeat_reports_mean_and_sample_std_over_the_seeds(pipeline):
    out, _, _, config_dict = pipeline
    seed = config_dict["seed"]
    for row in out["results"]:
        per_seed = {r.seed: r.test[row["metric"]] for r in out["runs"]
                    if (r.start_point, r.task) == (row["start_point"], row["task"])}
        assert sorted(per_seed) == [seed, seed + 1] == row["seeds"]
        values = [per_seed[seed], per_seed[seed + 1]]
        assert row["n"] == 2 and row["values"] == values
        assert row["mean"] == pytest.approx(statistics.fmean(values), abs=1e-12)
        assert row["std"] == pytest.approx(statistics.stdev(values), abs=1e-12)
    # the two seeds are different splits: at least one task's values differ between them
    assert any(row["values"][0] != row["values"][1] for row in out["results"])


def test_results_files_match_the_returned_summary(pipeline):
    out, _, _, _ = pipeline
    files = out["files"]
    with open(files["md"], encoding="utf-8") as f:
        markdown = f.read()
    assert markdown.startswith(out["table"] + "\n")  # then how each pre-training stage stopped
    assert "\nPre-training stages (stopped by, epochs, steps, best epoch):\n" in markdown
    with open(files["json"], encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["summary"] == out["results"] == saved["summaries"]["test"]
    assert saved["runs"] == [r.as_dict() for r in out["runs"]]
    valid_rows = summarize(out["runs"], "valid")  # the validation summary is kept beside the test one
    assert saved["summaries"]["valid"] == valid_rows
    assert [r["mean"] for r in valid_rows] != [r["mean"] for r in out["results"]]
    with open(files["csv"], encoding="utf-8", newline="") as f:
        table = [line for line in csv.DictReader(f) if line["split"] == "test"]
    assert len(table) == len(out["results"])
    for line, row in zip(table, out["results"]):
        assert (line["start_point"], line["task"], line["metric"], int(line["n"])) == (
            row["start_point"], row["task"], row["metric"], row["n"])
        assert float(line["mean"]) == pytest.approx(row["mean"], abs=1e-6)
        assert float(line["std"]) == pytest.approx(row["std"], abs=1e-6)
        assert [float(v) for v in line["values"].split()] == pytest.approx(row["values"], abs=1e-6)
    for r in out["results"]:  # the markdown cell of every row
        assert f"{r['mean']:.4f} ± {r['std']:.4f}" in out["table"]


def test_test_metrics_come_from_the_best_validation_epoch(pipeline):
    out, recorded, _, config_dict = pipeline
    assert len(recorded) == 16
    assert len({r["file"] for r in recorded}) == 16  # one fine-tune checkpoint per start point, task and seed
    for r in recorded:
        assert len(r["scores"]) == config_dict["finetune_epochs"]
        assert r["checkpoint_epoch"] == r["best"], r
        assert r["holds_best"], r  # the evaluated weights are those of the best validation epoch
    # the case discriminates: in some runs the best epoch is not the last one (the weights differ from the last)
    assert any(not r["holds_last"] for r in recorded)
    # ... and those are the returned test results
    returned = sorted((r.task, r.seed, next(iter(r.test.values()))) for r in out["runs"])
    assert sorted((r["task"], r["seed"], next(iter(r["result"].values()))) for r in recorded) == returned


def test_model_on_tasks_runs_sasrec_on_recommendation_and_rejects_classification(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls", "rec"), n_users=32)
    config_dict = base_config(data, tmp_path, finetune_epochs=1, n_heads=2, n_layers=1, downstream_task="rec")
    out = qs.run("SASRec", "tt", config_dict=config_dict)
    assert [(r.model, r.start_point, r.task, list(r.test)) for r in out["runs"]] == [("SASRec", "none", "rec", ["ndcg@10"])]
    value = out["runs"][0].test["ndcg@10"]
    assert math.isfinite(value) and 0.0 <= value <= 1.0
    assert out["results"][0]["n"] == 1 and out["results"][0]["mean"] == value
    with pytest.raises(ValueError, match=r"SASRec is a RecBole recommender: it can run the recommendation tasks, "
                                         r"not 'cls' \(multiclass\)"):
        qs.run("SASRec", "tt", config_dict={**config_dict, "downstream_task": "cls"})


def test_finetune_from_a_stage_that_did_not_run_is_an_error(tmp_path):
    data = write_task_dataset(tmp_path / "data", "tt", tasks=("cls",), n_users=24)
    config_dict = base_config(data, tmp_path, pretrain_stages=["mlm"], mlm_epochs=1, finetune_from=["ssr"],
                              pretrain_valid_ratio=0.2)
    with pytest.raises(ValueError, match=r"finetune_from names stage 'ssr', but pretrain_stages is \['mlm'\]"):
        qs.run("AdaptSSR", "tt", config_dict=config_dict)
    # checked before pre-training: no stage ran, so no checkpoint was written
    assert not list((tmp_path / "saved").glob("*.pth")) if (tmp_path / "saved").exists() else True


def test_recbole_models_rank_only_target_items(tmp_path):
    """SASRec on a task shares one vocabulary between behaviours and targets; behaviour-only items are appended
    after the targets and must not compete: TaskTrainer's NDCG@10 equals the brute force over target items, even
    when the model scores behaviour-only items highest (RecBole's plain Trainer would let them take the top 10)."""
    from recbole.trainer import Trainer

    from recbole_adaptssr.trainer import TaskTrainer

    data = write_task_dataset(tmp_path / "data", "tt", tasks=("rec",), n_users=32, n_targets=24, rec_per_user=4)
    config_dict = base_config(data, tmp_path, metric_decimal_place=12, n_layers=1, hidden_size=16, inner_size=32)
    config = run_config("SASRec", data, tmp_path, "rec", 2023, {**config_dict, "downstream_task": "rec"})
    assert config["behaviour_vocabulary"] == "targets" and config["repeatable"] is False
    init_seed(2023, True)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    tokens_by_id = [str(t) for t in dataset.field2id_token["target_id"]]
    n_candidates = dataset.candidate_item_num
    assert n_candidates == 25 and dataset.item_num > n_candidates  # behaviour-only items were appended
    targets = tokens_by_id[1:n_candidates]

    train_pos, valid_pos, test_pos = pairs(train.dataset), pairs(valid.dataset), pairs(test.dataset)
    score = fixed_scores([(u, t) for u in data.users for t in tokens_by_id[1:]], seed=7)
    for u in data.users:  # behaviour-only items get the highest scores
        for t in tokens_by_id[n_candidates:]:
            score[u, t] += 100.0
    id2user = dataset.field2id_token["user_id"]

    from recbole.model.sequential_recommender.sasrec import SASRec

    model = SASRec(config, train._dataset)
    model.full_sort_predict = lambda interaction: torch.tensor(
        [[0.0] + [score[str(id2user[u]), t] for t in tokens_by_id[1:]] for u in interaction["user_id"].tolist()],
        dtype=torch.float32).reshape(-1)
    history_test = {u: train_pos.get(u, set()) | valid_pos.get(u, set()) for u in data.users}
    expected = brute_force_ndcg10(score, test_pos, history_test, targets)
    restricted = TaskTrainer(config, model).evaluate(test, load_best_model=False)["ndcg@10"]
    unrestricted = Trainer(config, model).evaluate(test, load_best_model=False)["ndcg@10"]
    assert restricted == pytest.approx(expected, abs=1e-9)
    assert expected > 0.0 and unrestricted < expected  # the appended items would have pushed targets down
