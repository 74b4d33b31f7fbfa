"""run_recbole_adaptssr.py as a user runs it: RecBole's SASRec trained and tested with load_best_model=True, the
AdaptSSR pre-training stages, and RecBole's precedence of --config_files and --key=value."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recbole_adaptssr.checkpoint import load_checkpoint
from task_data import stage_checkpoint

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "run_recbole_adaptssr.py"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
COMMON = ["--device=cpu", "--use_gpu=False", "--show_progress=False", "--state=INFO", "--checkpoint_dir=saved"]


def run_entry(args, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    log = ANSI.sub("", proc.stdout + proc.stderr)
    return proc.returncode, log


@pytest.fixture(scope="module")
def sasrec_run(tiny_data_path, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("sasrec")
    args = [
        "--model=SASRec", "--dataset=tiny", f"--data_path={tiny_data_path}", "--epochs=2",
        "--hidden_size=16", "--inner_size=32", "--n_layers=1", "--n_heads=1", "--MAX_ITEM_LIST_LENGTH=20",
        "--train_batch_size=256", "--eval_batch_size=256",
        "--load_col={'inter': ['user_id', 'item_id', 'timestamp']}", *COMMON,
    ]
    return (*run_entry(args, cwd), cwd)


def test_sasrec_trains_and_tests_with_best_model(sasrec_run):
    code, log, cwd = sasrec_run
    assert code == 0, log[-4000:]
    checkpoints = list((cwd / "saved").glob("SASRec-tiny-*/SASRec-*.pth"))  # in the run's own folder
    assert len(checkpoints) == 1
    # Trainer.evaluate(load_best_model=True) read the checkpoint back (torch.load, weights_only=True by default)
    loaded = re.search(r"Loading model structure and parameters from (\S+)", log)
    assert loaded, log[-4000:]
    assert Path(loaded.group(1)).name == checkpoints[0].name
    match = re.search(r"test result\s*:\s*(.*)", log)
    assert match, log[-4000:]
    ndcg = re.search(r"ndcg@10'?\W+(?:np\.float\d+\()?([0-9.]+)", match.group(1))
    assert ndcg, match.group(1)
    assert 0.0 < float(ndcg.group(1)) <= 1.0
    assert "epoch 1 training" in log and "epoch 2 training" not in log  # --epochs=2 reached the config
    state = torch.load(checkpoints[0], weights_only=True)
    assert state["config"]["model"] == "SASRec" and state["config"]["epochs"] == 2
    assert state["state_dict"]["item_embedding.weight"].shape[1] == 16  # --hidden_size=16


@pytest.fixture(scope="module")
def adaptssr_run(tiny_data_path, tmp_path_factory):
    """AdaptSSR, 1 epoch per stage on the command line, over two YAML files that ask for more."""
    cwd = tmp_path_factory.mktemp("adaptssr")
    (cwd / "a.yaml").write_text("mlm_epochs: 4\nssr_epochs: 4\nhidden_size: 40\ninner_size: 32\nn_layers: 1\n")
    (cwd / "b.yaml").write_text("hidden_size: 24\ntrain_batch_size: 32\n")
    args = [
        "--model=AdaptSSR", "--dataset=tiny", f"--data_path={tiny_data_path}", "--config_files=a.yaml b.yaml",
        "--mlm_epochs=1", "--ssr_epochs=1", "--MAX_ITEM_LIST_LENGTH=20", "--seed=5", *COMMON,
    ]
    return (*run_entry(args, cwd), cwd)


def test_adaptssr_runs_both_stages(adaptssr_run):
    code, log, cwd = adaptssr_run
    assert code == 0, log[-4000:]
    assert re.search(r"\[mlm\] epoch 0 training .*train loss: [0-9.]+", log), log[-4000:]
    valid = re.search(r"\[ssr\] epoch 0 valid \[time: [0-9.]+s\]: (.*)", log)
    assert valid, log[-4000:]
    values = dict(re.findall(r"(\w+): ([0-9.]+)", valid.group(1)))
    assert {"loss", "acc_implicit", "acc_explicit"} <= set(values)
    assert all(0.0 <= float(values[k]) <= 1.0 for k in ("acc_implicit", "acc_explicit"))
    assert log.index("[mlm] epoch 0") < log.index("[ssr] epoch 0")
    runs = list((cwd / "saved").glob("AdaptSSR-tiny-*"))
    assert len(runs) == 1
    for stage in ("mlm", "ssr"):
        assert stage_checkpoint(runs[0], stage).is_file()
    assert (runs[0] / f"{runs[0].name}.log").is_file()  # the run's log, in its folder


def test_command_line_beats_config_files(adaptssr_run):
    code, log, cwd = adaptssr_run
    assert code == 0, log[-4000:]
    (run,) = (cwd / "saved").glob("AdaptSSR-tiny-*")
    state = load_checkpoint(stage_checkpoint(run, "ssr"))
    config = state["config"]
    assert (config["mlm_epochs"], config["ssr_epochs"]) == (1, 1)  # --key=value beats a.yaml
    assert config["hidden_size"] == 24  # b.yaml (later file) beats a.yaml, a.yaml beats the model YAML (64)
    assert config["n_layers"] == 1 and config["train_batch_size"] == 32  # file-only keys still apply
    assert config["seed"] == 5
    assert state["state_dict"]["user_model.item_embedding.weight"].shape[1] == 24
    assert "[mlm] epoch 1" not in log and "[ssr] epoch 1" not in log
