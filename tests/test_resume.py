"""Resuming an interrupted pipeline (``resume=RUN_FOLDER`` or ``resume=true``): a run killed with SIGKILL in the
middle of pre-training, then stopped (Ctrl-C) at a stage boundary and during the fine-tune units, ends, once
resumed, with exactly the metrics of an uninterrupted run (CPU, same seed) and repeats no finished unit; a results
write that fails is logged first, names the path, and a resumption writes the results without training anything
again. (One real SIGKILL, in a subprocess; the later interruptions are KeyboardInterrupts raised at the same points,
which leave the same files: a subprocess start costs 15-20 s on the shared test machine.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recbole_adaptssr.checkpoint import load_checkpoint
from recbole_adaptssr.execution import worker
from recbole_adaptssr.execution.run_folder import hold
from recbole_adaptssr.experiment import pipeline, pretraining
from recbole_adaptssr.quick_start import run
from recbole_adaptssr.trainer import AdaptSSRTrainer, TaskTrainer
from task_data import base_config, stage_checkpoint

REPO = Path(__file__).resolve().parents[1]


def settings(task_data, tmp_path, folder="saved", **extra):
    return base_config(task_data, tmp_path, **{
        "checkpoint_dir": str(tmp_path / folder), "mlm_epochs": 3, "ssr_epochs": 3, "stopping_step": 10,
        "finetune_epochs": 2, "repeat": 2, "pretrain_valid_ratio": 0.2, "finetune_from": ["ssr"],
        "downstream_tasks": ["cls", "rec"], **extra})


def count_calls(monkeypatch, owner, name) -> list:
    calls, real = [], getattr(owner, name)

    def counted(*args, **kwargs):
        calls.append(args[1:3] if len(args) > 2 else args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def metrics(out) -> dict:
    """What must not depend on interruptions: every stage's results and every fine-tune run's metrics."""
    return {
        "stages": {s: (r.best_epoch, r.valid, r.initial, r.history) for s, r in out["pretrain"].items()},
        "runs": [(r.start_point, r.task, r.seed, r.best_epoch, r.valid, r.test) for r in out["runs"]],
        "table": out["table"],
    }


# ------------------------------------------------------------------------------------------- interruptions
class Interrupt(KeyboardInterrupt):
    """Ctrl-C at a chosen point (it ends the command as Ctrl-C does), carrying the run folder."""


def finished_units(run_dir: Path, kind: str) -> list:
    return [p for p in run_dir.glob(f"units/{kind}-*/result.json") if json.loads(p.read_text())["status"] == "done"]


def interrupted_run(config_dict, at=("mlm", 0), drop=None) -> Path:
    """A pipeline stopped by Ctrl-C right after ``at``: ``(stage, epoch)`` (after that epoch's resume checkpoint)
    or ``("finetune", n)`` (after the n-th fine-tune unit's result was written); ``drop`` names a resume
    checkpoint deleted first, as if it had not been written yet. The files are what a kill would leave."""
    real_pretrain, real_write = pretraining.pretrain, worker.write_result
    written = []

    def stopping(config, run_dir, resume=False, **kwargs):
        def callback(stage, epoch, result):
            if (stage, epoch) == tuple(at):
                if drop:
                    os.remove(os.path.join(run_dir, "pretrain", drop))
                raise Interrupt(os.path.dirname(os.path.dirname(run_dir)))
        return real_pretrain(config, run_dir, epoch_callback=callback, resume=resume, **kwargs)

    def write_result(run_dir, result):
        real_write(run_dir, result)
        written.append(result.unit["kind"])
        if at[0] == "finetune" and written.count("finetune") == at[1]:
            raise Interrupt(run_dir)

    pretraining.pretrain, worker.write_result = stopping, write_result
    try:
        with pytest.raises(Interrupt) as caught:
            run("AdaptSSR", "tt", config_dict=config_dict)
    finally:
        pretraining.pretrain, worker.write_result = real_pretrain, real_write
    return Path(str(caught.value))


KILLED = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from recbole_adaptssr.experiment import pretraining
from recbole_adaptssr.quick_start import run

real_pretrain = pretraining.pretrain


def pretrain(config, run_dir, resume=False, **kwargs):
    def callback(stage, epoch, result):  # called after the epoch's resume checkpoint is written
        if (stage, epoch) == {at!r}:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_pretrain(config, run_dir, epoch_callback=callback, resume=resume, **kwargs)


pretraining.pretrain = pretrain
run("AdaptSSR", "tt", config_dict={settings!r})
print("NOT KILLED")
"""


def test_killed_then_interrupted_twice_then_resumed_gives_the_uninterrupted_results(task_data, tmp_path,
                                                                                     monkeypatch):
    config_dict = settings(task_data, tmp_path)
    baseline = run("AdaptSSR", "tt", config_dict={**config_dict, "checkpoint_dir": str(tmp_path / "baseline")})
    assert len(baseline["runs"]) == 4

    # 1. a subprocess killed with SIGKILL in the middle of the first stage, after mlm epoch 1's resume checkpoint
    script = KILLED.format(at=("mlm", 1), settings=config_dict)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout[-2000:], proc.stderr[-4000:])
    (run_dir,) = (tmp_path / "saved").iterdir()
    last = load_checkpoint(stage_checkpoint(run_dir, "mlm", "mlm.last.pth"))
    assert (last["stage"], last["stage_index"], last["epoch"], last["finished"]) == ("mlm", 0, 1, False)
    assert {"model_state", "optimizer", "best_state", "best_score", "patience", "rng"} <= set(last)
    assert {"torch", "numpy", "random", "cuda", "loaders"} <= set(last["rng"])
    assert not list(run_dir.glob("units/*/pretrain/mlm.pth")) and not list(run_dir.glob("units/*/result.json"))
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"

    # 2. resumed (mlm continues at epoch 2), stopped at the stage boundary: mlm finished, ssr had not saved epoch 0
    resumed = {**config_dict, "resume": str(run_dir)}
    assert interrupted_run(resumed, at=("ssr", 0), drop="ssr.last.pth") == run_dir
    assert load_checkpoint(stage_checkpoint(run_dir, "mlm", "mlm.last.pth"))["finished"]  # the mlm unit's end: ssr starts there
    assert sorted(p.name for p in run_dir.glob("units/*/pretrain/*")) == ["mlm.last.pth", "mlm.pth"]
    assert len(finished_units(run_dir, "pretrain_stage")) == 1

    # 3. resumed by name under checkpoint_dir (ssr from its start), stopped after the first fine-tune run finished
    interrupted_run({**config_dict, "resume": run_dir.name}, at=("finetune", 1))
    assert sorted(p.name for p in run_dir.glob("units/*/pretrain/*")) == ["mlm.last.pth", "mlm.pth", "ssr.last.pth",
                                                                          "ssr.pth"]
    assert len(finished_units(run_dir, "finetune")) == 1

    # 4. resumed: nothing pre-trained again, only the 3 unfinished fine-tune runs train
    stages = count_calls(monkeypatch, AdaptSSRTrainer, "train_stage")
    fits = count_calls(monkeypatch, TaskTrainer, "fit")
    out = run("AdaptSSR", "tt", config_dict=resumed)
    assert stages == [] and len(fits) == 3
    assert out["run_dir"] == str(run_dir)
    assert metrics(out) == metrics(baseline)
    for stage in ("mlm", "ssr"):
        a = load_checkpoint(stage_checkpoint(run_dir, stage))["state_dict"]
        b = load_checkpoint(Path(baseline["pretrain"][stage].checkpoint))["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in b), stage
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "complete" and len(record["resumed"]) == 3
    assert not [p for p in run_dir.rglob("*") if ".tmp-" in p.name]

    # 5. resuming a complete run repeats nothing and gives the same results
    fits.clear()
    again = run("AdaptSSR", "tt", config_dict=resumed)
    assert fits == [] and stages == [] and metrics(again) == metrics(baseline)


# ------------------------------------------------------------------------------------------- failed results write
def test_a_failing_results_write_is_logged_first_names_the_path_and_resume_only_writes(task_data, tmp_path,
                                                                                       monkeypatch, caplog):
    """The results folder refuses the write (``results.md`` is a folder: tests may run as root, where a read-only
    folder would not stop the write). The table was logged before; a resumption trains nothing and writes."""
    config_dict = settings(task_data, tmp_path, mlm_epochs=1, ssr_epochs=1, finetune_epochs=1, repeat=1,
                           downstream_tasks=["cls"], state="INFO")
    real = pipeline.write_results

    def blocked(rows, runs, folder, stem="results", **kwargs):
        os.mkdir(os.path.join(folder, f"{stem}.md"))
        return real(rows, runs, folder, stem, **kwargs)

    monkeypatch.setattr(pipeline, "write_results", blocked)
    with caplog.at_level("INFO"), pytest.raises(OSError, match=r"could not write .*/results\.md") as caught:
        run("AdaptSSR", "tt", config_dict=config_dict)
    logged = [r.getMessage() for r in caplog.records]
    assert any("results" in m and "| start point |" in m for m in logged)  # the table is in the log
    (run_dir,) = (tmp_path / "saved").iterdir()
    assert str(run_dir / "results.md") in str(caught.value)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"

    monkeypatch.setattr(pipeline, "write_results", real)
    os.rmdir(run_dir / "results.md")
    fits = count_calls(monkeypatch, TaskTrainer, "fit")
    stages = count_calls(monkeypatch, AdaptSSRTrainer, "train_stage")
    out = run("AdaptSSR", "tt", config_dict={**config_dict, "resume": True})
    assert out["run_dir"] == str(run_dir) and fits == [] and stages == []
    assert (run_dir / "results.md").read_text().startswith("| start point |")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores a read-only folder")
def test_a_read_only_results_folder(task_data, tmp_path, monkeypatch):
    config_dict = settings(task_data, tmp_path, pretrain_stages=[], finetune_from=["none"], finetune_epochs=1,
                           repeat=1, downstream_tasks=["cls"])
    real = pipeline.write_results

    def read_only(rows, runs, folder, stem="results", **kwargs):
        os.chmod(folder, 0o555)
        try:
            return real(rows, runs, folder, stem, **kwargs)
        finally:
            os.chmod(folder, 0o755)

    monkeypatch.setattr(pipeline, "write_results", read_only)
    with pytest.raises(OSError, match=r"could not write .*/results\.md.*Permission denied"):
        run("AdaptSSR", "tt", config_dict=config_dict)


# ------------------------------------------------------------------------------------------- what resume refuses
def test_resume_refuses_other_settings_missing_folders_and_a_folder_in_use(task_data, tmp_path):
    config_dict = settings(task_data, tmp_path, mlm_epochs=2, ssr_epochs=1, downstream_tasks=[])
    run_dir = interrupted_run(config_dict)
    with pytest.raises(ValueError, match=r"resume=.*: the settings differ from those of the run in .*"
                                         r"\(mlm_epochs: then 2, now 3\); resume with the same settings"):
        run("AdaptSSR", "tt", config_dict={**config_dict, "mlm_epochs": 3, "resume": str(run_dir)})
    with pytest.raises(ValueError, match=r"resume='nowhere': no such run folder \(looked at nowhere, .*/nowhere\)"):
        run("AdaptSSR", "tt", config_dict={**config_dict, "resume": "nowhere"})
    with pytest.raises(ValueError, match=r"is not a run folder of a pipeline \(no readable run.json\)"):
        run("AdaptSSR", "tt", config_dict={**config_dict, "resume": str(tmp_path / "data")})
    with hold(str(run_dir)):  # as if the run were still going
        in_use = rf"run folder {run_dir} is in use by another process \(pid {os.getpid()}\)"
        with pytest.raises(RuntimeError, match=in_use):
            run("AdaptSSR", "tt", config_dict={**config_dict, "resume": str(run_dir)})
    assert len(list((tmp_path / "saved").iterdir())) == 1  # none of these made a run folder
    out = run("AdaptSSR", "tt", config_dict={**config_dict, "resume": str(run_dir), "show_progress": False,
                                             "state": "ERROR"})  # what may differ
    assert out["run_dir"] == str(run_dir) and sorted(out["pretrain"]) == ["mlm", "ssr"]


def test_resume_true_takes_the_newest_unfinished_run_of_the_same_settings(task_data, tmp_path):
    config_dict = settings(task_data, tmp_path, mlm_epochs=2, ssr_epochs=1, downstream_tasks=[])
    other = interrupted_run({**config_dict, "ssr_epochs": 2})  # other settings: never picked
    complete = Path(run("AdaptSSR", "tt", config_dict=config_dict)["run_dir"])
    unfinished = interrupted_run(config_dict)
    assert len({other, complete, unfinished}) == 3
    assert run("AdaptSSR", "tt", config_dict={**config_dict, "resume": True})["run_dir"] == str(unfinished)
    fresh = run("AdaptSSR", "tt", config_dict={**config_dict, "resume": "latest"})["run_dir"]  # none left: a new run
    assert Path(fresh) not in (other, complete, unfinished)


def test_a_damaged_resume_checkpoint_fails_its_unit_naming_it(task_data, tmp_path):
    config_dict = settings(task_data, tmp_path, mlm_epochs=2, ssr_epochs=1, downstream_tasks=[])
    run_dir = interrupted_run(config_dict)
    last = stage_checkpoint(run_dir, "mlm", "mlm.last.pth")
    last.write_bytes(last.read_bytes()[:1000])
    out = run("AdaptSSR", "tt", config_dict={**config_dict, "resume": str(run_dir)})
    (failure,) = out["failures"]
    assert not out["ok"] and failure["error"].startswith(f"CheckpointError: checkpoint {last}: not a complete torch "
                                                         "zip archive")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed" and out["pretrain"] == {}


def test_a_finished_run_whose_checkpoint_is_damaged_is_repeated(task_data, tmp_path, monkeypatch, caplog):
    config_dict = settings(task_data, tmp_path, pretrain_stages=[], finetune_from=["none"], finetune_epochs=1,
                           repeat=2, downstream_tasks=["cls"])
    first = run("AdaptSSR", "tt", config_dict=config_dict)
    damaged = Path(first["runs"][1].checkpoint)
    damaged.write_bytes(b"")
    fits = count_calls(monkeypatch, TaskTrainer, "fit")
    with caplog.at_level("WARNING"):
        again = run("AdaptSSR", "tt", config_dict={**config_dict, "resume": first["run_dir"]})
    assert len(fits) == 1 and metrics(again)["runs"] == metrics(first)["runs"]
    assert any("the earlier result of unit cls [none], seed 2024 cannot be reused (CheckpointError: checkpoint "
               f"{damaged}: " in r.getMessage() and "empty" in r.getMessage() for r in caplog.records)
