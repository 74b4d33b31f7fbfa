"""Data-parallel training on CPUs (gloo, 2 processes): what N ranks compute equals what one process computes.

* one optimisation step of 2 ranks with B/2 sequences each and global negatives = one process with B sequences
  (loss, gradients, updated parameters), for AdaptSSR's ranking loss and for an InfoNCE task (CL4SRec);
* early stopping: ranks whose own validation batches disagree still take the same decisions;
* a 2-process pipeline (pre-training + fine-tuning): both ranks report identical results, only rank 0 writes the
  run's files, and its AUC / NDCG@10 equal a single-process evaluation of the same weights on the same split.

Each test starts its processes with ``torch.multiprocessing`` (``spawn``), rendezvous on a free local port.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from recbole_adaptssr import distributed

REPO = Path(__file__).resolve().parents[1]
PROPERTIES = REPO / "recbole_adaptssr" / "properties"
WORLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(function, out_dir: Path, *args, world: int = WORLD):
    """Run ``function(*args)`` on ``world`` gloo ranks; return each rank's result (what it returned)."""
    port = free_port()
    mp.spawn(_rank_main, args=(world, port, function, args, str(out_dir)), nprocs=world, join=True)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(world)]


def _rank_main(rank, world, port, function, args, out_dir):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    sys.path.insert(0, str(REPO / "tests"))
    import recbole_adaptssr

    recbole_adaptssr.setup()
    distributed.init_distributed("gloo", use_gpu=False)
    try:
        torch.save(function(*args), Path(out_dir) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


# ------------------------------------------------------------------------------------------- one step
N_ITEMS, MAX_LEN, BATCH = 30, 8, 8


def _settings(stage: str, negatives: str) -> dict:
    from recbole_adaptssr.compat import SavedConfig

    values = yaml.safe_load((PROPERTIES / "overall.yaml").read_text())
    values.update(yaml.safe_load((PROPERTIES / "model" / "AdaptSSR.yaml").read_text()))
    values.update(yaml.safe_load((PROPERTIES / "pretext" / f"{stage}.yaml").read_text()))
    values.update({
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
        "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_", "MAX_ITEM_LIST_LENGTH": MAX_LEN,
        "LABEL_FIELD": "label", "device": torch.device("cpu"), "train_stage": stage, "pretrain_stages": [stage],
        "hidden_size": 16, "inner_size": 32, "n_layers": 1, "ddp_negatives": negatives,
        # no dropout: the views differ only by the (deterministic) augmentation below, so one process and two
        # ranks see the same views of each sequence
        "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0, f"{stage}_hidden_dropout_prob": 0.0,
        f"{stage}_attn_dropout_prob": 0.0,
    })
    return SavedConfig(values)


class _Shape:
    def num(self, field):
        return N_ITEMS


def _deterministic_views(item_seq, item_seq_len, generator=None):
    """f(S) = S reversed, g(S) = S without its first behaviour: two different views, no randomness."""
    from recbole_adaptssr.augment.sequence import AugmentedPair

    positions = torch.arange(item_seq.size(1))
    valid = positions[None, :] < item_seq_len[:, None]
    reverse_index = (item_seq_len[:, None] - 1 - positions[None, :]).clamp(min=0)
    reversed_seq = torch.where(valid, item_seq.gather(1, reverse_index), 0)
    shifted = torch.cat([item_seq[:, 1:], torch.zeros_like(item_seq[:, :1])], dim=1)  # left-aligned: drops S[0]
    no_op = torch.zeros_like(item_seq_len)
    return AugmentedPair(reversed_seq, item_seq_len, shifted, item_seq_len - 1, no_op, no_op)


def _global_batch():
    generator = torch.Generator().manual_seed(7)
    lengths = torch.randint(3, MAX_LEN + 1, (BATCH,), generator=generator)
    seq = torch.randint(1, N_ITEMS, (BATCH, MAX_LEN), generator=generator)
    return seq * (torch.arange(MAX_LEN)[None, :] < lengths[:, None]), lengths


def one_step(stage: str, negatives: str, rows: list | None):
    """Loss, synchronised gradients and SGD-updated parameters of one step on ``rows`` of the global batch (all
    rows when ``rows`` is None)."""
    from recbole_adaptssr.model.adaptssr import AdaptSSR

    torch.manual_seed(0)
    model = AdaptSSR(_settings(stage, negatives), _Shape())
    model.pretext_task.augmenter = _deterministic_views
    seq, lengths = _global_batch()
    if rows is not None:
        seq, lengths = seq[rows], lengths[rows]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = model.calculate_loss({model.ITEM_SEQ: seq, model.ITEM_SEQ_LEN: lengths})
    loss.backward()
    distributed.all_reduce_gradients(model.parameters())
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    optimizer.step()
    return {"loss": float(loss.detach()), "grads": grads, "params": {n: p.detach().clone() for n, p in model.named_parameters()}}


def _rank_step(stage, negatives):
    half = BATCH // WORLD
    rank = distributed.rank()
    return one_step(stage, negatives, list(range(rank * half, (rank + 1) * half)))


@pytest.mark.parametrize("stage", ["ssr", "cl4srec"])
def test_two_ranks_with_global_negatives_take_the_step_of_one_process_with_the_whole_batch(stage, tmp_path):
    single = one_step(stage, "global", None)
    ranks = launch(_rank_step, tmp_path, stage, "global")
    for result in ranks:
        assert result["loss"] == pytest.approx(single["loss"], rel=1e-5, abs=1e-6)
        assert set(result["grads"]) == set(single["grads"])
        for name, grad in single["grads"].items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
        for name, value in single["params"].items():
            torch.testing.assert_close(result["params"][name], value, rtol=1e-4, atol=1e-6, msg=name)
    moved = max(float((single["params"][n] - p).abs().max()) for n, p in one_step(stage, "global", [0])["params"].items())
    assert moved > 0  # the step changes the parameters at all, so equal parameters say something


def test_local_negatives_are_the_other_option(tmp_path):
    """``ddp_negatives: local``: each rank ranks among its own B/2 sequences, a different loss than the global batch's."""
    single = one_step("ssr", "local", None)
    ranks = launch(_rank_step, tmp_path, "ssr", "local")
    assert ranks[0]["loss"] != pytest.approx(single["loss"], rel=1e-4)
    own = one_step("ssr", "local", list(range(BATCH // WORLD)))
    assert ranks[0]["loss"] == pytest.approx(own["loss"], rel=1e-6)


# ------------------------------------------------------------------------------------------- early stopping
def _stage_with_disagreeing_validation(data_root, saved):
    """Pre-train one tiny stage; each rank's own validation batches say opposite things (rank 0's loss falls every
    epoch, rank 1's rises 3x as fast), so decisions taken on local values would differ."""
    from recbole_adaptssr.config import Config
    from recbole_adaptssr.experiment.pretraining import pretrain
    from recbole_adaptssr.pretext import ssr

    sign = 1.0 if distributed.rank() == 0 else -3.0
    calls = {"n": 0}

    def validation_step(self, encoder, item_seq, item_seq_len, generator=None):
        calls["n"] += 1
        return {"loss": 10.0 - sign * calls["n"], "acc_implicit": 0.5, "acc_explicit": 0.5, "lambda": 0.5}

    ssr.SSR.validation_step = validation_step
    config = Config("AdaptSSR", "tiny", config_dict={
        "data_path": str(data_root), "checkpoint_dir": str(saved), "device": "cpu", "use_gpu": False,
        "show_progress": False, "state": "ERROR", "MAX_ITEM_LIST_LENGTH": 20, "hidden_size": 16, "inner_size": 32,
        "n_layers": 1, "train_batch_size": 16, "pretrain_stages": ["ssr"], "ssr_epochs": 8, "ssr_stopping_step": 2,
        "ssr_stopping_steps": 0, "ssr_valid_metric": "loss", "pretrain_valid_ratio": 0.5, "seed": 2023,
        "torch_threads": 1})
    result = pretrain(config, str(saved))["ssr"]
    files = sorted(str(p.relative_to(saved)) for p in Path(saved).rglob("*") if p.is_file())
    return {"epochs": [h["epoch"] for h in result.history], "best_epoch": result.best_epoch,
            "losses": [h["loss"] for h in result.history], "files": files, "world": config["world_size"],
            "single_spec": config["single_spec"]}


def test_ranks_whose_own_validation_disagrees_stop_at_the_same_epoch(tiny_data_path, tmp_path):
    ranks = launch(_stage_with_disagreeing_validation, tmp_path, str(tiny_data_path), str(tmp_path / "saved"))
    assert ranks[0]["world"] == WORLD and ranks[0]["single_spec"] is False
    assert ranks[0]["epochs"] == ranks[1]["epochs"] and ranks[0]["best_epoch"] == ranks[1]["best_epoch"]
    assert ranks[0]["losses"] == ranks[1]["losses"]  # the all-reduced averages, the same on both ranks
    # on rank 1's numbers alone the loss rises from the first epoch and training would stop after 2 more epochs;
    # on rank 0's alone it never stops; the global average (rank 0 and 1 hold about as many batches) rises
    assert len(ranks[0]["epochs"]) < 8
    assert ranks[0]["files"] == ["pretrain/ssr.pth"]  # one writer; the resume checkpoint removed at the end


# ------------------------------------------------------------------------------------------- the pipeline
def _pipeline(settings):
    from recbole_adaptssr.quick_start import run

    out = run("AdaptSSR", "tt", config_dict=settings)
    return {"run_dir": out["run_dir"], "files": out["files"],
            "runs": [{"task": r.task, "seed": r.seed, "valid": r.valid, "test": r.test, "best_epoch": r.best_epoch,
                      "checkpoint": r.checkpoint} for r in out["runs"]]}


def test_a_two_process_pipeline_matches_a_single_process_evaluation(task_data, tmp_path):
    from task_data import base_config, stage_checkpoint

    settings = base_config(task_data, tmp_path, mlm_epochs=1, ssr_epochs=2, finetune_epochs=2, repeat=1,
                           pretrain_valid_ratio=0.25, finetune_from=["ssr"], downstream_tasks=["cls", "rec"],
                           train_batch_size=16)
    ranks = launch(_pipeline, tmp_path, settings)
    assert ranks[0]["run_dir"] == ranks[1]["run_dir"]
    assert ranks[0]["runs"] == ranks[1]["runs"]  # every rank evaluated the gathered split: identical metrics
    run_dir = Path(ranks[0]["run_dir"])
    names = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())
    assert "results.json" in names and "run.json" in names and "plan.json" in names
    assert len([n for n in names if n.endswith("/pretrain/ssr.pth")]) == 1  # one writer, in the stage's unit
    assert [n for n in names if "rank1" in n] == [f"{run_dir.name}.rank1.log"]  # rank 1 writes its error log only
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "complete" and record["world_size"] == WORLD

    # the same weights on the same split, evaluated by one process
    from recbole_adaptssr.config import Config
    from recbole_adaptssr.data.utils import create_dataset
    from recbole_adaptssr.experiment.finetuning import prepare_loaders, run_overrides
    from recbole_adaptssr.data.task_dataset import TaskData
    from recbole_adaptssr.checkpoint import load_checkpoint
    from recbole_adaptssr.trainer import TaskTrainer
    from recbole_adaptssr.utils import get_model
    from recbole.utils import init_seed

    config = Config("AdaptSSR", "tt", config_dict=settings)
    data_of_tasks = TaskData(config["data_path"], config["dataset"])
    pretrained = load_checkpoint(str(stage_checkpoint(run_dir, "ssr")))
    for run in ranks[0]["runs"]:
        kind = data_of_tasks.kind(run["task"])
        cfg = config.derive(**run_overrides(config, run["task"], kind, run["seed"], data_of_tasks, str(tmp_path / "x")))
        init_seed(run["seed"], cfg["reproducibility"])
        data = create_dataset(cfg, pretrained["item_vocabulary"], data_of_tasks)
        _, valid_data, test_data = prepare_loaders(cfg, data)
        net = get_model("AdaptSSR")(cfg, valid_data._dataset)
        trainer = TaskTrainer(cfg, net)
        trainer.eval_collector.data_collect(valid_data)
        test = trainer.evaluate(test_data, load_best_model=True, model_file=run["checkpoint"])
        assert {k: float(v) for k, v in test.items()} == pytest.approx(run["test"], abs=1e-12), run["task"]


# ------------------------------------------------------------------------------------------- the command line
def test_the_command_line_starts_processes_with_recboles_nproc_convention(task_data, tmp_path):
    """``run_recbole_adaptssr.py --nproc=2`` (gloo on a CPU machine): one run folder, written by rank 0, whose
    run record says two processes trained it."""
    import subprocess

    from task_data import base_config

    settings = base_config(task_data, tmp_path, mlm_epochs=1, ssr_epochs=1, finetune_epochs=1,
                           finetune_from=["ssr"], downstream_tasks=["cls"], pretrain_valid_ratio=0.25)
    args = [f"--{key}={json.dumps(value) if isinstance(value, list) else value}" for key, value in settings.items()]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "run_recbole_adaptssr.py"), "--model=AdaptSSR", "--dataset=tt",
                           "--nproc=2", f"--port={free_port()}", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [p for p in Path(settings["checkpoint_dir"]).iterdir() if p.is_dir()]
    assert len(runs) == 1
    record = json.loads((runs[0] / "run.json").read_text())
    assert record["status"] == "complete" and record["world_size"] == 2
    results = json.loads((runs[0] / "results.json").read_text())
    assert [(row["task"], row["n"]) for row in results["summary"]] == [("cls", 1)]
    assert [run["task"] for run in results["runs"]] == ["cls"]


def _threads(out_dir):
    record = [torch.get_num_threads(), os.environ["OMP_NUM_THREADS"], os.environ["LOCAL_WORLD_SIZE"]]
    (Path(out_dir) / f"rank{os.environ['RANK']}.json").write_text(json.dumps(record))


def test_nproc_gives_each_process_one_thread_as_torchrun_does(tmp_path, monkeypatch):
    """torchrun sets OMP_NUM_THREADS=1 for several processes (unless it is set): --nproc does too, so both launches
    sum in the same order and give the same metrics (with the default threads, --nproc's fine-tuned AUC differed)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    distributed.spawn(_threads, 2, str(tmp_path), port=free_port())
    assert [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)] == [[1, "1", "2"]] * 2


def _refused(settings):
    from recbole_adaptssr.quick_start import run

    try:
        run("AdaptSSR", "tt", config_dict=settings)
    except ValueError as error:
        return str(error)
    return None


def test_the_comparison_and_the_baselines_runner_refuse_to_run_distributed(task_data, tmp_path):
    from task_data import base_config

    comparison = base_config(task_data, tmp_path, pretrain_methods=["none", "adaptssr"])
    baselines = base_config(task_data, tmp_path, recbole_baselines=["Pop"], downstream_tasks=["rec"])
    for settings, what in ((comparison, "pretrain_methods"), (baselines, "recbole_baselines")):
        messages = launch(_refused, tmp_path, settings)
        assert all(m is not None and m.startswith(what) and "runs in one process" in m for m in messages), messages
    assert not (tmp_path / "saved").exists()  # refused before any run folder
