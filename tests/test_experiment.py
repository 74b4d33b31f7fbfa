"""The experiment layer: per-run settings above the command line, per-kind evaluation settings, a pretext task
defined outside the package found by name, concurrent pipelines in their own folders, and validation before
pre-training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recbole_adaptssr.config import Config
from recbole_adaptssr.experiment import finetune, pretrain
from recbole_adaptssr.pretext.base import PretextTask
from recbole_adaptssr.quick_start import run
from task_data import base_config

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- precedence
def test_run_settings_beat_the_command_line_and_are_reported(task_data, tmp_path, monkeypatch, caplog):
    """--seed=42 --epochs=3 --train_stage=ssr on the command line: the repeats still use seeds 42 and 43, fine-tuning
    runs finetune_epochs (2), and each replaced setting is reported once."""
    monkeypatch.setattr(sys, "argv", ["run", "--seed=42", "--epochs=3", "--train_stage=ssr"])
    config_dict = base_config(task_data, tmp_path, pretrain_stages=[], finetune_from=["none"], repeat=2,
                              finetune_epochs=2, downstream_tasks=["cls"], state="INFO")
    config_dict.pop("seed")
    with caplog.at_level("WARNING"):
        out = run("AdaptSSR", "tt", config_dict=config_dict)
    runs = out["runs"]
    assert [r.seed for r in runs] == [42, 43]
    for r in runs:
        saved = torch.load(r.checkpoint, weights_only=True)["config"]
        assert saved["seed"] == r.seed and saved["epochs"] == 2 and saved["train_stage"] == "finetune"
        assert r.settings["overridden"]["epochs"] == [3, 2]
    warnings = [rec.getMessage() for rec in caplog.records if "does not apply to downstream runs" in rec.getMessage()]
    assert sorted(w.split("=")[0].split()[-1] for w in warnings) == ["epochs", "train_stage"]  # once each, no seed


def test_the_two_seeds_shuffle_differently(task_data, tmp_path):
    """Independent repeats: each seed has its own split and its own data-loader shuffle."""
    config = Config(model="AdaptSSR", dataset="tt",
                    config_dict=base_config(task_data, tmp_path, pretrain_stages=[], finetune_epochs=1))
    a, b = (finetune(config, "cls", None, seed) for seed in (5, 6))
    assert (a.seed, b.seed) == (5, 6)
    assert torch.load(a.checkpoint, weights_only=True)["config"]["seed"] == 5
    assert a.checkpoint != b.checkpoint


def test_kind_settings_in_a_yaml_are_honoured(task_data, tmp_path):
    (tmp_path / "eval.yaml").write_text("recommendation_metrics: [NDCG, Recall]\nrecommendation_topk: [5, 10]\n"
                                        "recommendation_valid_metric: Recall@5\n")
    config = Config(model="AdaptSSR", dataset="tt", config_file_list=[str(tmp_path / "eval.yaml")],
                    config_dict=base_config(task_data, tmp_path, pretrain_stages=[], finetune_epochs=1))
    result = finetune(config, "rec", None, 2023)
    assert set(result.test) == {"ndcg@5", "ndcg@10", "recall@5", "recall@10"}
    assert result.valid_metric == "recall@5" and set(result.valid) == set(result.test)


@pytest.mark.parametrize("key,value", [("metrics", ["AUC"]), ("topk", [5]), ("valid_metric", "AUC"),
                                       ("eval_args", {"split": {"RS": [0.8, 0.1, 0.1]}})])
def test_plain_evaluation_settings_are_rejected_before_anything_runs(task_data, tmp_path, key, value):
    (tmp_path / "user.yaml").write_text(f"{key}: {json.dumps(value)}\n")
    config_dict = base_config(task_data, tmp_path, mlm_epochs=1, ssr_epochs=1)
    with pytest.raises(ValueError, match=rf"\['{key}'\] cannot be set for downstream runs: each task kind has its own"):
        run("AdaptSSR", "tt", config_file_list=[str(tmp_path / "user.yaml")], config_dict=config_dict)
    assert not (tmp_path / "saved").exists()  # nothing pre-trained, no run folder


# ------------------------------------------------------------------------------------------- validation up front
@pytest.mark.parametrize("extra,message", [
    ({"ssr_lambda_mode": "adaptiv"}, r"ssr_lambda_mode must be one of \['adaptive', 'fixed'\], got 'adaptiv'"),
    ({"task_split": [0.6, 0.2]}, r"task_split must be three positive numbers summing to 1"),
    ({"downstream_tasks": ["cls", "age"]}, r"unknown downstream task 'age'; tt.tasks.json has \['cls', 'rec'\]"),
    ({"finetune_from": ["ssr", "nowhere.pth"]}, r"finetune_from entry 'nowhere.pth' is neither none"),
    ({"ssr_ranking": False, "ssr_valid_metric": "acc_implicit"},
     r"ssr_valid_metric='acc_implicit' is not a validation statistic of pretext task 'ssr'"),
    ({"repeat": 0}, r"repeat must be an integer >= 1, got 0"),
    ({"mlm_epochs": -1}, r"mlm_epochs must be an integer >= 0, got -1"),
    ({"mlm_head": "bert"}, r"mlm_head must be one of \['transform', 'tied'\], got 'bert'"),
    ({"mlm_item_softmax_kernel": "triton"},
     r"mlm_item_softmax_kernel must be one of \['blocked', 'fused', 'auto'\], got 'triton'"),
    ({"item_softmax_precision": "fp32"}, r"item_softmax_precision must be one of \['tf32x3', 'ieee', 'tf32', 'bf16'\]"),
    ({"augmentations": ["mask", "shuffle"]}, r"unknown augmentation operator 'shuffle'"),
    ({"recommendation_valid_metric": "NDCG@20"}, r"recommendation_valid_metric='NDCG@20' needs 20 in recommendation_topk"),
])
def test_bad_settings_fail_before_pre_training(task_data, tmp_path, extra, message):
    config_dict = base_config(task_data, tmp_path, **{"mlm_epochs": 1, "ssr_epochs": 1, **extra})
    with pytest.raises(ValueError, match=message):
        run("AdaptSSR", "tt", config_dict=config_dict)
    assert not (tmp_path / "saved").exists()


def test_empty_task_list_means_pre_training_only(task_data, tmp_path):
    out = run("AdaptSSR", "tt", config_dict=base_config(task_data, tmp_path, mlm_epochs=1, ssr_epochs=1,
                                                        pretrain_valid_ratio=0.2, downstream_tasks=[]))
    assert list(out["pretrain"]) == ["mlm", "ssr"] and out["runs"] == [] and out["ok"]
    # one unit per stage, each keeping its stage's checkpoint and its end (where the next stage starts)
    units = Path(out["run_dir"]) / "units"
    assert sorted(p.name for p in units.rglob("*.pth")) == ["mlm.last.pth", "mlm.pth", "ssr.last.pth", "ssr.pth"]
    for stage, result in out["pretrain"].items():
        assert Path(result.checkpoint).parent.parent.parent == units and Path(result.checkpoint).name == f"{stage}.pth"


# ------------------------------------------------------------------------------------------- pretext plug-ins
class Spread(PretextTask):
    """A toy pretext task defined outside the package: push the user representations of a batch apart
    (mean pairwise cosine), scaled by its own setting spread_weight."""

    name = "spread"
    min_batch_size = 2

    @classmethod
    def valid_metrics(cls, settings):
        return {"loss": False, "mean_cosine": False}

    def loss(self, encoder, item_seq, item_seq_len, generator=None):
        u = torch.nn.functional.normalize(encoder(item_seq), dim=-1)
        off_diagonal = (u @ u.T).masked_fill(torch.eye(len(u), dtype=torch.bool), 0.0)
        return float(self.settings["weight"]) * off_diagonal.sum() / (len(u) * (len(u) - 1))

    def validation_step(self, encoder, item_seq, item_seq_len, generator=None):
        loss = float(self.loss(encoder, item_seq, item_seq_len))
        return {"loss": loss, "mean_cosine": loss / float(self.settings["weight"])}


def test_a_pretext_task_of_ones_own_is_found_by_name_with_its_yaml(tiny_config, tmp_path, monkeypatch):
    defaults = tmp_path / "spread.yaml"
    defaults.write_text("spread_weight: 2.0\nspread_epochs: 3\nspread_valid_metric: mean_cosine\n")
    monkeypatch.setattr(Spread, "config_file", str(defaults))
    config = Config(model="AdaptSSR", dataset="tiny",
                    config_dict={**tiny_config, "pretrain_stages": ["spread"], "spread_learning_rate": 0.01})
    assert config["spread_weight"] == 2.0  # its YAML was loaded
    stages = pretrain(config, str(tmp_path / "run"))
    result = stages["spread"]
    assert result.valid_metric == "mean_cosine" and len(result.history) == 3  # spread_epochs, not epochs
    assert result.valid["mean_cosine"] < result.initial["mean_cosine"]  # it learned its own objective
    assert result.valid["loss"] == pytest.approx(2.0 * result.valid["mean_cosine"])
    assert Path(result.checkpoint) == tmp_path / "run" / "pretrain" / "spread.pth"


def test_a_task_yaml_outside_its_namespace_is_rejected(tiny_config, tmp_path, monkeypatch):
    defaults = tmp_path / "spread.yaml"
    defaults.write_text("spread_weight: 1.0\nlearning_rate: 0.5\n")
    monkeypatch.setattr(Spread, "config_file", str(defaults))
    with pytest.raises(ValueError, match=r"may only define settings prefixed spread_, found \['learning_rate'\]"):
        Config(model="AdaptSSR", dataset="tiny", config_dict={**tiny_config, "pretrain_stages": ["spread"]})


def test_stage_settings_override_general_ones_for_that_stage_only(tiny_config, caplog):
    config = Config(model="AdaptSSR", dataset="tiny", config_dict={
        **tiny_config, "mlm_hidden_dropout_prob": 0.5, "hidden_dropout_prob": 0.2, "mlm_learning_rate": 0.004})
    from recbole_adaptssr.pretext.base import StageSettings

    mlm, ssr = StageSettings(config, "mlm"), StageSettings(config, "ssr")
    assert (mlm["hidden_dropout_prob"], ssr["hidden_dropout_prob"]) == (0.5, 0.2)
    assert (mlm["learning_rate"], ssr["learning_rate"]) == (0.004, tiny_config["learning_rate"])
    assert mlm["mask_ratio"] == config["mlm_mask_ratio"] and ssr["mask_ratio"] == config["mask_ratio"]
    assert mlm.shadowed({"learning_rate": 1, "hidden_dropout_prob": 1}) == {
        "learning_rate": "mlm_learning_rate", "hidden_dropout_prob": "mlm_hidden_dropout_prob"}


# ------------------------------------------------------------------------------------------- concurrency
CONCURRENT = """
import json, sys
sys.path.insert(0, {tests!r})
from recbole_adaptssr.quick_start import run
from task_data import base_config, TaskData
out = run("AdaptSSR", "tt", config_dict={settings!r})
print("RESULT" + json.dumps({{"run_dir": out["run_dir"], "runs": [[r.task, r.seed, r.valid, r.test] for r in out["runs"]]}}))
"""


def test_two_identical_pipelines_at_once_give_what_each_gives_alone(task_data, tmp_path):
    settings = base_config(task_data, tmp_path, mlm_epochs=1, ssr_epochs=1, finetune_epochs=2, repeat=1,
                           pretrain_valid_ratio=0.2, finetune_from=["ssr"], downstream_tasks=["cls", "rec"])
    script = CONCURRENT.format(tests=str(REPO / "tests"), settings=settings)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

    def start():
        return subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def result(proc):
        out, err = proc.communicate(timeout=300)
        lines = [line for line in out.splitlines() if line.startswith("RESULT")]
        assert proc.returncode == 0 and lines, err[-3000:]
        return json.loads(lines[-1][len("RESULT"):])

    alone = result(start())
    first, second = start(), start()
    together = [result(first), result(second)]
    assert together[0]["run_dir"] != together[1]["run_dir"]
    for outcome in together:
        assert outcome["runs"] == alone["runs"]
        assert Path(outcome["run_dir"], "results.json").is_file()
    assert len({o["run_dir"] for o in [alone, *together]}) == 3


# ------------------------------------------------------------------------------------------- import hygiene
@pytest.mark.parametrize("module", ["recbole_adaptssr.losses", "recbole_adaptssr.augment.sequence", "recbole_adaptssr.item_softmax",
                                    "recbole_adaptssr", "recbole_adaptssr.pretext.base"])
def test_pure_modules_import_without_recbole(module):
    code = f"import sys, {module}; print('recbole' in sys.modules, 'recbole_adaptssr.compat' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_importing_the_package_patches_nothing():
    code = ("import recbole_adaptssr, recbole_adaptssr.losses\n"
            "from recbole.trainer import Trainer\n"
            "print(getattr(Trainer._save_checkpoint, '_adaptssr_safe', False))\n"
            "recbole_adaptssr.setup()\n"
            "print(getattr(Trainer._save_checkpoint, '_adaptssr_safe', False))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]
