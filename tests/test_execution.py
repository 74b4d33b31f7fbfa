"""The execution core (recbole_adaptssr.execution): units and their ids, plans, the three executors on real (small)
units, resume after a kill, failures, progress, per-unit logs and TensorBoard runs, settings, run folders and their
lock. The unit kinds are tests/execution_units.py (plain Python: worker processes start in a fraction of a second)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import execution_units as toy
from recbole_adaptssr.execution import ExecutorSettings, Plan, Unit, execute, register_unit_kind
from recbole_adaptssr.execution.logs import unit_log
from recbole_adaptssr.execution.progress import Progress, duration
from recbole_adaptssr.execution.result import read_result, unit_folder
from recbole_adaptssr.execution.run_folder import (RunFolderInUse, hold, in_use, open_run_folder, read_run_record,
                                                   resolve_resume)

TESTS = Path(__file__).resolve().parent
toy.register()


def toy_plan(fail: bool = False) -> Plan:
    """Two data sets, three fits (one of them asked for twice), the mean of two fits: 6 units."""
    plan = Plan()
    data = [plan.add(Unit("toy_data", {"seed": s, "n": 40}, title=f"data {s}")) for s in (1, 2)]
    fits = [plan.add(Unit("toy_fit", {"seed": s, "steps": 200, "lr": 0.1, "fail": fail and s == 2},
                          {"data": data[s - 1]}, title=f"fit {s}")) for s in (1, 2)]
    plan.add(Unit("toy_fit", {"seed": 1, "steps": 200, "lr": 0.1, "fail": False}, {"data": data[0]}, title="fit 1 again"))
    plan.add(Unit("toy_fit", {"seed": 3, "steps": 200, "lr": 0.05, "fail": False}, {"data": data[1]}, title="fit 3"))
    plan.add(Unit("toy_mean", {}, {"a": fits[0], "b": fits[1]}, title="mean"))
    return plan


def payloads(outcome) -> dict:
    return {unit_id: result.payload for unit_id, result in outcome.results.items()}


def assert_order_respected(plan: Plan, run_dir) -> None:
    """Every unit started after every unit it needs had ended (the ledger's order)."""
    ledger = toy.read_ledger(run_dir)
    for unit in plan:
        start = ledger.index(("start", unit.id))
        for need in unit.needs.values():
            assert ledger.index(("end", need)) < start, (unit.title, need)


def settings(executor="serial", **values) -> ExecutorSettings:
    return ExecutorSettings.from_settings({"executor": executor, **values})


# -------------------------------------------------------------------------------------------------------- units
def test_a_units_id_is_a_hash_of_its_kind_settings_and_needs_and_nothing_else():
    unit = Unit("toy_fit", {"seed": 1, "lr": 0.1}, {"data": "toy_data-x"}, title="fit")
    # fixed: a run folder's finished units are found by their ids (the canonical JSON: sorted keys, no spaces)
    canonical = '{"kind":"toy_fit","needs":{"data":"toy_data-x"},"settings":{"lr":0.1,"seed":1}}'
    assert unit.id == "toy_fit-" + hashlib.sha256(canonical.encode()).hexdigest()[:16] == "toy_fit-fcccc0a94d9b678d"
    assert Unit("toy_fit", {"lr": 0.1, "seed": 1}, {"data": "toy_data-x"}, title="other").id == unit.id
    assert Unit("toy_fit", {"seed": 1, "lr": 0.1, "extra": [1, 2]}).id == \
        Unit("toy_fit", {"seed": 1, "lr": 0.1, "extra": (1, 2)}).id  # a tuple is the JSON list it becomes
    others = [Unit("toy_fit", {"seed": 2, "lr": 0.1}, {"data": "toy_data-x"}),
              Unit("toy_fit", {"seed": 1, "lr": 0.1}, {"data": "toy_data-y"}),
              Unit("toy_fit", {"seed": 1, "lr": 0.1}, {"start": "toy_data-x"}),
              Unit("toy_mean", {"seed": 1, "lr": 0.1}, {"data": "toy_data-x"}),
              Unit("toy_fit", {"seed": 1.0, "lr": 0.1}, {"data": "toy_data-x"})]
    assert len({unit.id, *(u.id for u in others)}) == 6
    assert Unit.from_dict(json.loads(json.dumps(unit.as_dict()))) == unit


@pytest.mark.parametrize("settings_, message", [
    ({"path": Path("a")}, r"toy unit settings\.path is a PosixPath .*plain JSON"),
    ({"lr": float("nan")}, r"toy unit settings\.lr is nan: a unit's settings must be finite"),
    ({"grid": [1, {2: "x"}]}, r"toy unit settings\.grid\[1\] has the key 2: keys .* must be strings"),
])
def test_settings_that_are_not_plain_json_are_refused_naming_where(settings_, message):
    with pytest.raises(TypeError, match=message):
        Unit("toy", settings_)


def test_a_kind_is_a_plain_name_and_a_runner_is_importable():
    with pytest.raises(ValueError, match=r"unit kind 'Fine-Tune': use lower-case"):
        Unit("Fine-Tune", {})
    with pytest.raises(ValueError, match=r"<lambda>: a unit's function must be defined at the top level"):
        register_unit_kind("toy_lambda", lambda context: {})
    with pytest.raises(ValueError, match=r"unit kind 'toy_fit' is already registered"):
        register_unit_kind("toy_fit", toy.mean_slope)
    plan = Plan([Unit("toy_fitt", {})])
    with pytest.raises(ValueError, match=r"unknown unit kind 'toy_fitt'; registered: .*did you mean toy_fit\?"):
        execute(plan, "unused", settings())


# -------------------------------------------------------------------------------------------------------- plans
def test_a_plan_holds_identical_units_once_and_orders_needs_first():
    plan = Plan()
    mean = Unit("toy_mean", {}, {"a": Unit("toy_fit", {"seed": 1}).id, "b": Unit("toy_fit", {"seed": 2}).id})
    plan.add(mean)  # added before what it needs: still runs after them
    first = plan.add(Unit("toy_fit", {"seed": 1}, title="first"))
    assert plan.add(Unit("toy_fit", {"seed": 1}, title="second")) == first and len(plan) == 1 + 1
    plan.add(Unit("toy_fit", {"seed": 2}))
    assert [u.id for u in plan] == [first, Unit("toy_fit", {"seed": 2}).id, mean.id]
    assert plan[first].title == "first"


def test_a_plan_with_a_missing_need_or_a_cycle_is_refused_naming_the_units():
    plan = Plan([Unit("toy_fit", {"seed": 1}, {"data": "toy_data-none"}, title="orphan")])
    with pytest.raises(ValueError, match=r"unit orphan \(toy_fit-\w+\) needs \{'data': 'toy_data-none'\}, which the "
                                         r"plan does not have"):
        plan.check()
    # ids are hashes of the needs, so only forged ids can make a cycle: a needs b, b needs a
    a = Unit("toy_fit", {"n": 1}, {"x": "toy_fit-forged"}, title="a")
    b = Unit("toy_fit", {"n": 2}, {"x": a.id}, title="b")
    object.__setattr__(b, "id", "toy_fit-forged")
    plan = Plan([a, b])
    with pytest.raises(ValueError, match=r"the plan's units need each other in a cycle: a \(toy_fit-\w+\) needs "
                                         r"\['toy_fit-forged'\], b \(toy_fit-forged\) needs"):
        plan.ordered()


# ---------------------------------------------------------------------------------------------------- executors
def test_serial_and_two_worker_processes_give_the_same_results_each_unit_once_in_order(tmp_path):
    plan = toy_plan()
    assert len(plan) == 6  # "fit 1 again" is "fit 1"
    serial = execute(plan, str(tmp_path / "serial"), settings())
    parallel = execute(plan, str(tmp_path / "processes"), settings("processes", executor_workers=2))
    assert serial.ok and parallel.ok and serial.status == parallel.status == "done"
    assert payloads(serial) == payloads(parallel) and list(payloads(serial)) == [u.id for u in plan]
    fit1 = next(u for u in plan if u.title == "fit 1")
    assert 2.9 < serial.results[fit1.id].payload["w"] < 3.1  # the fit found the line's slope
    for run_dir in ("serial", "processes"):
        ledger = toy.read_ledger(tmp_path / run_dir)
        assert sorted(u for e, u in ledger if e == "start") == sorted(u.id for u in plan)  # each unit ran once
        assert_order_respected(plan, tmp_path / run_dir)
    workers = {r.where["worker"] for r in parallel.results.values()}
    assert workers == {0, 1} and {r.where["pid"] for r in parallel.results.values()} != {os.getpid()}
    assert {r.where["gpu_id"] for r in parallel.results.values()} == {""}  # CPU workers: no GPU
    assert plan.payloads(str(tmp_path / "processes")) == [(u, serial.results[u.id].payload) for u in plan]


def test_a_failed_unit_is_reported_its_dependents_skipped_and_the_others_finish(tmp_path, caplog):
    plan = toy_plan(fail=True)
    by_title = {u.title: u.id for u in plan}
    plan.add(Unit("toy_mean", {}, {"a": by_title["mean"], "b": by_title["fit 3"]}, title="mean of means"))
    by_title["mean of means"] = list(plan)[-1].id
    with caplog.at_level(logging.INFO):
        outcome = execute(plan, str(tmp_path), settings())
    assert outcome.status == "failed" and not outcome.ok
    assert outcome.failed == [by_title["fit 2"]]
    assert outcome.skipped == {by_title["mean"]: by_title["fit 2"], by_title["mean of means"]: by_title["fit 2"]}
    assert sorted(r.unit["title"] for r in outcome.results.values() if r.done) == ["data 1", "data 2", "fit 1",
                                                                                  "fit 3"]
    failed = read_result(str(tmp_path), by_title["fit 2"])
    assert failed.status == "failed" and failed.error == "ValueError: the fit was told to fail (seed 2)"
    assert "raise ValueError" in failed.traceback and failed.payload is None
    assert "the fit was told to fail" in Path(failed.log).read_text()  # the unit's log has the traceback
    assert read_result(str(tmp_path), by_title["mean"]) is None  # never run
    assert not any(u == by_title["mean"] for _, u in toy.read_ledger(tmp_path))
    text = caplog.text
    assert f"FAILED: fit 2: ValueError: the fit was told to fail (seed 2) (its log: {failed.log})" in text
    assert " of 7 skipped: mean needs fit 2, which failed" in text
    assert " of 7 skipped: mean of means needs fit 2, which failed" in text
    assert "4 of 7 units done (0 read back), 1 failed, 2 skipped" in text
    assert list(plan.results(str(tmp_path))) == [by_title[t] for t in ("data 1", "data 2", "fit 1", "fit 3")]


def test_a_worker_process_that_dies_fails_its_unit_and_a_new_worker_runs_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv("EXECUTION_TEST_KILL", "fit 3")  # inherited by the workers: fit 3 SIGKILLs its process
    plan = toy_plan()
    outcome = execute(plan, str(tmp_path), settings("processes", executor_workers=2))
    fit3 = next(u.id for u in plan if u.title == "fit 3")
    assert outcome.failed == [fit3] and not outcome.skipped
    assert outcome.results[fit3].error.startswith("worker process ") and "exit code -9" in outcome.results[fit3].error
    assert read_result(str(tmp_path), fit3).status == "failed"
    assert sum(r.done for r in outcome.results.values()) == 5


KILLED_RUN = textwrap.dedent("""
    import sys
    sys.path[:0] = [{tests!r}]
    import execution_units, test_execution
    from recbole_adaptssr.execution import execute
    execute(test_execution.toy_plan(), {run_dir!r}, test_execution.settings())
""")


def test_a_plan_killed_part_way_resumes_running_only_the_missing_units(tmp_path):
    run_dir = tmp_path / "run"
    script = KILLED_RUN.format(tests=str(TESTS), run_dir=str(run_dir))
    env = {**os.environ, "EXECUTION_TEST_KILL": "fit 2",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS.parent), os.environ.get("PYTHONPATH")]))}
    process = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert process.returncode == -signal.SIGKILL, process.stderr[-3000:]
    plan = toy_plan()
    before = [u for e, u in toy.read_ledger(run_dir) if e == "end"]
    assert len(before) == 3 and len(plan.results(str(run_dir))) == 3  # data 1, data 2, fit 1: a partial table
    outcome = execute(plan, str(run_dir), settings("processes", executor_workers=2))
    assert outcome.ok and sorted(outcome.read_back) == sorted(before) and len(outcome.ran) == 3
    starts = [u for e, u in toy.read_ledger(run_dir) if e == "start"]
    assert len(starts) == 4 + 3  # 3 finished + fit 2 (killed) before; fit 2, fit 3, mean now
    assert payloads(outcome) == payloads(execute(plan, str(tmp_path / "whole"), settings()))


def test_ctrl_c_marks_the_running_unit_interrupted_keeps_the_finished_ones_and_propagates(tmp_path, monkeypatch,
                                                                                        caplog):
    monkeypatch.setenv("EXECUTION_TEST_INTERRUPT", "fit 1")
    plan = toy_plan()
    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        execute(plan, str(tmp_path), settings())
    fit1 = next(u.id for u in plan if u.title == "fit 1")
    assert read_result(str(tmp_path), fit1).status == "interrupted"
    assert len(plan.results(str(tmp_path))) == 2  # the data units
    assert f"interrupted with 2 of 6 units finished: their results are kept in {tmp_path}" in caplog.text
    monkeypatch.delenv("EXECUTION_TEST_INTERRUPT")
    resumed = execute(plan, str(tmp_path), settings())
    assert resumed.ok and len(resumed.read_back) == 2 and resumed.ran[0] == fit1


def test_a_finished_unit_whose_check_fails_runs_again(tmp_path, caplog):
    plan = toy_plan()
    first = execute(plan, str(tmp_path), settings())
    data1 = next(u.id for u in plan if u.title == "data 1")
    os.remove(os.path.join(unit_folder(str(tmp_path), data1), "data.json"))
    with caplog.at_level(logging.WARNING):
        again = execute(plan, str(tmp_path), settings())
    assert again.ran == [data1] and len(again.read_back) == 5 and payloads(again) == payloads(first)
    assert f"the earlier result of unit data 1 cannot be reused (FileNotFoundError: " in caplog.text


def test_ray_tasks_on_a_local_ray_give_the_same_results(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    # the Ray workers inherit this environment: they import the toy unit kinds from tests/
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), str(TESTS.parent),
                                                                   os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")
    plan = toy_plan()
    outcome = execute(plan, str(tmp_path / "ray"), settings("ray", executor_workers=2, cpus_per_unit=1))
    assert not ray.is_initialized()  # the executor shut down the Ray it started
    assert outcome.ok and {r.where["executor"] for r in outcome.results.values()} == {"ray"}
    assert payloads(outcome) == payloads(execute(plan, str(tmp_path / "serial"), settings()))
    assert_order_respected(plan, tmp_path / "ray")


# ------------------------------------------------------------------------------------------ progress and logs
def test_progress_counts_units_and_estimates_the_time_left_from_this_sessions_units(caplog):
    progress = Progress(10)
    with caplog.at_level(logging.INFO):
        progress.read_back(4)
        assert progress.eta() == "ETA unknown"
        progress.done("fit 1", 29.5, running=1)
        progress.failed("fit 2", "ValueError: x", "/run/u/f.log", running=0)
        progress.skipped("mean", "fit 2")
    # 29.5 s a unit: 5 left shared by the 2 that ran side by side, then 4 left one at a time
    assert "unit 5 of 10 done: fit 1 in 30 s; 1 running, ETA 1 min 14 s" in caplog.text
    assert "unit 6 of 10 FAILED: fit 2: ValueError: x (its log: /run/u/f.log); 0 running, ETA 1 min 58 s" in caplog.text
    assert "unit 7 of 10 skipped: mean needs fit 2, which failed" in caplog.text
    assert [duration(s) for s in (42.4, 185, 7440)] == ["42 s", "3 min 05 s", "2 h 04 min"]


def test_the_time_left_is_estimated_per_kind_of_unit():
    """A long pre-training chain, then many short fine-tune units side by side (a comparison in 5 workers): once a
    fine-tune unit finished, the estimate is the fine-tune units' time shared by the units running, not the
    pre-training's pace times the units left."""
    progress = Progress(22, kinds=["pretrain_stage"] * 2 + ["finetune"] * 20)
    progress.done("mlm", 175, running=0, kind="pretrain_stage")
    assert progress.eta(0) == "ETA 1 h 01 min"  # nothing else known yet: 21 units of 175 s
    progress.done("ssr", 35, running=0, kind="pretrain_stage")
    assert progress.eta(0) == "ETA 35 min 00 s"  # 20 fine-tune units of the 105 s mean so far
    progress.done("age", 12, running=4, kind="finetune")
    assert progress.eta(4) == "ETA 46 s"  # 19 units of 12 s over 5 side by side
    progress.skipped("like", "age", kind="finetune")
    assert progress.eta(4) == "ETA 43 s"  # 18 left
    for _ in range(17):
        progress.done("click", 14, running=1, kind="finetune")
    assert progress.eta(0) == "ETA 14 s"  # the last one, alone: the fine-tune mean (17 x 14 + 12) / 18
    progress.done("last", 14, running=0, kind="finetune")
    assert progress.eta(0) == "none left"


def test_each_unit_logs_to_its_own_file_and_gets_its_own_tensorboard_run(tmp_path):
    from recbole.utils import get_tensorboard

    root = logging.getLogger()
    before = list(root.handlers)
    folders = []
    for unit_id in ("finetune-aaaa", "finetune-bbbb"):
        path = tmp_path / "run-7" / "units" / unit_id / f"run-7--{unit_id}.log"
        path.parent.mkdir(parents=True)
        with unit_log(str(path), logging.INFO, isolated=False, label=unit_id):
            root.info(f"inside {unit_id}")
            writer = get_tensorboard(root)  # what RecBole's Trainer does in its __init__
            folders.append(writer.log_dir)
            writer.close()
        assert f"inside {unit_id}" in path.read_text()
    assert folders == ["log_tensorboard/run-7--finetune-aaaa", "log_tensorboard/run-7--finetune-bbbb"]
    assert root.handlers == before  # the unit's handler is gone afterwards


def test_fine_tune_units_each_draw_into_a_tensorboard_run_of_their_own(task_data, tmp_path):
    from task_data import base_config

    common = base_config(task_data, tmp_path, finetune_epochs=2, pretrain_stages=[], downstream_tasks=["cls"])
    plan = Plan(Unit("recbole_finetune", {**common, "model": "AdaptSSR", "dataset": task_data.name, "task": "cls",
                                          "seed": seed}, title=f"cls, seed {seed}") for seed in (1, 2))
    assert len(plan) == 2
    run_dir = tmp_path / "run"
    outcome = execute(plan, str(run_dir), settings())
    assert outcome.ok
    for unit in plan:
        payload = outcome.results[unit.id].payload
        assert payload["seed"] == unit.settings["seed"] and set(payload["test"]) == {"acc"}
        assert (run_dir / "units" / unit.id / payload["checkpoint"]).is_file()  # written into the unit's folder
        events = list((tmp_path / "log_tensorboard" / f"run--{unit.id}").glob("events.out.tfevents.*"))
        assert len(events) == 1 and events[0].stat().st_size > 0
    assert len(list((tmp_path / "log_tensorboard").iterdir())) == 2  # no run shared by the two units
    again = execute(plan, str(run_dir), settings())
    assert again.ran == [] and payloads(again) == payloads(outcome)


# ------------------------------------------------------------------------------------------------- settings
def test_executor_settings_defaults_come_from_the_yaml_and_bad_values_name_the_key():
    default = ExecutorSettings.from_settings()
    assert (default.executor, default.workers, default.cpus_per_unit, default.gpus_per_unit) == ("serial", None, 1, 0)
    assert ExecutorSettings.from_settings({}, gpu_ids=["0"]).gpus_per_unit == 1  # ~: one GPU a unit on a GPU run
    quarter = ExecutorSettings.from_settings({"executor": "processes", "gpus_per_unit": 0.25}, gpu_ids=["2", "5"])
    assert quarter.worker_devices() == ["2"] * 4 + ["5"] * 4  # eight workers, four on each GPU of gpu_id
    pairs = ExecutorSettings.from_settings({"executor": "processes", "gpus_per_unit": 2}, gpu_ids=list("0123"))
    assert pairs.worker_devices() == ["0,1", "2,3"]
    bad = [({"executor": "threads"}, r"executor must be one of \['serial', 'processes', 'ray'\], got 'threads'"),
           ({"executor": "processes", "executor_workers": 0}, r"executor_workers must be an integer >= 1"),
           ({"executor": "processes", "cpus_per_unit": 0}, r"cpus_per_unit must be a number > 0, got 0"),
           ({"executor": "processes", "gpus_per_unit": 1.5}, r"gpus_per_unit above 1 must be a whole number"),
           ({"executor": "processes", "gpus_per_unit": 0.5, "executor_workers": 3},
            r"executor_workers=3 with gpus_per_unit=0.5 needs 2 GPU\(s\), and gpu_id has 1 GPU\(s\) \(0\)"),
           ({"executor": "serial", "executor_workers": 2},
            r"\['executor_workers'\] has no effect with executor: serial"),
           ({"executor": "processes", "ray_address": "auto"}, r"\['ray_address'\] has no effect with executor: proc"),
           ({"executor_threads": 2}, r"unknown executor setting\(s\) \['executor_threads'\]")]
    for values, message in bad:
        with pytest.raises(ValueError, match=message):
            ExecutorSettings.from_settings(values, gpu_ids=["0"])


def test_executor_settings_from_a_config(tiny_config):
    from recbole_adaptssr.config import Config

    config = Config(model="AdaptSSR", dataset="tiny", config_dict={**tiny_config, "executor": "processes",
                                                                    "executor_workers": 2, "cpus_per_unit": 0.5})
    read = ExecutorSettings.from_config(config)
    assert (read.executor, read.workers, read.cpus_per_unit, read.gpus_per_unit, read.gpu_ids) == \
        ("processes", 2, 0.5, 0.0, ())  # device cpu: no GPU, units on the CPU


# ---------------------------------------------------------------------------------------------- run folders
HOLDER = textwrap.dedent("""
    import sys, time
    from recbole_adaptssr.execution.run_folder import hold
    with hold(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
""")


def test_the_lock_refuses_a_second_holder_naming_its_pid_and_dies_with_its_process(tmp_path):
    folder = str(tmp_path)
    with hold(folder):
        with pytest.raises(RunFolderInUse, match=rf"run folder {folder} is in use by another process "
                                                 rf"\(pid {os.getpid()}\): wait for it to end"):
            with hold(folder):
                pass
        assert in_use(folder)
    assert not in_use(folder)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS.parent), os.environ.get("PYTHONPATH")]))}
    other = subprocess.Popen([sys.executable, "-c", HOLDER, folder], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderInUse, match=rf"\(pid {other.pid}\)"):
            with hold(folder):
                pass
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
    with hold(folder):  # the OS released the killed holder's lock
        assert not in_use(str(tmp_path / "elsewhere"))


def test_open_run_folder_makes_a_new_folder_or_resumes_one_with_the_same_settings(tmp_path, caplog):
    root = str(tmp_path)
    identity = {"command": "comparison", "model": "AdaptSSR", "dataset": "tt"}
    ours = {"seed": 1, "repeat": 2, "executor": "serial"}
    with open_run_folder(root, "comparison-tt", identity, ours) as first:
        assert not first.resumed and read_run_record(first.path)["status"] == "running"
        stale = Path(first.path) / "units" / ".result.json.tmp-123-0a1b2c3d"
        stale.parent.mkdir()
        stale.write_text("half")
    with open_run_folder(root, "comparison-tt", identity, ours) as finished:
        finished.finish("complete")
    assert first.path != finished.path
    # true: the newest unfinished run of these settings (the executor may differ); its stale temporaries removed
    with open_run_folder(root, "x", identity, {**ours, "executor": "processes"}, resume=True) as again:
        assert again.resumed and again.path == first.path and again.removed == [str(stale)]
        assert len(read_run_record(first.path)["resumed"]) == 1
        with pytest.raises(RunFolderInUse):
            with open_run_folder(root, "x", identity, ours, resume=first.path):
                pass
    with pytest.raises(ValueError, match=r"resume='.*': the settings differ from those of the run in .* \(repeat: "
                                         r"then 2, now 3\); resume with the same settings"):
        resolve_resume(first.path, root, identity, {**ours, "repeat": 3})
    with pytest.raises(ValueError, match=r"\(command: then 'comparison', now 'pipeline'\)"):
        resolve_resume(os.path.basename(first.path), root, {**identity, "command": "pipeline"}, ours)
    with pytest.raises(ValueError, match=r"resume='nowhere': no such run folder \(looked at nowhere, .*/nowhere\)"):
        resolve_resume("nowhere", root, identity, ours)
    with caplog.at_level(logging.WARNING):
        assert resolve_resume("latest", root, identity, {**ours, "seed": 2}) is None
    assert "no unfinished run of these settings" in caplog.text
