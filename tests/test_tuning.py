"""Hyper-parameter studies with Ray Tune (run_hyper_adaptssr.py, docs/tuning.md): the params-file parser, a search
selected on validation whose best.yaml reproduces through the main entry point, per-epoch reports that let ASHA
stop a bad trial, failed trials recorded without ending the study, resume without re-running finished trials,
and a RecBole model on the rec task.

One local Ray (num_cpus=2, no dashboard) serves the whole module; every study runs one trial at a time
(--max_concurrent_trials=1: one worker process to start per study, a deterministic trial order)."""

from __future__ import annotations

import csv
import math
import os
import re
import shutil
import signal
import tempfile
import warnings
from pathlib import Path

import pytest
import yaml

from recbole_adaptssr.tuning.space import SpaceError, parse_space, read_space, to_param_space
from task_data import base_config, stage_checkpoint, write_task_dataset

ray = pytest.importorskip("ray")
from ray import tune  # noqa: E402

from recbole_adaptssr.tuning.cli import main, parse  # noqa: E402
from recbole_adaptssr.tuning.study import StudySpec, prepare, trial_settings  # noqa: E402


# ------------------------------------------------------------------------------------------------- the parser
def test_each_params_file_syntax_maps_to_its_ray_domain(tmp_path):
    path = tmp_path / "space.hyper"
    path.write_text(
        "# RecBole's syntax, commas or spaces between bounds\n"
        "learning_rate loguniform -8,0          # exp(U(-8, 0)), as RecBole\n"
        "embedding_size choice [64,96,128]\n"
        "mlp_hidden_size choice ['[64,64,64]','[128,128]']\n"
        "dropout uniform 0.1 0.5\n"
        "hidden_size quniform 32 128 32\n"
        "weight quniform 0.0 1.0 0.25\n"
        "n_layers randint 1 4\n"
        "pretrain_stages grid [[mlm, ssr], [ssr]]\n"
        "seed grid [1, 2]\n"
        "crop_ratio same mask_ratio\n"
        "mask_ratio grid [0.2, 0.8]\n"
        "lr2 choice [1e-8, none]\n"
    )
    dims = {d.name: d for d in read_space(path)}
    assert dims["learning_rate"].args == (-8.0, 0.0) and dims["learning_rate"].where == f"{path}:2"
    assert dims["mlp_hidden_size"].args == (("[64,64,64]", "[128,128]"),)
    assert dims["pretrain_stages"].args == ((["mlm", "ssr"], ["ssr"]),)
    assert dims["lr2"].args == ((1e-8, "none"),)  # YAML would read 1e-8 as a string
    assert dims["hidden_size"].values() == [32, 64, 96, 128]
    assert dims["n_layers"].values() == [1, 2, 3]  # upper bound excluded
    space = to_param_space(list(dims.values()))
    lr = [space["learning_rate"].sample() for _ in range(300)]
    assert math.exp(-8) <= min(lr) and max(lr) <= 1.0 and min(lr) < 0.01  # log-uniform over e^-8 .. e^0
    assert {type(space["hidden_size"].sample()) for _ in range(20)} == {int}
    assert {space["hidden_size"].sample() for _ in range(200)} <= {32, 64, 96, 128}
    assert {space["weight"].sample() for _ in range(200)} <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert {space["n_layers"].sample() for _ in range(200)} == {1, 2, 3}
    assert space["seed"] == {"grid_search": [1, 2]}
    assert 0.1 <= space["dropout"].sample() <= 0.5
    assert space["embedding_size"].sample() in (64, 96, 128)
    # `same` follows the drawn key within each generated trial
    from ray.tune.search import BasicVariantGenerator
    from ray.tune.search.variant_generator import generate_variants

    variants = [v for _, v in generate_variants({"mask_ratio": space["mask_ratio"], "crop_ratio": space["crop_ratio"]})]
    assert [(v["mask_ratio"], v["crop_ratio"]) for v in variants] == [(0.2, 0.2), (0.8, 0.8)]
    assert BasicVariantGenerator  # the search algorithm a study uses


@pytest.mark.parametrize("line,message", [
    ("lr uniform 1", r"uniform needs 2 bounds \(a b\), got '1'"),
    ("lr loguniform 0 x", r"loguniform bound 'x' is not a number"),
    ("lr uniform 0.5 0.1", r"uniform needs a < b"),
    ("lr quniform 1 8 0", r"quniform needs q > 0"),
    ("n randint 1.5 4", r"randint needs integer bounds"),
    ("lr normal 0 1", r"unknown kind 'normal' for lr; use one of choice, grid, uniform, loguniform"),
    ("lr choice []", r"choice needs at least one value"),
    ("lr choice [1, 2", r"choice needs a list such as \[1, 2\]"),
    ("lr grid 0.1", r"grid needs a list"),
    ("lr", r"expected 'KEY KIND VALUES'"),
    ("lr choice", r"lr choice has no values"),
    ("crop_ratio same mask_ratio", r"crop_ratio same mask_ratio: mask_ratio is not a key of this space"),
    ("seed choice [3]", r"seed is already searched at .*space.hyper:2"),
])
def test_a_bad_line_is_an_error_naming_the_file_and_the_line(tmp_path, line, message):
    path = tmp_path / "space.hyper"
    path.write_text("# a comment, then a good line\nseed grid [1, 2]\n" + line + "\n")
    with pytest.raises(SpaceError, match=rf"^{path}:3: (.* )?{message}"):
        read_space(path)


def test_loguniform_bounds_that_look_like_values_warn_with_the_log_bounds():
    with pytest.warns(UserWarning, match=r"s.hyper:1: loguniform 0.0001 0.01 draws exp\(U\(a, b\)\) = 1 \.\. 1.01 "
                                         r".*write: loguniform -9.21 -4.605"):
        parse_space("learning_rate loguniform 0.0001 0.01\n", "s.hyper")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_space("learning_rate loguniform -9.21 -4.6\n", "s.hyper")  # the intended form: no warning


def test_space_lines_from_the_command_line_replace_the_files():
    options, settings = parse(["--params_file=x.hyper", "--space", "seed grid [3]", "--learning_rate=0.01",
                               "--num_samples=2"])
    assert options.space_lines == ["seed grid [3]"] and options.num_samples == 2
    assert settings == ["--learning_rate=0.01"]  # a setting of the runs, not an option of the study
    with pytest.raises(SystemExit):
        parse(["--params_file=x.hyper", "--learning_rate", "0.01"])  # settings are one --key=value token


def test_trial_settings_expand_a_method_and_the_augmentation_proportion():
    spec = StudySpec(model="AdaptSSR", dataset="tt", data_name="tt", settings={"seed": 7, "mask_ratio": 0.6},
                     mode="pretrain", task="cls", metric="acc", metric_mode="max", uses_pretext=True,
                     stages=["mlm", "ssr"])
    settings, info = trial_settings(spec, {"pretrain_method": "adaptssr", "augmentation_proportion": 0.3})
    assert settings["pretrain_stages"] == ["mlm", "ssr"] and settings["finetune_from"] == ["ssr"]
    assert [settings[f"ssr_{k}"] for k in ("mask_ratio", "crop_ratio", "reorder_ratio")] == [0.3, 0.3, 0.3]
    assert settings["mask_ratio"] == 0.6 and "mlm_mask_ratio" not in settings  # MLM's own masking untouched
    assert (settings["downstream_tasks"], settings["repeat"], info["method"]) == (["cls"], 1, "AdaptSSR")
    settings, info = trial_settings(spec, {"pretrain_stages": ["ssr"], "learning_rate": 0.01})
    assert (settings["pretrain_stages"], settings["finetune_from"]) == (["ssr"], ["ssr"])
    assert settings["learning_rate"] == 0.01


# ------------------------------------------------------------------------------------------------- studies
@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module: 2 CPUs, no dashboard, its files in a short temporary folder (Ray's socket
    paths must stay under 107 characters)."""
    os.environ["RAY_DEDUP_LOGS"] = "0"
    folder = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=folder, log_to_driver=False)
    yield
    ray.shutdown()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_task_dataset(tmp_path_factory.mktemp("data"), "tt", tasks=("cls", "rec"), n_users=40, n_targets=16)


def study(tmp_path, data, space: str, *args, callbacks=None, name="study", **settings):
    path = tmp_path / f"{name}.hyper"
    path.write_text(space)
    argv = ["--dataset=tt", f"--params_file={path}", f"--storage_path={tmp_path / 'ray_results'}",
            f"--output_dir={tmp_path / name}", f"--name={name}", "--verbose=0", "--max_concurrent_trials=1", *args]
    return main(argv, config_dict=base_config(data, tmp_path, **settings), callbacks=callbacks)


def read_csv(path) -> list:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_search_selects_on_validation_and_its_best_yaml_reproduces(local_ray, data, tmp_path):
    """4 trials of fine-tuning settings over ONE checkpoint, pre-trained once before the search; the best trial
    by validation NDCG@10; best.yaml rerun through the main entry point gives the same validation metric and the
    study's only test metrics."""
    outcome = study(tmp_path, data, "learning_rate grid [0.01, 0.002]\nhead_hidden_size grid [8, 16]\n",
                    "--finetune_from=ssr", "--tune_task=rec", "--scheduler=fifo",
                    mlm_epochs=1, ssr_epochs=1, pretrain_valid_ratio=0.2, finetune_epochs=2)
    spec, rows = outcome.spec, outcome.rows
    assert (spec.mode, spec.task, spec.metric, spec.metric_mode) == ("finetune", "rec", "ndcg@10", "max")
    assert Path(spec.start_point) == stage_checkpoint(tmp_path / "study", "ssr")  # a unit of the study's folder
    assert len(list((tmp_path / "study" / "units").glob("trial-*/result.json"))) == 4  # each trial a unit too
    assert not list((tmp_path / "study" / "units").glob("trial-*/**/*.pth"))  # their checkpoints removed
    assert [r["status"] for r in rows] == ["completed"] * 4 and [r["epochs"] for r in rows] == [2] * 4
    assert sorted((r["params"]["learning_rate"], r["params"]["head_hidden_size"]) for r in rows) == [
        (0.002, 8), (0.002, 16), (0.01, 8), (0.01, 16)]
    best = max(rows, key=lambda r: r["valid"])
    assert outcome.best["trial"] == best["trial"] and not outcome.interrupted
    # the trials reported validation only, after every epoch
    for row in rows:
        with open(Path(row["path"]) / "progress.csv", newline="") as f:
            progress = list(csv.DictReader(f))
        assert [int(p["epoch"]) for p in progress] == [1, 2]
        assert not [c for c in progress[0] if "test" in c.lower()]
        assert float(row["valid"]) == max(float(p["objective"]) for p in progress)
    table = read_csv(tmp_path / "study" / "trials.csv")
    assert [t["trial"] for t in table] == [r["trial"] for r in rows] and "valid ndcg@10" in table[0]
    assert (tmp_path / "study" / "trials.md").read_text().startswith("| trial | status | learning_rate |")
    # best.yaml: the trial's settings over the same checkpoint, one seed, one task
    settings = yaml.safe_load((tmp_path / "study" / "best.yaml").read_text())
    assert settings["learning_rate"] == best["params"]["learning_rate"]
    assert settings["head_hidden_size"] == best["params"]["head_hidden_size"]
    assert settings["finetune_from"] == [spec.start_point] and settings["pretrain_stages"] == []
    assert (settings["downstream_tasks"], settings["repeat"], settings["seed"]) == (["rec"], 1, 2023)
    # rerun once through quick_start.run (run_recbole_adaptssr.py --config_files=best.yaml): same validation
    rerun = outcome.rerun
    assert rerun["valid"]["ndcg@10"] == pytest.approx(best["valid"], abs=1e-9)
    assert set(rerun["test"]) == {"ndcg@10"} and 0.0 <= rerun["test"]["ndcg@10"] <= 1.0
    summary = (tmp_path / "study" / "summary.md").read_text()
    assert "reproduces the trial's" in summary and "the only test evaluation of the study" in summary


def test_each_epoch_is_reported_so_asha_stops_a_bad_learning_rate_after_the_grace_period(local_ray, data,
                                                                                         tmp_path):
    outcome = study(tmp_path, data, "learning_rate grid [0.01, 1e-8, 1e-8]\n", "--finetune_from=none",
                    "--tune_task=cls", "--scheduler=asha", "--grace_period=1", "--reduction_factor=2",
                    "--no_final_test", finetune_epochs=3)
    by_lr = [(r["params"]["learning_rate"], r["epochs"], r["status"]) for r in outcome.rows]
    assert by_lr[0] == (0.01, 3, "completed")
    assert by_lr[1:] == [(1e-8, 1, "stopped_early")] * 2  # stopped at the first rung: one epoch each
    assert outcome.best["params"]["learning_rate"] == 0.01


class InterruptAfterFirstTrial(tune.Callback):
    """Ctrl-C (SIGINT to this process) once, when the first trial has finished: Ray saves the experiment state
    and returns, leaving the remaining trials unfinished. A marker file keeps the restored study (whose callbacks
    Ray unpickles) from interrupting again."""

    def __init__(self, marker):
        self.marker = str(marker)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if not os.path.exists(self.marker):
            Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGINT)


def test_a_failing_trial_is_recorded_and_an_interrupted_study_resumes_without_rerunning(local_ray, data,
                                                                                        tmp_path):
    space = "head_dropout_prob grid [0.1, 1.5, 0.2]\n"  # 1.5 is no probability: that trial raises
    args = ("--finetune_from=none", "--tune_task=cls", "--scheduler=fifo", "--no_final_test")
    first = study(tmp_path, data, space, *args, callbacks=[InterruptAfterFirstTrial(tmp_path / "interrupted")],
                  finetune_epochs=2)
    assert first.interrupted and first.best is None and "best_yaml" not in first.files
    done = [r for r in first.rows if r["status"] == "completed"]
    assert len(done) == 1 and done[0]["params"]["head_dropout_prob"] == 0.1
    progress = Path(done[0]["path"]) / "progress.csv"  # one row per epoch, each with its timestamp and pid
    before = progress.read_text()

    second = study(tmp_path, data, space, *args, "--resume", finetune_epochs=2)
    assert not second.interrupted
    rows = {r["params"]["head_dropout_prob"]: r for r in second.rows}
    assert len(second.rows) == 3 and [rows[p]["status"] for p in (0.1, 1.5, 0.2)] == [
        "completed", "failed", "completed"]
    assert "1.5" in rows[1.5]["error"] and rows[1.5]["valid"] is None  # the error is in the table
    assert rows[0.1]["trial"] == done[0]["trial"] and rows[0.1]["valid"] == done[0]["valid"]
    assert progress.read_text() == before  # the finished trial did not run again (Ray may copy the file anew)
    table = read_csv(tmp_path / "study" / "trials.csv")
    assert [t["status"] for t in table].count("failed") == 1 and "1.5" in table[1]["error"]
    assert second.best["params"]["head_dropout_prob"] in (0.1, 0.2)


def test_a_recbole_model_is_tuned_on_the_recommendation_task(local_ray, data, tmp_path):
    outcome = study(tmp_path, data, "learning_rate grid [0.01, 0.001]\n", "--model=SASRec", "--scheduler=fifo",
                    n_heads=2, finetune_epochs=1)
    spec = outcome.spec
    assert (spec.model, spec.mode, spec.task, spec.metric, spec.start_point) == ("SASRec", "finetune", "rec",
                                                                                 "ndcg@10", None)
    assert [r["status"] for r in outcome.rows] == ["completed", "completed"]
    assert outcome.rerun["valid"]["ndcg@10"] == pytest.approx(outcome.best["valid"], abs=1e-9)
    assert "--model=SASRec --dataset=tt" in (tmp_path / "study" / "best.yaml").read_text()


def test_settings_a_search_cannot_change_fail_before_ray_starts(data, tmp_path):
    from recbole_adaptssr.tuning.study import StudyOptions

    space = tmp_path / "bad.hyper"
    for text, message in [("mask_ratio grid [0.1, 0.9]\n", r"bad.hyper:1: mask_ratio is a pre-training setting; "
                                                            r"a fine-tune search keeps one pre-trained start point"),
                          ("epochs choice [1, 2]\n", r"epochs is a pre-training setting \(fine-tuning epochs are "
                                                     r"finetune_epochs\)"),
                          ("repeat grid [1, 2]\n", r"repeat cannot be searched: a trial is one seed")]:
        space.write_text(text)
        options = StudyOptions(params_file=str(space), dataset="tt", search="finetune", finetune_from="none",
                               output_dir=str(tmp_path / "out"))
        with pytest.raises(ValueError, match=message):
            prepare(options, config_dict=base_config(data, tmp_path))


def test_a_pretraining_sweep_trains_each_method_and_its_best_yaml_reproduces(local_ray, data, tmp_path):
    """Fig. 3 in small: each trial pre-trains its method with its augmentation proportion, then fine-tunes; the
    table has the pre-training epochs per stage; best.yaml (stages, proportion) reruns through the pipeline."""
    outcome = study(tmp_path, data, "pretrain_method grid [adaptssr]\naugmentation_proportion grid [0.2, 0.8]\n",
                    "--tune_task=cls", "--scheduler=fifo", mlm_epochs=1, ssr_epochs=2, pretrain_valid_ratio=0.2,
                    finetune_epochs=2)
    assert outcome.spec.mode == "pretrain"  # chosen from the space
    rows = outcome.rows
    assert [(r["status"], r["method"], r["pretrain_epochs"]) for r in rows] == [
        ("completed", "AdaptSSR", {"mlm": 1, "ssr": 2})] * 2
    settings = yaml.safe_load((tmp_path / "study" / "best.yaml").read_text())
    proportion = outcome.best["params"]["augmentation_proportion"]
    assert settings["pretrain_stages"] == ["mlm", "ssr"] and settings["finetune_from"] == ["ssr"]
    assert [settings[f"ssr_{k}"] for k in ("mask_ratio", "crop_ratio", "reorder_ratio")] == [proportion] * 3
    assert outcome.rerun["valid"]["acc"] == pytest.approx(outcome.best["valid"], abs=1e-9)
    # a sweep of a number draws Fig. 3 beside its trials table: one line (AdaptSSR), a point per proportion
    figure = tmp_path / "study" / "fig3_sweep"
    assert Path(outcome.files["sweep_png"]) == figure.with_suffix(".png")
    assert figure.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in figure.with_suffix(".svg").read_text(encoding="utf-8")
    table = figure.with_suffix(".md").read_text(encoding="utf-8")
    assert "| augmentation_proportion | AdaptSSR |" in table
    assert [line.split(" |")[0] for line in table.splitlines() if line.startswith("| 0.")] == ["| 0.2", "| 0.8"]


def test_plot_sweep_draws_one_line_per_method_with_the_mean_over_seeds(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("plot_sweep", Path(__file__).resolve().parents[1] / "scripts"
                                                  / "plot_sweep.py")
    plot_sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot_sweep)
    rows = [("t0", "completed", 0.1, 1, "AdaptSSR", 0.50), ("t1", "completed", 0.1, 2, "AdaptSSR", 0.60),
            ("t2", "completed", 0.5, 1, "AdaptSSR", 0.70), ("t3", "completed", 0.1, 1, "CL4SRec", 0.40),
            ("t4", "failed", 0.5, 1, "CL4SRec", "")]
    lines = ["trial,status,augmentation_proportion,seed,method,valid ndcg@10,error"]
    lines += [",".join(str(v) for v in r) + ("," if r[1] != "failed" else ",ValueError: bad") for r in rows]
    (tmp_path / "trials.csv").write_text("\n".join(lines) + "\n")
    assert plot_sweep.main([str(tmp_path / "trials.csv"), "--out", str(tmp_path / "fig3.png")]) == 0
    table = (tmp_path / "fig3.md").read_text()
    assert "| augmentation_proportion | AdaptSSR | CL4SRec |" in table
    assert "| 0.1 | 0.5500 ± 0.0707 (n=2) | 0.4000 |" in table and "| 0.5 | 0.7000 | - |" in table
    assert "t4 (failed: ValueError: bad)" in table
    from PIL import Image

    assert Image.open(tmp_path / "fig3.png").size == (960, 630)  # matplotlib's 6.4 x 4.2 inches at 150 dpi
    assert "<svg" in (tmp_path / "fig3.svg").read_text(encoding="utf-8")
    # the figure itself: a line per method, through the means of its points
    from recbole_adaptssr.analysis import figures, sweep

    rows = sweep.read_trials(str(tmp_path / "trials.csv"))
    x, y, groups = sweep.pick_columns(rows)
    assert (x, y, groups) == ("augmentation_proportion", "valid ndcg@10", ["method"])  # seed: averaged over
    lines = figures.sweep_figure(sweep.series(rows, x, y, groups)[0], x, y).axes[0].get_lines()
    assert [(line.get_label(), list(line.get_ydata())) for line in lines] == [
        ("AdaptSSR", [pytest.approx(0.55), 0.70]), ("CL4SRec", [0.40])]


def test_a_sweep_is_a_study_whose_space_sweeps_a_number():
    from recbole_adaptssr.analysis.sweep import swept_setting

    assert swept_setting(parse_space("pretrain_method grid [adaptssr]\naugmentation_proportion grid [0.2]\n")) == \
        "augmentation_proportion"
    assert swept_setting(parse_space("seed grid [1, 2]\nmask_ratio grid [0.1, 0.5]\n")) == "mask_ratio"
    assert swept_setting(parse_space("seed grid [1, 2]\nlearning_rate choice [0.1, 0.5]\n")) is None
    assert swept_setting(parse_space("pretrain_stages grid [[mlm], [ssr]]\n")) is None


# ------------------------------------------------------------------------------------------------- search algorithms
SEARCHED = "learning_rate loguniform -7 -4\nhead_hidden_size choice [8, 16]\nhidden_dropout_prob uniform 0.0 0.3\n" \
           "head_dropout_prob same hidden_dropout_prob\n"


def test_an_optuna_search_draws_its_trials_from_the_space_and_selects_on_validation(local_ray, data, tmp_path):
    pytest.importorskip("optuna")
    result_file = tmp_path / "hyper.result"
    outcome = study(tmp_path, data, SEARCHED, "--search_alg=optuna", "--num_samples=3", "--search_seed=7",
                    "--finetune_from=none", "--tune_task=cls", "--scheduler=fifo", f"--output_file={result_file}",
                    finetune_epochs=2)
    rows = outcome.rows
    assert [r["status"] for r in rows] == ["completed"] * 3 and not outcome.interrupted
    for row in rows:
        params = row["params"]
        assert math.exp(-7) <= params["learning_rate"] <= math.exp(-4)
        assert params["head_hidden_size"] in (8, 16) and isinstance(params["head_hidden_size"], int)
        assert 0.0 <= params["hidden_dropout_prob"] <= 0.3
        assert params["head_dropout_prob"] == params["hidden_dropout_prob"]  # same
    assert len({r["params"]["learning_rate"] for r in rows}) == 3  # three draws, not one point
    best = max(rows, key=lambda r: r["valid"])
    assert outcome.best["trial"] == best["trial"]  # selected on validation
    assert yaml.safe_load((tmp_path / "study" / "best.yaml").read_text())["learning_rate"] == \
        best["params"]["learning_rate"]
    assert "search_alg optuna" in (tmp_path / "study" / "summary.md").read_text()
    # RecBole's --output_file: every trial's parameters and validation, the best one's test (its one rerun)
    blocks = result_file.read_text().strip().split("\n\n")
    assert len(blocks) == 3 and all(b.splitlines()[1] == "Valid result:" for b in blocks)
    tested = [b for b in blocks if not b.endswith("best configuration only, once)")]
    assert len(tested) == 1 and tested[0].startswith(f"learning_rate:{best['params']['learning_rate']}, ")
    assert tested[0].splitlines()[-1] == f"acc : {outcome.rerun['test']['acc']}"


@pytest.mark.parametrize("name", ["optuna", "hyperopt"])
def test_a_model_based_searcher_is_seeded_and_gives_the_space_s_values(name):
    pytest.importorskip(name)
    from recbole_adaptssr.tuning.searchers import make_search

    dims = parse_space(SEARCHED + "pretrain_stages choice [[mlm, ssr], [ssr]]\n")

    def first_draws(seed):
        searcher, space = make_search(name, dims, seed, None, "best_objective", "max")
        assert space == {}  # the searcher holds the space
        return [searcher.suggest(f"t{i}") for i in range(3)]

    draws = first_draws(3)
    assert draws == first_draws(3) and draws != first_draws(4)
    for config in draws:
        assert config["head_hidden_size"] in (8, 16) and config["pretrain_stages"] in (["mlm", "ssr"], ["ssr"])
        assert config["head_dropout_prob"] == config["hidden_dropout_prob"]


def test_which_space_each_search_algorithm_takes():
    from recbole_adaptssr.tuning import searchers

    dims = parse_space("seed grid [1, 2]\nhead_hidden_size choice [8, 16, 32]\nn_layers randint 1 3\n"
                       "crop_ratio same seed\n")
    assert searchers.trials_per_sample("random", dims) == 2  # the grid line; the others drawn
    assert searchers.trials_per_sample("grid", dims) == 2 * 3 * 2  # every combination, RecBole's exhaustive search
    search, space = searchers.make_search("grid", dims, 0, None, "best_objective", "max")
    assert space["head_hidden_size"] == {"grid_search": [8, 16, 32]} and space["n_layers"] == {"grid_search": [1, 2]}
    with pytest.raises(ValueError, match=r"<string>:1: seed grid runs every value, one trial each, which the "
                                         r"model-based searcher optuna does not: write 'seed choice \[1, 2\]'"):
        searchers.check_search("optuna", dims)
    continuous = parse_space("learning_rate uniform 0.001 0.01\n")
    with pytest.raises(ValueError, match=r"<string>:1: --search_alg=grid runs every combination of the values, but "
                                         r"learning_rate uniform 0.001 0.01 has no finite list"):
        searchers.check_search("grid", continuous)
    assert searchers.trials_per_sample("optuna", continuous) == 1


def test_a_missing_searcher_library_says_how_to_install_it(monkeypatch):
    from recbole_adaptssr.tuning import searchers

    real = searchers.importlib.import_module

    def without_hyperopt(name, *args):
        if name == "hyperopt":
            raise ImportError("No module named 'hyperopt'")
        return real(name, *args)

    monkeypatch.setattr(searchers.importlib, "import_module", without_hyperopt)
    with pytest.raises(ValueError, match=r"--search_alg=hyperopt needs the hyperopt package: pip install "
                                         r"'recbole-adaptssr\[search\]'"):
        searchers.check_search("hyperopt", parse_space("learning_rate uniform 0.001 0.01\n"))


def test_recbole_s_run_hyper_flags_are_study_options_never_settings(tmp_path, capsys):
    options, settings = parse(["--params_file=x.hyper", "--tool=Hyperopt", "--output_file=hyper_example.result",
                               "--learning_rate=0.01"])
    assert (options.params_file, options.search_alg, options.output_file) == ("x.hyper", "grid",
                                                                              "hyper_example.result")
    assert settings == ["--learning_rate=0.01"]  # only the runs' settings: no --tool, no --output_file
    assert parse(["--params_file=x.hyper", "--tool=Ray"])[0].search_alg == "random"
    assert parse(["--params_file=x.hyper", "--tool=ray", "--search_alg=random"])[0].search_alg == "random"
    assert parse(["--params_file=x.hyper"])[0].search_alg == "random"
    for argv, message in [(["--tool=Optuna"], "--tool must be Hyperopt or Ray"),
                          (["--tool=Ray", "--search_alg=optuna"], "--tool=Ray is --search_alg=random, not "
                                                                  "--search_alg=optuna"),
                          ([f"--output_file={tmp_path}"], f"--output_file {tmp_path} exists")]:
        with pytest.raises(SystemExit):
            parse(["--params_file=x.hyper", *argv])
        assert message in capsys.readouterr().err
    assert parse(["--params_file=x.hyper", f"--output_file={tmp_path}", "--resume"])[0].resume


# ------------------------------------------------------------------------------------------------- integrity
class FakeResult:
    def __init__(self, metrics, lr, error=None):
        self.metrics, self.config, self.error, self.path = metrics, {"learning_rate": lr}, error, f"/r/{lr}"


class FakeGrid(list):
    """What trial_rows reads of a Ray ResultGrid: indexed results and the analysis' Trial objects."""

    def __init__(self, results, statuses):
        super().__init__(results)
        trials = [type("Trial", (), {"status": s, "trial_id": f"t_{i}"})() for i, s in enumerate(statuses)]
        self._experiment_analysis = type("Analysis", (), {"trials": trials})()


def test_trials_are_labelled_by_how_they_ended_and_an_interrupted_one_is_not_completed():
    from recbole_adaptssr.tuning.results import FINISHED, trial_rows

    spec = StudySpec(model="AdaptSSR", dataset="tt", data_name="tt", settings={}, mode="finetune", task="cls",
                     metric="acc", metric_mode="max", uses_pretext=True)
    dims = parse_space("learning_rate grid [0.1, 0.2, 0.3, 0.4]\n")
    last = {"best_objective": 0.5, "max_epochs": 3, "patience": 3}
    grid = FakeGrid([FakeResult({**last, "done": True, "epoch": 3, "best_epoch": 3}, 0.1),  # ran to its end
                     FakeResult({**last, "done": True, "epoch": 1, "best_epoch": 1}, 0.2),  # ASHA stopped it
                     FakeResult({**last, "epoch": 2, "best_epoch": 2}, 0.3),  # Ctrl-C while it ran: no done
                     FakeResult({}, 0.4, error=ValueError("bad"))],
                    ["TERMINATED", "TERMINATED", "TERMINATED", "ERROR"])
    rows = trial_rows(grid, spec, dims)
    assert [r["status"] for r in rows] == ["completed", "stopped_early", "interrupted", "failed"]
    assert "interrupted" not in FINISHED  # a study with one is interrupted: --resume runs that trial again


def test_a_study_whose_every_trial_failed_exits_non_zero(local_ray, data, tmp_path, monkeypatch, capsys):
    from recbole_adaptssr.tuning import cli

    real = cli.main
    monkeypatch.setattr(cli, "main", lambda argv: real(argv, config_dict=base_config(data, tmp_path,
                                                                                     finetune_epochs=1)))
    space = tmp_path / "bad.hyper"
    space.write_text("head_dropout_prob grid [1.5]\n")  # no probability: the trial raises
    rc = cli.console_main(["--dataset=tt", f"--params_file={space}", f"--storage_path={tmp_path / 'ray_results'}",
                           f"--output_dir={tmp_path / 'bad'}", "--name=bad", "--verbose=0", "--finetune_from=none",
                           "--tune_task=cls", "--scheduler=fifo"])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_ALL_FAILED == 4
    assert "every trial of study bad failed (1 trial(s); the first: SettingError: head_dropout_prob must be a " \
           "probability" in err
    assert not (tmp_path / "bad" / "best.yaml").exists() and (tmp_path / "bad" / "trials.md").exists()


@pytest.fixture
def no_ray(monkeypatch):
    """Fail if a study starts Ray (the checks below come first)."""
    from recbole_adaptssr.tuning import study as study_module

    monkeypatch.setattr(study_module, "start_ray", lambda *a, **k: pytest.fail("Ray was started"))


@pytest.mark.parametrize("space,args,message", [
    ("lerning_rate choice [0.1]\n", [], r"bad\.hyper:1: lerning_rate is not a setting; did you mean learning_rate\b"),
    ("augmentations choice [{mask: 1}]\n", [],
     r"augmentations must be a list \(e\.g\. \[a, b\]\), got a mapping \{'mask': 1\} \(.*bad\.hyper:1\)"),
    ("learning_rate choice [0.1]\n", ["--num_sample=4"],
     r"num_sample: did you mean the option --num_samples of run_hyper_adaptssr\.py\?"),
    ("learning_rate choice [0.1]\n", ["--name=../x"], r"study name '\.\./x' \(--name\) is not a plain name"),
])
def test_a_bad_study_is_refused_before_ray_starts(data, tmp_path, no_ray, space, args, message):
    with pytest.raises(ValueError, match=message):
        study(tmp_path, data, space, "--finetune_from=none", "--tune_task=cls", *args, name="bad")
    assert not (tmp_path / "ray_results").exists()


def test_a_resume_with_another_space_settings_or_data_is_refused_before_ray_starts(tmp_path, no_ray):
    from recbole_adaptssr.tuning.results import write_study_record

    own = write_task_dataset(tmp_path / "data", "tt", tasks=("cls",), n_users=16)
    space = tmp_path / "s.hyper"
    space.write_text("learning_rate grid [0.01, 0.002]\n")
    args = ["--dataset=tt", f"--params_file={space}", f"--output_dir={tmp_path / 's'}", "--name=s",
            "--finetune_from=none", "--tune_task=cls", f"--storage_path={tmp_path / 'ray_results'}"]
    options, rest = parse(args)
    spec, _, output_dir, _ = prepare(options, rest, config_dict=base_config(own, tmp_path, finetune_epochs=2))
    os.makedirs(output_dir)
    write_study_record(output_dir, spec, options, "s", str(tmp_path / "ray_results" / "s"))  # as the first run did

    def resumed(**settings):
        with pytest.raises(ValueError) as error:
            main([*args, "--resume"], config_dict=base_config(own, tmp_path, **{"finetune_epochs": 2, **settings}))
        return str(error.value)

    assert resumed(finetune_epochs=3).startswith("--resume: study s (") and "finetune_epochs" in resumed(
        finetune_epochs=3)
    space.write_text("learning_rate grid [0.01, 0.002, 0.0005]\n")
    assert "space: then ['learning_rate grid [0.01, 0.002]'], now ['learning_rate grid [0.01, 0.002, 0.0005]']" in \
        resumed()
    space.write_text("learning_rate grid [0.01, 0.002]\n")
    log = own.folder / "tt.inter"
    log.write_text(log.read_text() + "u1\ti1\t99999\n")
    assert re.search(r"behaviour log tt\.inter: then [\d,]+ bytes, blake2b \w+\.\.\., now", resumed())
    assert not (tmp_path / "ray_results").exists()
