"""The commands as plans of units (docs/execution.md) on a tiny data set, CPU, one thread per unit:

* a comparison of none, mlm, adaptssr and an ablation compiles to 11 units, the MLM warm-up the three share among
  them once, and gives the same Table 2 with ``executor: serial``, ``processes`` (2 workers) and ``ray`` (a local
  Ray of 2 CPUs);
* a comparison and the RecBole baselines, each SIGKILLed in a subprocess after some units, resume running only the
  missing units and end with the tables of an uninterrupted run;
* a unit that raises is reported with its error and log, the other units finish (a partial table) and the entry
  point exits non-zero.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from recbole_adaptssr.experiment import units as units_module
from recbole_adaptssr.quick_start import run
from task_data import base_config, one_torch_thread, write_task_dataset

REPO = Path(__file__).resolve().parents[1]
METHODS = ["none", "mlm", "adaptssr", "adaptssr_no_hard_negative"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_task_dataset(tmp_path_factory.mktemp("data"), "tt", tasks=("cls", "rec"), n_users=32, n_targets=12)


def comparison_settings(data, tmp_path, **extra) -> dict:
    return base_config(data, tmp_path, pretrain_methods=METHODS, downstream_tasks=["cls"], repeat=2, mlm_epochs=1,
                       ssr_epochs=1, finetune_epochs=2, pretrain_valid_ratio=0.25, similarity_users=0, **extra)


def table2(out) -> tuple:
    """What must not depend on the executor or on interruptions: Table 2, its rows and every run's metrics."""
    return (out["table"], out["rows"],
            sorted((r.start_point, r.task, r.seed, r.best_epoch, r.valid, r.test) for r in out["runs"]))


@pytest.fixture(scope="module")
def serial(data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serial")
    return run("AdaptSSR", "tt", config_dict=comparison_settings(data, tmp))


def test_a_comparison_is_a_plan_whose_shared_warm_up_runs_once(serial):
    outcome = serial["outcome"]
    assert serial["ok"] and len(outcome.results) == len(outcome.ran) == 11  # 3 stage units, 4 x 2 fine-tune runs
    titles = sorted(r.name for r in outcome.results.values() if r.unit["kind"] == "pretrain_stage")
    assert titles == ["adaptssr: pre-training ssr after mlm, seed 2023",
                      "adaptssr_no_hard_negative: pre-training ssr after mlm, seed 2023",
                      "mlm: pre-training mlm, seed 2023"]  # method mlm's, which the other two start from
    mlm = {p["stages"]["mlm"]["checkpoint"] for m in ("mlm", "adaptssr", "adaptssr_no_hard_negative")
           for p in serial["pretrain"][m]}
    assert len(mlm) == 1  # one MLM warm-up for the three methods
    assert [len(serial["pretrain"][m]) for m in METHODS] == [0, 1, 1, 1]
    assert "| adaptssr_no_hard_negative (AdaptSSR w/o hard negatives) |" in serial["table"]


def test_two_worker_processes_give_the_serial_table(serial, data, tmp_path):
    out = run("AdaptSSR", "tt", config_dict=comparison_settings(data, tmp_path, executor="processes",
                                                                 executor_workers=2))
    assert out["ok"] and table2(out) == table2(serial)
    workers = {r.where["worker"] for r in out["outcome"].results.values()}
    assert workers == {0, 1} and "executor: processes" in out["time_table"]  # Table 3 says units shared the CPU


def test_ray_tasks_on_a_local_ray_give_the_serial_table(serial, data, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    out = run("AdaptSSR", "tt", config_dict=comparison_settings(data, tmp_path, executor="ray", executor_workers=2))
    assert not ray.is_initialized()  # the local Ray the executor started is shut down
    assert out["ok"] and table2(out) == table2(serial)
    assert {r.where["executor"] for r in out["outcome"].results.values()} == {"ray"}


KILLED = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from recbole_adaptssr.execution import worker
from recbole_adaptssr.quick_start import run

real, done = worker.write_result, []


def write_result(run_dir, result):  # SIGKILL right after the {after}-th unit's result is written
    real(run_dir, result)
    done.append(result.status)
    if done.count("done") == {after}:
        os.kill(os.getpid(), signal.SIGKILL)


worker.write_result = write_result
run("AdaptSSR", "tt", config_dict={settings!r})
print("NOT KILLED")
"""


def killed_then_resumed(settings: dict, after: int, root: Path) -> dict:
    """Run ``settings`` in a subprocess SIGKILLed after ``after`` units finished, then resume it here."""
    proc = subprocess.run([sys.executable, "-c", KILLED.format(after=after, settings=settings)], cwd=root,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout[-2000:], proc.stderr[-4000:])
    (run_dir,) = Path(settings["checkpoint_dir"]).iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    assert len([p for p in run_dir.glob("units/*/result.json") if json.loads(p.read_text())["status"] == "done"]) \
        == after
    out = run("AdaptSSR", "tt", config_dict={**settings, "resume": True})
    assert out["run_dir"] == str(run_dir) and out["ok"]
    assert len(out["outcome"].read_back) == after  # the finished units are read back ...
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    return out


def test_a_killed_comparison_resumes_running_only_the_missing_units(serial, data, tmp_path):
    out = killed_then_resumed(comparison_settings(data, tmp_path), 4, tmp_path)
    assert len(out["outcome"].ran) == 11 - 4  # ... and only the others run
    assert table2(out) == table2(serial)


def test_killed_recbole_baselines_resume_running_only_the_missing_units(data, tmp_path):
    settings = base_config(data, tmp_path, recbole_baselines=["Pop", "GRU4Rec"], baseline_pretrain=["behaviours"],
                           downstream_tasks=["rec"], repeat=2, embedding_size=16, baseline_epochs=2,
                           baseline_pretrain_epochs=2)
    whole = run("AdaptSSR", "tt", config_dict={**settings, "checkpoint_dir": str(tmp_path / "whole")})
    assert whole["ok"] and len(whole["outcome"].ran) == 5  # GRU4Rec's behaviour pre-training, 2 models x 2 seeds
    out = killed_then_resumed(settings, 2, tmp_path)
    assert len(out["outcome"].ran) == 5 - 2
    assert out["table"] == whole["table"] and [(r.start_point, r.seed, r.test) for r in out["runs"]] == [
        (r.start_point, r.seed, r.test) for r in whole["runs"]]


def test_a_unit_that_raises_is_reported_the_others_finish_and_the_exit_status_is_not_zero(data, tmp_path,
                                                                                          monkeypatch, capsys):
    from recbole_adaptssr import commands

    real = units_module.run_finetune_unit

    def failing(context):  # the executor finds the runner by its module path: this one replaces it
        if context.settings["seed"] == 2024 and context.settings["settings"].get("pretrain_stages") == ["mlm"]:
            raise ValueError("told to fail")
        return real(context)

    monkeypatch.setattr(units_module, "run_finetune_unit", failing)
    settings = base_config(data, tmp_path, pretrain_methods=["none", "mlm"], downstream_tasks=["cls"], repeat=2,
                           mlm_epochs=1, finetune_epochs=2, pretrain_valid_ratio=0.25, similarity_users=0)
    argv = [f"--{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in settings.items()]
    assert commands.main(["--model=AdaptSSR", "--dataset=tt", *argv]) == 1
    err = capsys.readouterr().err
    assert "1 unit(s) failed (mlm: cls, seed 2024: ValueError: told to fail)" in err
    (run_dir,) = (tmp_path / "saved").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    saved = json.loads((run_dir / "comparison.json").read_text())
    assert sorted((r["start_point"], r["seed"]) for r in saved["runs"]) == [("mlm", 2023), ("none", 2023),
                                                                            ("none", 2024)]
    assert not saved["complete"] and "**Partial**" in (run_dir / "comparison.md").read_text()
    failed = [json.loads(p.read_text()) for p in run_dir.glob("units/*/result.json")]
    (failure,) = [r for r in failed if r["status"] == "failed"]
    assert "told to fail" in Path(failure["log"]).read_text()  # the unit's log holds its traceback
